"""The optimizing planner.

Each tick it solves, exactly, the linear program

    maximise   Σ_j value_j · throughput_j(level_j)
    subject to Σ_j gpus_j · level_j ≤ IT ceiling,   floor_j ≤ level_j ≤ full_j

where throughput_j is the concave hull of job j's curve (capping, and pausing part of the job).
With one coupling constraint and concave piecewise-linear objectives, the LP's optimum is the
greedy one: shed the hull segments in order of value lost per watt. Only the segments around
the cut need ordering (`cheapest_first`), so it runs in linear NumPy time and a 100,000-GPU site
plans in milliseconds; the tests check it against SciPy's HiGHS on random instances.

Time enters through the floors: the controller's flex-budget account spreads each job's
allowed slowdown over the constrained part of its remaining window, and `value_j` is the job's
flex weight per second of its window (a second of a short job's window is worth more).
"""

from __future__ import annotations

import numpy as np

from gridflex.model.fleet import JobFleet
from gridflex.plan.base import Plan, PlanInput, level_to_actions, start_level_w


def job_value(fleet: JobFleet, window_s: np.ndarray) -> np.ndarray:
    """Score lost per second of one job's full throughput: its weight in the site score (the
    Phoenix study's: the job's flex factor, 1 for Flex 0) over its window length."""
    return fleet.flex_factor / np.maximum(window_s, 1.0)


def shed_greedy(
    fleet: JobFleet,
    value: np.ndarray,
    floor_w: np.ndarray,
    start_w: np.ndarray,
    shed_w: float,
) -> tuple[np.ndarray, float]:
    """Per-GPU power level of each job after shedding `shed_w` watts, from levels `start_w`
    down to at most `floor_w`, at least value lost.

    Returns the levels and the part of `shed_w` that could not be shed."""
    if shed_w <= 0:
        return start_w.copy(), 0.0
    cost, width_w = hull_segments(fleet, value, floor_w, start_w)
    taken, short = take_cheapest(cost.ravel(), width_w.ravel(), shed_w)
    shed_per_job = taken.reshape(width_w.shape).sum(axis=1)
    return start_w - shed_per_job / fleet.gpus, short


def hull_segments(
    fleet: JobFleet, value: np.ndarray, floor_w: np.ndarray, start_w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each job's hull segments between `floor_w` and `start_w` (per-GPU levels): the value lost
    per watt shed on each [J, K-1], and the job's watts in it."""
    hull_w = fleet.hull_w
    width_w = np.minimum(hull_w[:, 1:], start_w[:, None])
    width_w -= np.maximum(hull_w[:, :-1], floor_w[:, None])
    np.maximum(width_w, 0.0, out=width_w)
    width_w *= np.where(fleet.controllable, fleet.gpus, 0)[:, None]
    return (value / fleet.gpus)[:, None] * fleet.hull_slope, width_w


def take_cheapest(cost: np.ndarray, width_w: np.ndarray, shed_w: float) -> tuple[np.ndarray, float]:
    """Watts taken from each flat segment to shed `shed_w`, cheapest first (ties in order), and
    the part that could not be shed."""
    return cheapest_first(cost, width_w, shed_w), max(0.0, shed_w - float(width_w.sum()))


#: Candidate segments few enough to sort outright.
SORT_MAX = 1024


def cheapest_first(cost: np.ndarray, width: np.ndarray, amount: float) -> np.ndarray:
    """How much of each item is taken when taking `amount` from the items in order of cost (ties by
    position), each up to its `width`. Linear time: median pivots (np.partition) split off the
    items surely taken whole or surely not reached, and only the few around the cut are sorted."""
    taken = np.zeros(width.shape)
    cand = np.flatnonzero(width > 0)  # ascending positions: boolean selection keeps the order
    base = 0.0  # width of the items already taken whole
    while len(cand) > SORT_MAX:
        c = cost[cand]
        pivot = np.partition(c, len(c) // 2)[len(c) // 2]
        cheaper, tied = c < pivot, c == pivot
        cheaper_w = float(width[cand[cheaper]].sum())
        if base + cheaper_w > amount:  # the cut is among the cheaper ones
            cand = cand[cheaper]
            continue
        taken[cand[cheaper]] = width[cand[cheaper]]  # all the cheaper ones are taken whole
        base += cheaper_w
        tied_w = float(width[cand[tied]].sum())
        if base + tied_w > amount:  # the cut is among items of one cost: position order decides
            cand = cand[tied]
            break
        taken[cand[tied]] = width[cand[tied]]
        base += tied_w
        cand = cand[c > pivot]
    order = cand[np.argsort(cost[cand], kind="stable")]
    cum = base + np.cumsum(width[order])
    n_full = int(np.searchsorted(cum, amount))  # items taken whole before the cut
    taken[order[:n_full]] = width[order[:n_full]]
    if n_full < len(order):
        taken[order[n_full]] = amount - (cum[n_full - 1] if n_full else base)
    return taken


class OptimalPlanner:
    """Least flex-weighted performance lost per watt shed, within every job's flex budget."""

    name = "optimal"

    def plan(self, inp: PlanInput) -> Plan:
        fleet = inp.fleet
        base = Plan.unconstrained(inp)
        need_w = base.it_power_w - inp.it_ceiling_w
        if not np.isfinite(inp.it_ceiling_w) or need_w <= 0:
            return base
        value = job_value(fleet, inp.window_s)
        floor_w = fleet.level_at_throughput(inp.floor_throughput)
        start_w = start_level_w(inp)
        level, short = shed_greedy(fleet, value, floor_w, start_w, need_w)
        broken: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        if short > 0 and inp.site.priority == "grid":
            # The target cannot be met within the tiers: go on below the floors, cheapest first.
            level, short = shed_greedy(fleet, value, fleet.hull_w[:, 0], level, short)
            below = level < np.minimum(floor_w, start_w) - 1e-6  # pushed there by the target, not the shaping
            broken = tuple(np.asarray(fleet.ids)[below])
            notes = (f"target needs {need_w:.0f} W shed; flex tiers allow less: slowing {', '.join(broken)} below tier",)
        elif short > 0:
            notes = (f"target missed by {short:.0f} W: flex tiers allow no more (priority 'sla')",)
        cap, active = level_to_actions(fleet, level)
        power = float(fleet.job_power_w(cap, active).sum())
        return Plan(cap, active, power, max(0.0, power - inp.it_ceiling_w) if short > 0 else 0.0, broken, notes)

