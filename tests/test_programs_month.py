"""`gridflex simulate --store` writes what `gridflex settle` needs, and the built-in
`programs-month` scenario's events belong to the programs its site is enrolled in."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gridflex.cli import app
from gridflex.config_file import load_yaml_model
from gridflex.programs.match import which_program
from gridflex.programs.model import CoincidentPeak, ProgramsFile
from gridflex.signals.prices import load_prices
from gridflex.sim.scenarios import load_scenario
from gridflex.store import Store

TZ = ZoneInfo("America/Chicago")
START = datetime(2026, 7, 15, 12, tzinfo=TZ)
EVENT = START + timedelta(hours=2)  # 14:00-15:00 local, notice 10 minutes
SCENARIO = {
    "name": "store-short", "start": START.isoformat(), "end": (START + timedelta(hours=4)).isoformat(), "step_s": 10,
    "site": {"pue": 1.2, "overhead_w": 5000},
    "jobs": [{"id": "train", "workload": "pt_mpt_7b_fast", "gpus": 64, "flex_tier": 3},
             {"id": "serve", "workload": "infer_llama_8b_48g", "gpus": 32, "flex_tier": 1}],
    "events": [{"id": "ers-10:jul15", "start": EVENT.isoformat(), "end": (EVENT + timedelta(hours=1)).isoformat(),
                "ramp_s": 120, "notice_s": 600, "target": {"reduction": 0.3}}],
    "control": {"interval_s": 10},
}
PROGRAMS = {"programs": [{
    "name": "ers-10", "kind": "emergency", "modelled_on": "ERCOT ERS-10", "committed_w": 5000, "notice_s": 600,
    "response_s": 600, "max_duration_s": 28800,
    "measurement": {"method": "meter_before_after", "before_s": 3600, "interval_s": 900},
    "payment": {"capacity_usd_per_mw_month": 6000, "energy_usd_per_mwh": 100},
    "penalty": {"threshold": 0.95, "usd_per_mw_short": 1000},
}]}


def test_simulate_store_then_settle(tmp_path):
    scenario, programs = tmp_path / "short.yaml", tmp_path / "programs.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    programs.write_text(yaml.safe_dump(PROGRAMS))
    url = f"sqlite:///{tmp_path / 'run.db'}"
    run = CliRunner().invoke(app, ["simulate", str(scenario), "--store", url, "--store-every-s", "30"])
    assert run.exit_code == 0, run.output

    store = Store(url)
    try:
        tel = store.telemetry(limit=10_000)
        decisions = store.decisions(limit=10_000)
        (event,) = store.events()
    finally:
        store.close()
    t = np.array([r.t_s for r in tel])
    assert {(r.miners_power_w, r.meter_power_w, r.source) for r in tel} == {(None, None, "drivers (twin)")}
    assert len(tel) == 4 * 3600 // 30 and np.allclose(np.diff(t), 30.0)  # every 30 s of the 4 hours
    during = [d for d in decisions if d.active_events]
    assert np.allclose(np.diff([d.t_s for d in during]), 10.0)  # every tick while the event is active
    assert len(decisions) > len(tel)
    assert event.event.id == "ers-10:jul15" and event.source == "scenario"
    assert event.known_from_s == EVENT.timestamp() - 600 and event.baseline_w > 0

    out = tmp_path / "statement"
    settle = CliRunner().invoke(app, ["settle", "--store", url, "--programs", str(programs), "--program", "ers-10",
                                      "--month", "2026-07", "--out", str(out)])
    assert settle.exit_code == 0, settle.output
    st = json.loads((out / "statement.json").read_text())
    (ev,) = st["events"]
    assert ev["event_id"] == "ers-10:jul15"
    # the site shed about 30 % of the hour before; the statement's baseline is that hour's meter
    before = np.mean([r.site_power_w for r in tel if EVENT.timestamp() - 3600 <= r.t_s < EVENT.timestamp()])
    assert abs(ev["baseline_kw"] * 1e3 - before) < 0.01 * before
    assert 0.2 * before < ev["reduction_kw"] * 1e3 < 0.4 * before
    assert ev["performance_factor"] > 1 and ev["payment_usd"] > 0 and ev["penalty_usd"] == 0
    assert (out / "intervals.csv").read_text().count("ers-10:jul15") == 2  # hold 14:02-14:58: the two whole intervals 14:15, 14:30

    again = CliRunner().invoke(app, ["simulate", str(scenario), "--store", url])
    assert again.exit_code != 0 and "already holds telemetry" in again.output


def test_simulated_telemetry_says_what_the_miners_drew(tmp_path):
    """A hybrid site's stored telemetry carries the miners' power, as the live service's does."""
    raw = yaml.safe_load(resources.files("gridflex.data").joinpath("scenarios", "hybrid-site.yaml").read_text())
    start = datetime.fromisoformat(raw["start"])
    raw.update(end=(start + timedelta(minutes=20)).isoformat(), step_s=10, events=[])
    raw["control"]["interval_s"] = 10
    scenario = tmp_path / "hybrid-short.yaml"
    scenario.write_text(yaml.safe_dump(raw))
    url = f"sqlite:///{tmp_path / 'run.db'}"
    run = CliRunner().invoke(app, ["simulate", str(scenario), "--store", url])
    assert run.exit_code == 0, run.output
    store = Store(url)
    try:
        tel = store.telemetry(limit=10_000)
    finally:
        store.close()
    miners_w = np.array([r.miners_power_w for r in tel])
    site_w = np.array([r.site_power_w for r in tel])
    assert len(tel) == 20 * 6 and {r.source for r in tel} == {"drivers (twin)"}
    assert (miners_w > 100_000).all() and (miners_w < site_w).all()  # 280 miners near a 1 MW setpoint


def test_programs_month_events_belong_to_its_programs():
    loaded = load_scenario("programs-month")
    sc = loaded.scenario
    enrolment = load_yaml_model(Path(str(loaded.base_dir)) / "programs-month-programs.yaml", ProgramsFile).programs
    start_s = sc.start.timestamp()
    got = {ev.id: which_program(ev, "scenario", ev.known_from_s(start_s), enrolment).program for ev in sc.events}
    assert got == {ev.id: ev.id.split(":")[0] for ev in sc.events}
    assert set(got.values()) == {"ers-10", "ercot-4cp"}
    assert all(ev.start.astimezone(TZ).month == 8 for ev in sc.events)  # the settled month
    assert (datetime(2024, 8, 1, tzinfo=TZ) - sc.start).days >= 14  # baseline history before it
    # the published August peak lies inside one of the 4CP alert events
    (cp,) = [p for p in enrolment.programs if isinstance(p, CoincidentPeak)]
    (peak,) = cp.peak_intervals
    assert any(ev.start <= peak < ev.end for ev in sc.events if got[ev.id] == cp.name)
    # real prices cover the whole run, the August 2024 scarcity interval included
    prices = load_prices(sc.miners.prices, sc.miners.price_column, loaded.base_dir)
    t = np.arange(start_s, sc.end.timestamp(), 900.0)
    p = prices.at(t)
    assert np.isfinite(p).all() and p.max() > 4800


def test_store_every_s_must_not_be_negative(tmp_path):
    scenario = tmp_path / "short.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    bad = CliRunner().invoke(app, ["simulate", str(scenario), "--store", f"sqlite:///{tmp_path / 'x.db'}",
                                   "--store-every-s", "-1"])
    assert bad.exit_code != 0 and "--store-every-s" in bad.output


def test_events_are_aimed_at_the_program_baseline(tmp_path):
    """A job ends 20 minutes before the event: the controller's own baseline (its last hour) still
    counts it, the program's (meter before, 15 minutes) does not. Asked for 20 % of its own baseline,
    the site delivers nothing the program measures; aimed at the program's baseline less the 10 kW
    obligation (`event_target: obligation`, the default) it meets the obligation."""
    scenario = json.loads(json.dumps(SCENARIO))
    scenario["jobs"].append({"id": "batch", "workload": "pt_mpt_7b_fast", "gpus": 64, "flex_tier": 3,
                             "start": START.isoformat(), "end": (EVENT - timedelta(minutes=20)).isoformat()})
    scenario["events"][0]["target"] = {"reduction": 0.2}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    factor = {}
    for mode in ("event", "obligation"):
        programs = json.loads(json.dumps(PROGRAMS))
        programs["programs"][0] |= {"committed_w": 10_000, "event_target": mode}
        programs["programs"][0]["measurement"]["before_s"] = 900
        path = tmp_path / f"{mode}.yaml"
        path.write_text(yaml.safe_dump(programs))
        url = f"sqlite:///{tmp_path / mode}.db"
        run = CliRunner().invoke(app, ["simulate", str(tmp_path / "s.yaml"), "--store", url, "--programs", str(path)])
        assert run.exit_code == 0, run.output
        settle = CliRunner().invoke(app, ["settle", "--store", url, "--programs", str(path), "--program", "ers-10",
                                          "--month", "2026-07", "--out", str(tmp_path / mode)])
        assert settle.exit_code == 0, settle.output
        (ev,) = json.loads((tmp_path / mode / "statement.json").read_text())["events"]
        factor[mode] = ev["performance_factor"]
        store = Store(url)
        try:
            (stored,) = store.events()
        finally:
            store.close()
        assert stored.event.target.reduction == 0.2  # the store keeps the event as received
        if mode == "obligation":  # the baseline the controller aimed from is the program's
            assert stored.baseline_w == pytest.approx(ev["baseline_kw"] * 1e3, rel=1e-3)
    assert factor["event"] < 0.2, factor  # the old behaviour: the job's end counted as the reduction
    assert 1.0 <= factor["obligation"] < 1.3, factor
