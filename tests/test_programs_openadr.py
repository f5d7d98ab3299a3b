"""`gridflex settle` on the store of the live service after it met an OpenADR event from a real
openleadr VTN: the `serve` runtime (twin plant, simulated clock) with its OpenADR client, on
PostgreSQL (settling from a SQLite store: tests/test_programs_month.py). The statement is produced from the store alone by the CLI, settling
again gives the same digest, and a changed record changes it."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from gridflex.service.openadr import Ven
from gridflex.store import Store
from gridflex.store.models import TelemetryRow
from tests.service_support import FakeClock, free_port, make_service, run_ticks, store_url
from tests.test_openadr import Vtn

PROGRAMS = {"programs": [{
    "name": "openadr", "kind": "emergency", "modelled_on": "a utility's OpenADR emergency program",
    "committed_w": 15000, "notice_s": 0, "response_s": 600, "max_duration_s": 7200, "timezone": "UTC",
    "measurement": {"method": "meter_before_after", "before_s": 900, "interval_s": 300},
    "payment": {"capacity_usd_per_mw_month": 6000}, "penalty": {"threshold": 0.95, "usd_per_mw_short": 1000},
}]}
SETPOINT_KW = 72.0
EVENT_MIN = 30


def _until(pred, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def _settle(url: str, programs, month: str, out) -> dict:
    """`gridflex settle` as a command line; the statement it wrote."""
    argv = [sys.executable, "-m", "gridflex.cli", "settle", "--store", url, "--programs", str(programs),
            "--program", "openadr", "--month", month, "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "statement.json").read_text())


@pytest.mark.slow
def test_settle_a_served_openadr_event_from_a_real_vtn(tmp_path):
    vtn_port = free_port()
    with store_url("postgresql", tmp_path) as url:
        clock = FakeClock(time.time() - 1200)
        svc = make_service(url, clock, control={"interval_s": 10}, programs=PROGRAMS["programs"],
                           openadr={"enabled": True, "vtn_url": f"http://127.0.0.1:{vtn_port}/OpenADR2/Simple/2.0b",
                                    "report_interval_s": 2, "retry_s": 1})
        run_ticks(svc, clock, 120, 10.0)  # 20 min of normal running up to now: the meter-before window
        vtn = Vtn(vtn_port)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        ven = Ven(svc, svc.config.openadr)
        try:
            asyncio.run_coroutine_threadsafe(ven.start(), loop).result(20)
            assert vtn.registered.wait(60), "the VEN never registered with the VTN"
            vtn.dispatch(SETPOINT_KW, minutes=EVENT_MIN)  # LOAD_DISPATCH from now
            _until(svc.active_event_ids, 60, "the dispatch never reached the service")
            _until(lambda: vtn.responses, 60, "the VTN got no opt-in")
            assert vtn.responses == ["optIn"]
            (ev_id,) = svc.active_event_ids()
            end_s = svc.store.event(ev_id).event.end.timestamp()
            clock.t_s = max(clock.t_s, time.time())
            run_ticks(svc, clock, int((end_s + 900 - clock.t_s) // 10) + 1, 10.0)  # through the event, 15 min after
        finally:
            asyncio.run_coroutine_threadsafe(ven.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            vtn.stop()
            svc.store.close()

        programs = tmp_path / "programs.yaml"
        programs.write_text(json.dumps(PROGRAMS))
        month = datetime.fromtimestamp(end_s, UTC).strftime("%Y-%m")
        st = _settle(url, programs, month, tmp_path / "a")
        (ev,) = st["events"]
        assert ev["event_id"] == ev_id and ev["received"]["source"] == "openadr"
        assert ev["received"]["event"]["target"]["power_w"] == SETPOINT_KW * 1e3  # the event as received
        assert ev["matched"].startswith("named") and ev["baseline_method"].startswith("meter before")
        # the service aimed the event at the program's baseline, the one the statement settles on
        assert svc.program_targets.baselines_w[ev_id] == pytest.approx(ev["baseline_kw"] * 1e3, rel=1e-3)
        # about 94 kW before the dispatch and held under 72 kW: about 22 kW against 15 kW committed
        assert 1.0 < ev["performance_factor"] < 2.0, ev
        assert ev["penalty_usd"] == 0 and st["records"]["telemetry"] > 250 and st["records"]["decisions"] > 0
        assert ev_id in (tmp_path / "a" / "decisions.csv").read_text()
        assert (tmp_path / "a" / "statement.html").read_text().count(st["digest_sha256"]) >= 1

        assert _settle(url, programs, month, tmp_path / "b")["digest_sha256"] == st["digest_sha256"]  # reproducible
        store = Store(url)
        try:
            with store.engine.begin() as conn:
                first = select(func.min(TelemetryRow.id)).scalar_subquery()
                conn.execute(update(TelemetryRow).where(TelemetryRow.id == first).values(site_power_w=1.0))
        finally:
            store.close()
        assert _settle(url, programs, month, tmp_path / "c")["digest_sha256"] != st["digest_sha256"]
