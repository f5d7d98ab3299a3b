"""The twin of a fleet: the geo-fleet-august sites, shortened to two hours around an event at PJM,
run with the coordinator of `gridflex fleet`, alone, and with the coordinator gone mid-shift."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from gridflex.errors import InputError
from gridflex.fleet.scenario import is_fleet_scenario, load_fleet
from gridflex.sim.fleet_run import fleet_summary, run_fleet

BUILTIN = Path(str(resources.files("gridflex.data").joinpath("scenarios")))
EVENT_START = "2023-08-20T15:30:00-04:00"
STOP_S = 33 * 60  # the coordinator is gone 3 minutes into the event's 10-minute ramp, the shift under way


def short_fleet(tmp_path: Path, minutes: int = 120, **fleet_changes) -> Path:
    """geo-fleet-august from 15:00 EDT for `minutes` with a 25 % event at PJM 15:30-16:40, ERCOT without events."""
    end = f"{15 + minutes // 60}:{minutes % 60:02d}:00"
    window = {"pjm": ("2023-08-20T15:00:00-04:00", f"2023-08-20T{end}-04:00"),
              "ercot": ("2023-08-20T14:00:00-05:00", f"2023-08-20T{int(end[:2]) - 1}{end[2:]}-05:00")}
    for name, (start, end) in window.items():
        sc = yaml.safe_load((BUILTIN / f"geo-fleet-august-{name}.yaml").read_text())
        sc.update(start=start, end=end, job_trace={"file": str(BUILTIN / sc["job_trace"]["file"])})
        sc["control"]["baseline_window_s"] = 1200
        sc["events"] = [{"id": "pjm-peak", "start": EVENT_START, "end": "2023-08-20T16:40:00-04:00", "ramp_s": 600,
                         "notice_s": 86400, "target": {"reduction": 0.25}}] if name == "pjm" else []
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(sc))
    fl = yaml.safe_load((BUILTIN / "geo-fleet-august.yaml").read_text())
    fl.update(start=window["pjm"][0], end=window["pjm"][1], rtt_file=str(BUILTIN / fl["rtt_file"]), **fleet_changes)
    for s in fl["sites"]:
        s["scenario"] = f"{s['name']}.yaml"
        s["carbon"]["file"] = str(BUILTIN / s["carbon"]["file"])
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fl))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    fleet = load_fleet(str(short_fleet(tmp_path_factory.mktemp("fleet"))))
    runs = {mode: run_fleet(fleet, mode=mode) for mode in ("fleet", "alone")}
    runs["stopped"] = run_fleet(fleet, mode="fleet", coordinator_stops_s=STOP_S)
    return runs, {mode: fleet_summary(run) for mode, run in runs.items()}


def test_the_event_site_moves_chat_out_and_code_stays_within_its_budget(runs):
    runs, summary = runs
    fleet = runs["fleet"]
    pjm = fleet.fleet.spec.sites[0].name
    t_event = fleet.t_s - fleet.t_s[0]
    during = (t_event > 45 * 60) & (t_event < 95 * 60)
    assert fleet.share[during, 0].mean() < runs["alone"].share[during, 0].mean() - 0.2, "PJM's share falls"
    classes = summary["fleet"]["classes"]
    assert classes["chat-dc"]["moved"] > 0.2 * classes["chat-dc"]["requests"]
    assert classes["code-dc"]["moved"] == 0  # 20 ms budget, Dallas is 31 ms away
    for c in classes.values():
        assert c["budget_kept"] and c["added_latency_p99_ms"] <= c["latency_budget_ms"]
    assert classes["chat-dc"]["added_latency_mean_ms"] > 0
    assert summary["fleet"]["sites"][pjm]["events"][0]["met"]


def test_fleet_beats_the_site_alone_at_the_event_site(runs):
    _, summary = runs
    f, a = summary["fleet"], summary["alone"]
    assert f["sites"]["pjm"]["weighted_performance"] > a["sites"]["pjm"]["weighted_performance"]
    assert f["total"]["weighted_performance"] > a["total"]["weighted_performance"]
    assert f["total"]["events_met"] == a["total"]["events_met"] == f["total"]["events"]
    assert f["total"]["requests_failed"] <= a["total"]["requests_failed"]
    assert f["total"]["requests"] == pytest.approx(a["total"]["requests"])  # the same traffic, served elsewhere


def test_after_the_event_traffic_goes_home(runs):
    runs, _ = runs
    fleet = runs["fleet"]
    assert np.allclose(fleet.share[-1], runs["alone"].share[-1], atol=0.02)


def test_coordinator_gone_mid_shift_sites_keep_their_targets_and_traffic_is_served(runs):
    runs, summary = runs
    stopped = runs["stopped"]
    t = stopped.t_s - stopped.t_s[0]
    after = t >= STOP_S
    frozen = stopped.share[after, 0]
    assert 0.05 < runs["alone"].share[after, 0].mean() - frozen.mean(), "stopped with traffic moved"
    hold = (t > 45 * 60) & (t < 95 * 60)
    assert stopped.share[hold, 0].mean() > runs["fleet"].share[hold, 0].mean() + 0.05, "stopped mid-shift"
    assert len(stopped.coordinator_lines) == int(np.ceil(STOP_S / stopped.fleet.spec.interval_s))
    s = summary["stopped"]
    assert s["total"]["events_met"] == s["total"]["events"]  # each site meets its event by itself
    assert s["total"]["requests_failed"] == 0
    assert s["total"]["requests"] == pytest.approx(summary["alone"]["total"]["requests"])
    assert s["total"]["budgets_kept"]


def test_fleet_scenarios_are_told_apart_and_bad_ones_name_the_field(tmp_path):
    assert is_fleet_scenario("geo-fleet") and not is_fleet_scenario("phoenix-srp")
    bad = short_fleet(tmp_path, classes=[{"name": "x", "origin": "Tokyo", "trace": "azure-llm-conv",
                                          "peak_rps": 10, "latency_budget_ms": 50}])
    with pytest.raises(InputError, match=r"classes\.0\.origin"):
        load_fleet(str(bad))
    data = yaml.safe_load(bad.read_text())
    data.pop("classes")
    data["sites"][1]["serves"] = "nope"
    data["classes"] = [{"name": "x", "origin": "Dallas", "trace": "azure-llm-conv", "peak_rps": 10,
                        "latency_budget_ms": 50}]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"sites\.1\.serves"):
        load_fleet(str(bad))


def test_simulate_runs_a_fleet_scenario_and_reports_the_sites_side_by_side(tmp_path):
    from typer.testing import CliRunner

    from gridflex.cli import app

    fleet = short_fleet(tmp_path, minutes=40)  # into the event's ramp: traffic has begun to move
    out = CliRunner().invoke(app, ["simulate", str(fleet), "--json", str(tmp_path / "s.json"),
                                   "--report", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert set(summary["fleet_vs_alone"]["weighted_performance"]) == {"pjm", "ercot", "total"}
    assert summary["fleet"]["total"]["requests_moved"] > 0 == summary["alone"]["total"]["requests_moved"]
    page = (tmp_path / "r.html").read_text()
    assert page.count("<img") == 3 and "pjm (Washington DC)" in page and "ercot (Dallas)" in page
    bad = CliRunner().invoke(app, ["simulate", str(fleet), "--trace", str(tmp_path / "t.csv")])
    assert bad.exit_code == 2 and "single-site" in bad.output


def _started_at(run) -> dict[str, list[str]]:
    """Each queued job that started: the sites it ran at."""
    out: dict[str, list[str]] = {}
    for name, result in run.sites.items():
        for job, started in zip(result.scenario.jobs, result.started_s):
            if job.queued and np.isfinite(started):
                out.setdefault(job.id, []).append(name)
    return out


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """The fleet run with batch data that costs nothing to move and PJM's energy dear (150 USD/MWh)."""
    path = short_fleet(tmp_path_factory.mktemp("placed"), placement={"data_gb": 0})
    data = yaml.safe_load(path.read_text())
    data["sites"][0]["price_usd_per_mwh"] = 150
    path.write_text(yaml.safe_dump(data))
    return run_fleet(load_fleet(str(path)), mode="fleet")


def test_queued_batch_jobs_are_placed_across_sites_and_each_runs_once(runs, placed):
    runs, summary = runs
    fleet, alone = placed, runs["alone"]
    home = fleet.fleet.batch_home
    assert all(sites == [home[j]] for j, sites in _started_at(alone).items()), "alone, each runs where submitted"
    ran = _started_at(fleet)
    assert all(len(sites) == 1 for sites in ran.values()), "a job runs at one site"
    assert fleet.batch_moves and summary["alone"]["total"]["batch_moved"] == 0
    assert fleet_summary(fleet)["total"]["batch_moved"] == len(fleet.batch_moves)
    event = fleet.sites["pjm"].scenario.events[0]
    ctl = fleet.sites["pjm"].scenario.control
    run_s = {j.id: j.duration_s for j in fleet.fleet.sites["pjm"].scenario.jobs if j.queued}
    for m in runs["fleet"].batch_moves:  # at the default data gravity only work PJM's event would cut moves
        assert (m["from"], m["to"]) == ("pjm", "ercot")
        assert m["t_s"] < event.end.timestamp() and m["t_s"] + run_s[m["job"]] > event.start.timestamp() + 600
    closed = (event.start.timestamp() - ctl.baseline_window_s, event.end.timestamp() + ctl.snapback_guard_s)
    for m in fleet.batch_moves:
        assert m["from"] == home[m["job"]] and ran.get(m["job"], [m["to"]]) == [m["to"]]
        assert (m["from"], m["to"]) == ("pjm", "ercot"), "to the cheaper site; PJM around its event gets none"
    assert any(closed[0] < m["t_s"] < closed[1] for m in fleet.batch_moves), "out of PJM during its event too"


def test_geo_fleet_is_geo_fleet_august_on_the_day_of_the_largest_carbon_gap():
    """geo-fleet: geo-fleet-august's sites, jobs and events at the same local hours on 2023-03-15, its
    hourly carbon covering the run, PJM's grid dirtier than ERCOT's by more than the gap at which its
    costs move a conversation request (184 J) 31 ms: 0.031 s × 1e-5 USD / (184 J × 100 USD/t) = 61 g/kWh."""
    march, august = load_fleet("geo-fleet"), load_fleet("geo-fleet-august")
    start_s, end_s = march.spec.start.timestamp(), march.spec.end.timestamp()
    assert march.spec.start.date().isoformat() == "2023-03-15"
    for site in march.spec.sites:
        times_s = march.carbon[site.name].times_s
        assert times_s[0] <= start_s and end_s <= times_s[-1] + 3600
        m, a = march.sites[site.name].scenario, august.sites[site.name].scenario
        assert [(j.id, j.gpus, j.workload, j.submit - m.start if j.submit else None) for j in m.jobs] == \
            [(j.id, j.gpus, j.workload, j.submit - a.start if j.submit else None) for j in a.jobs]
        assert [(e.start.timetz(), e.end.timetz(), e.target) for e in m.events] == \
            [(e.start.timetz(), e.end.timetz(), e.target) for e in a.events]
    t_s = np.arange(start_s, end_s, 60.0)
    gap = march.carbon["pjm"].at(t_s) - march.carbon["ercot"].at(t_s)
    j_kwh = march.energy_per_request_j(march.spec.sites[0]) / 3.6e6
    costs = march.fleet_config().costs
    assert gap.min() > 0.031 * costs.latency_usd_per_request_s / (j_kwh * costs.carbon_usd_per_t / 1e6)


SHARED_CARBON = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "carbon-us-iso-2023"


@pytest.mark.skipif(not SHARED_CARBON.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("day", ["2023-08-20", "2023-03-15"])
def test_fleet_carbon_files_are_rows_of_the_electricity_maps_year(day):
    """The bundled carbon series are the direct intensities of Electricity Maps' 2023 files, unchanged."""
    with open(BUILTIN.parent / "signals" / f"us-iso-carbon-{day}.csv") as f:
        bundled = list(csv.DictReader(f))
    for zone in ("US-TEX-ERCO", "US-MIDA-PJM"):
        with open(SHARED_CARBON / f"{zone}_2023_hourly.csv", encoding="utf-8") as f:
            year = {r["Datetime (UTC)"]: r["Carbon Intensity gCO₂eq/kWh (direct)"] for r in csv.DictReader(f)}
        hours = [r["datetime_utc"].replace("T", " ").removesuffix("Z") for r in bundled]
        assert [year[h] for h in hours] == [r[zone] for r in bundled]


@pytest.mark.skipif(not SHARED_CARBON.is_dir(), reason="../shared/data is not beside the checkout")
def test_geo_fleet_is_the_day_of_2023_with_the_largest_mean_pjm_ercot_gap():
    direct = {}
    for zone in ("US-TEX-ERCO", "US-MIDA-PJM"):
        with open(SHARED_CARBON / f"{zone}_2023_hourly.csv", encoding="utf-8") as f:
            direct[zone] = np.array([float(r["Carbon Intensity gCO₂eq/kWh (direct)"]) for r in csv.DictReader(f)])
    daily_gap = (direct["US-MIDA-PJM"] - direct["US-TEX-ERCO"]).reshape(365, 24).mean(axis=1)  # UTC days, no gaps
    day = np.datetime64("2023-01-01") + int(daily_gap.argmax())
    assert day == np.datetime64(load_fleet("geo-fleet").spec.start.date())
