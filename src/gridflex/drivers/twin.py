"""The digital twin: a simulated plant behind the same driver contract as real hardware.

It is a site with a scheduler: fixed-window jobs run in their window; queued jobs wait in
their GPU pool's queue (first in, first out, no backfill), start when the pool has room and
gridflex does not hold them, and end once their work is done (a slowed job runs longer). The
scheduler works in passes, one per control tick: a job submitted since the last pass is listed
in the queue and may start from the next pass on (so gridflex can hold it first).
GPUs no job holds draw their pool's idle power.

Its physics is the calibrated one of `twin_physics` (docs/twin.md), not the planner's model:
each job's true curve departs from the measured one in shape and scale; its GPUs not working
draw the twin's own idle, released or suspended power; its power fluctuates as one (training
jobs, workload `pt_`/`ft_`, also stall for their hourly checkpoint save); a pause is a
checkpoint-and-stop (`pause_mode: checkpoint`, resumed by a restart of minutes) or a suspend,
each with its drawn duration and power profile; a cap change takes effect after its latency;
a job released from a curtailment comes back a few per cent low for hours; non-IT load follows
the PUE. Time advances in whole steps, computed for all steps between two control ticks at once,
over the running jobs only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np

from gridflex.drivers import twin_physics as tp
from gridflex.drivers.base import DriverHealth, JobActions, Telemetry
from gridflex.errors import DriverError
from gridflex.model.curves import CurveLibrary
from gridflex.model.fleet import JobFleet, RowInterp
from gridflex.model.scenario import TwinSettings
from gridflex.model.site import Job, PauseMode, Site

WAITING, RUNNING, DONE = 0, 1, 2
TRAINING_WORKLOAD = re.compile(r"(?:^|_)(?:pt|ft)_")  # pretraining / fine-tuning: checkpoints hourly
RUN = tp.Transition.RUN


class TwinDriver:
    name = "twin"

    def __init__(
        self,
        jobs: Sequence[Job],
        curves: CurveLibrary,
        site: Site,
        start_s: float,
        step_s: float = 1.0,
        settings: TwinSettings = TwinSettings(),
        seed: int = 0,
        record: bool = True,
        utilization: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ):
        """`utilization(step times [n], job rows [R])` gives the load [n, R] scaling each job's
        power above idle (None: full load)."""
        self.jobs, self.site = tuple(jobs), site
        self.fleet = fleet = JobFleet.build(self.jobs, curves)
        self.step_s = step_s
        self.t_s = start_s
        j = len(fleet)
        self._row = {job.id: i for i, job in enumerate(self.jobs)}
        self._job_at = np.fromiter(self.jobs, object, j)  # row -> Job, to pick the running ones at C speed
        self._id_at = np.fromiter((job.id for job in self.jobs), object, j)
        # --- the schedule ---
        self.fixed_start_s = np.array([job.start.timestamp() if job.start else -np.inf for job in self.jobs])
        self.fixed_end_s = np.array([job.end.timestamp() if job.end else np.inf for job in self.jobs])
        queued = np.array([job.queued for job in self.jobs], dtype=bool)
        self.submit_s = np.where(queued, [job.submit.timestamp() if job.submit else np.nan for job in self.jobs], np.nan)
        self.work_s = np.where(queued, [job.duration_s or np.inf for job in self.jobs], np.inf)
        self.fixed_start_s[queued] = np.nan
        pools = list(site.gpu_pools)
        self.pool = np.array([pools.index(site.pool_of(job)) if pools else -1 for job in self.jobs], dtype=np.int64)
        self.pool_gpus = np.array([site.gpu_pools[p].gpus for p in pools], dtype=np.int64)
        self.pool_idle_w = np.array([site.gpu_pools[p].idle_w for p in pools])
        self.pool_used = np.zeros(len(pools), dtype=np.int64)
        self.state = np.full(j, WAITING)
        self.held = np.zeros(j, dtype=bool)
        self.started_s = np.full(j, np.nan)
        self.ended_s = np.full(j, np.nan)
        self.held_s = np.zeros(j)  # seconds each queued job spent held
        self.throughput_s = np.zeros(j)  # true throughput-seconds while running (its work done)
        self.run_s = np.zeros(j)  # seconds each job ran
        self._order = np.argsort(np.where(queued, self.submit_s, np.inf), kind="stable")  # queue order
        self._run = np.zeros(0, dtype=np.int64)  # rows running now, in start order
        self._last_pass_s = self._start_s = start_s
        self._running_jobs: tuple[Job, ...] = ()
        self._running_ids: tuple[str, ...] = ()
        self._queued_jobs: tuple[Job, ...] = ()
        # --- the physics ---
        rng = np.random.default_rng(seed)
        self._rng = rng
        self.cal = cal = tp.CALIBRATION.scaled(settings.curve_spread, settings.fluctuation, settings.recovery)
        self.curves = curves_true = tp.TrueCurves.draw(fleet.cap_w, fleet.power_w, fleet.throughput, rng, cal)
        self.true_power_w, self.true_throughput = curves_true.power_w, curves_true.throughput
        checkpoint = np.array([job.pause_mode is PauseMode.checkpoint for job in self.jobs], dtype=bool)
        self._pause_kind = np.where(checkpoint, tp.Transition.CHECKPOINT_STOP, tp.Transition.SUSPEND).astype(np.int8)
        self._resume_kind = np.where(checkpoint, tp.Transition.RESTART, tp.Transition.RESUME).astype(np.int8)
        self._park_w = np.where(checkpoint, curves_true.released_w, curves_true.suspended_w)  # paused GPUs
        self._restart_median_s = tp.restart_median_s([job.workload for job in self.jobs], cal)
        # The jobs' arrays, with the twin's own power of idle and paused GPUs (what the oracle knows).
        self.fleet = fleet = dataclasses.replace(fleet, paused_w=self._park_w, idle_w=curves_true.idle_w)
        training = np.array([bool(TRAINING_WORKLOAD.search(job.workload)) for job in self.jobs], dtype=bool)
        self.fluctuation = tp.Fluctuation(cal)
        self.fluctuation.append(training & settings.checkpoints, rng)
        self._cap_latency_s = np.array([job.latency.power_cap_s for job in self.jobs])
        self.cap_w = fleet.max_cap_w.copy()
        self._pend_cap_w = self.cap_w.copy()
        self._cap_at_s = np.full(j, np.inf)  # when the pending cap takes effect
        top = (curves_true.power_w[:, -1].copy(), np.ones(j))
        self._cur, self._new = top, (top[0].copy(), top[1].copy())  # (per-GPU W, throughput) at the caps
        # The last pause or resume: active fraction before and after, kind, command time, duration.
        self._from, self._to = np.ones(j), np.ones(j)
        self._kind = np.full(j, RUN, dtype=np.int8)
        self._cmd_s, self._dur_s = np.full(j, -np.inf), np.zeros(j)
        self._cut = np.zeros(j, dtype=bool)  # slowed by the last command
        self._released_s = np.full(j, np.nan)  # when released from a curtailment
        self._record = record
        self._utilization = utilization
        self._site_chunks: list[np.ndarray] = []
        self._since_read = _Accumulator(j)
        self.energy_j = 0.0
        self._schedule(start_s)
        self._last_it_w = float(self._job_now_w(self._run).sum()) + self._idle_w()
        self._last_site_w = float(self.site.site_power_w(self._last_it_w))

    # --- driver verbs -------------------------------------------------------------------
    def discover(self) -> tuple[Job, ...]:
        return self._running_jobs

    def queue(self) -> tuple[Job, ...]:
        return self._queued_jobs

    def read(self) -> Telemetry:
        run = self._run
        job_w, thr = self._since_read.means(run)
        job_w = np.where(self._since_read.n[run] > 0, job_w, self._job_now_w(run))  # not stepped yet: as it is now
        self._since_read.clear(run)
        return Telemetry(
            t_s=self.t_s,
            site_power_w=self._last_site_w,
            it_power_w=self._last_it_w,
            job_ids=self._running_ids,
            job_power_w=job_w,
            throughput=thr,
            cap_w=self.cap_w[run],
            active=self.active[run],
        )

    def apply(self, actions: JobActions) -> None:
        rows, cap, active, held = self._validated(actions)
        self.held[:] = False
        self.held[held] = True
        new_cap = np.abs(cap - self._target_cap(rows)) > 1e-6
        new_active = np.abs(active - self._to[rows]) > 1e-9
        if new_cap.any():  # a pending cap not yet in effect is superseded by the new one
            r, c = rows[new_cap], cap[new_cap]
            self._pend_cap_w[r], self._cap_at_s[r] = c, self.t_s + self._cap_latency_s[r]
            self._new[0][r], self._new[1][r] = self._at_cap(r, c)
        if new_active.any():
            self._command(rows[new_active], active[new_active])
        touched = new_cap | new_active
        if touched.any():
            r = rows[touched]
            cap_power_w = self._at_cap(r, self._target_cap(r))[0]
            binds = cap_power_w < (1 - self.cal.recovery_min_cut) * self.true_power_w[r, -1]
            cut = binds | (self._to[r] < 1 - 1e-9)
            self._released_s[r[self._cut[r] & ~cut]] = self.t_s
            self._released_s[r[cut]] = np.nan
            self._cut[r] = cut

    # --- batch placement across sites (the twin of a fleet) ------------------------------
    def withdraw(self, job_id: str) -> None:
        """Take a queued job that has not started out of this site's queue (it runs elsewhere)."""
        self._requeue(job_id, np.nan, "withdrawn")

    def submit(self, job_id: str, t_s: float) -> None:
        """Queue one of this twin's queued jobs at `t_s` (a job placed here from another site)."""
        self._requeue(job_id, t_s, "submitted")

    def _requeue(self, job_id: str, submit_s: float, what: str) -> None:
        row = self._rows([job_id], what)[0]
        if self.state[row] != WAITING or not np.isfinite(self.work_s[row]):
            raise DriverError(f"job {job_id!r}: only a queued job that has not started can be {what}")
        self.submit_s[row], self.held[row] = submit_s, False
        self._order = np.argsort(np.where(np.isfinite(self.work_s), self.submit_s, np.inf), kind="stable")
        waiting = self._order[(self.state[self._order] == WAITING) & (self.submit_s[self._order] <= self.t_s)]
        self._queued_jobs = tuple(self._job_at[waiting])

    def _command(self, rows: np.ndarray, active: np.ndarray) -> None:
        """Start pausing or resuming `rows` towards `active`; a transition still under way is
        taken as done (the new one starts from its target)."""
        frm = self._to[rows]
        kind = np.where(active < frm, self._pause_kind[rows], self._resume_kind[rows])
        self._from[rows], self._to[rows], self._kind[rows], self._cmd_s[rows] = frm, active, kind, self.t_s
        for k in np.unique(kind):
            mine = rows[kind == k]
            self._dur_s[mine] = tp.draw_durations(
                tp.Transition(k), len(mine), self._rng, self.cal, self._restart_median_s[mine]
            )
        self.fluctuation.restart(rows[kind == tp.Transition.RESTART])

    @property
    def active(self) -> np.ndarray:
        """Each job's active fraction in effect: the target once its save, suspend, reload or
        resume is over."""
        over = self.t_s >= self._cmd_s + self._dur_s
        return np.where(over, self._to, self._from)

    def restore(self) -> None:
        run = self._run
        self.apply(JobActions(tuple(self._id_at[run]), self.fleet.max_cap_w[run], np.ones(len(run))))

    def health(self) -> DriverHealth:
        return DriverHealth(True, "simulated plant")

    @property
    def site_power_w(self) -> float:
        """Site power at the last simulated step (what a meter on the twin would read)."""
        return self._last_site_w

    # --- simulation -------------------------------------------------------------------
    def advance_to(self, t_s: float) -> None:
        """Simulate every step up to `t_s`, then let jobs end and start."""
        n = int(round((t_s - self.t_s) / self.step_s))
        if n <= 0:
            return
        times = self.t_s + self.step_s * np.arange(1, n + 1)
        run = self._run
        idle_w = self._idle_w()
        if len(run):
            job_w, thr = self._step_jobs(times, run)
            in_window = times[:, None] <= self.fixed_end_s[run]
            job_w, thr = job_w * in_window, thr * in_window
            it_w = job_w.sum(axis=1) + idle_w
            self._settle(run, float(times[-1]))
            self.throughput_s[run] += thr.sum(axis=0) * self.step_s
            self.run_s[run] += in_window.sum(axis=0) * self.step_s
            self._since_read.add(run, job_w.sum(axis=0), thr.sum(axis=0), n)
        else:
            it_w = np.full(n, idle_w)
        site_w = self.site.site_power_w(it_w)
        self.energy_j += float(site_w.sum()) * self.step_s
        self.held_s += (self.held & (self.state == WAITING)) * (n * self.step_s)
        self._last_site_w, self._last_it_w = float(site_w[-1]), float(it_w[-1])
        if self._record:
            self._site_chunks.append(site_w)
        self.t_s = float(times[-1])
        self._schedule(self.t_s)

    def site_power_trace(self) -> np.ndarray:
        """Site power [W] of every simulated step so far."""
        return np.concatenate(self._site_chunks) if self._site_chunks else np.zeros(0)

    def _schedule(self, t_s: float) -> None:
        """Jobs whose window ended or whose work is done end; fixed-window jobs whose window began
        start; queued jobs start in order while their pool has room (a held job keeps its place)."""
        run = self._run
        over = (self.fixed_end_s[run] <= t_s) | (self.throughput_s[run] >= self.work_s[run] - 1e-9)
        changed = bool(over.any())
        if changed:
            gone = run[over]
            self.state[gone], self.ended_s[gone] = DONE, t_s
            self.pool_used -= self._pool_gpus(gone)
            run = run[~over]
        waiting = self._order[self.state[self._order] == WAITING]
        fixed = waiting[(self.fixed_start_s[waiting] <= t_s) & (self.fixed_end_s[waiting] > t_s)]
        queued = waiting[(self.submit_s[waiting] <= self._last_pass_s) & ~self.held[waiting]]
        self._last_pass_s = t_s
        starts = [fixed, self._fits(queued, fixed)]
        new = np.concatenate(starts)
        if len(new):
            changed = True
            self.state[new], self.started_s[new] = RUNNING, t_s
            if t_s > self._start_s:  # a job that starts now saves its first checkpoint a period later
                self.fluctuation.restart(new)
            self.pool_used += self._pool_gpus(new)
            run = np.concatenate([run, new])
        self._run = run
        if changed:
            self._running_jobs = tuple(self._job_at[run])
            self._running_ids = tuple(self._id_at[run])
        waiting = self._order[(self.state[self._order] == WAITING) & (self.submit_s[self._order] <= t_s)]
        if changed or len(waiting) != len(self._queued_jobs):
            self._queued_jobs = tuple(self._job_at[waiting])

    def _fits(self, queued: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        """The queued rows that start now: per pool, the longest prefix of its queue whose GPUs fit
        in what is free once the fixed-window jobs starting now have theirs."""
        if not len(queued):
            return queued
        gpus = self.fleet.gpus[queued]
        pool = self.pool[queued]
        free = self.pool_gpus - self.pool_used - self._pool_gpus(fixed)
        keep = np.zeros(len(queued), dtype=bool)
        keep[pool < 0] = True
        for p in np.unique(pool[pool >= 0]):
            mine = np.flatnonzero(pool == p)
            fits = np.cumsum(gpus[mine]) <= free[p]
            keep[mine] = np.logical_and.accumulate(fits)
        return queued[keep]

    def _idle_w(self) -> float:
        """Power of the GPUs no job holds."""
        return float((self.pool_idle_w * (self.pool_gpus - self.pool_used)).sum())

    def _job_now_w(self, rows: np.ndarray) -> np.ndarray:
        """Power of jobs as they are set now, without fluctuation or transitions."""
        on = self.active[rows]
        return self.fleet.gpus[rows] * (on * self._cur[0][rows] + (1 - on) * self._park_w[rows])

    def _pool_gpus(self, rows: np.ndarray) -> np.ndarray:
        """GPUs each pool gives to the jobs at `rows`."""
        has = self.pool[rows] >= 0
        counts = np.bincount(self.pool[rows][has], weights=self.fleet.gpus[rows][has], minlength=len(self.pool_gpus))
        return counts.astype(np.int64)

    def _step_jobs(self, times: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Power [W] and throughput of the jobs at `run` at each of `times` [n, R]."""
        t = times[:, None]
        pending = t >= self._cap_at_s[run]
        top_w = np.where(pending, self._new[0][run], self._cur[0][run])  # true power at the cap
        top_thr = np.where(pending, self._new[1][run], self._cur[1][run])
        activity, thr_fluct = self.fluctuation.advance(len(times), self.step_s, self._rng, run)
        if self._utilization is not None:
            activity = activity * self._utilization(times, run)
        idle_w = self.curves.idle_w[run]
        frm, to = self._from[run], self._to[run]
        steady, parked = np.minimum(frm, to), 1 - np.maximum(frm, to)
        per_gpu_w = steady * (idle_w + activity * (top_w - idle_w)) + parked * self._park_w[run]
        share = steady * thr_fluct
        moving = np.flatnonzero(self._kind[run] != RUN)
        if len(moving):
            m = run[moving]
            floor, act, thr = tp.transition_profile(self._kind[m], t - self._cmd_s[m], self._dur_s[m], self.cal)
            floor_w = tp.floor_power_w(self.curves.take(m), floor)
            top = top_w[:, moving]
            size = np.abs(self._to[m] - self._from[m])
            per_gpu_w[:, moving] += size * (floor_w + act * activity[:, moving] * (top - floor_w))
            share[:, moving] += size * thr * thr_fluct[:, moving]
        released = self._released_s[run]
        if np.isfinite(released).any():
            per_gpu_w = per_gpu_w * tp.recovery_factor(t - released, self.cal)
        return self.fleet.gpus[run] * per_gpu_w, share * top_thr

    def _settle(self, run: np.ndarray, t_s: float) -> None:
        """Caps whose latency has passed take effect; transitions that are over end."""
        done = run[self._cap_at_s[run] <= t_s]
        if len(done):
            self.cap_w[done] = self._pend_cap_w[done]
            self._cap_at_s[done] = np.inf
            self._cur[0][done], self._cur[1][done] = self._new[0][done], self._new[1][done]
        kind = self._kind[run]
        warmup = np.where(kind == tp.Transition.RESTART, self.cal.warmup_s, 0.0)
        over = run[(kind != RUN) & (t_s >= self._cmd_s[run] + self._dur_s[run] + warmup)]
        self._kind[over], self._from[over] = RUN, self._to[over]

    def _at_cap(self, rows: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-GPU power and throughput of `rows` at `cap`, on their true curves."""
        xp = self.fleet.cap_w[rows]
        return RowInterp(xp, self.true_power_w[rows])(cap), RowInterp(xp, self.true_throughput[rows])(cap)

    def _target_cap(self, rows: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(self._cap_at_s[rows]), self._pend_cap_w[rows], self.cap_w[rows])

    def _rows(self, ids: Sequence[str], what: str) -> np.ndarray:
        if ids == self._running_ids:  # the jobs as listed by `discover` (the usual case): no look-up
            return self._run
        try:
            return np.fromiter(map(self._row.__getitem__, ids), np.int64, len(ids))
        except KeyError as e:
            raise DriverError(f"actions: unknown job {e.args[0]!r} in {what}") from None

    def _validated(self, actions: JobActions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        fleet = self.fleet
        rows = self._rows(actions.job_ids, "job_ids")
        cap, active = np.asarray(actions.cap_w, float), np.asarray(actions.active, float)
        if len(cap) != len(rows) or len(active) != len(rows):
            raise DriverError(f"actions: {len(rows)} job_ids but {len(cap)} cap_w and {len(active)} active")
        for i in np.flatnonzero(self.state[rows] != RUNNING):
            raise DriverError(f"job {fleet.ids[rows[i]]!r} is not running; refresh the job list")
        lo, hi = fleet.cap_w[rows, 0], fleet.max_cap_w[rows]
        for i in np.flatnonzero((cap < lo - 1e-6) | (cap > hi + 1e-6) | ~np.isfinite(cap)):
            raise DriverError(f"job {actions.job_ids[i]!r}: cap_w {cap[i]} outside its allowed {lo[i]:.0f}..{hi[i]:.0f} W")
        for i in np.flatnonzero((active < 0) | (active > 1) | ~np.isfinite(active)):
            raise DriverError(f"job {actions.job_ids[i]!r}: active {active[i]} outside 0..1")
        touched = (cap < hi - 1e-6) & ~fleet.may_cap[rows] | (active < 1) & ~fleet.may_pause[rows]
        for i in np.flatnonzero(touched):
            raise DriverError(f"job {actions.job_ids[i]!r} (flex {fleet.flex_tier[rows[i]]}) does not allow that action")
        held = self._rows(sorted(actions.held), "held")
        for r in held[(self.state[held] != WAITING) | (fleet.flex_tier[held] == 0)]:
            raise DriverError(f"job {fleet.ids[r]!r}: only a queued flexible job can be held")
        return rows, cap, active, held


class _Accumulator:
    """Per-row sums of power and throughput over the steps since the row was last read."""

    def __init__(self, j: int):
        self.power_w, self.throughput, self.n = np.zeros(j), np.zeros(j), np.zeros(j)

    def add(self, rows: np.ndarray, power_w: np.ndarray, throughput: np.ndarray, n: int) -> None:
        self.power_w[rows] += power_w
        self.throughput[rows] += throughput
        self.n[rows] += n

    def means(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.n[rows]
        power = np.divide(self.power_w[rows], n, out=np.zeros(len(rows)), where=n > 0)
        thr = np.divide(self.throughput[rows], n, out=np.full(len(rows), np.nan), where=n > 0)
        return power, thr

    def clear(self, rows: np.ndarray) -> None:
        self.power_w[rows] = self.throughput[rows] = self.n[rows] = 0.0
