"""The digital twin: a simulated plant behind the same driver contract as real hardware.

It is deliberately not the planner's model: every job's true curve departs from the
measured one by a seeded error, power fluctuates (AR(1) noise per job), each action takes
effect after its latency, and non-IT load follows the PUE. Time advances in whole steps,
computed for all steps between two control ticks at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import lfilter

from gridflex.drivers.base import DriverHealth, JobActions, Telemetry
from gridflex.errors import DriverError
from gridflex.model.fleet import JobFleet, RowInterp
from gridflex.model.scenario import TwinSettings
from gridflex.model.site import Job, Site


class TwinDriver:
    name = "twin"

    def __init__(
        self,
        jobs: Sequence[Job],
        fleet: JobFleet,
        site: Site,
        window_s: tuple[np.ndarray, np.ndarray],
        start_s: float,
        step_s: float = 1.0,
        settings: TwinSettings = TwinSettings(),
        seed: int = 0,
        record: bool = True,
        utilization: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.jobs, self.fleet, self.site = tuple(jobs), fleet, site
        self.win_start_s, self.win_end_s = window_s
        self.step_s = step_s
        self.t_s = start_s
        rng = np.random.default_rng(seed)
        j = len(fleet)
        shape_err = rng.normal(0.0, settings.curve_error, j)
        power_err = rng.normal(0.0, settings.curve_error, j)
        # True curves: same caps, throughput bent (still 1.0 at the top), power scaled, never above the cap.
        self.true_throughput = fleet.throughput ** np.exp(shape_err)[:, None]
        self.true_power_w = np.minimum(fleet.power_w * (1 + power_err)[:, None], fleet.cap_w)
        self._true_power_at_cap = RowInterp(fleet.cap_w, self.true_power_w)
        self._true_throughput_at_cap = RowInterp(fleet.cap_w, self.true_throughput)
        self._noise_sd = settings.power_noise
        self._noise_phi = float(np.exp(-step_s / settings.noise_correlation_s))
        self._noise = rng.normal(0.0, settings.power_noise, j)
        self._rng = rng
        self._cap_latency_s = np.array([job.latency.power_cap_s for job in jobs])
        self._pause_latency_s = np.array([job.latency.pause_s(job.pause_mode) for job in jobs])
        self._resume_latency_s = np.array([job.latency.unpause_s(job.pause_mode) for job in jobs])
        self.cap_w = fleet.max_cap_w.copy()
        self.active = np.ones(j)
        self._pend_cap_w = self.cap_w.copy()
        self._pend_active = self.active.copy()
        self._pend_at_s = np.full(j, np.inf)
        self._cur = self._new = self._state_curves(self.cap_w, self.active)
        self._record = record
        self._utilization = utilization  # step times -> [n, J] load scaling each job's power above idle
        self._site_chunks: list[np.ndarray] = []
        self._since_read = _Accumulator(j)
        self.throughput_s = np.zeros(j)  # true throughput-seconds inside each job's window
        self.energy_j = 0.0
        self._last_site_w = self._last_it_w = 0.0

    # --- driver verbs -------------------------------------------------------------------
    def discover(self) -> list[Job]:
        return list(self.jobs)

    def read(self) -> Telemetry:
        acc = self._since_read
        job_w, thr = acc.means()
        self._since_read = _Accumulator(len(self.fleet))
        return Telemetry(
            t_s=self.t_s,
            site_power_w=self._last_site_w,
            it_power_w=self._last_it_w,
            job_ids=self.fleet.ids,
            job_power_w=job_w,
            throughput=thr,
            cap_w=self.cap_w.copy(),
            active=self.active.copy(),
        )

    def apply(self, actions: JobActions) -> None:
        cap, active = self._validated(actions)
        changed_cap = np.abs(cap - self._target_cap()) > 1e-6
        changed_active = np.abs(active - self._target_active()) > 1e-9
        changed = changed_cap | changed_active
        if not changed.any():
            return
        now_active = self._target_active()
        latency = np.where(changed_cap, self._cap_latency_s, 0.0)
        latency = np.maximum(latency, np.where(changed_active & (active < now_active), self._pause_latency_s, 0.0))
        latency = np.maximum(latency, np.where(changed_active & (active > now_active), self._resume_latency_s, 0.0))
        # A pending change not yet in effect is superseded by the new one.
        self._pend_cap_w = np.where(changed, cap, self._pend_cap_w)
        self._pend_active = np.where(changed, active, self._pend_active)
        self._pend_at_s = np.where(changed, self.t_s + latency, self._pend_at_s)
        self._new = self._state_curves(self._pend_cap_w, self._pend_active)

    def restore(self) -> None:
        self.apply(JobActions(self.fleet.ids, self.fleet.max_cap_w.copy(), np.ones(len(self.fleet))))

    def health(self) -> DriverHealth:
        return DriverHealth(True, "simulated plant")

    # --- simulation -------------------------------------------------------------------
    def advance_to(self, t_s: float) -> None:
        """Simulate every step up to `t_s`."""
        n = int(round((t_s - self.t_s) / self.step_s))
        if n <= 0:
            return
        times = self.t_s + self.step_s * np.arange(1, n + 1)
        fleet = self.fleet
        pending = times[:, None] >= self._pend_at_s[None, :]  # [n, J]
        (cur_w, cur_t), (new_w, new_t) = self._cur, self._new
        per_gpu_w = np.where(pending, new_w, cur_w)
        if self._utilization is not None:
            per_gpu_w = fleet.idle_w + (per_gpu_w - fleet.idle_w) * self._utilization(times)
        thr = np.where(pending, new_t, cur_t)
        running = (times[:, None] - self.step_s >= self.win_start_s) & (times[:, None] <= self.win_end_s)
        noise = self._advance_noise(n)
        job_w = fleet.gpus * np.where(running, per_gpu_w * (1 + noise), fleet.idle_w)
        thr = np.where(running, thr, 0.0)
        it_w = job_w.sum(axis=1)
        site_w = self.site.site_power_w(it_w)
        done = self._pend_at_s <= times[-1]
        if done.any():
            self.cap_w = np.where(done, self._pend_cap_w, self.cap_w)
            self.active = np.where(done, self._pend_active, self.active)
            self._pend_at_s = np.where(done, np.inf, self._pend_at_s)
            self._cur = self._state_curves(self.cap_w, self.active)
        self.throughput_s += thr.sum(axis=0) * self.step_s
        self.energy_j += float(site_w.sum()) * self.step_s
        self._since_read.add(job_w.sum(axis=0), thr.sum(axis=0), n)
        self._last_site_w, self._last_it_w = float(site_w[-1]), float(it_w[-1])
        if self._record:
            self._site_chunks.append(site_w)
        self.t_s = float(times[-1])

    def site_power_trace(self) -> np.ndarray:
        """Site power [W] of every simulated step so far."""
        return np.concatenate(self._site_chunks) if self._site_chunks else np.zeros(0)

    def _state_curves(self, cap_w: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fleet = self.fleet
        p, t = self._true_power_at_cap(cap_w), self._true_throughput_at_cap(cap_w)
        return active * p + (1 - active) * fleet.paused_w, active * t

    def _advance_noise(self, n: int) -> np.ndarray:
        phi, sd = self._noise_phi, self._noise_sd
        shocks = self._rng.normal(0.0, sd * np.sqrt(1 - phi**2), (n, len(self.fleet)))
        out, _ = lfilter([1.0], [1.0, -phi], shocks, axis=0, zi=(phi * self._noise)[None, :])
        self._noise = out[-1]
        return out

    def _target_cap(self) -> np.ndarray:
        return np.where(np.isfinite(self._pend_at_s), self._pend_cap_w, self.cap_w)

    def _target_active(self) -> np.ndarray:
        return np.where(np.isfinite(self._pend_at_s), self._pend_active, self.active)

    def _validated(self, actions: JobActions) -> tuple[np.ndarray, np.ndarray]:
        fleet = self.fleet
        if tuple(actions.job_ids) != fleet.ids:
            unknown = sorted(set(actions.job_ids) - set(fleet.ids))
            raise DriverError(
                f"actions must list every job in order; unknown: {unknown or 'none'}, expected {len(fleet)} jobs"
            )
        cap, active = np.asarray(actions.cap_w, float), np.asarray(actions.active, float)
        lo, hi = fleet.cap_w[:, 0], fleet.max_cap_w
        for i in np.flatnonzero((cap < lo - 1e-6) | (cap > hi + 1e-6) | ~np.isfinite(cap)):
            raise DriverError(f"job {fleet.ids[i]!r}: cap_w {cap[i]} outside its allowed {lo[i]:.0f}..{hi[i]:.0f} W")
        for i in np.flatnonzero((active < 0) | (active > 1) | ~np.isfinite(active)):
            raise DriverError(f"job {fleet.ids[i]!r}: active {active[i]} outside 0..1")
        touched = (cap < hi - 1e-6) & ~fleet.may_cap | (active < 1) & ~fleet.may_pause
        for i in np.flatnonzero(touched):
            raise DriverError(f"job {fleet.ids[i]!r} (flex {fleet.flex_tier[i]}) does not allow that action")
        return cap, active


class _Accumulator:
    """Sums of per-job power and throughput over the steps since the last reading."""

    def __init__(self, j: int):
        self.power_w, self.throughput, self.n = np.zeros(j), np.zeros(j), 0

    def add(self, power_w: np.ndarray, throughput: np.ndarray, n: int) -> None:
        self.power_w += power_w
        self.throughput += throughput
        self.n += n

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n == 0:
            return self.power_w.copy(), np.full(len(self.power_w), np.nan)
        return self.power_w / self.n, self.throughput / self.n
