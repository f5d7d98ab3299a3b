"""The control loop: read telemetry, keep the flex-budget account, plan, act."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gridflex.control.budget import FlexBudget
from gridflex.control.deferral import Deferral
from gridflex.drivers.base import Driver, JobActions, Telemetry
from gridflex.drivers.miner_base import MinerActions
from gridflex.errors import DriverError, InputError
from gridflex.model.curves import CurveLibrary
from gridflex.model.events import GridEvent
from gridflex.model.fleet import JobFleet
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Job, Site
from gridflex.plan.base import Plan, PlanInput, Planner, level_to_actions
from gridflex.plan.targets import ResolvedEvent, TargetTimeline

if TYPE_CHECKING:
    from gridflex.control.miner_side import MinerSide
    from gridflex.control.shifting import Shifter

#: Time constant [s] of the controller's estimate of how far the plant departs from the model.
MODEL_RATIO_TAU_S = 30.0
#: ... when the plant draws less than modelled: slow to believe it (a checkpoint save dips a job's
#: power for ~35 s; following the dip would relax the caps just before the power comes back).
MODEL_RATIO_TAU_DOWN_S = 120.0
#: Seconds a power cap needs to take effect, allowed for when anticipating a step in the target.
ACTUATION_S = 1.0
#: Seconds of climbing at the ramp limit the site may have in hand above its measured power (room for
#: noise and whole GPUs, so that the ceiling does not creep down with them).
RAMP_SLACK_S = 4.0
#: Resolution [s] and reach [s] of the look-ahead that starts a ramp-limited site down early.
PRE_RAMP_STEP_S, PRE_RAMP_HORIZON_S = 10.0, 6 * 3600.0
#: Resolution [s] of the look-ahead over the target timeline used to pace flex budgets.
LOOKAHEAD_STEP_S = 60.0


#: Each job's flex-budget window: (job, epoch s it was first seen running, epoch s now) -> (start, end),
#: the window in force now (a rolling rule gives a later one once the last has ended).
WindowRule = Callable[[Job, float, float], tuple[float, float]]


@dataclass(frozen=True, eq=False)
class Decision:
    """What the controller saw and chose at one tick. Per-job arrays follow `job_ids`."""

    t_s: float
    site_power_w: float  # measured
    target_w: float  # site ceiling now (inf: none)
    it_ceiling_w: float  # IT power the planner was asked to stay under
    model_ratio: float  # measured / modelled IT power
    job_ids: tuple[str, ...]
    floor_throughput: np.ndarray
    plan: Plan
    active_events: tuple[str, ...]
    held: frozenset[str] = frozenset()  # queued jobs held


class Journal(Protocol):
    """Where the controller writes what it saw and decided, before it acts."""

    def telemetry(self, tel: Telemetry) -> None: ...

    def decision(self, decision: Decision) -> None: ...


def check_load_floor(throughput: float) -> None:
    """A load floor is a throughput share: 0 (none) to 1 (normal)."""
    if not 0.0 <= throughput <= 1.0:
        raise InputError(f"load_floor: {throughput}; allowed: 0 to 1 (throughput, normal = 1)")


class Controller:
    """Each tick: find which jobs run and wait (the plant says), keep their flex budgets, plan,
    hold or release queued work, act. Jobs that start, end or change tier update the fleet in
    place: rows of the jobs that stay keep their budget account."""

    def __init__(
        self,
        site: Site,
        settings: ControlSettings,
        driver: Driver,
        planner: Planner,
        curves: CurveLibrary,
        window_for: WindowRule,
        start_s: float,
        journal: Journal | None = None,
        miners: MinerSide | None = None,
        meter: Callable[[], float] | None = None,
    ):
        """`meter`: reads the site meter (W; raises `DriverError` when it cannot); with one, the
        controller closes the loop on the meter, not on the sum of its drivers' readings."""
        self.site, self.settings, self.curves = site, settings, curves
        self.driver, self.planner, self.journal = driver, planner, journal
        self.miners = miners  # a miner fleet behind the same meter, dispatched with the jobs
        self.meter = meter
        self.shifting: Shifter | None = None  # time shifting of queued deferrable work (control/shifting.py)
        self.window_for = window_for
        self.jobs: tuple[Job, ...] = ()
        self.fleet = JobFleet.build([], curves)
        self.budget = FlexBudget(np.zeros(0), np.zeros(0), np.zeros(0))
        self.deferral = Deferral(settings)
        self.tiers: dict[str, int] = {}  # flex tiers set by the operator, over what the plant says
        self.times: dict[str, dict[str, datetime]] = {}  # deadline / begin set by the operator, likewise
        self.load_floors: dict[str, float] = {}  # job id -> least throughput the load it serves needs
        self.queued: Sequence[Job] = ()  # the plant's queue at the last tick (with what the operator set)
        # budget accounts from before a restart: job id -> (window start, end, delivered s, elapsed s)
        self.carried: dict[str, tuple[float, float, float, float]] = {}
        self.model_ratio = 1.0
        self.baselines_w: dict[str, float] = {}  # frozen at each event's start
        self._events: dict[str, tuple[GridEvent, float]] = {}  # id -> (event, known from [epoch s])
        self._history = _RunningWindow(settings.baseline_window_s)
        self._last_t_s = start_s
        self._seen: Sequence[Job] | None = None  # the driver's last job list
        self._first_seen_s: dict[str, float] = {}  # job id -> when the plant first showed it running
        self._ptr = np.zeros(0, dtype=np.uint64)  # the address of each Job in `jobs`
        self._by_id: dict[str, Job] = {}  # the Job in `jobs` of each id
        # (computed at, events it saw, grid, cumulative constrained seconds)
        self._lookahead: tuple[float, tuple[str, ...], np.ndarray, np.ndarray] | None = None
        self._applied: tuple | None = None  # last actions sent to the driver
        self._ramp_w = np.inf  # the ramp limit's site power ceiling now
        self._resolved_cache: dict[str, ResolvedEvent] = {}
        self._loaded: tuple[JobFleet, dict[str, float], JobFleet, np.ndarray] | None = None  # (fleet, floors, ...)

    @property
    def win_start_s(self) -> np.ndarray:
        return self.budget.win_start_s

    @property
    def win_end_s(self) -> np.ndarray:
        return self.budget.win_end_s

    def budget_used(self) -> np.ndarray:
        """Fraction of each running job's slowdown allowance spent so far."""
        return self.budget.used()

    # --- jobs ----------------------------------------------------------------------------------
    def set_tier(self, job_id: str, tier: int) -> None:
        """Override a job's flex tier from now on; its budget account carries on."""
        self.tiers[job_id] = tier
        if self._seen is not None:
            self._fit(self._seen, self._last_t_s)

    def set_times(self, job_id: str, times: dict[str, datetime]) -> None:
        """Override a running or queued job's `deadline` and/or `begin` from now on (time shifting
        reads them); safe from another thread, as `add_event`."""
        self.times = {**self.times, job_id: {**self.times.get(job_id, {}), **times}}
        if self._seen is not None:
            self._fit(self._seen, self._last_t_s)

    def set_load_floor(self, job_id: str, throughput: float) -> None:
        """The least throughput (normal = 1) job `job_id` must keep for the load it serves, e.g. the
        requests a fleet coordinator routes to an inference job; 0 clears it. Each tick's floor is
        the higher of this and the job's flex-budget floor; only meeting a grid target goes below it
        (`site.priority: grid`). The job is also modelled as carrying that load (`JobFleet.under_load`:
        power above idle in proportion), so that the planner sees how little slowing a lightly
        loaded server saves. Safe from another thread, as `add_event`."""
        check_load_floor(throughput)
        self.load_floors = {**{k: v for k, v in self.load_floors.items() if k != job_id},
                            **({job_id: float(throughput)} if throughput > 0 else {})}

    def loaded_fleet(self) -> tuple[JobFleet, np.ndarray]:
        """The fleet as the planner models it, and each job's load floor (0: none): a job with one
        draws power above idle in proportion to it, the others as their curves (load 1)."""
        fleet, floors = self.fleet, self.load_floors
        if self._loaded is None or self._loaded[0] is not fleet or self._loaded[1] is not floors:
            least = np.zeros(len(fleet))
            for job_id, floor in floors.items():
                if job_id in self._by_id:
                    least[fleet.ids.index(job_id)] = floor
            loaded = fleet.under_load(np.where(least > 0, least, 1.0)) if least.any() else fleet
            self._loaded = (fleet, floors, loaded, least)
        return self._loaded[2], self._loaded[3]

    def as_set(self, job: Job) -> Job:
        """The job with the tier and times the operator set, where they differ from the plant's."""
        update = {k: v for k, v in self.times.get(job.id, {}).items() if getattr(job, k) != v}
        if self.tiers.get(job.id, job.flex_tier) != job.flex_tier:
            update["flex_tier"] = self.tiers[job.id]
        return job.model_copy(update=update) if update else job

    def sync_jobs(self, t_s: float) -> None:
        """Bring the fleet up to the jobs the plant runs now (every tick does it first)."""
        running = self.driver.discover()
        if running is not self._seen:
            self._seen = running
            self._fit(running, t_s)

    def _fit(self, running: Sequence[Job], t_s: float) -> None:
        """Rows of jobs that stay keep their budget; rows of jobs that are new or changed are
        built. A plant that hands back the same Job objects (the twin) is diffed by object
        identity, without reading the jobs (at 100k GPUs the reads, not the arithmetic, cost);
        jobs listed as new objects (Slurm) are matched by id and compared by value."""
        jobs = tuple(running)
        if self.tiers or self.times:
            jobs = tuple(map(self.as_set, jobs))
        if jobs == self.jobs:
            return
        n, old_n = len(jobs), len(self.jobs)
        ptr = np.fromiter(map(id, jobs), np.uint64, n)  # the old list holds its jobs: no address is reused
        order = np.argsort(self._ptr)
        at = np.minimum(np.searchsorted(self._ptr[order], ptr), max(old_n - 1, 0))
        same = self._ptr[order][at] == ptr if old_n else np.zeros(n, dtype=bool)
        src = np.where(same, order[at] if old_n else 0, -1)
        listed_anew = np.flatnonzero(~same)  # new jobs, and jobs listed as new objects
        for i in listed_anew:
            prev = self._by_id.get(jobs[i].id)
            if prev is not None:
                src[i] = order[np.searchsorted(self._ptr[order], id(prev))]
                same[i] = prev == jobs[i]
        gone = np.ones(old_n, dtype=bool)
        gone[src[src >= 0]] = False
        for r in np.flatnonzero(gone):
            del self._by_id[self.jobs[r].id]
        for i in listed_anew:
            self._by_id[jobs[i].id] = jobs[i]
        changed = np.flatnonzero(~same)
        rows = np.where(same, src, old_n + np.cumsum(~same) - 1)
        self.fleet = self.fleet.extended(JobFleet.build([jobs[i] for i in changed], self.curves)).take(rows)
        new = np.flatnonzero(src < 0)
        windows = np.zeros((n, 2))
        for i in new:
            windows[i] = self.window_for(jobs[i], self._first_seen_s.setdefault(jobs[i].id, t_s), t_s)
        factors = np.where(same, self.budget.flex_factor[np.maximum(src, 0)] if old_n else 1.0, 1.0)
        for i in changed:
            factors[i] = self.deferral.flex_factor(jobs[i])
        self.budget = self.budget.remapped(src, factors, windows[:, 0], windows[:, 1])
        for i in new:
            start, end, delivered, elapsed = self.carried.pop(jobs[i].id, (np.nan,) * 4)
            if (start, end) == tuple(windows[i]):  # the same window as before a restart: carry on
                self.budget.delivered_s[i], self.budget.elapsed_s[i] = delivered, elapsed
        self.jobs, self._ptr = jobs, ptr
        self._lookahead = self._applied = None

    def _roll_windows(self, t_s: float) -> None:
        """A job still running past its budget window starts its next one, if its rule has one."""
        for i in np.flatnonzero(t_s >= self.budget.win_end_s):
            job = self.jobs[i]
            start, end = self.window_for(job, self._first_seen_s[job.id], t_s)
            if start >= self.budget.win_end_s[i]:
                self.budget.restart(i, start, end)
                self._lookahead = None

    # --- events ----------------------------------------------------------------------------
    def add_event(self, event: GridEvent, known_from_s: float | None = None) -> None:
        """Take an event from now on. Safe to call from another thread while a tick runs: the
        event list is replaced, never changed in place, and a tick works on the list it began with."""
        if event.id in self._events:
            raise InputError(f"event id {event.id!r} already exists; cancel it first or use another id")
        known_s = self._last_t_s if known_from_s is None else known_from_s
        self._events = {**self._events, event.id: (event, known_s)}
        self._lookahead = None

    def add_events(self, events: Iterable[GridEvent], scenario_start_s: float) -> None:
        for ev in events:
            self.add_event(ev, ev.known_from_s(scenario_start_s))

    def cancel_event(self, event_id: str) -> None:
        """Drop an event (safe from another thread, as `add_event`)."""
        if event_id not in self._events:
            raise InputError(f"no event {event_id!r}; known: {', '.join(self._events) or 'none'}")
        self._events = {k: v for k, v in self._events.items() if k != event_id}
        self._lookahead = None

    def events(self) -> dict[str, tuple[GridEvent, float]]:
        """The events taken and not cancelled: id -> (event, known from [epoch s]); a snapshot."""
        return self._events

    def event_windows(self, t_s: float) -> list[dict]:
        """The events known by `t_s`: each one's cut [start_s, end_s) and the quiet window around it
        in which new load is unwelcome (its baseline window before, its snap-back guard after), as
        the site's status gives them to a fleet coordinator placing batch jobs."""
        st = self.settings
        return [{"id": ev.id, "start_s": ev.start.timestamp(), "end_s": ev.end.timestamp(),
                 "quiet_from_s": ev.start.timestamp() - st.baseline_window_s,
                 "quiet_until_s": ev.end.timestamp() + st.snapback_guard_s}
                for ev, known_s in self.events().values() if known_s <= t_s]

    def timeline(self, t_s: float) -> TargetTimeline:
        """Targets as known at `t_s`."""
        resolved = [
            self._resolved(ev, self._baseline_w(ev, t_s)) for ev, known_s in self.events().values() if known_s <= t_s
        ]
        return TargetTimeline.build(resolved, self.site.interconnection_limit_w, self.settings)

    def _resolved(self, ev: GridEvent, baseline_w: float) -> ResolvedEvent:
        cached = self._resolved_cache.get(ev.id)
        if cached is None or cached.event is not ev or cached.baseline_w != baseline_w:
            cached = self._resolved_cache[ev.id] = ResolvedEvent(ev, baseline_w)
        return cached

    def _baseline_w(self, ev: GridEvent, t_s: float) -> float:
        if ev.baseline_w is not None:
            return ev.baseline_w
        if ev.id in self.baselines_w:
            return self.baselines_w[ev.id]
        if self.settings.baseline_source == "unconstrained" and self._history:
            estimate = self._history.mean()
        else:
            estimate = self._unconstrained_site_w(t_s)
        if t_s >= ev.start.timestamp():
            self.baselines_w[ev.id] = estimate
            self._lookahead = None
        return estimate

    # --- the loop ----------------------------------------------------------------------------
    def step(self, t_s: float) -> Decision:
        self.sync_jobs(t_s)
        tel = self.driver.read()
        if tel.job_ids != self.fleet.ids:
            raise DriverError("telemetry and job list differ: the plant changed between discover() and read()")
        miners_w = self.miners.read().total_w if self.miners else 0.0
        job_w = float(np.sum(tel.job_power_w))
        if self.meter is not None:
            site_w = self.meter()
            # IT power no job draws, as the meter sees it (idle GPUs, other devices, what the
            # drivers' estimates miss): not the planner's to shed
            other_w = max(0.0, float(self.site.it_power_w(site_w - miners_w)) - job_w)
        else:
            site_w = tel.site_power_w + miners_w
            other_w = max(0.0, tel.it_power_w - job_w)  # e.g. GPUs idle in their pool
        self.budget.record(self._last_t_s, t_s, tel.throughput)
        dt_s, self._last_t_s = t_s - self._last_t_s, t_s
        self._roll_windows(t_s)
        if self.journal:
            self.journal.telemetry(tel)
        under_way = self._pauses_under_way(tel)
        self._update_model_ratio(tel, ~under_way)
        timeline = self.timeline(t_s)
        # Aim for the lowest ceiling until the next tick's actions can take effect, so that
        # known steps down are met on time.
        target_w = float(timeline.ceiling_at(np.array([t_s, t_s + self.settings.interval_s + ACTUATION_S])).min())
        pre_ramp = False
        if self.settings.ramp_down_w_per_min is not None:
            ramped_w = self._ramped_down_w(t_s, timeline, site_w, self.settings.ramp_down_w_per_min)
            pre_ramp, target_w = ramped_w < target_w, min(target_w, ramped_w)
        if dt_s > 0 and not timeline.governs(t_s) and not pre_ramp:  # baselines: unconstrained power only
            self._history.add(site_w, dt_s)
        it_ceiling_w = float((self.site.it_power_w(target_w * (1 - self.site.margin)) - other_w) / self.model_ratio)
        it_ceiling_w -= self._pausing_excess_w(tel, under_way) / self.model_ratio
        ramp_w = self._ramp_up_w_per_min(t_s, timeline)
        if ramp_w is None:
            self._ramp_w = np.inf
        else:
            # A ceiling that climbs at the ramp limit: from the last tick's ceiling (an event's, after
            # it ends), and never more than RAMP_SLACK_S of climbing above the measured power. The
            # controller tracks it closed loop, without margin (it is a rate, not a level).
            rate_w_per_s = ramp_w / 60.0
            start_w = min(self._ramp_w, site_w + max(rate_w_per_s * RAMP_SLACK_S, self._largest_step_w()))
            self._ramp_w = start_w + rate_w_per_s * max(dt_s, self.settings.interval_s)
            it_ceiling_w = min(it_ceiling_w, (self.site.it_power_w(self._ramp_w) - other_w) / self.model_ratio)
            target_w = min(target_w, self._ramp_w)
            self._ramp_w = target_w  # the next tick climbs from the ceiling in force now
        if np.isfinite(target_w):
            # The tick under way counts as constrained: it is if the planner has anything to shed.
            floors = self.budget.floor(np.maximum(self._constrained_left_s(t_s, timeline), self.settings.interval_s))
        else:
            floors = np.ones(len(self.fleet))
        fleet, least = self.loaded_fleet()
        floors = np.maximum(floors, least)
        soon = [e.end_s for e in timeline.events if e.start_s - self.settings.defer_lookahead_s <= t_s <= e.end_s]
        queued = self.driver.queue()
        self.queued = queued = list(map(self.as_set, queued)) if self.tiers or self.times else queued
        held = self.deferral.decide(t_s, dt_s, queued, max(soon) if soon else None)
        upper_level_w = None
        if self.shifting is not None:
            # the work done: measured, else the model's at the caps in effect
            done = np.where(np.isnan(tel.throughput), self.fleet.throughput_at_cap(tel.cap_w) * tel.active,
                            tel.throughput)
            self.shifting.observe(t_s, self.jobs, self.fleet, done, dt_s)
            held = held | self.shifting.decide(t_s, self.jobs, queued, timeline)
            upper_level_w = self.shifting.upper_level_w(t_s, self.fleet)
            if fleet is not self.fleet:  # as `fleet` models it
                upper_level_w = fleet.idle_w + np.where(least > 0, least, 1.0) * (upper_level_w - fleet.idle_w)
        miner_in = None
        if self.miners:
            miner_in = self.miners.input(t_s, target_w * (1 - self.site.margin), self.site, self.fleet, tel)
        plan = self.planner.plan(
            PlanInput(
                t_s, fleet, self.site, timeline, it_ceiling_w, floors, self.budget.window_s, miner_in,
                upper_level_w,
            )
        )
        decision = Decision(
            t_s, site_w, target_w, it_ceiling_w, self.model_ratio, self.fleet.ids, floors, plan,
            tuple(e.event.id for e in timeline.active(t_s)), held,
        )
        if self.journal:
            self.journal.decision(decision)
        if self._applied is None or not (
            np.array_equal(self._applied[0], plan.cap_w)
            and np.array_equal(self._applied[1], plan.active)
            and self._applied[2] == held
        ):
            self.driver.apply(JobActions(self.fleet.ids, plan.cap_w, plan.active, held))
            self._applied = (plan.cap_w, plan.active, held)
        if self.miners:
            self.miners.apply(plan)
        return decision

    def curtail_to_least(self) -> None:
        """Every flexible job to its least power (the fail-safe when the plant can no longer be
        watched during an event); Flex 0 untouched, held jobs stay held."""
        cap, active = level_to_actions(self.fleet, self.fleet.hull_w[:, 0])
        held = self._applied[2] if self._applied else frozenset()
        self.driver.apply(JobActions(self.fleet.ids, cap, active, held))
        self._applied = (cap, active, held)
        if self.miners:
            self.miners.driver.apply(MinerActions(self.miners.fleet.ids, np.zeros(len(self.miners.fleet))))

    def shutdown(self) -> None:
        """Return every job (and miner) to normal."""
        self.driver.restore()
        if self.miners:
            self.miners.restore()
        self._applied = None

    # --- internals ---------------------------------------------------------------------------
    def _ramp_up_w_per_min(self, t_s: float, timeline: TargetTimeline) -> float | None:
        """The site's limit on rising power, or a lower one an event sets for the return after it
        (in force from the event's start until a climb at that rate from its target would be over)."""
        rates = [] if self.settings.ramp_up_w_per_min is None else [self.settings.ramp_up_w_per_min]
        for e in timeline.events:
            rate = e.event.ramp_up_w_per_min
            if rate is not None and e.start_s <= t_s <= e.end_s + 60.0 * e.baseline_w / rate:
                rates.append(rate)
        return min(rates, default=None)

    def _ramped_down_w(self, t_s: float, timeline: TargetTimeline, site_w: float, rate_w_per_min: float) -> float:
        """The ceiling now from which every known ceiling ahead is reached without falling faster
        than the limit: the site starts down early for an event it knows of. A ceiling in force now
        (an event with no notice) is not softened: the grid's order comes first."""
        span_s = min(60.0 * site_w / rate_w_per_min, PRE_RAMP_HORIZON_S)
        t = t_s + np.arange(0.0, span_s + PRE_RAMP_STEP_S, PRE_RAMP_STEP_S)
        return float(np.min(timeline.ceiling_at(t) + rate_w_per_min / 60.0 * (t - t_s)))

    def _largest_step_w(self) -> float:
        """Site watts of the largest single step up the plant can take: a whole paused job that
        cannot resize (a suspended Slurm job), else one GPU. The ramp ceiling keeps this much room
        above the measured power, or a job bigger than a few seconds of ramp would never fit under
        it (and the ceiling, following the power down, would ratchet the site to its least)."""
        f = self.fleet
        gpus = np.where(f.may_resize, 1, f.gpus)
        step_w = np.where(f.may_pause, gpus * (f.full_w - f.paused_w), 0.0)
        return float(step_w.max(initial=0.0)) * self.site.pue * self.model_ratio

    def _pauses_under_way(self, tel: Telemetry) -> np.ndarray:
        """Jobs told to pause whose pause has not taken effect yet (a checkpoint save, a suspend)."""
        if self._applied is None:
            return np.zeros(len(self.fleet), dtype=bool)
        return tel.active > self._applied[1] + 1e-9

    def _pausing_excess_w(self, tel: Telemetry, under_way: np.ndarray) -> float:
        """Measured power of the jobs still pausing above what they will draw paused: until their
        pause takes effect (a checkpoint save lasts about a minute), caps on the others, which act
        in a second, make up for it."""
        if not under_way.any():
            return 0.0
        paused_w = self.loaded_fleet()[0].job_power_w(tel.cap_w, self._applied[1]) * self.model_ratio
        return float(np.maximum(tel.job_power_w - paused_w, 0.0)[under_way].sum())

    def _update_model_ratio(self, tel: Telemetry, settled: np.ndarray) -> None:
        """Follow measured / modelled power of the `settled` jobs (a job still pausing reports
        itself active while it saves)."""
        modelled = float(self.loaded_fleet()[0].job_power_w(tel.cap_w, tel.active)[settled].sum())
        measured = float(np.sum(tel.job_power_w[settled]))
        if modelled <= 0 or measured <= 0:
            return
        ratio = measured / modelled
        tau_s = MODEL_RATIO_TAU_S if ratio >= self.model_ratio else MODEL_RATIO_TAU_DOWN_S
        self.model_ratio += min(1.0, self.settings.interval_s / tau_s) * (ratio - self.model_ratio)

    def _unconstrained_site_w(self, t_s: np.ndarray | float) -> np.ndarray:
        """Modelled site power if no job were slowed, at each time."""
        f = self.fleet
        t = np.atleast_1d(np.asarray(t_s, float))
        extra = f.gpus * (f.full_w - f.idle_w)
        running_extra = _interval_sum(self.win_start_s, self.win_end_s, extra, t)
        it = (float((f.gpus * f.idle_w).sum()) + running_extra) * self.model_ratio
        out = self.site.site_power_w(it)
        return out if np.ndim(t_s) else float(out[0])

    def _constrained_left_s(self, t_s: float, timeline: TargetTimeline) -> np.ndarray:
        """Seconds left in each job's window during which the known targets call for cuts."""
        if not timeline.events and timeline.limit_w is None:
            return np.zeros(len(self.fleet))
        known = tuple(e.event.id for e in timeline.events)  # an event just become known changes it
        if self._lookahead is None or t_s - self._lookahead[0] >= LOOKAHEAD_STEP_S or self._lookahead[1] != known:
            horizon_s = max(float(self.win_end_s.max(initial=t_s)), t_s) - t_s
            grid = t_s + np.arange(0.0, horizon_s + LOOKAHEAD_STEP_S, LOOKAHEAD_STEP_S)
            ceiling = timeline.ceiling_at(grid) * (1 - self.site.margin)
            constrained = ceiling < self._unconstrained_site_w(grid)
            cumulative = np.concatenate([[0.0], np.cumsum(constrained[:-1] * LOOKAHEAD_STEP_S)])
            self._lookahead = (t_s, known, grid, cumulative)
        _, _, grid, cum = self._lookahead
        lo = np.interp(np.maximum(t_s, self.win_start_s), grid, cum)
        hi = np.interp(self.win_end_s, grid, cum)
        return np.clip(hi - lo, 0.0, None)


def _interval_sum(starts: np.ndarray, ends: np.ndarray, weight: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Σ weight_j over jobs with start_j ≤ t < end_j, for each t (O((J + T) log J))."""
    o_start, o_end = np.argsort(starts), np.argsort(ends)
    cum_start = np.concatenate([[0.0], np.cumsum(weight[o_start])])
    cum_end = np.concatenate([[0.0], np.cumsum(weight[o_end])])
    started = cum_start[np.searchsorted(starts[o_start], t, side="right")]
    ended = cum_end[np.searchsorted(ends[o_end], t, side="right")]
    return started - ended


class _RunningWindow:
    """Duration-weighted mean of the last `window_s` seconds of samples added, O(1) per sample.
    Time not added (e.g. while an event shapes power) does not count towards the window."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()  # (value, seconds it stands for)
        self._sum = self._span_s = 0.0

    def add(self, value: float, duration_s: float) -> None:
        self._samples.append((value, duration_s))
        self._sum += value * duration_s
        self._span_s += duration_s
        while self._span_s - self._samples[0][1] >= self.window_s:
            v, d = self._samples.popleft()
            self._sum -= v * d
            self._span_s -= d

    def mean(self) -> float:
        return self._sum / self._span_s

    def __bool__(self) -> bool:
        return bool(self._samples)
