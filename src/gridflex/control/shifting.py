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

Hard rules for all: Flex 0 never waits; a job waits at most until its latest start, the time
at which it must start to finish by its deadline (less a margin for slowing during events and
for the plant's lag); a job without a deadline has its tier's allowance, (1/flex_factor - 1) x
its work from its submission. Jobs the policy lets go are released oldest first, one every
`release_stagger_s`; a job at its latest start goes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from gridflex.errors import GridflexError, InputError
from gridflex.model.curves import DEFAULT_IDLE_W, CurveLibrary
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import Job, Site
from gridflex.plan.horizon import slot_ceilings_w, slot_means
from gridflex.plan.start_times import StartInput, solve_starts
from gridflex.plan.targets import TargetTimeline
from gridflex.signals.forecast import BlendedForecast, CorrectedForecast, persistence_forecast
from gridflex.signals.prices import Signal, StepSignal
from gridflex.signals.recorded import Recorded, builtin

log = logging.getLogger(__name__)

#: Share of a job's work kept in hand before its deadline (slowing during a grid event, the
#: twin's checkpoint stalls), besides one slot.
DEADLINE_MARGIN = 0.1


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
    """The signal as a policy may know it at time t: the forecast issued by t (corrected by its
    last observed error if `corrected_tau_s`; blended with same-time-yesterday persistence of the
    actuals observed by t if `persistence_weight`), or the actuals when `forecast` is 'actual'."""
    if settings.forecast == "actual":
        return lambda t_s: recorded.actual
    forecast = recorded.forecast
    if settings.corrected_tau_s is not None:
        forecast = CorrectedForecast(forecast, recorded.actual, settings.corrected_tau_s)
    if settings.persistence_weight > 0:
        actual, step_s = recorded.actual, float(np.median(np.diff(recorded.actual.times_s)))
        issues = np.arange(actual.times_s[0] + step_s, actual.times_s[-1], step_s)
        yesterday = persistence_forecast(actual, issues, settings.horizon_s, step_s, "yesterday", report_delay_s=step_s)
        forecast = BlendedForecast(forecast, yesterday, 1 - settings.persistence_weight)
    return forecast.forecast_at


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
            if t_s - self._planned_s >= self.settings.replan_s or not set(flexible) <= self._planned_ids:
                self.wait = self._horizon(t_s, running, queued, flexible, timeline)
                self._planned_s, self._planned_ids = t_s, frozenset(flexible)
        elif policy == "lwa":
            for i, j in flexible.items():
                if i not in self.start_at_s:
                    self.start_at_s[i] = self._lwa_start_s(t_s, j)
            self.wait = {i for i in flexible if t_s < self.start_at_s[i]}
        elif policy == "threshold":
            if self._limit is None:
                self._limit = float(np.median(slot_means(self.known(t_s), t_s, self.settings.slot_s, 192)))
            self.wait = set(flexible) if float(self.known(t_s).at(t_s)) > self._limit else set()
        else:
            self.wait = set()

    def latest_start_s(self, job: Job) -> float:
        """The last moment a queued job may start and still finish by its deadline, with a margin."""
        work_s = float(job.duration_s)
        return latest_finish_s(job) - work_s * (1 + DEADLINE_MARGIN) - self.settings.slot_s

    # --- policies ----------------------------------------------------------------------------
    def _horizon(self, t_s: float, running: Sequence[Job], queued: Sequence[Job], flexible: dict[str, Job],
                 timeline: TargetTimeline) -> set[str]:
        """Solve when each deferrable queued job starts (`plan.start_times`); those not starting now wait."""
        if not flexible:
            return set()
        s, site = self.settings, self.site
        n = int(round(s.horizon_s / s.slot_s))
        pool_gpus, idle_w = self._pool()
        busy = np.zeros(n)  # GPUs of other work per slot
        busy_w = np.zeros(n)  # its power above idle
        horizon_end_s = t_s + n * s.slot_s
        others = [(j, self._remaining_s(j, t_s, horizon_end_s)) for j in running]
        others += [(j, min(j.duration_s or s.horizon_s, s.horizon_s)) for j in queued if j.id not in flexible]
        for j, left_s in others:
            k = int(np.ceil(left_s / s.slot_s - 1e-9))
            busy[:k] += j.gpus
            busy_w[:k] += j.gpus * (self.curves[j.workload].full_power_w - idle_w)
        jobs = list(flexible.values())
        full_w = np.array([self.curves[j.workload].full_power_w for j in jobs])
        gpus = np.array([j.gpus for j in jobs])
        base_w = site.pue * ((idle_w * pool_gpus if np.isfinite(pool_gpus) else 0.0) + busy_w) + site.overhead_w
        shares = solve_starts(StartInput(
            slot_means(self.known(t_s), t_s, s.slot_s, n), gpus, site.pue * gpus * (full_w - idle_w),
            np.array([max(int(np.ceil(j.duration_s / s.slot_s - 1e-9)), 1) for j in jobs]),
            np.array([int(np.floor((self.latest_start_s(j) - t_s) / s.slot_s)) for j in jobs]),
            pool_gpus - busy, slot_ceilings_w(timeline, t_s, s.slot_s, n) - base_w,
        ))
        self.solves += 1
        return {j.id for j, share in zip(jobs, shares[:, 0]) if share < 0.5}

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
            return max(job.duration_s - (t_s - self.first_running_s.get(job.id, t_s)), 0.0)
        if job.end is not None:
            return max(min(job.end.timestamp(), until_s) - t_s, 0.0)
        return until_s - t_s

    def _pool(self) -> tuple[float, float]:
        """GPUs the plan may use (inf: a site without pools) and the idle power of one not in use."""
        pools = self.site.gpu_pools.values()
        if not pools:
            return np.inf, DEFAULT_IDLE_W
        return float(sum(p.gpus for p in pools)), float(np.mean([p.idle_w for p in pools]))
