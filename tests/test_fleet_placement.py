"""Placing queued batch jobs across sites (`fleet/placement.py`) on hand-made cases, and the
twin's verbs that carry a placement out (a job withdrawn from one site's queue, submitted to another's)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from gridflex.drivers.twin import TwinDriver
from gridflex.errors import DriverError, InputError
from gridflex.fleet.placement import BatchJobs, PlacementCosts, PlacementSites, place
from gridflex.model.scenario import TwinSettings
from gridflex.model.site import Job, Site

NOW = 1_000_000.0
HOUR = 3600.0


def sites(**changes) -> PlacementSites:
    """Two sites, `a` and `b`, alike: 64 free GPUs, no power limit, 400 g/kWh, 50 USD/MWh, no events,
    work shed in place valued at 1,000 USD/MWh."""
    base = dict(names=("a", "b"), reachable=np.array([True, True]), free_gpus=np.array([64, 64]),
                headroom_w=np.array([np.inf, np.inf]), carbon_g_per_kwh=np.array([400.0, 400.0]),
                price_usd_per_mwh=np.array([50.0, 50.0]), event_windows_s=(np.zeros((0, 2)), np.zeros((0, 2))),
                pue=np.array([1.2, 1.2]), cut_windows_s=(np.zeros((0, 2)), np.zeros((0, 2))),
                slow_usd_per_mwh=np.array([1000.0, 1000.0]))
    return PlacementSites(**{**base, **changes})


def jobs(n: int = 1, gpus: int = 8, run_h: float = 4.0, data_gb: float = 10.0, origin: int = 0) -> BatchJobs:
    """`n` jobs submitted at site `origin`: 8 GPUs at 300 W above idle each, `run_h` hours of work."""
    return BatchJobs(ids=tuple(f"j{i}" for i in range(n)), origin=np.full(n, origin), gpus=np.full(n, gpus),
                     power_w=np.full(n, gpus * 300.0), run_s=np.full(n, run_h * HOUR), data_gb=np.full(n, data_gb))


def test_carbon_binding_moves_a_job_to_the_cleaner_site():
    # 8 × 300 W × 1.2 × 4 h = 11.52 kWh; 200 g/kWh less at b is 2.3 kg, 0.23 USD at 100 USD/t; data 10 GB = 0.20 USD
    p = place(jobs(), sites(carbon_g_per_kwh=np.array([400.0, 200.0])), NOW)
    assert p.site.tolist() == [1] and p.moved.tolist() == [True]
    assert p.cost_usd[0, 1] == pytest.approx(11.52 * (0.05 + 0.02) + 0.2)
    assert p.why[0].startswith("moved")
    # the same carbon gap with the carbon price at 0: nothing to gain, the data stays
    assert place(jobs(), sites(carbon_g_per_kwh=np.array([400.0, 200.0])), NOW,
                 PlacementCosts(carbon_usd_per_t=0.0)).site.tolist() == [0]


def test_data_gravity_binding_keeps_the_job_home():
    cleaner = sites(carbon_g_per_kwh=np.array([400.0, 200.0]))
    assert place(jobs(data_gb=10.0), cleaner, NOW).site.tolist() == [1]
    assert place(jobs(data_gb=20.0), cleaner, NOW).site.tolist() == [0], "0.40 USD of data against 0.23 of carbon"
    # a dearer transfer binds as a larger data set does
    assert place(jobs(data_gb=10.0), cleaner, NOW, PlacementCosts(data_usd_per_gb=0.05)).site.tolist() == [0]


def test_price_is_weighed_with_carbon():
    # b is cleaner by 200 g/kWh (0.23 USD) but dearer by 30 USD/MWh (0.35 USD): the job stays
    p = place(jobs(data_gb=0.0), sites(carbon_g_per_kwh=np.array([400.0, 200.0]),
                                       price_usd_per_mwh=np.array([50.0, 80.0])), NOW)
    assert p.site.tolist() == [0]


def test_free_gpus_bind_in_submission_order():
    cleaner = sites(carbon_g_per_kwh=np.array([400.0, 200.0]), free_gpus=np.array([64, 12]))
    p = place(jobs(n=3), cleaner, NOW)
    assert p.site.tolist() == [1, 0, 0], "b has room for the first job only; the others stay home"
    assert np.isinf(p.cost_usd[1, 1]) and np.isfinite(p.cost_usd[1, 0])
    # b's queue already waits for its free GPUs: nothing goes there
    assert place(jobs(), sites(carbon_g_per_kwh=np.array([400.0, 200.0]), free_gpus=np.array([64, 0])),
                 NOW).site.tolist() == [0]


def test_power_headroom_binds():
    # the job draws 8 × 300 W × 1.2 = 2,880 W at the site
    cleaner = dict(carbon_g_per_kwh=np.array([400.0, 200.0]))
    assert place(jobs(), sites(headroom_w=np.array([np.inf, 2_800.0]), **cleaner), NOW).site.tolist() == [0]
    assert place(jobs(), sites(headroom_w=np.array([np.inf, 2_900.0]), **cleaner), NOW).site.tolist() == [1]
    assert place(jobs(n=2), sites(headroom_w=np.array([np.inf, 5_000.0]), **cleaner), NOW).site.tolist() == [1, 0]
    # no headroom at home: the job stays (its own controller holds it or slows other work) unless b is cheaper
    assert place(jobs(), sites(headroom_w=np.array([0.0, np.inf])), NOW).site.tolist() == [0]


def test_a_site_unreachable_gets_nothing_and_a_job_there_stays():
    p = place(jobs(), sites(carbon_g_per_kwh=np.array([400.0, 100.0]), reachable=np.array([True, False])), NOW)
    assert p.site.tolist() == [0] and np.isinf(p.cost_usd[0, 1])
    p = place(jobs(), sites(carbon_g_per_kwh=np.array([400.0, 100.0]), reachable=np.array([False, True])), NOW)
    assert p.site.tolist() == [0] and "unreachable" in p.why[0]


def test_an_event_site_gets_no_new_batch():
    cleaner = dict(carbon_g_per_kwh=np.array([400.0, 100.0]))
    during = (np.zeros((0, 2)), np.array([[NOW + 2 * HOUR, NOW + 3 * HOUR]]))  # within the job's 4-h run
    assert place(jobs(), sites(event_windows_s=during, **cleaner), NOW).site.tolist() == [0]
    in_force = (np.zeros((0, 2)), np.array([[NOW - HOUR, NOW + 60.0]]))
    assert place(jobs(), sites(event_windows_s=in_force, **cleaner), NOW).site.tolist() == [0]
    after = (np.zeros((0, 2)), np.array([[NOW + 5 * HOUR, NOW + 6 * HOUR]]))  # after the job's run: b may take it
    assert place(jobs(), sites(event_windows_s=after, **cleaner), NOW).site.tolist() == [1]
    # a job submitted at the event site stays when that is cheapest (its controller holds it, as alone)
    at_home = (np.array([[NOW, NOW + HOUR]]), np.zeros((0, 2)))
    assert place(jobs(), sites(event_windows_s=at_home), NOW).site.tolist() == [0]
    assert place(jobs(), sites(event_windows_s=at_home, **cleaner), NOW).site.tolist() == [1]


def test_the_work_an_event_would_cut_at_home_moves_a_long_job_out_and_leaves_a_short_one():
    # a cuts from NOW + 1 h to NOW + 3 h; both sites alike otherwise; data 10 GB = 0.20 USD
    cut = dict(event_windows_s=(np.array([[NOW - HOUR, NOW + 3 * HOUR]]), np.zeros((0, 2))),
               cut_windows_s=(np.array([[NOW + HOUR, NOW + 3 * HOUR]]), np.zeros((0, 2))))
    p = place(jobs(run_h=4.0), sites(**cut), NOW)
    # 2 h of 8 × 300 W × 1.2 in the cut = 5.76 kWh of work given up at 1,000 USD/MWh
    assert p.site.tolist() == [1] and p.cost_usd[0, 0] == pytest.approx(11.52 * 0.09 + 5.76)
    # a 10-min job ends before the cut: moving its data gains nothing
    assert place(jobs(run_h=1 / 6), sites(**cut), NOW).site.tolist() == [0]
    # 1 min in the cut (0.05 kWh, 0.05 USD) is worth less than moving the data
    assert place(jobs(run_h=61 / 60), sites(**cut), NOW).site.tolist() == [0]
    # work shed in place valued at nothing: the job stays
    assert place(jobs(), sites(**cut, slow_usd_per_mwh=np.array([0.0, 0.0])), NOW).site.tolist() == [0]


def test_bad_input_names_the_field():
    with pytest.raises(InputError, match="sites.free_gpus"):
        place(jobs(), sites(free_gpus=np.array([1, 2, 3])), NOW)
    with pytest.raises(InputError, match="sites.event_windows_s"):
        place(jobs(), sites(event_windows_s=(np.zeros((0, 2)),)), NOW)
    with pytest.raises(InputError, match="sites.cut_windows_s"):
        place(jobs(), sites(cut_windows_s=(np.zeros((0, 2)), np.zeros(3))), NOW)
    with pytest.raises(InputError, match="sites.slow_usd_per_mwh"):
        place(jobs(), sites(slow_usd_per_mwh=np.array([1.0, -1.0])), NOW)
    with pytest.raises(InputError, match="jobs.origin"):
        place(jobs(origin=2), sites(), NOW)
    with pytest.raises(InputError, match="sites.carbon_g_per_kwh"):
        place(jobs(), sites(carbon_g_per_kwh=np.array([np.nan, 1.0])), NOW)


def _twin(queued: Job, curves) -> TwinDriver:
    site = Site(gpu_pools={"A100": {"gpus": 16, "idle_w": 50.0}})
    return TwinDriver((queued,), curves, site, NOW, 2.0, TwinSettings(curve_spread=0.0, fluctuation=0.0, recovery=0.0,
                                                                      checkpoints=False))


def test_the_twin_withdraws_a_queued_job_and_another_runs_it(curves):
    t0 = datetime.fromtimestamp(NOW, timezone.utc)
    job = Job(id="b1", workload="pt_mpt_7b_fast", gpus=8, flex_tier=3, submit=t0 + timedelta(seconds=10),
              duration_s=60.0)
    home, away = _twin(job, curves), _twin(job, curves)
    away.withdraw("b1")  # as a fleet run starts: each site's queue is its own jobs
    home.withdraw("b1")  # placed elsewhere before it was listed
    away.submit("b1", NOW + 10)
    for t in NOW + 2 * np.arange(1, 60):
        home.advance_to(t)
        away.advance_to(t)
    assert np.isnan(home.started_s[0]) and home.queue() == ()
    assert away.started_s[0] == pytest.approx(NOW + 12) and away.ended_s[0] > away.started_s[0]
    with pytest.raises(DriverError, match="not started"):
        away.withdraw("b1")


def test_a_site_reports_its_queue_and_free_gpus_and_the_coordinator_reads_them(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from gridflex.fleet.loop import site_report
    from gridflex.service.app import create_app
    from gridflex.service.config import TOKEN_ENV
    from tests.service_support import TOKEN, FakeClock, make_service, run_ticks

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    clock = FakeClock(1_777_777_777.0)  # 2026: the scenario's 51 batch jobs (2023) are all submitted
    svc = make_service(f"sqlite:///{tmp_path}/s.db", clock, scenario="geo-fleet-august-pjm")
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        run_ticks(svc, clock, 2)
        body = client.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    running = sum(j.gpus for j in svc.controller.jobs)
    assert body["event_windows"] == []
    assert body["free_gpus"] == 512 - running
    assert len(body["queue"]) == body["queued_jobs"] > 0
    q = body["queue"][0]
    assert q["gpus"] > 0 and q["work_s"] > 0 and q["power_w"] > q["gpus"] * 100 and q["submit_s"] is not None
    report = site_report(body)
    assert report.reachable and report.free_gpus == body["free_gpus"] and report.queue[0]["id"] == q["id"]


def test_the_coordinator_advises_where_queued_jobs_run(tmp_path):
    from gridflex.drivers.router_twin import TwinRouter
    from gridflex.fleet.config import FleetConfig
    from gridflex.fleet.loop import FleetCoordinator, SiteReport
    from tests.test_fleet_loop import RTT_CSV

    cfg = FleetConfig.model_validate({
        "rtt_file": str(RTT_CSV), "router": {"socket": "twin-router"}, "placement": {"data_gb": 10},
        "sites": [{"name": "dc", "region": "Washington DC", "api_url": "http://dc.invalid", "carbon_g_per_kwh": 400},
                  {"name": "dallas", "region": "Dallas", "api_url": "http://dallas.invalid", "carbon_g_per_kwh": 200}],
        "models": [{"name": "m", "servers": {"dc": "dc", "dallas": "dallas"}, "capacity_rps": {"dc": 10, "dallas": 10},
                    "energy_per_request_j": {"dc": 500, "dallas": 500},
                    "classes": [{"name": "c", "backend": "c", "origin": "Washington DC", "rate_rps": 1,
                                 "latency_budget_ms": 10}]}]})
    coordinator = FleetCoordinator(cfg, TwinRouter({"c": {"dc": 1, "dallas": 0}}), clock=lambda: NOW)
    job = {"id": "j0", "gpus": 8, "workload": "pt", "submit_s": NOW, "work_s": 4 * HOUR, "power_w": 2_880.0}

    def batch(**dallas) -> list[dict]:
        reports = {"dc": SiteReport(True, 100e3, free_gpus=64, queue=(job,)),
                   "dallas": SiteReport(**{"reachable": True, "site_power_w": 50e3, "free_gpus": 64, **dallas})}
        return coordinator.tick_with(reports)["batch"]

    assert batch() == [{"job": "j0", "from": "dc", "to": "dallas", "why": batch()[0]["why"]}]  # 200 g/kWh cleaner
    assert batch(reachable=False) == []
    assert batch(active_events=("e1",), target_w=40e3) == [], "an event site gets no new batch"
    assert batch(free_gpus=None) == [], "a site that does not report its GPUs takes nothing new"
    assert batch(free_gpus=4) == []
    ahead = {"id": "e2", "start_s": NOW + 2 * HOUR, "end_s": NOW + 3 * HOUR, "quiet_from_s": NOW + HOUR,
             "quiet_until_s": NOW + 3.5 * HOUR}
    assert batch(event_windows=(ahead,)) == [], "an event known to come within the job's run keeps it out"
    later = {**ahead, "quiet_from_s": NOW + 5 * HOUR, "start_s": NOW + 6 * HOUR, "end_s": NOW + 7 * HOUR,
             "quiet_until_s": NOW + 8 * HOUR}
    assert [m["to"] for m in batch(event_windows=(later,))] == ["dallas"], "one after it does not"
