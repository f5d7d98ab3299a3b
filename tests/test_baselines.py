"""Each baseline follows its published (or stated) rule on small cases checked by hand.

Curve `lin`: per-GPU power equals the cap (100-400 W), throughput 0.25 at 100 W rising linearly
to 1.0 at 400 W; a paused GPU draws 60 W. Site margin 0, so the IT ceiling is the target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridflex.model.curves import CurveLibrary, PowerCurve
from gridflex.model.events import GridEvent, Target
from gridflex.model.fleet import JobFleet
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Action, Job, Site
from gridflex.plan.base import PlanInput
from gridflex.plan.baselines import ROW_S, equal_fraction_cut
from gridflex.plan.registry import make_planner
from gridflex.plan.targets import ResolvedEvent, TargetTimeline

T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)
LIN = CurveLibrary([PowerCurve(workload="lin", cap_w=(100, 400), power_w=(100, 400), throughput=(0.25, 1.0))])
RESIZE = frozenset({Action.power_cap, Action.pause, Action.resize})


def job(id: str, gpus: int, tier: int, **kw) -> Job:
    return Job(id=id, workload="lin", gpus=gpus, flex_tier=tier, **kw)


def inputs(jobs, ceiling_w, floor, at_s=0.0, hours=1.0):
    """PlanInputs at `at_s` seconds into an event holding IT power at `ceiling_w` for `hours`."""
    fleet = JobFleet.build(jobs, LIN)
    ev = GridEvent(id="e", start=T0, end=T0 + timedelta(hours=hours), target=Target(power_w=ceiling_w), baseline_w=1e9)
    timeline = TargetTimeline.build([ResolvedEvent(ev, 1e9)], None, ControlSettings())
    n = len(jobs)
    return PlanInput(T0.timestamp() + at_s, fleet, Site(margin=0.0), timeline, ceiling_w,
                     np.asarray(floor, float), np.full(n, 4 * 3600.0))


def test_equal_fraction_cut_water_fills():
    # 25 % of 400 from each would take b below its floor of 360: b stops there, a takes the rest.
    out = equal_fraction_cut(np.array([400.0, 400.0]), np.array([0.0, 360.0]), np.array([16.0, 16.0]), 3200.0)
    assert out == pytest.approx([240.0, 360.0])


def test_dvfs_fair_equal_fractional_cuts_clamped_at_floor():
    jobs = [job("a", 16, 3), job("b", 16, 1)]
    plan = make_planner("dvfs-fair").plan(inputs(jobs, 9600.0, [0.0, 0.0]))
    assert plan.cap_w == pytest.approx([300.0, 300.0])  # both lose 25 %
    assert plan.active == pytest.approx([1.0, 1.0])
    # b must keep 0.9 throughput: 360 W. a sheds the rest: 40 % of its power.
    plan = make_planner("dvfs-fair").plan(inputs(jobs, 9600.0, [0.0, 0.9]))
    assert plan.cap_w == pytest.approx([240.0, 360.0])
    assert plan.it_power_w == pytest.approx(9600.0)


def test_dvfs_fair_never_breaks_a_floor_and_reports_the_shortfall():
    jobs = [job("a", 16, 2), job("b", 16, 2)]
    plan = make_planner("dvfs-fair").plan(inputs(jobs, 6000.0, [0.85, 0.85]))  # floor 0.85: 340 W
    assert plan.cap_w == pytest.approx([340.0, 340.0])
    assert plan.shortfall_w == pytest.approx(2 * 16 * 340.0 - 6000.0)
    assert plan.broken_tier == ()


def test_uniform_cap_one_cap_for_every_flexible_gpu_ignoring_floors():
    jobs = [job("a", 16, 3), job("b", 16, 1), job("c", 8, 0)]
    # c (flex 0) stays at 400 W = 3200 W; a and b share 9600 W at one cap: 300 W.
    plan = make_planner("uniform-cap").plan(inputs(jobs, 12800.0, [0.0, 0.9, 1.0]))
    assert plan.cap_w == pytest.approx([300.0, 300.0, 400.0], abs=1e-3)
    assert plan.broken_tier == ("b",)  # 0.8125 < its floor of 0.9


def test_pause_by_tier_pauses_most_flexible_tier_first_largest_first():
    jobs = [job("t3-small", 8, 3), job("t3-big", 16, 3), job("t2", 16, 2)]
    full_w = 40 * 400.0
    # Pausing t3-big saves 16 × 340 W = 5440 W: enough for 5000.
    plan = make_planner("pause-by-tier").plan(inputs(jobs, full_w - 5000, [0, 0, 0]))
    assert plan.active.tolist() == [1.0, 0.0, 1.0]
    # 6000 W needs t3-small too (2720 W more); 9000 W reaches tier 2.
    plan = make_planner("pause-by-tier").plan(inputs(jobs, full_w - 6000, [0, 0, 0]))
    assert plan.active.tolist() == [0.0, 0.0, 1.0]
    plan = make_planner("pause-by-tier").plan(inputs(jobs, full_w - 9000, [0, 0, 0]))
    assert plan.active.tolist() == [0.0, 0.0, 0.0]
    assert plan.cap_w == pytest.approx([400.0] * 3)


def test_pause_resize_fair_pauses_one_eligible_job_and_resizes_the_rest_equally():
    # Only "free" may stop for the whole event (floor 0). The others lose GPUs by equal fractions,
    # in whole GPUs, never below their floors' share.
    jobs = [job("free", 8, 3, actions=RESIZE), job("x", 16, 2, actions=RESIZE), job("y", 16, 2, actions=RESIZE)]
    ceiling = 40 * 400.0 - 8 * 340 - 2 * 4 * 340  # pause free, and 4 GPUs of each of x and y
    plan = make_planner("pause-resize-fair").plan(inputs(jobs, ceiling, [0.0, 0.5, 0.5]))
    assert plan.active == pytest.approx([0.0, 12 / 16, 12 / 16])
    assert plan.cap_w == pytest.approx([400.0] * 3)
    assert plan.it_power_w <= ceiling + 1e-6
    # x may lose no more than 2 GPUs (floor 14/16): y takes the rest.
    plan = make_planner("pause-resize-fair").plan(inputs(jobs, ceiling, [0.0, 0.875, 0.5]))
    assert plan.active == pytest.approx([0.0, 14 / 16, 10 / 16])


def test_pause_greedy_pauses_most_flexible_for_exactly_its_allowance():
    # One-hour event = 60 rows. a (tier 3, floor 0.5) may stop 30 rows, b (tier 2, floor 0.75) 15.
    jobs = [job("a", 16, 3), job("b", 16, 2)]
    ceiling = 32 * 400.0 - 16 * 340 + 1  # one paused job is enough
    planner = make_planner("pause-greedy")
    seen = []
    for row in range(60):
        seen.append(planner.plan(inputs(jobs, ceiling, [0.5, 0.75], at_s=row * ROW_S + 1)).active.tolist())
    seen = np.array(seen)
    assert (seen[:30] == [0.0, 1.0]).all()  # a first, for its 30 rows
    assert (seen[30:45] == [1.0, 0.0]).all()  # then b for its 15
    assert (seen[45:] == [1.0, 1.0]).all()  # allowances spent: the target is missed
    assert planner.plan(inputs(jobs, ceiling, [0.5, 0.75], at_s=50 * ROW_S)).shortfall_w > 0


def test_dvfs_pause_fair_pauses_jobs_in_turn_and_caps_the_others_fairly():
    # a and b may each stop half the event (floor 0.5 → pause set {a, b}, one at a time);
    # c is capped by dvfs-fair to meet the rest of the cut.
    jobs = [job("a", 16, 3), job("b", 16, 3), job("c", 16, 3)]
    ceiling = 48 * 400.0 - 16 * 340 - 16 * 40  # pause one job and take 10 % off another
    planner = make_planner("dvfs-pause-fair")
    first = planner.plan(inputs(jobs, ceiling, [0.0, 0.0, 0.2], at_s=60))
    second = planner.plan(inputs(jobs, ceiling, [0.0, 0.0, 0.2], at_s=3600 - 60))
    assert first.active.tolist() == [0.0, 1.0, 1.0] and second.active.tolist() == [1.0, 0.0, 1.0]
    for plan in (first, second):
        assert plan.it_power_w == pytest.approx(ceiling)
        running = plan.active > 0
        assert np.ptp(plan.cap_w[running]) == pytest.approx(0.0, abs=1e-6)  # same fractional cut


@pytest.mark.parametrize("name", ["dvfs-fair", "dvfs-pause-fair", "pause-greedy", "pause-resize-fair",
                                  "uniform-cap", "pause-by-tier"])
def test_no_target_means_no_action(name):
    jobs = [job("a", 16, 3), job("b", 8, 0)]
    plan = make_planner(name).plan(inputs(jobs, 10_000.0, [0.0, 1.0], at_s=-600))  # before the event
    assert plan.cap_w == pytest.approx([400.0, 400.0]) and plan.active == pytest.approx([1.0, 1.0])


def test_baselines_plan_open_loop_ignoring_the_measured_correction():
    # The controller scales its IT ceiling by measured/modelled power; the published policies did not.
    jobs = [job("a", 16, 3), job("b", 16, 1)]
    inp = inputs(jobs, 9600.0, [0.0, 0.9])
    corrected = PlanInput(inp.t_s, inp.fleet, inp.site, inp.timeline, 0.8 * inp.it_ceiling_w,
                          inp.floor_throughput, inp.window_s)
    for name in ("dvfs-fair", "uniform-cap", "pause-by-tier"):
        assert make_planner(name).plan(corrected).cap_w == pytest.approx(make_planner(name).plan(inp).cap_w)
