import numpy as np
import pytest
from scipy.optimize import linprog

from gridflex.model.fleet import JobFleet, RowInterp
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Action, Job, Site
from gridflex.plan.base import PlanInput
from gridflex.plan.optimal import OptimalPlanner, job_value, shed_greedy
from gridflex.plan.targets import TargetTimeline

WORKLOADS = ["pt_mpt_7b_fast", "pt_mpt_13b_sm", "ft_llama_8b_p3", "infer_llama_8b_48g", "ft_llama_8b_dolly"]


def random_fleet(curves, rng, n):
    jobs = [
        Job(
            id=f"j{i}",
            workload=str(rng.choice(WORKLOADS)),
            gpus=int(rng.integers(1, 64)),
            flex_tier=int(rng.integers(0, 4)),
            actions=frozenset({Action.power_cap, Action.pause} if rng.random() < 0.5 else {Action.power_cap}),
        )
        for i in range(n)
    ]
    return JobFleet.build(jobs, curves)


def lp_optimum(fleet, value, floor_w, ceiling_w):
    """The same problem solved by HiGHS: one variable per hull segment of each job."""
    hw, ht = fleet.hull_w, fleet.hull_throughput
    dw = np.diff(hw, axis=1)
    slope = np.divide(np.diff(ht, axis=1), dw, out=np.zeros_like(dw), where=dw > 0)
    seg_lo = np.maximum(hw[:, :-1], floor_w[:, None])
    width = np.clip(hw[:, 1:] - seg_lo, 0, None)
    width[~fleet.controllable] = 0
    # x = per-GPU watts shed from each segment; maximise -loss.
    cost = (value[:, None] * slope).ravel()
    scale = cost.max()  # HiGHS's tolerances are absolute: solve with costs of order 1
    a = np.repeat(fleet.gpus, dw.shape[1])[None, :].astype(float)
    need = float((fleet.gpus * fleet.full_w).sum() - ceiling_w)
    res = linprog(cost / scale, A_ub=-a, b_ub=[-need], bounds=list(zip(np.zeros(width.size), width.ravel())), method="highs")
    assert res.status == 0
    return res.fun * scale


@pytest.mark.parametrize("seed", range(12))
def test_greedy_matches_the_highs_lp_optimum(curves, seed):
    rng = np.random.default_rng(seed)
    fleet = random_fleet(curves, rng, int(rng.integers(2, 40)))
    value = job_value(fleet, rng.uniform(3600, 86400, len(fleet)))
    floor_w = fleet.level_at_throughput(rng.uniform(0, 0.9, len(fleet)))
    full = float((fleet.gpus * fleet.full_w).sum())
    _, most = shed_greedy(fleet, value, floor_w, fleet.full_w, np.inf)
    assert np.isinf(most)  # nothing can shed an infinite amount
    sheddable = full - (fleet.gpus * np.where(fleet.controllable, np.maximum(floor_w, fleet.hull_w[:, 0]), fleet.full_w)).sum()
    ceiling = full - rng.uniform(0.1, 0.95) * sheddable
    level, short = shed_greedy(fleet, value, floor_w, fleet.full_w, full - ceiling)
    assert short == pytest.approx(0, abs=1e-6)
    assert (fleet.gpus * level).sum() == pytest.approx(ceiling, rel=1e-9)
    lost = (value * (1 - RowInterp(fleet.hull_w, fleet.hull_throughput)(level))).sum()
    assert lost == pytest.approx(lp_optimum(fleet, value, floor_w, ceiling), rel=1e-6, abs=1e-12)


def plan_input(fleet, ceiling_w, floor=None, priority="grid"):
    n = len(fleet)
    return PlanInput(
        t_s=0.0,
        fleet=fleet,
        site=Site(priority=priority),
        timeline=TargetTimeline.build([], None, ControlSettings()),
        it_ceiling_w=ceiling_w,
        floor_throughput=np.zeros(n) if floor is None else floor,
        window_s=np.full(n, 3600.0),
    )


def two_jobs(curves):
    jobs = [
        Job(id="rigid", workload="pt_mpt_7b_fast", gpus=10, flex_tier=0),
        Job(id="flex", workload="pt_mpt_7b_fast", gpus=10, flex_tier=3),
    ]
    return JobFleet.build(jobs, curves)


def test_plan_meets_the_ceiling_and_never_touches_flex_0(curves):
    fleet = two_jobs(curves)
    full = float((fleet.gpus * fleet.full_w).sum())
    plan = OptimalPlanner().plan(plan_input(fleet, full - 1000))
    assert plan.it_power_w <= full - 1000 + 1e-6
    assert plan.cap_w[0] == fleet.max_cap_w[0] and plan.active[0] == 1.0
    assert plan.cap_w[1] < fleet.max_cap_w[1]
    assert plan.shortfall_w == 0 and plan.broken_tier == ()


def test_unconstrained_plan_runs_everything_normally(curves):
    fleet = two_jobs(curves)
    plan = OptimalPlanner().plan(plan_input(fleet, np.inf))
    assert np.all(plan.cap_w == fleet.max_cap_w) and np.all(plan.active == 1)


def test_impossible_target_is_reported_and_flex_0_still_untouched(curves):
    fleet = two_jobs(curves)
    floor = np.array([1.0, 0.9])  # the flexible job may lose only 10 % now
    plan = OptimalPlanner().plan(plan_input(fleet, 3000, floor))  # below even the Flex 0 job alone
    assert plan.broken_tier == ("flex",)
    assert plan.active[1] == 0.0  # the least harmful way to get close: pause the flexible job
    assert plan.cap_w[0] == fleet.max_cap_w[0] and plan.active[0] == 1.0
    assert plan.shortfall_w > 0 and "below tier" in plan.notes[0]
    sla_first = OptimalPlanner().plan(plan_input(fleet, 3000, floor, priority="sla"))
    assert sla_first.broken_tier == () and "target missed" in sla_first.notes[0]
    # A single cap realises the measured curve, which may dip just under its concave hull between
    # hull vertices (here by < 0.002); the budget's safety margin absorbs that.
    assert fleet.throughput_at_cap(sla_first.cap_w)[1] >= 0.9 - 0.005


def test_pause_is_chosen_only_where_the_hull_says_so(curves):
    jobs = [Job(id="a", workload="pt_mpt_7b_fast", gpus=8, flex_tier=3, actions=frozenset({Action.pause}))]
    fleet = JobFleet.build(jobs, curves)
    full = float((fleet.gpus * fleet.full_w).sum())
    plan = OptimalPlanner().plan(plan_input(fleet, full * 0.5))
    assert plan.active[0] == 0.0 and plan.cap_w[0] == fleet.max_cap_w[0]  # cannot cap: must pause


def test_resizable_job_keeps_whole_gpus(curves):
    jobs = [Job(id="a", workload="pt_mpt_7b_fast", gpus=8, flex_tier=3, actions=frozenset({Action.pause, Action.resize}))]
    fleet = JobFleet.build(jobs, curves)
    full = float((fleet.gpus * fleet.full_w).sum())
    plan = OptimalPlanner().plan(plan_input(fleet, full * 0.5))
    assert 0 < plan.active[0] < 1 and (plan.active[0] * 8) == pytest.approx(round(plan.active[0] * 8))
    assert plan.it_power_w <= full * 0.5 + 1e-6


def test_a_lightly_loaded_server_is_modelled_as_saving_little_and_slowed_last(curves):
    """`JobFleet.under_load`: power above idle in proportion to the load, throughput unchanged.
    At full load the planner slows a Flex-1 server for part of a cut beside a Flex-3 trainer; at
    10 % load slowing it saves a tenth as much, and the cut comes from the trainer alone."""
    jobs = [Job(id="serve", workload="infer_llama_8b", gpus=16, flex_tier=1),
            Job(id="train", workload="pt_mpt_7b_fast", gpus=16, flex_tier=3)]
    fleet = JobFleet.build(jobs, curves)
    light = fleet.under_load(np.array([0.1, 1.0]))
    idle = fleet.idle_w[:, None]
    assert np.allclose(light.hull_w[0] - idle[0], 0.1 * (fleet.hull_w[0] - idle[0]))
    assert np.array_equal(light.hull_w[1], fleet.hull_w[1]) and np.array_equal(light.throughput, fleet.throughput)
    cut = 0.15 * float((fleet.gpus * (fleet.full_w - fleet.idle_w)).sum())

    def serve_throughput(f):
        plan = OptimalPlanner().plan(plan_input(f, float((f.gpus * f.full_w).sum()) - cut, floor=np.full(2, 0.5)))
        return float(f.throughput_at_cap(plan.cap_w)[0] * plan.active[0])

    assert serve_throughput(light) == pytest.approx(1.0) and serve_throughput(fleet) < 1.0
