"""Time shifting (control/shifting.py) on hand-made cases: the signal as a policy knows it,
holds by the horizon plan, the deadline guard, Flex 0, staggered release."""

from datetime import datetime, timedelta, timezone

import numpy as np

from gridflex.control.shifting import Shifter
from gridflex.model.scenario import ControlSettings
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import GpuPool, Job, Site
from gridflex.plan.targets import TargetTimeline
from gridflex.signals.forecast import Forecast
from gridflex.signals.prices import StepSignal
from gridflex.signals.recorded import Recorded
from gridflex.sim.curve_csv import builtin_curves

T0 = datetime(2023, 3, 14, tzinfo=timezone.utc)
H = 3600.0
NO_EVENTS = TargetTimeline.build([], None, ControlSettings())
SITE = Site(gpu_pools={"A100": GpuPool(gpus=64)})


def dirty_then_clean(issued_clean_from_h: float, actual_clean_from_h: float) -> Recorded:
    """400 g/kWh until a time, 50 after: the forecast issued at T0 says one time, the truth another."""
    t0 = T0.timestamp()
    hours = t0 + H * np.arange(72)
    actual = StepSignal(hours, np.where(np.arange(72) < actual_clean_from_h, 400.0, 50.0), "actual")
    fc = Forecast(np.full(72, t0), hours, np.where(np.arange(72) < issued_clean_from_h, 400.0, 50.0), "issued")
    return Recorded(actual, fc, "gCO2/kWh", "carbon_average")


def job(i: str, tier: int = 3, hours: float = 2, due_h: float | None = 24, submit_h: float = 0) -> Job:
    return Job(id=i, workload="pt_mpt_7b_fast", gpus=8, flex_tier=tier, submit=T0 + timedelta(hours=submit_h),
               duration_s=hours * H, deadline=None if due_h is None else T0 + timedelta(hours=due_h))


def shifter(rec: Recorded, **kw) -> Shifter:
    settings = ShiftSettings(signal="gb-carbon-week", **kw)
    return Shifter(settings, SITE, builtin_curves(), stagger_s=60.0, recorded=rec)


def test_horizon_holds_deferrable_work_until_the_forecast_clean_hours_and_never_flex0():
    s = shifter(dirty_then_clean(6, 6))
    t = T0.timestamp()
    held = s.decide(t, [], [job("a"), job("b", tier=0), job("c", due_h=None)], NO_EVENTS)
    # a is due in 24 h: it waits for the clean hours; Flex 0 never waits; c (no deadline, Flex 3,
    # 2 h of work) may wait its tier's allowance, 2 h, not enough to reach them
    assert held == {"a"}
    assert s.solves == 1


def test_the_policy_reads_the_forecast_as_issued_not_the_actuals():
    # the forecast issued at T0 says clean from hour 30 (after the deadline): nothing to gain by waiting
    # although the truth is clean from hour 6; the same with actuals as forecast holds the job
    rec = dirty_then_clean(issued_clean_from_h=30, actual_clean_from_h=6)
    t = T0.timestamp()
    assert shifter(rec).decide(t, [], [job("a")], NO_EVENTS) == frozenset()
    assert shifter(rec, forecast="actual").decide(t, [], [job("a")], NO_EVENTS) == {"a"}


def test_a_held_job_goes_at_its_latest_start_and_releases_are_staggered():
    s = shifter(dirty_then_clean(40, 40), policy="lwa")  # clean only after every deadline
    t = T0.timestamp()
    jobs = [job("a", due_h=10), job("b", due_h=10)]
    s.start_at_s = {"a": t + 20 * H, "b": t + 20 * H}  # as if the forecast had said later
    assert s.decide(t, [], jobs, NO_EVENTS) == {"a", "b"}
    latest = s.latest_start_s(jobs[0])
    assert latest < t + 8 * H  # 2 h of work, a 10 % margin and one slot before the 10-h deadline
    assert s.decide(latest, [], jobs, NO_EVENTS) == frozenset()  # both at their latest start: at once
    s2 = shifter(dirty_then_clean(40, 40), policy="lwa")
    s2.start_at_s = {"a": t + H, "b": t + H}
    assert s2.decide(t, [], jobs, NO_EVENTS) == {"a", "b"}
    assert s2.decide(t + H, [], jobs, NO_EVENTS) == {"b"}  # the oldest goes first
    assert s2.decide(t + H + 30, [], jobs, NO_EVENTS) == {"b"}  # one per 60-s stagger
    assert s2.decide(t + H + 60, [], jobs, NO_EVENTS) == frozenset()


def test_the_built_in_weeks_hold_work_for_cleaner_hours_and_keep_deadlines_and_flex0():
    import dataclasses

    from gridflex.report.summary import summarize
    from gridflex.sim.run import run_scenario
    from gridflex.sim.scenarios import load_scenario

    loaded = load_scenario("carbon-week-gb")
    sc = loaded.scenario
    trace = [j for j in sc.jobs if j.queued]
    assert len(trace) >= 50 and all(j.deadline is not None and j.deadline <= sc.end for j in trace)
    # the first two days, with the jobs due by then (a test-sized run of the same site and policy)
    end = sc.start + timedelta(hours=48)
    jobs = tuple(j for j in sc.jobs if not j.queued or j.deadline <= end)
    totals = {}
    for policy in ("run-now", "horizon"):
        short = dataclasses.replace(loaded, scenario=sc.model_copy(update={
            "end": end, "jobs": jobs, "job_trace": None, "shifting": sc.shifting.model_copy(update={"policy": policy})}))
        result = run_scenario(short, "optimal", 0)
        s = summarize(result)["shifting"]
        assert s["deadlines_met"] == s["deadline_jobs"] > 0
        assert s["flex0_held_s"] == 0 and s["flex0_lowest_performance"] > 0.999
        totals[policy] = s["emissions_kg_co2"]
    assert result.held_s.max() > 3600  # some work waited at least an hour for a cleaner slot
    assert totals["horizon"] < totals["run-now"]


def test_the_service_shifts_by_a_live_forecast_and_stops_shifting_when_it_goes_stale(tmp_path, monkeypatch):
    import pytest

    from gridflex.errors import InputError
    from gridflex.service import runtime
    from gridflex.signals.live import live_source
    from tests.service_support import FakeClock, make_service, store_url
    from tests.test_signals_live import at, replay

    clock = FakeClock(at("2023-03-21T12:40:00+00:00"))
    client = replay({"/intensity/": "carbonintensity_fw48h.json"})  # 98 g/kWh now, 87 at 14:30, 97 at 16:00
    monkeypatch.setattr(runtime, "live_source", lambda spec, clk, settings=None: live_source(spec, clk, client=client, settings=settings))
    now = datetime.fromtimestamp(clock.t_s, timezone.utc)
    waiting = Job(id="w", workload="pt_mpt_7b_fast", gpus=8, flex_tier=2, submit=now, duration_s=H,
                  deadline=now + timedelta(hours=5))
    with store_url("sqlite", tmp_path) as url:
        with pytest.raises(InputError, match="shifting.live"):
            make_service(url, clock, shifting={"signal": "gb-carbon-week"})
        svc = make_service(url, clock, shifting={"live": {"kind": "gb-carbon", "max_age_s": 1800}})
        shifter = svc.controller.shifting
        assert shifter.decide(clock.t_s, [], [waiting], NO_EVENTS) == {"w"}  # waits for the cleaner 14:30
        assert shifter.signal_error == ""
        svc.tick(clock.t_s)  # the status says the intensity now, for a fleet coordinator
        assert svc.status.carbon_g_per_kwh == 98 and svc.status.price_usd_per_mwh is None
        clock.t_s = at("2023-03-21T15:30:00+00:00")  # the API still answers the 12:30 forecast: stale
        assert shifter.decide(clock.t_s, [], [waiting], NO_EVENTS) == frozenset()
        assert "old" in shifter.signal_error
        svc.tick(clock.t_s)
        assert svc.status.carbon_g_per_kwh is None
