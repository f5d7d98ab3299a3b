"""`gridflex settle` on the store of the live service (the `serve` runtime, twin plant, simulated
clock) after it met an OpenADR SIMPLE event: the statement is produced from the store alone, the
event is settled with a meter-before baseline, and a changed record changes the digest."""

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from typer.testing import CliRunner

from gridflex.cli import app
from gridflex.service.openadr import Ven
from gridflex.store.models import TelemetryRow
from tests.service_support import FakeClock, make_service, run_ticks
from tests.test_openadr import CFG, _event

PROGRAMS = {"programs": [{
    "name": "openadr", "kind": "emergency", "modelled_on": "a utility's OpenADR emergency program",
    "committed_w": 15000, "notice_s": 0, "response_s": 600, "max_duration_s": 7200, "timezone": "UTC",
    "measurement": {"method": "meter_before_after", "before_s": 900, "interval_s": 300},
    "payment": {"capacity_usd_per_mw_month": 6000}, "penalty": {"threshold": 0.95, "usd_per_mw_short": 1000},
}]}


def test_settle_a_served_openadr_event(tmp_path):
    t0 = datetime(2026, 7, 15, 16, tzinfo=UTC)
    clock = FakeClock(t0.timestamp())
    url = f"sqlite:///{tmp_path}/serve.db"
    svc = make_service(url, clock, control={"interval_s": 10})
    run_ticks(svc, clock, 90, 10.0)  # 15 min of normal running: the meter-before window
    start = t0 + timedelta(minutes=20)
    assert Ven(svc, CFG).handle(_event("SIMPLE", "level", [2.0, 2.0], start)) == "optIn"  # 25 % off for 20 min
    run_ticks(svc, clock, 240, 10.0)  # through the event and 15 min after
    svc.store.close()

    (tmp_path / "programs.yaml").write_text(json.dumps(PROGRAMS))
    args = ["settle", "--store", url, "--programs", str(tmp_path / "programs.yaml"), "--program", "openadr",
            "--month", "2026-07"]
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    st = json.loads((tmp_path / "a" / "statement.json").read_text())
    assert [e["event_id"] for e in st["events"]] == ["oadr:ev1:0:0", "oadr:ev1:0:1"]  # one GridEvent per interval
    ev, later = st["events"]
    assert ev["received"]["source"] == "openadr" and ev["matched"].startswith("named")
    assert "part of a dispatch" in later["matched"] and later["baseline_kw"] == ev["baseline_kw"]  # baselined as one
    assert ev["baseline_method"].startswith("meter before")
    # the site had ~94 kW before the event and was asked for 25 % off: about 23 kW against 15 kW committed
    assert 0.9 < ev["performance_factor"] < 2.0, ev
    assert st["records"]["telemetry"] > 300 and st["records"]["decisions"] > 0
    assert "oadr:ev1" in (tmp_path / "a" / "decisions.csv").read_text()

    from gridflex.store import Store

    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(update(TelemetryRow).where(TelemetryRow.id == 10).values(site_power_w=1.0))
    store.close()
    second = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert json.loads((tmp_path / "b" / "statement.json").read_text())["digest_sha256"] != st["digest_sha256"]
