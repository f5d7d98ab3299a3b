"""Time shifting: which queued deferrable jobs wait for cleaner or cheaper hours.

Each tick the controller asks `Shifter.held(...)` for the queued jobs to hold besides those its
deferral holds for grid events (`control/deferral.py`); the twin keeps them queued, Slurm gets
`scontrol hold`. The policy reads the signal's forecast as known at that time, never the future:

- `horizon`: every `replan_s` (and when a new job queues) an LP (`plan/start_times.py`, the
  horizon planner for whole jobs that run to the end once started) chooses each queued job's
  start over the next `horizon_s` in `slot_s` slots, with the forecast known now, the GPUs the
  running jobs leave free (each runs until its work is done), the grid events' ceilings and
  every queued job's latest start; a job the plan does not start in the first slot waits.
- `lwa`: Let's Wait Awhile, non-interrupting: on arrival a job is given the start, before its
  latest start, whose window has the lowest forecast mean, and waits until then.
- `threshold`: queued jobs wait while the signal now (its nowcast) is above a threshold.
- `run-now`: nothing waits (first in, first out).

Power shaping (`power_shaping`, on by default): running flexible jobs with known work (a queued
job once started) are also capped. `horizon`: at each solve the class LP of `plan/horizon.py`
(power-cap operating points; a GPU may also not work) plans their remaining work over the slots
before each must finish, and the share of full throughput it gives each in the first slot
becomes the job's upper power level until the next solve, never below its most efficient cap;
the queued jobs' start LP then sees the GPUs and power that plan leaves. With `shaping_pauses`
(off by default: docs/benchmarks.md measures it) a job that may pause is paused instead where
the plan gives it (about) no work: under half its most efficient cap's throughput in the first
slot, and no more for at least one slot and its pause's stall (pause and resume latency: a
suspend, or a checkpoint and a restart) / `PAUSE_STALL_SHARE` ahead; its slack must also cover
that least pause and the stall. It is resumed when the plan gives it work, but not before that least pause (the
stall stays at most that share of it), or at once when its slack is down to the stall; a
resumed job runs at least that long before shaping pauses it again (no flapping between
solves). `threshold`: while the signal is above the threshold they run at their most efficient
cap (no plan ahead: no pauses). The controller passes the bound to the per-tick planner
(`PlanInput.upper_level_w`), which sheds from it for grid events: shaping only lowers power. A
job must finish by its deadline and within its tier (its run at most work / flex_factor), less
the margin below; a job whose slack is gone is not capped.

Hard rules for all: Flex 0 never waits; a job waits at most until its latest start, the time
at which it must start to finish by its deadline (less a margin for slowing during events and
for the plant's lag); a job without a deadline has its tier's allowance, (1/flex_factor - 1) x
its work from its submission. Jobs the policy lets go are released oldest first, one every
`release_stagger_s`; a job at its latest start goes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gridflex.errors import GridflexError, InputError
from gridflex.model.curves import DEFAULT_IDLE_W, CurveLibrary
from gridflex.model.fleet import JobFleet
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import Job, Site
from gridflex.plan.base import first_cap_vertex_w
from gridflex.plan.horizon import HorizonInput, JobDemand, classify, dispatch, slot_ceilings_w, slot_means, solve
from gridflex.plan.start_times import StartInput, solve_starts
from gridflex.plan.targets import TargetTimeline
from gridflex.signals.forecast import as_known
from gridflex.signals.prices import Signal, StepSignal
from gridflex.signals.recorded import Recorded, builtin

log = logging.getLogger(__name__)

#: Share of a job's work kept in hand before its deadline (slowing during a grid event, the
#: twin's checkpoint stalls), besides one slot.
DEADLINE_MARGIN = 0.1
#: Power shaping pauses a job only for a planned pause at least its stall / this long: the work
#: a pause loses is at most this share of the time it is paused (as DEADLINE_MARGIN, a tenth).
PAUSE_STALL_SHARE = 0.1


def latest_finish_s(job: Job) -> float:
    """Epoch seconds by which a queued job must be done: its deadline, else its tier's
    allowance after it was submitted (inf: a job of unknown length)."""
    if job.deadline is not None:
        return job.deadline.timestamp()
    if job.duration_s is None or job.submit is None:
        return np.inf
    ready = max(job.submit, job.begin or job.submit).timestamp()
    return ready + job.duration_s / job.flex_factor


def signal_known(settings: ShiftSettings, recorded: Recorded) -> Callable[[float], StepSignal]:
    """The signal as a policy may know it at time t: the forecast issued by t as `as_known` makes
    it from the actuals observed by t, or the actuals when `forecast` is 'actual'."""
    if settings.forecast == "actual":
        return lambda t_s: recorded.actual
    return as_known(recorded.forecast, recorded.actual, settings.corrected_tau_s, settings.persistence_weight,
                    settings.horizon_s).forecast_at


class Shifter:
    """Holds and releases queued deferrable work by a time-shifting policy (module docstring)."""

    def __init__(self, settings: ShiftSettings, site: Site, curves: CurveLibrary, stagger_s: float,
                 recorded: Recorded | None = None, known: Callable[[float], Signal] | None = None):
        """The signal: `known` (what is known at t; the live service passes its live source), else
        `recorded` (default: the built-in source `settings.signal`) as `signal_known` reads it."""
        self.settings, self.site, self.curves, self.stagger_s = settings, site, curves, stagger_s
        if known is None and recorded is None and settings.signal is None:
            raise InputError("shifting.signal: a simulation needs a recorded source (gb-carbon-week, ercot-price-week)")
        self.known = known or signal_known(settings, recorded or builtin(settings.signal))
        self.signal_error = ""  # why the signal could not be read at the last decision ("" if it could)
        self.wait: set[str] = set()  # what the policy wants held now
        self.held: list[str] = []  # held now, oldest first
        self.start_at_s: dict[str, float] = {}  # lwa: when each job may start
        self.first_running_s: dict[str, float] = {}
        self.solves = 0
        self._planned_s = -np.inf
        self._planned_ids: frozenset[str] = frozenset()
        self._last_release_s = -np.inf
        self._limit: float | None = settings.threshold
        self._above = False  # threshold: the signal now is above the limit
        # power shaping: the fleet's jobs as last observed, the work each has done (full-speed s),
        # the shapeable rows and, from the last horizon solve, each shaped job's throughput share
        self._jobs: Sequence[Job] = ()
        self._row: dict[str, int] = {}
        self._done_s = np.zeros(0)
        self._shapeable = _Shapeable((), np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool),
                                     np.zeros(0))
        self.share: dict[str, float] = {}
        self._idle_until_s: dict[str, float] = {}  # from the last solve: until when each shaped job has no work
        self.paused: set[str] = set()  # shaped jobs shaping pauses now
        self._switched_s: dict[str, float] = {}  # when shaping last paused or resumed each job
        self._planned_shapeable = self._shapeable
        self._bound: tuple | None = None  # (fleet ids, share) the shares of `_planned_share` are for, and them

    def value_now(self, t_s: float) -> float | None:
        """The signal at `t_s` as known then; None while it cannot be read (stale, unreachable)."""
        try:
            return float(self.known(t_s).at(t_s))
        except GridflexError:
            return None

    def decide(self, t_s: float, running: Sequence[Job], queued: Sequence[Job], timeline: TargetTimeline
               ) -> frozenset[str]:
        """The queued jobs to hold from now on."""
        for j in running:
            self.first_running_s.setdefault(j.id, t_s)
        flexible = {j.id: j for j in queued if j.flex_tier > 0 and np.isfinite(latest_finish_s(j))}
        try:
            self._decide_wait(t_s, running, queued, flexible, timeline)
            self.signal_error = ""
        except GridflexError as e:  # no signal (stale, unreachable): no shifting until it is back
            if not self.signal_error:
                log.warning("time shifting paused, the signal cannot be read: %s", e)
            self.signal_error, self.wait = str(e), set()
        must_go = {i for i, j in flexible.items() if t_s >= self.latest_start_s(j)}
        keep = (self.wait & set(flexible)) - must_go
        was = [i for i in self.held if i in flexible and i not in must_go]
        going = [i for i in was if i not in keep]
        if going and t_s - self._last_release_s >= self.stagger_s:
            going.pop(0)  # the oldest goes now, the others one per stagger
            self._last_release_s = t_s
        self.held = [i for i in was if i in keep or i in going]
        self.held += [i for i in flexible if i in keep and i not in self.held]
        return frozenset(self.held)

    def _decide_wait(self, t_s: float, running: Sequence[Job], queued: Sequence[Job], flexible: dict[str, Job],
                     timeline: TargetTimeline) -> None:
        """Update `wait`, the jobs the policy would hold now."""
        policy = self.settings.policy
        if policy == "horizon":
            if (t_s - self._planned_s >= self.settings.replan_s or not set(flexible) <= self._planned_ids
                    or self._shapeable is not self._planned_shapeable):
                self.wait = self._horizon(t_s, running, queued, flexible, timeline)
                self._planned_s, self._planned_ids = t_s, frozenset(flexible)
                self._planned_shapeable = self._shapeable
        elif policy == "lwa":
            for i, j in flexible.items():
                if i not in self.start_at_s:
                    self.start_at_s[i] = self._lwa_start_s(t_s, j)
            self.wait = {i for i in flexible if t_s < self.start_at_s[i]}
        elif policy == "threshold":
            if self._limit is None:
                self._limit = float(np.median(slot_means(self.known(t_s), t_s, self.settings.slot_s, 192)))
            self._above = float(self.known(t_s).at(t_s)) > self._limit
            self.wait = set(flexible) if self._above else set()
        else:
            self.wait = set()

    # --- power shaping ------------------------------------------------------------------------
    def observe(self, t_s: float, jobs: Sequence[Job], fleet: JobFleet, throughput: np.ndarray, dt_s: float) -> None:
        """Book the work the running jobs (`jobs`, the rows of `fleet`) did over the last `dt_s`
        at their measured `throughput` (share of full speed). A new job list (a job started,
        ended, or was changed: its tier, its deadline) rebuilds what shaping knows of them."""
        if jobs is not self._jobs:
            done = np.array([self._done_s[self._row[i]] if i in self._row else 0.0 for i in fleet.ids])
            self._jobs, self._row, self._done_s = jobs, {i: k for k, i in enumerate(fleet.ids)}, done
            for j in jobs:
                self.first_running_s.setdefault(j.id, t_s)
            rows = np.flatnonzero(fleet.may_cap & np.array([j.duration_s is not None for j in jobs], bool))
            picked = tuple(jobs[r] for r in rows)
            low = fleet.hull_throughput[rows, np.where(fleet.may_pause[rows], 1, 0)]
            stall_s = [j.latency.pause_s(j.pause_mode) + j.latency.unpause_s(j.pause_mode) for j in picked]
            self._shapeable = _Shapeable(picked, rows, np.array([float(j.duration_s) for j in picked]), np.array(
                [self._finish_s(j) for j in picked]), np.minimum(low, 1.0), fleet.may_pause[rows],
                np.array(stall_s, float))
        self._done_s += throughput * dt_s

    def upper_level_w(self, t_s: float, fleet: JobFleet) -> np.ndarray | None:
        """[J] per-GPU power level each of the fleet's jobs may run at most now (inf: any), or
        None when nothing is shaped. `fleet` is the one last passed to `observe`."""
        s, sh = self.settings, self._shapeable
        if not s.power_shaping or s.policy not in ("horizon", "threshold") or self.signal_error or not len(sh.rows):
            self.paused = set()
            return None
        share = self._planned_share(fleet) if s.policy == "horizon" else np.where(self._above, sh.low_share, 1.0)
        left_s = self._left_s()
        slack_s = self._must_finish_s(sh.finish_s, left_s) - t_s - left_s - s.slot_s * (1 - share)
        share_all = np.ones(len(fleet))
        share_all[sh.rows] = np.where(slack_s >= 0, share, 1.0)  # a job whose slack is gone runs free
        level = np.maximum(fleet.level_at_throughput(share_all), first_cap_vertex_w(fleet))
        paused = sh.rows[self._pauses(t_s, slack_s)]
        level[paused] = fleet.paused_w[paused]
        return np.where(share_all < 1 - 1e-9, level, np.inf)

    def _pauses(self, t_s: float, slack_s: np.ndarray) -> np.ndarray:
        """[shapeable] the jobs shaping pauses now (module docstring); updates `paused`."""
        s, sh = self.settings, self._shapeable
        ids = [j.id for j in sh.jobs]
        if s.policy != "horizon" or not s.shaping_pauses:
            self.paused = set()
            return np.zeros(len(ids), bool)
        idle_s = np.array([self._idle_until_s.get(i, t_s) for i in ids]) - t_s
        least_s = np.maximum(s.slot_s, sh.stall_s / PAUSE_STALL_SHARE)
        was = np.array([i in self.paused for i in ids], bool)
        since_s = t_s - np.array([self._switched_s.get(i, -np.inf) for i in ids])  # in its state since
        # paused: until the plan gives it work, not before `least_s`, while its slack covers the
        # stall; running: not before `least_s` either, for a planned pause at least that long that
        # its slack covers with the stall
        now = sh.may_pause & np.where(
            was, (slack_s >= sh.stall_s) & ((idle_s > 0) | (since_s < least_s)),
            (slack_s >= least_s + sh.stall_s) & (idle_s >= least_s) & (since_s >= least_s))
        self._switched_s.update((i, t_s) for i, w, n in zip(ids, was, now) if w != n)
        self.paused = {i for i, n in zip(ids, now) if n}
        return now

    def _planned_share(self, fleet: JobFleet) -> np.ndarray:
        """[shapeable] each job's share of full throughput in the last solve's first slot (1: none)."""
        if self._bound is None or self._bound[0] is not fleet.ids or self._bound[1] is not self.share:
            rows = self._shapeable.rows
            self._bound = (fleet.ids, self.share, np.array([self.share.get(fleet.ids[r], 1.0) for r in rows]))
        return self._bound[2]

    def _left_s(self) -> np.ndarray:
        """[shapeable] work each shapeable job has left (full-speed seconds)."""
        return np.maximum(self._shapeable.work_s - self._done_s[self._shapeable.rows], 0.0)

    def _finish_s(self, job: Job) -> float:
        """When a running job must be done: by its deadline and within its tier (its run at most
        its work / flex factor)."""
        return min(latest_finish_s(job), self.first_running_s[job.id] + float(job.duration_s) / job.flex_factor)

    def _must_finish_s(self, finish_s: np.ndarray, left_s: np.ndarray) -> np.ndarray:
        """The finish a shaping plan aims at: less the margin on the work left and one slot."""
        return finish_s - DEADLINE_MARGIN * left_s - self.settings.slot_s

    def latest_start_s(self, job: Job) -> float:
        """The last moment a queued job may start and still finish by its deadline, with a margin."""
        work_s = float(job.duration_s)
        return latest_finish_s(job) - work_s * (1 + DEADLINE_MARGIN) - self.settings.slot_s

    # --- policies ----------------------------------------------------------------------------
    def _horizon(self, t_s: float, running: Sequence[Job], queued: Sequence[Job], flexible: dict[str, Job],
                 timeline: TargetTimeline) -> set[str]:
        """Plan the running jobs' power shaping (`_shape`), then when each deferrable queued job
        starts (`plan.start_times`) in what that plan leaves; those not starting now wait."""
        s, site = self.settings, self.site
        n = int(round(s.horizon_s / s.slot_s))
        pool_gpus, idle_w = self._pool()
        signal = slot_means(self.known(t_s), t_s, s.slot_s, n)
        ceiling_w = slot_ceilings_w(timeline, t_s, s.slot_s, n)
        shaped = {j.id for j in self._shapeable.jobs} if s.power_shaping else set()
        busy = np.zeros(n)  # GPUs of other work per slot
        busy_w = np.zeros(n)  # its power above idle
        horizon_end_s = t_s + n * s.slot_s
        others = [(j, self._remaining_s(j, t_s, horizon_end_s)) for j in running if j.id not in shaped]
        others += [(j, min(j.duration_s or s.horizon_s, s.horizon_s)) for j in queued if j.id not in flexible]
        for j, left_s in others:
            k = int(np.ceil(left_s / s.slot_s - 1e-9))
            busy[:k] += j.gpus
            busy_w[:k] += j.gpus * (self.curves[j.workload].full_power_w - idle_w)
        base_w = site.pue * ((idle_w * pool_gpus if np.isfinite(pool_gpus) else 0.0) + busy_w) + site.overhead_w
        self.share = {}
        if shaped:
            shaped_gpus, shaped_w = self._shape(t_s, signal, ceiling_w - base_w, idle_w)
            busy += shaped_gpus
            base_w += site.pue * shaped_w
        if not flexible:
            return set()
        jobs = list(flexible.values())
        full_w = np.array([self.curves[j.workload].full_power_w for j in jobs])
        gpus = np.array([j.gpus for j in jobs])
        shares = solve_starts(StartInput(
            signal, gpus, site.pue * gpus * (full_w - idle_w),
            np.array([max(int(np.ceil(j.duration_s / s.slot_s - 1e-9)), 1) for j in jobs]),
            np.array([int(np.floor((self.latest_start_s(j) - t_s) / s.slot_s)) for j in jobs]),
            pool_gpus - busy, ceiling_w - base_w,
        ))
        self.solves += 1
        return {j.id for j, share in zip(jobs, shares[:, 0]) if share < 0.5}

    def _shape(self, t_s: float, signal: np.ndarray, headroom_w: np.ndarray, idle_w: float
               ) -> tuple[np.ndarray, np.ndarray]:
        """Plan the shapeable running jobs' remaining work with the class LP of `plan.horizon`
        (power-cap operating points, each job by when it must finish, site power within the
        `headroom_w` [K] other load leaves under the ceiling); keep each job's share of full
        throughput in the first slot (`share`; 1 for a job the plan cannot fit). Returns per slot
        the GPUs they hold (until each finishes) and their IT power above idle."""
        s, sh, n = self.settings, self._shapeable, len(signal)
        left_s = self._left_s()
        must_s = self._must_finish_s(sh.finish_s, left_s)
        jobs = [JobDemand(j.id, self.curves[j.workload], j.gpus, j.flex_tier, left * j.gpus / 3600.0, t_s, must, True)
                for j, left, must in zip(sh.jobs, left_s, must_s) if left > 0]
        if not jobs:
            return np.zeros(n), np.zeros(n)
        k_end = int(np.clip(np.ceil((max(j.deadline_s for j in jobs) - t_s) / s.slot_s), 1, n))
        classes, member = classify(jobs, t_s, s.slot_s)
        gpus = sum(j.gpus for j in jobs)
        plan = solve(HorizonInput(  # the signal in the carbon slot: only its shape matters
            t_s, s.slot_s, classes, gpus, signal[:k_end], np.zeros(k_end),
            headroom_w[:k_end] + self.site.pue * idle_w * gpus, pue=self.site.pue, idle_w=idle_w))
        working, level_w = dispatch(plan, 0, jobs, member)
        share = np.array([w / j.gpus * np.interp(lv, *j.curve.hull(with_pause=False)) if w > 0 else 0.0
                          for j, w, lv in zip(jobs, working, level_w)])
        short = plan.shortfall_gpu_h[member] > 1e-6
        share = np.where(short, 1.0, np.minimum(share, 1.0))
        self.share = dict(zip((j.id for j in jobs), share.tolist()))
        # each job's leading slots with (about) no work: under half what it would do at its most
        # efficient cap, or of the work it has left if less (a job about to finish is not idle)
        work_s = plan.work_gpu_h[member] * 3600.0 / np.array([c.gpus for c in classes])[member, None]
        left_then_s = left_s[left_s > 0, None] - np.cumsum(work_s, axis=1) + work_s
        least_s = np.minimum(sh.low_share[left_s > 0, None] * s.slot_s, left_then_s)
        idle = (work_s < 0.5 * least_s) & ~short[:, None]
        lead = np.where(idle.all(axis=1), k_end, np.argmin(idle, axis=1))
        self._idle_until_s = dict(zip((j.id for j in jobs), (t_s + s.slot_s * lead).tolist()))
        k = np.arange(k_end)
        worked = plan.work_gpu_h > 1e-9
        last = np.where(worked.any(axis=1), k_end - 1 - np.argmax(worked[:, ::-1], axis=1), -1)
        held = ((k[None, :] <= last[:, None]) * np.array([c.gpus for c in classes])[:, None]).sum(axis=0)
        above_idle_w = (plan.power_w - idle_w * plan.gpus_running).sum(axis=0)
        return np.pad(held, (0, n - k_end)), np.pad(above_idle_w, (0, n - k_end))

    def _lwa_start_s(self, t_s: float, job: Job) -> float:
        """The start before the job's latest start with the lowest forecast mean over its run."""
        s = self.settings
        last = self.latest_start_s(job)
        if last <= t_s:
            return t_s
        starts = t_s + s.slot_s * np.arange(int((last - t_s) // s.slot_s) + 1)
        runs = int(np.ceil(float(job.duration_s) / s.slot_s))
        per_slot = slot_means(self.known(t_s), t_s, s.slot_s, len(starts) + runs)
        c = np.concatenate([[0.0], np.cumsum(per_slot)])
        k = np.arange(len(starts))
        return float(starts[int(np.argmin(c[k + runs] - c[k]))])

    # --- helpers -----------------------------------------------------------------------------
    def _remaining_s(self, job: Job, t_s: float, until_s: float) -> float:
        """Seconds a running job still runs (at full speed), as far as the plan looks."""
        if job.duration_s is not None:
            done_s = self._done_s[self._row[job.id]] if job.id in self._row else t_s - self.first_running_s.get(job.id, t_s)
            return max(job.duration_s - done_s, 0.0)
        if job.end is not None:
            return max(min(job.end.timestamp(), until_s) - t_s, 0.0)
        return until_s - t_s

    def _pool(self) -> tuple[float, float]:
        """GPUs the plan may use (inf: a site without pools) and the idle power of one not in use."""
        pools = self.site.gpu_pools.values()
        if not pools:
            return np.inf, DEFAULT_IDLE_W
        return float(sum(p.gpus for p in pools)), float(np.mean([p.idle_w for p in pools]))


@dataclass(frozen=True, eq=False)
class _Shapeable:
    """The running jobs power shaping may cap: flexible, allowed to cap, with known work."""

    jobs: tuple[Job, ...]
    rows: np.ndarray  # [S] their rows in the fleet
    work_s: np.ndarray  # [S] work at full speed
    finish_s: np.ndarray  # [S] by when each must be done (deadline, tier), before the margin
    low_share: np.ndarray  # [S] share of full throughput at the most efficient cap
    may_pause: np.ndarray  # [S] bool
    stall_s: np.ndarray  # [S] work a pause loses: its pause and resume latency
