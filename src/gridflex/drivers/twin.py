"""The digital twin: a simulated plant behind the same driver contract as real hardware.

It is a site with a scheduler: fixed-window jobs run in their window; queued jobs wait in
their GPU pool's queue (first in, first out, no backfill), start when the pool has room and
gridflex does not hold them, and end once their work is done (a slowed job runs longer). The
scheduler works in passes, one per control tick: a job submitted since the last pass is listed
in the queue and may start from the next pass on (so gridflex can hold it first).
GPUs no job holds draw their pool's idle power.

It is deliberately not the planner's model: every job's true curve departs from the
measured one by a seeded error, power fluctuates (AR(1) noise per job), each action takes
effect after its latency, and non-IT load follows the PUE. Time advances in whole steps,
computed for all steps between two control ticks at once, over the running jobs only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import lfilter

from gridflex.drivers.base import DriverHealth, JobActions, Telemetry
from gridflex.errors import DriverError
from gridflex.model.curves import CurveLibrary
from gridflex.model.fleet import JobFleet, RowInterp
from gridflex.model.scenario import TwinSettings
from gridflex.model.site import Job, Site

WAITING, RUNNING, DONE = 0, 1, 2


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
        self._last_pass_s = start_s
        self._running_jobs: tuple[Job, ...] = ()
        self._queued_jobs: tuple[Job, ...] = ()
        # --- the physics ---
        rng = np.random.default_rng(seed)
        shape_err = rng.normal(0.0, settings.curve_error, j)
        power_err = rng.normal(0.0, settings.curve_error, j)
        # True curves: same caps, throughput bent (still 1.0 at the top), power scaled, never above the cap.
        self.true_throughput = fleet.throughput ** np.exp(shape_err)[:, None]
        self.true_power_w = np.minimum(fleet.power_w * (1 + power_err)[:, None], fleet.cap_w)
        self._noise_sd = settings.power_noise
        self._noise_phi = float(np.exp(-step_s / settings.noise_correlation_s))
        self._noise = rng.normal(0.0, settings.power_noise, j)
        self._rng = rng
        self._cap_latency_s = np.array([job.latency.power_cap_s for job in self.jobs])
        self._pause_latency_s = np.array([job.latency.pause_s(job.pause_mode) for job in self.jobs])
        self._resume_latency_s = np.array([job.latency.unpause_s(job.pause_mode) for job in self.jobs])
        self.cap_w = fleet.max_cap_w.copy()
        self.active = np.ones(j)
        self._pend_cap_w = self.cap_w.copy()
        self._pend_active = self.active.copy()
        self._pend_at_s = np.full(j, np.inf)
        full = (fleet.full_w.copy(), np.ones(j))
        self._cur, self._new = full, (full[0].copy(), full[1].copy())  # (per-GPU W, throughput) per row
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
            job_ids=tuple(j.id for j in self._running_jobs),
            job_power_w=job_w,
            throughput=thr,
            cap_w=self.cap_w[run],
            active=self.active[run],
        )

    def apply(self, actions: JobActions) -> None:
        rows, cap, active, held = self._validated(actions)
        self.held[:] = False
        self.held[held] = True
        changed = (np.abs(cap - self._target_cap(rows)) > 1e-6) | (np.abs(active - self._target_active(rows)) > 1e-9)
        if not changed.any():
            return
        rows, cap, active = rows[changed], cap[changed], active[changed]
        now_active = self._target_active(rows)
        latency = np.where(np.abs(cap - self._target_cap(rows)) > 1e-6, self._cap_latency_s[rows], 0.0)
        latency = np.maximum(latency, np.where(active < now_active, self._pause_latency_s[rows], 0.0))
        latency = np.maximum(latency, np.where(active > now_active, self._resume_latency_s[rows], 0.0))
        # A pending change not yet in effect is superseded by the new one.
        self._pend_cap_w[rows] = cap
        self._pend_active[rows] = active
        self._pend_at_s[rows] = self.t_s + latency
        self._set_curves(self._new, rows, cap, active)

    def restore(self) -> None:
        run = self._run
        self.apply(JobActions(tuple(self.fleet.ids[i] for i in run), self.fleet.max_cap_w[run], np.ones(len(run))))

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
        run, fleet = self._run, self.fleet
        idle_w = self._idle_w()
        if len(run):
            pending = times[:, None] >= self._pend_at_s[run][None, :]  # [n, R]
            per_gpu_w = np.where(pending, self._new[0][run], self._cur[0][run])
            thr = np.where(pending, self._new[1][run], self._cur[1][run])
            if self._utilization is not None:
                idle = fleet.idle_w[run]
                per_gpu_w = idle + (per_gpu_w - idle) * self._utilization(times, run)
            ends = self.fixed_end_s[run]
            in_window = times[:, None] <= ends
            job_w = fleet.gpus[run] * per_gpu_w * (1 + self._advance_noise(n, run)) * in_window
            thr = thr * in_window
            it_w = job_w.sum(axis=1) + idle_w
            done = self._pend_at_s[run] <= times[-1]
            if done.any():
                r = run[done]
                self.cap_w[r], self.active[r] = self._pend_cap_w[r], self._pend_active[r]
                self._pend_at_s[r] = np.inf
                self._cur[0][r], self._cur[1][r] = self._new[0][r], self._new[1][r]
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
            self.pool_used += self._pool_gpus(new)
            run = np.concatenate([run, new])
        self._run = run
        if changed:
            self._running_jobs = tuple(self.jobs[i] for i in run)
        waiting = self._order[(self.state[self._order] == WAITING) & (self.submit_s[self._order] <= t_s)]
        if changed or len(waiting) != len(self._queued_jobs):
            self._queued_jobs = tuple(self.jobs[i] for i in waiting)

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
        """Power of jobs as they are set now, without fluctuation."""
        return self.fleet.gpus[rows] * self._cur[0][rows]

    def _pool_gpus(self, rows: np.ndarray) -> np.ndarray:
        """GPUs each pool gives to the jobs at `rows`."""
        has = self.pool[rows] >= 0
        counts = np.bincount(self.pool[rows][has], weights=self.fleet.gpus[rows][has], minlength=len(self.pool_gpus))
        return counts.astype(np.int64)

    def _set_curves(self, into: tuple[np.ndarray, np.ndarray], rows: np.ndarray, cap: np.ndarray,
                    active: np.ndarray) -> None:
        """(per-GPU power, throughput) of `rows` at caps and active fractions, on the true curves."""
        fleet = self.fleet
        xp = fleet.cap_w[rows]
        p = RowInterp(xp, self.true_power_w[rows])(cap)
        t = RowInterp(xp, self.true_throughput[rows])(cap)
        into[0][rows] = active * p + (1 - active) * fleet.paused_w[rows]
        into[1][rows] = active * t

    def _advance_noise(self, n: int, rows: np.ndarray) -> np.ndarray:
        phi, sd = self._noise_phi, self._noise_sd
        shocks = self._rng.normal(0.0, sd * np.sqrt(1 - phi**2), (n, len(rows)))
        out, _ = lfilter([1.0], [1.0, -phi], shocks, axis=0, zi=(phi * self._noise[rows])[None, :])
        self._noise[rows] = out[-1]
        return out

    def _target_cap(self, rows: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(self._pend_at_s[rows]), self._pend_cap_w[rows], self.cap_w[rows])

    def _target_active(self, rows: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(self._pend_at_s[rows]), self._pend_active[rows], self.active[rows])

    def _rows(self, ids: Sequence[str], what: str) -> np.ndarray:
        try:
            return np.fromiter((self._row[i] for i in ids), np.int64, len(ids))
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
