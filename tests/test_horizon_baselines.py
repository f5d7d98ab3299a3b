"""Time-shifting baselines and job classes on hand-made cases."""

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.model.curves import PowerCurve
from gridflex.plan.horizon import HorizonInput, JobDemand, classify, dispatch, solve
from gridflex.plan.shift_baselines import (
    ShiftProblem,
    lwa_interrupting,
    lwa_noninterrupting,
    perfect_foresight,
    run_now,
    threshold,
)

SLOT = 3600.0
CURVE = PowerCurve(workload="train", cap_w=(200.0, 400.0), power_w=(200.0, 400.0), throughput=(0.6, 1.0))


def problem(duration, release, deadline, gpus=None, pool=10):
    n = len(duration)
    gpus = np.full(n, 10) if gpus is None else np.array(gpus)
    return ShiftProblem(SLOT, 8, gpus, np.full(n, 400.0), np.array(duration), np.array(release),
                        np.array(deadline), pool)


CARBON = np.array([300, 100, 400, 50, 60, 500, 500, 500], float)


def known(_k):
    return CARBON


def slots(run):
    return [list(np.flatnonzero(r)) for r in run]


def test_run_now_is_first_in_first_out_within_the_pool():
    p = problem([2, 1], [0, 0], [8, 8])
    assert slots(run_now(p)) == [[0, 1], [2]]  # the second waits for GPUs


def test_lets_wait_awhile_non_interrupting_picks_the_cheapest_window():
    p = problem([2], [0], [8])
    assert slots(lwa_noninterrupting(p, known)) == [[3, 4]]  # 50 + 60 beats 300 + 100
    due = problem([2], [0], [3])
    assert slots(lwa_noninterrupting(due, known)) == [[0, 1]]  # the deadline rules out 3-4


def test_lets_wait_awhile_interrupting_picks_the_cheapest_slots():
    p = problem([3], [0], [8])
    assert slots(lwa_interrupting(p, known)) == [[1, 3, 4]]
    two = problem([2, 2], [0, 0], [8, 8])  # one pool: the second job takes the next cheapest
    assert slots(lwa_interrupting(two, known)) == [[3, 4], [0, 1]]


def test_threshold_pauses_until_the_slack_is_gone():
    p = problem([2], [0], [8])
    assert slots(threshold(p, known, 200)) == [[1, 3]]
    due = problem([3], [0], [4])  # slack 1: waits one slot above the limit, then must run
    assert slots(threshold(due, known, 90)) == [[1, 2, 3]]


def test_perfect_foresight_bounds_every_baseline():
    rng = np.random.default_rng(3)
    n = 6
    p = ShiftProblem(SLOT, 8, rng.integers(2, 6, n), np.full(n, 400.0), rng.integers(1, 3, n),
                     rng.integers(0, 3, n), np.full(n, 8), 10)
    bound = perfect_foresight(p, [CURVE] * n, CARBON, power_shaping=False)
    assert bound.shortfall_gpu_h.sum() == pytest.approx(0, abs=1e-6)
    best = (bound.site_power_w * CARBON).sum()
    for run in (run_now(p), lwa_noninterrupting(p, known), lwa_interrupting(p, known), threshold(p, known, 100)):
        assert p.late_jobs(run) == 0
        assert (p.site_power_w(run) * CARBON).sum() >= best - 1e-6


def test_classify_groups_jobs_and_dispatch_hands_gpus_out_by_deadline():
    jobs = [JobDemand("a", CURVE, 4, 2, 8.0, 0.0, 7 * SLOT), JobDemand("b", CURVE, 6, 2, 12.0, 0.0, 6 * SLOT),
            JobDemand("c", CURVE, 2, 3, 2.0, 0.0, None), JobDemand("r", CURVE, 2, 1, 1.0, 0.0, None, running=True),
            JobDemand("z", CURVE, 2, 0, 1.0, 0.0, None, running=True)]
    classes, member = classify(jobs, 0.0, SLOT, deadline_bucket_s=12 * SLOT, exact_below=0)
    # same curve and window: tiers and running/queued share a class; Flex 0 (a fixed load) does not
    assert len(classes) == 3 and member[0] == member[1] and member[2] == member[3] != member[4]
    assert classes[member[4]].flex_tier == 0 and classes[member[2]].work_gpu_h == 3.0
    ab = classes[member[0]]
    assert (ab.gpus, ab.work_gpu_h, ab.deadline_s) == (10, 20.0, 6 * SLOT)  # due by the earliest deadline
    plan = solve(HorizonInput(0.0, SLOT, classes, 12, CARBON, np.zeros(8), power_shaping=False))
    k = int(np.argmax(plan.gpus_running[member[0]]))
    gpus, level = dispatch(plan, k, jobs, member)
    assert gpus[1] == pytest.approx(min(6, plan.gpus_running[member[0], k]))  # b has less slack
    assert level[1] == pytest.approx(400)
    with pytest.raises(InputError):
        classify(jobs, 0.0, 0.0)


def test_few_jobs_are_planned_exactly():
    """A big short job and a small long one: cheap slots at the end could do both jobs' work in
    sum, but not the small job's: planned one class per job, it starts early enough."""
    jobs = [JobDemand("big", CURVE, 8, 2, 8.0, 0.0, 8 * SLOT), JobDemand("small", CURVE, 2, 2, 8.0, 0.0, 8 * SLOT)]
    classes, member = classify(jobs, 0.0, SLOT)
    assert len(classes) == 2
    carbon = np.array([100, 100, 100, 100, 100, 100, 10, 10], float)
    plan = solve(HorizonInput(0.0, SLOT, classes, 10, carbon, np.zeros(8), power_shaping=False))
    left = [8.0, 8.0]
    for k in range(8):
        now = [JobDemand(j.id, j.curve, j.gpus, 2, w, 0.0, j.deadline_s) for j, w in zip(jobs, left)]
        gpus, _ = dispatch(plan, k, now, member)
        left = [w - g * 1.0 for w, g in zip(left, gpus)]
    assert left == pytest.approx([0.0, 0.0])
    assert plan.gpus_running[member[1], 6:] == pytest.approx([2.0, 2.0])  # small: both cheap slots, and two more
    assert plan.gpus_running[member[0], 6] == pytest.approx(8.0)  # big in a cheap slot
