"""The horizon planner: when deferrable work runs and how flexible work is shaped over the next
day or two, as one linear programme solved by HiGHS (model-predictive control: re-solved as
forecasts and the queue change; the per-tick planner tracks the plan's first slots).

Model. Time is cut into `n_slots` slots of `slot_s`. Jobs are aggregated into `JobClass`es
(`classify`): jobs with the same power curve, flex tier, state (running or queued), release slot
and deadline bucket are one class, with their GPUs and their required work summed. A class may
run any number of its GPUs (0 .. `gpus`) in each slot of its window [release, deadline), each
GPU at a vertex of the curve's upper concave hull (power-cap operating points, mixing two
neighbouring vertices reaches every point on the hull). The variable z[c, k, m] is the number of
GPUs of class c at vertex m in slot k; GPUs not running sit idle at `idle_w`. So the LP has
(classes x slots x hull vertices) variables and one row per class-slot, plus per slot a pool row
and a site-ceiling row, plus one work row per class. At 10,000 GPUs, 48 h of 15-min slots and a
hundred classes this is some 10^5 variables, solved in about a second (bench/horizon.py).

Constraints: each class delivers `work_gpu_h` (GPU-hours at full speed) inside its window; the
pool has `pool_gpus`; site power (PUE x IT + overhead + miners) stays under the interconnection
limit and the known grid-event ceilings. Flex-0 classes are not planned: they run at full power
from release until their work is done (a fixed load). Running flexible classes are given the
work their tier guarantees (`running_class`). Miner blocks run at any power up to their size and
earn their value per MWh. Objective: weights x (kg CO2 by the carbon forecast, USD by the price
forecast) of site energy, minus miner revenue; work that cannot fit by its deadline and power
over a ceiling are allowed at a large penalty and reported (`shortfall_gpu_h`, `over_ceiling_w`),
so the planner always answers and says what it could not do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from gridflex.errors import GridflexError, InputError
from gridflex.model.curves import DEFAULT_IDLE_W, PowerCurve
from gridflex.model.site import FLEX_FACTOR
from gridflex.plan.targets import TargetTimeline
from gridflex.signals.prices import Signal

#: Penalties relative to the largest cost of one watt for one slot.
SHORTFALL_PENALTY = 1e4
OVER_CEILING_PENALTY = 1e7


@dataclass(frozen=True)
class JobClass:
    """Jobs planned together: same curve, release slot and deadline bucket (see `classify`)."""

    name: str
    curve: PowerCurve
    gpus: int  # GPUs of all the class's jobs
    work_gpu_h: float  # full-speed GPU-hours required inside the window
    release_s: float  # earliest start
    deadline_s: float | None  # work required by then (None: by the end of the horizon)
    flex_tier: int  # 0: never slowed (a fixed load)


@dataclass(frozen=True)
class MinerBlock:
    """A block of miners: the first flexible load. Runs at any power up to `power_w`."""

    name: str
    power_w: float
    value_usd_per_mwh: float  # revenue per MWh used (hashprice over efficiency)


@dataclass(frozen=True)
class Weights:
    """What the plan minimises: kg_co2 x emissions + usd x (energy cost - miner revenue)."""

    kg_co2: float = 1.0
    usd: float = 0.0


@dataclass(frozen=True, eq=False)
class HorizonInput:
    t0_s: float
    slot_s: float
    classes: Sequence[JobClass]
    pool_gpus: int
    carbon_g_per_kwh: np.ndarray  # [K] forecast at each slot
    price_usd_per_mwh: np.ndarray  # [K] forecast at each slot
    ceiling_w: np.ndarray | None = None  # [K] site-power ceiling of known grid events (inf: none)
    interconnection_w: float | None = None
    pue: float = 1.0
    overhead_w: float = 0.0
    idle_w: float = DEFAULT_IDLE_W
    miners: Sequence[MinerBlock] = ()
    weights: Weights = field(default_factory=Weights)
    power_shaping: bool = True  # False: a running GPU is at full power (shift only, no capping)

    @property
    def n_slots(self) -> int:
        return len(self.carbon_g_per_kwh)

    @property
    def slot_starts_s(self) -> np.ndarray:
        return self.t0_s + self.slot_s * np.arange(self.n_slots)


@dataclass(frozen=True, eq=False)
class HorizonPlan:
    slot_s: float
    slot_starts_s: np.ndarray  # [K]
    class_names: tuple[str, ...]
    gpus_running: np.ndarray  # [C, K] GPUs of each class at work (fractional: an average)
    power_w: np.ndarray  # [C, K] IT power of each class's working GPUs
    work_gpu_h: np.ndarray  # [C, K] full-speed GPU-hours done in each slot
    miner_w: np.ndarray  # [B, K]
    site_power_w: np.ndarray  # [K]
    shortfall_gpu_h: np.ndarray  # [C] work that does not fit by its deadline
    over_ceiling_w: np.ndarray  # [K] site power above the ceiling (0: met)
    objective: float
    solve_s: float


def slot_ceilings_w(timeline: TargetTimeline, t0_s: float, slot_s: float, n_slots: int, samples: int = 15
                    ) -> np.ndarray:
    """[K] site-power ceiling of each slot from a target timeline: the lowest over the slot
    (sampled `samples` times), so that a plan under it is under every event's ramp too."""
    t = t0_s + slot_s * (np.arange(n_slots)[:, None] + np.arange(samples)[None, :] / samples)
    return timeline.ceiling_at(t).min(axis=1)


def slot_means(signal: Signal, t0_s: float, slot_s: float, n_slots: int, samples: int = 6) -> np.ndarray:
    """[K] mean of a signal (e.g. `Forecast.forecast_at(now)`) over each slot."""
    t = t0_s + slot_s * (np.arange(n_slots)[:, None] + (np.arange(samples)[None, :] + 0.5) / samples)
    return np.asarray(signal.at(t), float).mean(axis=1)


def running_class(name: str, curve: PowerCurve, gpus: int, flex_tier: int, t0_s: float, until_s: float) -> JobClass:
    """A class of running jobs that must keep their tier's share of full throughput until `until_s`."""
    hours = max(until_s - t0_s, 0.0) / 3600.0
    return JobClass(name, curve, gpus, FLEX_FACTOR[flex_tier] * gpus * hours, t0_s, until_s, flex_tier)


def solve(inp: HorizonInput) -> HorizonPlan:
    """Solve the horizon LP (HiGHS through scipy.optimize.linprog)."""
    _check(inp)
    started = time.perf_counter()
    K, dt_h = inp.n_slots, inp.slot_s / 3600.0
    # cost of one site watt for one slot, in objective units
    cost_w = dt_h / 1000.0 * (inp.weights.kg_co2 * inp.carbon_g_per_kwh / 1000.0
                              + inp.weights.usd * inp.price_usd_per_mwh / 1000.0)
    scale = max(float(np.abs(cost_w).max()), 1e-12)
    tie = scale * 1e-4 * np.arange(K) / K  # among equal slots, earlier work first

    fixed_it_w, fixed_gpus = np.zeros(K), np.zeros(K)
    planned = []
    for ci, c in enumerate(inp.classes):
        if c.flex_tier == 0:
            on = _fixed_slots(inp, c)
            fixed_it_w[on] += c.gpus * c.curve.full_power_w
            fixed_gpus[on] += c.gpus
        else:
            planned.append((ci, *_window(inp, c)))
    free_gpus = inp.pool_gpus - fixed_gpus
    base_w = inp.pue * (inp.idle_w * free_gpus + fixed_it_w) + inp.overhead_w
    cap_w = np.full(K, np.inf) if inp.ceiling_w is None else np.asarray(inp.ceiling_w, float).copy()
    if inp.interconnection_w is not None:
        cap_w = np.minimum(cap_w, inp.interconnection_w)

    # z variables: one per (planned class, slot in its window, hull vertex)
    cls, slot, dpow, work, rowcs = [], [], [], [], []
    n_cs = 0
    for j, (ci, k0, k1) in enumerate(planned):
        p, t = _vertices(inp.classes[ci].curve, inp.power_shaping)
        ks = np.arange(k0, k1)
        cls.append(np.full(len(ks) * len(p), j))
        slot.append(np.repeat(ks, len(p)))
        dpow.append(np.tile(p - inp.idle_w, len(ks)))
        work.append(np.tile(t * dt_h, len(ks)))
        rowcs.append(n_cs + np.repeat(np.arange(len(ks)), len(p)))
        n_cs += len(ks)
    cat = (lambda parts, dtype=float: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
    cls, slot, rowcs = cat(cls, int), cat(slot, int), cat(rowcs, int)
    dpow, work = cat(dpow), cat(work)
    nz, nb, nc = len(cls), len(inp.miners), len(planned)
    capped = np.flatnonzero(np.isfinite(cap_w))
    nv = len(capped)
    # variable layout: [z (nz) | miners (nb*K) | over-ceiling slack (nv) | shortfall slack (nc)]
    mk = np.tile(np.arange(K), nb)
    m_value = np.array([b.value_usd_per_mwh for b in inp.miners]).repeat(K) if nb else np.zeros(0)
    c_obj = np.concatenate([
        inp.pue * dpow * (cost_w[slot] + tie[slot]),
        cost_w[mk] - inp.weights.usd * m_value[:] * dt_h / 1e6,
        np.full(nv, OVER_CEILING_PENALTY * scale),
        np.full(nc, SHORTFALL_PENALTY * scale * inp.pue * _max_full_w(inp) / dt_h),  # per GPU-hour
    ])
    iz = np.arange(nz)
    im = nz + np.arange(nb * K)
    iv = nz + nb * K + np.arange(nv)
    isf = nz + nb * K + nv + np.arange(nc)
    rows, cols, vals, rhs = [], [], [], []
    r = 0
    # 1. each class runs at most its GPUs in each slot
    rows.append(r + rowcs), cols.append(iz), vals.append(np.ones(nz))
    class_gpus = np.array([inp.classes[ci].gpus for ci, _, _ in planned], float)
    rhs.append(np.repeat(class_gpus, [k1 - k0 for _, k0, k1 in planned]) if nc else np.zeros(0))
    r += n_cs
    # 2. the pool
    rows.append(r + slot), cols.append(iz), vals.append(np.ones(nz))
    rhs.append(free_gpus)
    r += K
    # 3. site power under the ceiling where there is one
    row_of_slot = np.full(K, -1)
    row_of_slot[capped] = r + np.arange(nv)
    zc = np.isfinite(cap_w[slot])
    rows.append(row_of_slot[slot[zc]]), cols.append(iz[zc]), vals.append(inp.pue * dpow[zc])
    mc = np.isfinite(cap_w[mk])
    rows.append(row_of_slot[mk[mc]]), cols.append(im[mc]), vals.append(np.ones(mc.sum()))
    rows.append(r + np.arange(nv)), cols.append(iv), vals.append(-np.ones(nv))
    rhs.append(cap_w[capped] - base_w[capped])
    r += nv
    # 4. each class's work by its deadline
    rows.append(r + cls), cols.append(iz), vals.append(-work)
    rows.append(r + np.arange(nc)), cols.append(isf), vals.append(-np.ones(nc))
    rhs.append(-np.array([inp.classes[ci].work_gpu_h for ci, _, _ in planned]))
    r += nc

    n_var = nz + nb * K + nv + nc
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n_var))
    upper = np.concatenate([np.full(nz, np.inf), np.array([b.power_w for b in inp.miners]).repeat(K) if nb
                            else np.zeros(0), np.full(nv + nc, np.inf)])
    if n_var == 0:  # nothing to decide: only fixed loads
        x, fun = np.zeros(0), 0.0
    else:
        res = linprog(c_obj, A_ub=A, b_ub=np.concatenate(rhs), bounds=np.column_stack([np.zeros(n_var), upper]),
                      method="highs")
        if res.status != 0:
            raise GridflexError(f"horizon plan: HiGHS did not solve the LP ({res.message})")
        x, fun = res.x, float(res.fun)
    C = len(inp.classes)
    gpus_running, power_w, work_h = np.zeros((C, K)), np.zeros((C, K)), np.zeros((C, K))
    ci_of = np.array([ci for ci, _, _ in planned], int)
    z = x[iz]
    np.add.at(gpus_running, (ci_of[cls], slot), z)
    np.add.at(power_w, (ci_of[cls], slot), z * (dpow + inp.idle_w))
    np.add.at(work_h, (ci_of[cls], slot), z * work)
    for ci, c in enumerate(inp.classes):  # the fixed (Flex 0) classes
        if c.flex_tier == 0:
            on = _fixed_slots(inp, c)
            gpus_running[ci, on] = c.gpus
            power_w[ci, on] = c.gpus * c.curve.full_power_w
            work_h[ci, on] = c.gpus * dt_h
    miner_w = x[im].reshape(nb, K) if nb else np.zeros((0, K))
    site_w = base_w + inp.pue * (np.bincount(slot, z * dpow, minlength=K)) + miner_w.sum(axis=0)
    over = np.zeros(K)
    over[capped] = x[iv]
    shortfall = np.zeros(C)
    shortfall[ci_of] = x[isf]
    return HorizonPlan(inp.slot_s, inp.slot_starts_s, tuple(c.name for c in inp.classes), gpus_running, power_w, work_h,
                       miner_w, site_w, shortfall, over, fun, time.perf_counter() - started)


def _vertices(curve: PowerCurve, shaping: bool) -> tuple[np.ndarray, np.ndarray]:
    """Operating points of one working GPU: the hull's vertices (power caps), or full power only."""
    if not shaping:
        return np.array([curve.full_power_w]), np.array([1.0])
    return curve.hull(with_pause=False)


def _window(inp: HorizonInput, c: JobClass) -> tuple[int, int]:
    """Slots [k0, k1) in which a class may work: from its release to its deadline, in the horizon."""
    k0 = int(np.clip(np.ceil((c.release_s - inp.t0_s) / inp.slot_s - 1e-9), 0, inp.n_slots))
    k1 = inp.n_slots if c.deadline_s is None else int(
        np.clip(np.floor((c.deadline_s - inp.t0_s) / inp.slot_s + 1e-9), k0, inp.n_slots))
    return k0, k1


def _fixed_slots(inp: HorizonInput, c: JobClass) -> slice:
    """The slots a Flex-0 class runs at full power: from its release until its work is done."""
    k0, k1 = _window(inp, c)
    n = int(np.ceil(c.work_gpu_h / (c.gpus * inp.slot_s / 3600.0) - 1e-9))
    return slice(k0, min(k0 + n, k1))


def _max_full_w(inp: HorizonInput) -> float:
    return max([c.curve.full_power_w for c in inp.classes], default=1.0)


def _check(inp: HorizonInput) -> None:
    K = inp.n_slots
    if K == 0 or inp.slot_s <= 0:
        raise InputError("horizon: need at least one slot and slot_s > 0")
    if len(inp.price_usd_per_mwh) != K or (inp.ceiling_w is not None and len(inp.ceiling_w) != K):
        raise InputError(f"horizon: carbon, price and ceiling need one value per slot ({K})")
    if not (np.all(np.isfinite(inp.carbon_g_per_kwh)) and np.all(np.isfinite(inp.price_usd_per_mwh))):
        raise InputError("horizon: carbon and price forecasts must be finite in every slot")
    if inp.pool_gpus < 0:
        raise InputError(f"horizon: pool_gpus must be >= 0, got {inp.pool_gpus}")
    for c in inp.classes:
        if c.gpus <= 0 or c.work_gpu_h < 0:
            raise InputError(f"horizon class {c.name!r}: gpus must be > 0 and work_gpu_h >= 0")
        if c.flex_tier not in FLEX_FACTOR:
            raise InputError(f"horizon class {c.name!r}: flex_tier must be one of {sorted(FLEX_FACTOR)}")


@dataclass(frozen=True)
class JobDemand:
    """One job as the horizon planner sees it: the work it still needs and its window."""

    id: str
    curve: PowerCurve
    gpus: int
    flex_tier: int
    work_gpu_h: float  # full-speed GPU-hours still required by `deadline_s`
    release_s: float  # when it may start (now for a queued job)
    deadline_s: float | None  # None: by the end of the horizon
    running: bool = False  # informational: in the LP a running job is its remaining work too


def classify(jobs: Sequence[JobDemand], t0_s: float, slot_s: float, deadline_bucket_s: float = 6 * 3600.0,
             exact_below: int = 200) -> tuple[list[JobClass], np.ndarray]:
    """Group jobs into classes (and each job's class index) to keep the LP small.

    Up to `exact_below` jobs, each job is its own class: the plan is exact. Above, jobs share a
    class when they have the same curve, release slot and deadline bucket
    (`deadline_bucket_s` wide, counted from `t0_s`), and are both Flex 0 (a fixed load) or both
    flexible: in the LP a flexible job is only its work and its window (a running job's tier
    sets how much work it must keep, a queued job's deadline how much by when), so tiers and
    running/queued need not split classes. A class sums its jobs' GPUs and work and is due by its
    earliest member's deadline (no member's work is planned later than it needs it). The plan is
    a fluid relaxation inside a class (one member's work may be planned on another's GPUs, so a
    member with few GPUs and much work can still end up late; the per-tick planner's deadline
    guard must catch it): `dispatch` hands the class's working GPUs to its jobs, least slack
    first. Classes are at most curves x deadline buckets x release slots (+ the Flex-0 ones):
    1,075 jobs on 10,000 GPUs over 48 h make 87 classes (bench/horizon.py)."""
    if deadline_bucket_s <= 0 or slot_s <= 0:
        raise InputError("classify: slot_s and deadline_bucket_s must be > 0")
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        k_rel = int(np.ceil(max(j.release_s - t0_s, 0.0) / slot_s - 1e-9))
        bucket = -1 if j.deadline_s is None else int((j.deadline_s - t0_s) // deadline_bucket_s)
        key = (j.curve.workload, j.flex_tier == 0, k_rel, bucket if len(jobs) > exact_below else f"{bucket}.{i}")
        groups.setdefault(key, []).append(i)
    classes, member = [], np.empty(len(jobs), int)
    for n, ((workload, fixed, k_rel, bucket), idx) in enumerate(groups.items()):
        js = [jobs[i] for i in idx]
        deadlines = [j.deadline_s for j in js]
        classes.append(JobClass(
            f"{workload}/{'flex0' if fixed else 'flex'}/r{k_rel}/d{bucket}", js[0].curve, sum(j.gpus for j in js),
            sum(j.work_gpu_h for j in js), t0_s + k_rel * slot_s, None if None in deadlines else min(deadlines),
            0 if fixed else min(j.flex_tier for j in js)))
        member[idx] = n
    return classes, member


def latest_start_s(j: JobDemand) -> float:
    """The last moment a job can start and still finish by its deadline with all its GPUs at full speed."""
    return (j.deadline_s if j.deadline_s is not None else np.inf) - j.work_gpu_h / j.gpus * 3600.0


def dispatch(plan: HorizonPlan, k: int, jobs: Sequence[JobDemand], member: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """What each job does in slot `k` of a plan: GPUs at work, and the per-GPU power level
    (the class's average operating point) for them. A class's working GPUs go to its jobs
    least slack first (latest start at full speed; no deadline last), each job taking what it
    can use: all its GPUs, or fewer if its remaining `work_gpu_h` ends within the slot. Pass the
    jobs with their work as of slot k."""
    gpus = np.zeros(len(jobs))
    level_w = np.zeros(len(jobs))
    dt_h = plan.slot_s / 3600.0
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].deadline_s is None, latest_start_s(jobs[i])))
    left = plan.gpus_running[:, k].copy()
    for i in order:
        c = member[i]
        if plan.gpus_running[c, k] <= 1e-9 or jobs[i].work_gpu_h <= 0:
            continue
        level_w[i] = plan.power_w[c, k] / plan.gpus_running[c, k]
        rate = float(np.interp(level_w[i], *jobs[i].curve.hull(with_pause=False))) * dt_h
        gpus[i] = min(jobs[i].gpus, max(left[c], 0.0), jobs[i].work_gpu_h / rate)
        left[c] -= gpus[i]
    return gpus, level_w
