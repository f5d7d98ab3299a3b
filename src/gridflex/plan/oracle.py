"""The offline bound: the best any planner could do, knowing the twin's true curves and every
event from the start.

A linear program over time periods × jobs × segments of each job's TRUE concave hull (capping,
and pausing part of the time where the job allows it):

    maximise   Σ_j weight_j · performance_j / Σ_j weight_j
    subject to Σ_j power_jp ≤ IT ceiling_p           every period p with a target
               performance_j ≥ flex_factor_j          every job (its window average)

Periods are the stretches between event, ramp (split into `RAMP_PIECE_S` pieces) and job-window
boundaries; a period's ceiling is the target's mean over it, so a power level held for a whole
period stands for any schedule within it with that mean power, which by concavity does no better.
It leaves out noise and actuation latency, so its weighted performance is an upper bound for
every planner at full compliance. Baselines are the expected true power over each event's
baseline window (what the controller measures, less the noise).

`OraclePlanner` drives the twin with the levels of the same LP solved with a little in hand (the
site's margin below each target for noise, a little SLA safety for actuation latency), open loop;
the scenario runner gives it the scenario
and seed through `bind_scenario` (an offline planner needs the future, which `PlanInput` lacks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, vstack

from gridflex.drivers.twin import TwinDriver
from gridflex.model.curves import upper_concave_hull
from gridflex.model.fleet import JobFleet, _pad
from gridflex.model.site import FLEX_FACTOR
from gridflex.plan.base import Plan, PlanInput, level_to_actions
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.scenarios import LoadedScenario

#: Longest period inside a ramp, over which the ramping target is averaged.
RAMP_PIECE_S = 60.0
#: Performance the oracle planner keeps above each job's flex factor, for actuation latency.
PLANNER_SLA_SAFETY = 0.005
#: Cost of a watt-second above a target, relative to the dearest watt-second shed (the LP stays
#: solvable when the tiers cannot meet a target).
SHORTFALL_COST = 1e3


@dataclass(frozen=True, eq=False)
class OracleSolution:
    weighted_performance: float  # the upper bound
    performance: np.ndarray  # [J] window-average throughput of each job
    period_start_s: np.ndarray  # [P] constrained periods, ascending
    period_end_s: np.ndarray  # [P]
    level_w: np.ndarray  # [P, J] per-GPU power level on the true hull
    shortfall_w: float  # largest IT power above a ceiling (0: every target met)
    true_fleet: JobFleet  # the fleet with the twin's true curves


def true_fleet(loaded: LoadedScenario, seed: int) -> JobFleet:
    """The scenario's fleet with the curves of the twin of this seed in place of the model's, the
    throughput a job's mean over its checkpoint cycle (a training job's periodic saves cost the
    same share of its work under any plan: `hull_throughput[:, -1]` is that share)."""
    sc = loaded.scenario
    twin = TwinDriver(sc.jobs, loaded.curves, sc.site, sc.start.timestamp(), sc.step_s, sc.twin, seed, record=False)
    fleet = twin.fleet
    throughput = twin.true_throughput * twin.fluctuation.duty()[:, None]
    hulls = []
    for j in range(len(fleet)):
        p, t = twin.true_power_w[j], throughput[j]
        if not fleet.may_cap[j]:
            p, t = p[-1:], t[-1:]
        if fleet.may_pause[j]:
            p, t = np.concatenate([[fleet.paused_w[j]], p]), np.concatenate([[0.0], t])
        hulls.append(upper_concave_hull(p, t))
    return dataclasses.replace(
        fleet,
        power_w=twin.true_power_w,
        throughput=throughput,
        hull_w=_pad([h[0] for h in hulls]),
        hull_throughput=_pad([h[1] for h in hulls]),
    )


def expected_timeline(
    loaded: LoadedScenario, fleet: JobFleet, windows: tuple[np.ndarray, np.ndarray]
) -> TargetTimeline:
    """Every event, each with the baseline the controller would measure, less the noise."""
    sc = loaded.scenario
    start_s = sc.start.timestamp()
    resolved = []
    for ev in sc.events:
        if ev.baseline_w is not None:
            resolved.append(ResolvedEvent(ev, ev.baseline_w))
            continue
        t1 = ev.start.timestamp()
        t = np.arange(max(start_s, t1 - sc.control.baseline_window_s), t1, sc.step_s) + sc.step_s
        running = (t[:, None] >= windows[0]) & (t[:, None] < windows[1])
        it_w = (running * fleet.gpus * fleet.full_w).sum(axis=1)
        resolved.append(ResolvedEvent(ev, float(np.mean(sc.site.site_power_w(it_w)))))
    return TargetTimeline.build(resolved, sc.site.interconnection_limit_w, sc.control)


def solve_oracle(loaded: LoadedScenario, seed: int = 0, sla_safety: float = 0.0, margin: float = 0.0) -> OracleSolution:
    """The LP's optimum. The planner keeps a little in hand: `sla_safety` raises every flexible
    job's required performance, `margin` lowers every target by that fraction (noise)."""
    sc = loaded.scenario
    fleet = true_fleet(loaded, seed)
    windows = sc.fixed_windows_s()
    timeline = expected_timeline(loaded, fleet, windows)
    start_s, end_s = sc.start.timestamp(), sc.end.timestamp()
    t0, t1, ceiling_w, running = _constrained_periods(sc, fleet, timeline, windows, start_s, end_s, margin)
    n_p, n_j = len(t0), len(fleet)
    hull_w, hull_t = fleet.hull_w, fleet.hull_throughput
    width_w = np.diff(hull_w, axis=1)  # [J, K] per GPU
    slope = np.divide(np.diff(hull_t, axis=1), width_w, out=np.zeros_like(width_w), where=width_w > 0)
    # One variable per (period, job, segment) that can shed: watts shed from the top of that segment.
    pp, jj, kk = np.nonzero(running[:, :, None] & fleet.controllable[None, :, None] & (width_w > 0)[None])
    dur_s = t1 - t0
    loss_per_w = dur_s[pp] * slope[jj, kk] / fleet.gpus[jj]  # job throughput-seconds lost per watt shed
    window_s = windows[1] - windows[0]
    weight = np.array([FLEX_FACTOR[int(t)] for t in fleet.flex_tier])
    value = weight / weight.sum() / window_s  # score per throughput-second of each job
    n_x = len(pp)
    # Costs scaled to at most 1 (HiGHS' tolerances are absolute); a watt short costs more than any shed.
    per_w_s = value[jj] * slope[jj, kk] / fleet.gpus[jj]  # score lost per watt shed for a second
    dur_rel = dur_s / dur_s.max(initial=1.0)
    shed_cost = per_w_s / max(float(per_w_s.max(initial=0.0)), 1e-300) * dur_rel[pp]
    cost = np.concatenate([shed_cost, SHORTFALL_COST * dur_rel])
    # Power rows: -Σ shed - shortfall ≤ ceiling - unconstrained.
    full_it_w = (running * fleet.gpus * fleet.full_w).sum(axis=1)
    rows = np.concatenate([pp, np.arange(n_p)])
    cols = np.concatenate([np.arange(n_x), n_x + np.arange(n_p)])
    power = coo_matrix((-np.ones(n_x + n_p), (rows, cols)), shape=(n_p, n_x + n_p))
    # SLA rows: throughput-seconds lost by each job ≤ what its tier allows (inside the scenario).
    in_scenario_s = np.clip(np.minimum(windows[1], end_s) - np.maximum(windows[0], start_s), 0, None)
    required = np.minimum(fleet.flex_factor + sla_safety * fleet.controllable, 1.0)
    work_s = fleet.hull_throughput[:, -1] * in_scenario_s  # throughput-seconds of the job left alone
    allowance_s = np.maximum(work_s - required * window_s, 0.0)
    sla = coo_matrix((loss_per_w, (jj, np.arange(n_x))), shape=(n_j, n_x + n_p))
    upper = np.concatenate([width_w[jj, kk] * fleet.gpus[jj], np.full(n_p, np.inf)])

    res = linprog(
        cost,
        A_ub=vstack([power, sla]).tocsr(),
        b_ub=np.concatenate([ceiling_w - full_it_w, allowance_s]),
        bounds=np.column_stack([np.zeros(n_x + n_p), upper]),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"oracle LP failed: {res.message}")
    x, short = res.x[:n_x], res.x[n_x:]
    shed = np.zeros((n_p, n_j))
    np.add.at(shed, (pp, jj), x)
    level = fleet.full_w[None, :] - shed / fleet.gpus[None, :]
    lost_s = np.bincount(jj, loss_per_w * x, minlength=n_j)
    performance = (work_s - lost_s) / window_s
    return OracleSolution(
        weighted_performance=float((weight * performance).sum() / weight.sum()),
        performance=performance,
        period_start_s=t0,
        period_end_s=t1,
        level_w=level,
        shortfall_w=float(short.max(initial=0.0)),
        true_fleet=fleet,
    )


def _constrained_periods(sc, fleet, timeline, windows, start_s, end_s, margin):
    """Periods in which the target is below the true unconstrained power: start, end, IT ceiling
    (the target's mean over the period) and which jobs run [P, J]."""
    edges = [start_s, end_s, *windows[0], *windows[1]]
    guard_s = sc.control.snapback_guard_s
    for ev in timeline.events:
        edges += [ev.start_s, ev.hold_start_s, ev.hold_end_s, ev.end_s, ev.end_s + guard_s]
        edges += [*np.arange(ev.start_s, ev.hold_start_s, RAMP_PIECE_S)]
        edges += [*np.arange(ev.hold_end_s, ev.end_s, RAMP_PIECE_S)]
    e = np.unique(np.clip(edges, start_s, end_s))
    t0, t1 = e[:-1], e[1:]
    mid = 0.5 * (t0 + t1)
    # Mean of a piecewise-linear target over a period: Simpson's rule is exact for it.
    site_w = (timeline.ceiling_at(t0 + 1e-6) + 4 * timeline.ceiling_at(mid) + timeline.ceiling_at(t1 - 1e-6)) / 6
    ceiling = sc.site.it_power_w(site_w * (1 - margin))
    running = (mid[:, None] >= windows[0]) & (mid[:, None] < windows[1])
    full_it_w = (running * fleet.gpus * fleet.full_w).sum(axis=1)
    keep = np.isfinite(ceiling) & (ceiling < full_it_w)
    return t0[keep], t1[keep], ceiling[keep], running[keep]


class OraclePlanner:
    """Follows the offline LP's schedule (needs `bind_scenario` before the first tick)."""

    name = "oracle"

    def __init__(self) -> None:
        self.solution: OracleSolution | None = None

    def bind_scenario(self, loaded: LoadedScenario, seed: int) -> None:
        self.solution = solve_oracle(loaded, seed, PLANNER_SLA_SAFETY, loaded.scenario.site.margin)

    def plan(self, inp: PlanInput) -> Plan:
        if self.solution is None:
            raise RuntimeError("the oracle planner needs bind_scenario(loaded, seed) before planning")
        sol = self.solution
        i = int(np.searchsorted(sol.period_start_s, inp.t_s, side="right")) - 1
        if i < 0 or inp.t_s >= sol.period_end_s[i]:
            return Plan.unconstrained(inp)
        row = {job_id: r for r, job_id in enumerate(sol.true_fleet.ids)}
        rows = np.array([row[job_id] for job_id in inp.fleet.ids], dtype=np.int64)  # the jobs on the plant now
        fleet = sol.true_fleet.take(rows)
        cap, active = level_to_actions(fleet, sol.level_w[i][rows])
        return Plan(cap, active, float(fleet.job_power_w(cap, active).sum()))
