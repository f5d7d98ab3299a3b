"""Power shaping in the loop (control/shifting.py): running flexible work is capped by the horizon
plan in dirty hours, never Flex 0, never past its deadline or tier, and the per-tick planner still
meets a grid event from the shaped levels."""

from datetime import datetime, timedelta, timezone

import numpy as np

from gridflex.control.shifting import Shifter
from gridflex.model.fleet import JobFleet
from gridflex.model.scenario import ControlSettings
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import GpuPool, Job, Site
from gridflex.plan.base import PlanInput, first_cap_vertex_w
from gridflex.plan.optimal import OptimalPlanner
from gridflex.plan.targets import TargetTimeline
from gridflex.signals.forecast import Forecast
from gridflex.signals.prices import StepSignal
from gridflex.signals.recorded import Recorded
from gridflex.sim.curve_csv import builtin_curves

T0 = datetime(2023, 3, 14, tzinfo=timezone.utc)
H = 3600.0
NO_EVENTS = TargetTimeline.build([], None, ControlSettings())
SITE = Site(gpu_pools={"A100": GpuPool(gpus=64)})
CURVES = builtin_curves()


def signal(values_per_hour: list[float]) -> Recorded:
    """Hourly carbon intensity, forecast exactly as it comes (the forecast is not under test here)."""
    t0 = T0.timestamp()
    hours = t0 + H * np.arange(len(values_per_hour))
    values = np.array(values_per_hour, float)
    return Recorded(StepSignal(hours, values, "actual"), Forecast(np.full(len(hours), t0), hours, values, "issued"),
                    "gCO2/kWh", "carbon_average")


def running(i: str, tier: int, hours: float = 2.0, due_h: float = 24.0) -> Job:
    """A queued job that has started (a batch job with known work and a deadline)."""
    return Job(id=i, workload="pt_mpt_7b_fast", gpus=8, flex_tier=tier, submit=T0, duration_s=hours * H,
               deadline=T0 + timedelta(hours=due_h))


def shaped_upper_w(rec: Recorded, jobs: list[Job], policy: str = "horizon", done_h: float = 0.0, **kw):
    """The upper levels the shifter gives the fleet of `jobs` at T0 + `done_h`, each job having
    run `done_h` hours at full speed since T0."""
    s = Shifter(ShiftSettings(signal="gb-carbon-week", policy=policy, **kw), SITE, CURVES, 60.0, recorded=rec)
    fleet = JobFleet.build(jobs, CURVES)
    t = T0.timestamp()
    s.observe(t, jobs, fleet, np.ones(len(jobs)), 0.0)
    s.observe(t + done_h * H, jobs, fleet, np.ones(len(jobs)), done_h * H)
    s.decide(t + done_h * H, jobs, [], NO_EVENTS)
    return fleet, s.upper_level_w(t + done_h * H, fleet)


def test_the_horizon_plan_caps_a_flex2_job_in_a_dirty_slot_not_in_a_clean_one_and_never_flex0():
    jobs = [running("flex2", 2, hours=8.0), running("firm", 0)]
    # dirty now and clean only after the job must be done (Flex 2: an 8-h job's run at most 10.7 h):
    # it cannot wait, so it runs its work now at the cap its tier and deadline allow
    fleet, upper = shaped_upper_w(signal([400.0] * 12 + [50.0] * 36), jobs)
    assert fleet.full_w[1] > 0 and np.isinf(upper[1])  # Flex 0: never bounded
    assert first_cap_vertex_w(fleet)[0] <= upper[0] < fleet.full_w[0]
    # clean for two hours, then dirty: all the work it can do in the clean hours, at full speed
    _, upper = shaped_upper_w(signal([50.0] * 2 + [400.0] * 46), jobs)
    assert np.isinf(upper).all()
    # without power shaping nothing is bounded
    assert shaped_upper_w(signal([400.0] * 12 + [50.0] * 36), jobs, power_shaping=False)[1] is None


def test_a_flex3_job_with_slack_runs_at_its_most_efficient_cap_until_the_clean_hours():
    jobs = [running("flex3", 3, hours=2.0, due_h=24.0)]
    fleet, upper = shaped_upper_w(signal([400.0] * 3 + [50.0] * 45), jobs)
    # Flex 3 may take 4 h for 2 h of work: less the deadline margin, too little to wait the dirty
    # hours out, so the plan runs it at its most efficient cap (no pause)
    assert upper[0] == first_cap_vertex_w(fleet)[0]


def test_a_job_whose_slack_is_gone_is_not_capped():
    # 1.5 h of 2 h done, due in 2 h: at its deadline's margin (10 % of the work left and a slot)
    jobs = [running("late", 3, hours=2.0, due_h=2.2)]
    _, upper = shaped_upper_w(signal([400.0] * 48), jobs, done_h=1.5)
    assert np.isinf(upper).all()


def test_the_threshold_policy_caps_above_its_threshold_only():
    jobs = [running("flex3", 3)]
    fleet, upper = shaped_upper_w(signal([400.0] * 48), jobs, policy="threshold", threshold=300.0)
    assert upper[0] == first_cap_vertex_w(fleet)[0]
    _, upper = shaped_upper_w(signal([200.0] * 48), jobs, policy="threshold", threshold=300.0)
    assert np.isinf(upper).all()


def test_an_event_tick_sheds_from_the_shaped_levels_and_meets_its_target():
    jobs = [running("flex2", 2, hours=8.0), running("flex3", 3), running("firm", 0)]
    fleet, upper = shaped_upper_w(signal([400.0] * 12 + [50.0] * 36), jobs)
    assert np.isfinite(upper[:2]).all()

    def plan(ceiling_w: float):
        return OptimalPlanner().plan(PlanInput(T0.timestamp(), fleet, SITE, NO_EVENTS, ceiling_w, np.zeros(3),
                                               np.full(3, 4 * H), upper_level_w=upper))

    shaped = plan(np.inf)  # no event: each shaped job at its bound, Flex 0 at full
    power_w = fleet.power_at_cap(shaped.cap_w)
    assert np.allclose(power_w[:2], upper[:2], rtol=1e-6) and power_w[2] == fleet.full_w[2]
    event = plan(0.8 * shaped.it_power_w)  # an event asks for 20 % less than the shaped power
    assert event.it_power_w <= 0.8 * shaped.it_power_w + 1e-6 and event.shortfall_w == 0
    assert np.all(fleet.power_at_cap(event.cap_w) * event.active <= power_w + 1e-9)  # never above the shaping
    assert event.cap_w[2] == fleet.max_cap_w[2] and event.active[2] == 1.0  # Flex 0 untouched


def test_the_shift_and_caps_bound_saves_more_than_the_shift_only_bounds():
    from gridflex.sim.scenarios import load_scenario
    from gridflex.sim.shift_compare import bound_totals

    totals = bound_totals(load_scenario("carbon-week-gb"))
    assert totals["shift_caps"] < totals["interruptible"] <= totals["whole_jobs"] < totals["run_now"]


def test_a_deadline_changed_on_a_running_job_is_what_shaping_keeps():
    s = Shifter(ShiftSettings(signal="gb-carbon-week", policy="threshold", threshold=300.0), SITE, CURVES, 60.0,
                recorded=signal([400.0] * 48))
    t = T0.timestamp()
    jobs = [running("a", 3, hours=2.0, due_h=24.0)]
    fleet = JobFleet.build(jobs, CURVES)
    s.observe(t, jobs, fleet, np.ones(1), 0.0)
    s.decide(t, jobs, [], NO_EVENTS)
    assert np.isfinite(s.upper_level_w(t, fleet)).all()  # slack: capped above the threshold
    moved = [jobs[0].model_copy(update={"deadline": T0 + timedelta(hours=2.3)})]  # set through the API
    fleet = JobFleet.build(moved, CURVES)
    s.observe(t + 60, moved, fleet, np.ones(1), 60.0)
    assert np.isinf(s.upper_level_w(t + 60, fleet)).all()  # no slack left: runs free
