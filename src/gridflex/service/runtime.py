"""The live controller: drives the plant in wall-clock time, journals to the store before acting,
and resumes active events and spent flex budgets after a restart."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
from pydantic import ValidationError

from gridflex.control.controller import Controller, Decision, WindowRule, check_load_floor
from gridflex.control.shifting import Shifter
from gridflex.drivers.base import Telemetry
from gridflex.drivers.dry_run import DryRunDriver
from gridflex.drivers.meter import make_meter
from gridflex.errors import DriverError, InputError
from gridflex.model.events import GridEvent
from gridflex.model.site import FLEX_FACTOR, Job
from gridflex.plan.registry import make_planner
from gridflex.programs.steer import ProgramTargets
from gridflex.service.config import ServiceConfig
from gridflex.service.limits import check_event_limits
from gridflex.service.metrics import ServiceMetrics
from gridflex.service.plant import SiteSpec, build_driver, build_miners
from gridflex.signals.live import live_source
from gridflex.store.db import JobState, Store
from gridflex.store.models import DecisionRow, TelemetryRow

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
#: Consecutive failed ticks (plant unreadable, store unreachable) after which every job is restored.


def rolling_windows(epoch_s: float, window_s: float) -> WindowRule:
    """Flex budgets of live jobs: rolling windows of `window_s` from the job's start (or from the
    service's first start), cut at the job's end."""

    def window(job: Job, seen_s: float, t_s: float) -> tuple[float, float]:
        anchor = job.start.timestamp() if job.start else epoch_s
        start = anchor + max(0, int((t_s - anchor) // window_s)) * window_s
        end = start + window_s
        if job.end:
            end = min(end, job.end.timestamp())
            start = min(start, end)
        return start, end

    return window


@dataclass(frozen=True)
class Status:
    """The latest tick, as served by the API."""

    t_s: float
    site_power_w: float
    target_w: float | None
    it_power_w: float
    planned_it_power_w: float
    active_events: tuple[str, ...]
    jobs: tuple[dict, ...]
    driver: str
    driver_ok: bool
    read_at_s: float  # when the plant was read (epoch s): the reading's age is now minus this
    estimated: bool  # the power is estimated from a model, not measured
    error: str = ""  # why the latest tick failed ("" when it did not)
    miners: tuple[dict, ...] = ()  # each miner: id, power_w, target_w, mode, responding
    queued_jobs: int = 0
    held_jobs: tuple[str, ...] = ()
    queue: tuple[dict, ...] = ()  # each queued job: id, gpus, workload, submit_s, work_s, power_w
    free_gpus: int | None = None
    site_power_source: str = "drivers"  # what the site power is read from: the site meter or the drivers
    carbon_g_per_kwh: float | None = None  # the time-shifting signal now, as known now (None: none, or unreadable)
    price_usd_per_mwh: float | None = None
    event_windows: tuple[dict, ...] = ()  # each known event: id, start_s, end_s, quiet_from_s, quiet_until_s


class LiveService:
    """Owns the controller, the driver and the store; every public method is thread-safe."""

    def __init__(
        self,
        config: ServiceConfig,
        spec: SiteSpec,
        store: Store,
        dry_run: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        self.config, self.store, self.clock = config, store, clock
        self.control = spec.control
        self.metrics = ServiceMetrics()
        self._lock = threading.RLock()
        now = clock()
        epoch = store.meta("epoch_s")
        self.epoch_s = float(epoch) if epoch else now
        if not epoch:
            store.set_meta("epoch_s", repr(now))
        saved = store.job_states()
        self.spec = spec
        driver, simulated = build_driver(config.driver, spec, now)
        self.driver = DryRunDriver(driver) if dry_run else driver
        self.driver.restore()  # start from normal, whatever a crash left behind
        self.miners, simulated_miners = build_miners(config, spec, now, dry_run)
        self._simulated = simulated + simulated_miners
        self.meter = make_meter(config.meter) if config.meter else None
        # events of a program aimed at the program's baseline (docs/programs.md)
        self.program_targets = ProgramTargets(store, config.programs) if config.programs.programs else None
        self.journal = StoreJournal(store, self.metrics, self._accounts, self._power_sources)
        last_s = store.last_decision_s()
        self._last_tick_s = now if last_s is None else min(last_s, now)
        c = self.controller = Controller(
            spec.site, self.control, self.driver, make_planner(config.planner), spec.curves,
            rolling_windows(self.epoch_s, config.budget_window_s), self._last_tick_s, self.journal, self.miners,
            meter=(lambda: self.meter.read()[0]) if self.meter else None,
        )
        if config.shifting is not None:
            c.shifting = _live_shifter(config, spec, self.control.release_stagger_s, clock)
        c.tiers.update({k: s.flex_tier for k, s in saved.items() if s.flex_tier is not None})
        for job_id, saved_set in store.job_overrides().items():  # what the API set, before a restart
            if "load_floor" in saved_set:
                c.set_load_floor(job_id, saved_set.pop("load_floor"))
            if saved_set:
                c.times[job_id] = saved_set
        c.carried.update({k: (s.window_start_s, s.window_end_s, s.delivered_s, s.elapsed_s) for k, s in saved.items()})
        for rec in store.events(status="active"):
            c.add_event(rec.event, rec.known_from_s)
            if rec.baseline_w is not None:
                c.baselines_w[rec.event.id] = rec.baseline_w
            if self.program_targets:
                self.program_targets.add(rec.event, rec.source, rec.known_from_s)
        c.sync_jobs(now)
        if c.events():
            log.info("resumed %d active event(s): %s", len(c.events()), ", ".join(c.events()))
        self.status: Status | None = None
        #: What the site meter reads beyond the drivers and miners at the last tick (W; 0 without a meter).
        self.unmetered_w = 0.0
        self._jobs_view: list[dict] | None = None
        self._stop = threading.Event()
        self._pruned_s = 0.0
        self._failed_ticks = 0
        self._thread: threading.Thread | None = None

    @property
    def fleet(self):
        """The jobs the controller drives now."""
        return self.controller.fleet

    # --- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gridflex-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and return every job to normal."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            self.controller.shutdown()
        log.info("stopped; every job restored to normal")

    def _run(self) -> None:
        interval_s = self.control.interval_s
        next_s = self.clock()
        while not self._stop.is_set():
            try:
                self.tick(self.clock())
            except Exception as e:  # e.g. the store is unreachable: nothing was acted on; keep the loop alive
                log.exception("control tick failed")
                self._tick_failed(f"tick failed: {e}")
            next_s += interval_s
            now = self.clock()
            if next_s < now - interval_s:  # fell behind: skip ticks rather than bunch them
                next_s = now
            self._stop.wait(max(0.0, next_s - now))

    def tick(self, t_s: float) -> Decision | None:
        with self._lock:
            if self.program_targets:
                self.program_targets.apply(self.controller, t_s)
            self._expire_events(t_s)
            self._prune(t_s)
            for plant in self._simulated:  # a twin runs in wall-clock time; real plants live in it
                plant.advance_to(t_s)
            try:
                decision = self.controller.step(t_s)
            except DriverError as e:
                log.error("driver error: %s", e)
                self.metrics.driver_errors.inc()
                self._tick_failed(f"driver: {e}")
                return None
            finally:
                self._last_tick_s = t_s
            self._failed_ticks = 0
            self._publish(decision)
            return decision

    def _tick_failed(self, why: str) -> None:
        """Count a failed tick; after `control.failed_ticks` in a row, act on the fail-safe rule
        (the plant is unwatched): hold the last plan, curtail to the least, or restore."""
        if self.status is not None:  # the last reading stays, and says it is no longer healthy
            self.status = replace(self.status, driver_ok=False, error=why)
        self.metrics.tick_errors.inc()
        self._failed_ticks += 1
        rule = self.control.fail_safe
        if self._failed_ticks != self.control.failed_ticks or rule == "hold":
            if self._failed_ticks == self.control.failed_ticks:
                log.warning("%d failed ticks in a row (%s): fail-safe 'hold', the last plan stays", self._failed_ticks, why)
            return
        try:
            with self._lock:
                if rule == "curtail":
                    self.controller.curtail_to_least()
                else:
                    self.controller.shutdown()
            log.warning("%d failed ticks in a row (%s): fail-safe %r applied", self._failed_ticks, why, rule)
        except Exception:
            log.exception("fail-safe %r after failed ticks failed", rule)

    # --- events -------------------------------------------------------------------------------
    def check_event(self, ev: GridEvent, t_s: float) -> None:
        """Refuse an event the site cannot carry out, naming the field."""
        if ev.end.timestamp() <= t_s:
            raise InputError(f"end: the event ended at {ev.end.isoformat()}, before now")
        full_w, least_w = self._power_range_w()
        check_event_limits(ev, t_s, self.config.events, full_w, least_w)
        if ev.target.power_w is not None:
            if ev.target.power_w >= full_w:
                raise InputError(
                    f"target.power_w: {ev.target.power_w:.0f} W is not below the site's full power ({full_w:.0f} W);"
                    " allowed: a ceiling between the least the site can draw and its full power"
                )
            if ev.target.power_w < least_w:
                raise InputError(
                    f"target.power_w: {ev.target.power_w:.0f} W is below the least the site can draw"
                    f" ({least_w:.0f} W with every flexible job at its lowest power)"
                )
        elif full_w * (1 - ev.target.reduction) < least_w:
            raise InputError(
                f"target.reduction: {ev.target.reduction} would take the site below the least it can draw"
                f" ({least_w:.0f} W of {full_w:.0f} W); allowed: at most {1 - least_w / full_w:.3f}"
            )

    def add_event(self, ev: GridEvent, source: str = "api") -> None:
        """Check and persist a new event and hand it to the controller, without waiting on a tick
        in progress (it may be stuck on a slow driver): the controller takes it from its next tick."""
        now = self.clock()
        self.check_event(ev, now)
        known_s = now if ev.notice_s is None else min(now, ev.start.timestamp() - ev.notice_s)
        self.store.add_event(ev, source, known_s)  # refuses an id seen before
        if self.program_targets:
            self.program_targets.add(ev, source, known_s)
        self.controller.add_event(ev, known_s)
        log.info("event %s from %s: %s..%s, target %s", ev.id, source, ev.start, ev.end, ev.target)

    def cancel_event(self, event_id: str, reason: str = "cancelled") -> None:
        """Persist the cancel and lift the event, without waiting on a tick in progress."""
        if self.program_targets:  # first: an event being aimed at its program's baseline is back in the controller
            self.program_targets.cancel(event_id)
        if event_id not in self.controller.events():
            raise KeyError(event_id)
        self.store.set_event_status(event_id, "cancelled", reason)
        try:
            self.controller.cancel_event(event_id)
        except InputError:  # it ended meanwhile
            pass
        log.info("event %s cancelled (%s)", event_id, reason)

    def active_event_ids(self) -> list[str]:
        return list(self.controller.events())  # a snapshot: never waits on a tick

    # --- jobs ---------------------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        """Jobs and their accounts as of the last tick (or tier change): never waits on a tick."""
        view = self._jobs_view
        if view is None:
            with self._lock:
                view = self._jobs_view = self._job_rows()
        return view

    def _job_rows(self) -> list[dict]:
        """Every job and its account now (the caller holds the lock)."""
        c = self.controller
        used, perf = c.budget.used(), c.budget.performance()
        return [
            {
                "id": job.id,
                "workload": job.workload,
                "gpus": job.gpus,
                "flex_tier": job.flex_tier,
                "flex_factor": job.flex_factor,
                "flex_budget_used": float(used[i]),
                "performance": float(perf[i]),
                "window_start_s": float(c.win_start_s[i]),
                "window_end_s": float(c.win_end_s[i]),
                "controllable": bool(c.fleet.controllable[i]),
                "deadline": job.deadline,
                "begin": job.begin,
            }
            for i, job in enumerate(c.jobs)
        ]

    def change_job(self, job_id: str, flex_tier: int | None = None, deadline: datetime | None = None,
                   begin: datetime | None = None, load_floor: float | None = None) -> dict:
        """Change a running job's flex tier (its budget account over the current window carries
        on) and load floor (`Controller.set_load_floor`, sent by a fleet coordinator), and/or a
        running or queued job's deadline and earliest start (time shifting reads them from the
        next tick). All are stored and outlast a restart. Everything is checked before
        anything is applied. Returns the job's row (`jobs()`), or a queued job's. KeyError: no such job."""
        if flex_tier is not None and flex_tier not in FLEX_FACTOR:
            raise InputError(f"flex_tier: {flex_tier}; allowed: {', '.join(map(str, FLEX_FACTOR))}")
        if load_floor is not None:
            check_load_floor(load_floor)
        times = {k: v for k, v in (("deadline", deadline), ("begin", begin)) if v is not None}
        if deadline is not None and deadline.timestamp() <= self.clock():
            raise InputError(f"deadline: {deadline.isoformat()} has passed")
        with self._lock:
            c = self.controller
            running = job_id in self.fleet.ids
            job = next((j for j in (*c.jobs, *c.queued) if j.id == job_id), None)
            if job is None:
                raise KeyError(job_id)
            if flex_tier is not None and not running:
                raise InputError(f"flex_tier: job {job_id!r} is queued; its tier can be set once it runs")
            if load_floor is not None and not running:
                raise InputError(f"load_floor: job {job_id!r} is queued; its load floor can be set once it runs")
            if times:
                try:
                    Job.model_validate({**job.model_dump(), **times})
                except ValidationError as e:
                    raise InputError(f"{'/'.join(times)}: {e.errors()[0]['msg']}") from None
            if flex_tier is not None:
                states = self._job_states(c)
                states[job_id] = JobState(**{**states[job_id].__dict__, "flex_tier": flex_tier})
                self.store.save_job_states(list(states.values()))
                c.set_tier(job_id, flex_tier)
            if load_floor is not None and c.load_floors.get(job_id, 0.0) == load_floor:
                load_floor = None  # the coordinator says it again every tick: nothing to store or log
            if times or load_floor is not None:
                self.store.save_job_override(job_id, times, load_floor)  # stored, then applied
            if times:
                c.set_times(job_id, times)
            if load_floor is not None:
                c.set_load_floor(job_id, load_floor)
            self._jobs_view = self._job_rows()
            row = next((r for r in self._jobs_view if r["id"] == job_id), None)
            if row is None:
                row = self._queued(c.as_set(job))
        changed = [f"{k} set to {v}" for k, v in ({"flex_tier": flex_tier, "load_floor": load_floor} | times).items()
                   if v is not None]
        if changed:
            log.info("job %s: %s", job_id, ", ".join(changed))
        return row

    # --- internals ----------------------------------------------------------------------------
    def _prune(self, t_s: float) -> None:
        """Drop telemetry and decisions older than `store.history_s`, once an hour."""
        if t_s - self._pruned_s >= PRUNE_EVERY_S:
            self.store.prune(t_s - self.config.store.history_s)
            self._pruned_s = t_s

    def _expire_events(self, t_s: float) -> None:
        """Events past their end and snap-back guard are done."""
        guard_s = self.control.snapback_guard_s
        for event_id, (ev, _) in self.controller.events().items():
            if ev.end.timestamp() + guard_s < t_s:
                self.store.set_event_status(event_id, "completed")
                self.controller.cancel_event(event_id)

    def _power_range_w(self) -> tuple[float, float]:
        """Site power with every job (and miner) at full power, and with every flexible job at its
        least and every miner asleep; with a site meter, both plus the load it sees that no driver
        reads (`unmetered_w`)."""
        f, site = self.fleet, self.spec.site
        full_w = float(site.site_power_w(float((f.gpus * f.full_w).sum()))) + self.unmetered_w
        least_w = float(site.site_power_w(float((f.gpus * f.hull_w[:, 0]).sum()))) + self.unmetered_w
        if self.miners is not None:
            full_w += float(self.miners.fleet.power_w.sum())
            least_w += float(self.miners.fleet.sleep_w.sum())
        return full_w, least_w

    def _job_states(self, c: Controller) -> dict[str, JobState]:
        return {
            job.id: JobState(
                job.id,
                job.flex_tier,
                float(c.win_start_s[i]),
                float(c.win_end_s[i]),
                float(c.budget.delivered_s[i]),
                float(c.budget.elapsed_s[i]),
            )
            for i, job in enumerate(c.jobs)
        }

    def _accounts(self) -> tuple[list[JobState], dict[str, float]]:
        """What the journal stores with each decision: budget accounts and frozen baselines."""
        c = self.controller
        return list(self._job_states(c).values()), dict(c.baselines_w)

    def _queued(self, job: Job) -> dict:
        """A queued job as the API shows it (and the fleet coordinator places it: `fleet/placement.py`)."""
        curve, site = self.spec.curves.get(job.workload), self.spec.site
        return {"id": job.id, "gpus": job.gpus, "workload": job.workload, "flex_tier": job.flex_tier,
                "deadline": job.deadline, "begin": job.begin,
                "submit_s": job.submit.timestamp() if job.submit else None, "work_s": job.duration_s,
                "power_w": job.gpus * (curve.full_power_w - curve.idle_w) * site.pue if curve else None}

    def _free_gpus(self) -> int | None:
        pools = self.spec.site.gpu_pools
        if not pools:
            return None
        return sum(p.gpus for p in pools.values()) - sum(j.gpus for j in self.controller.jobs)

    def _miners_w(self) -> float:
        m = self.miners.last if self.miners is not None else None
        return 0.0 if m is None else float(m.total_w)

    def _power_sources(self) -> tuple[float | None, float | None, str]:
        """This tick's miner power (None: no miners), meter reading (None: no meter), and what the
        site power is read from."""
        miners_w = self._miners_w() if self.miners is not None else None
        if self.meter is None:
            return miners_w, None, f"drivers ({self.driver.name})"
        return miners_w, self.meter.last[0] if self.meter.last else None, self.meter.name

    def _publish(self, d: Decision) -> None:
        tel = self.journal.last_tel
        target = d.target_w if np.isfinite(d.target_w) else None
        used = self.controller.budget.used()
        jobs = tuple(
            {
                "id": job_id,
                "cap_w": float(d.plan.cap_w[i]),
                "active": float(d.plan.active[i]),
                "power_w": float(tel.job_power_w[i]),
                "flex_budget_used": float(used[i]),
                "flex_tier": int(self.fleet.flex_tier[i]),
                "throughput": float(tel.throughput[i]) if np.isfinite(tel.throughput[i]) else None,
            }
            for i, job_id in enumerate(d.job_ids)
        )
        health = self.driver.health()
        self._jobs_view = self._job_rows()
        miners = ()
        if self.miners is not None and self.miners.last is not None:
            m = self.miners.last
            self.metrics.observe_miners(m)
            miners = tuple(
                {"id": i, "power_w": float(p), "target_w": float(t), "mode": mode.value, "responding": bool(ok)}
                for i, p, t, mode, ok in zip(m.unit_ids, m.power_w, m.target_w, self.miners.fleet.mode(m.target_w),
                                             m.responding)
            )
        queued = len(self.controller.queued)  # the plant's queue as this tick read it
        self.metrics.observe_queue(queued, len(d.held))
        if self.meter is not None:
            self.unmetered_w = max(0.0, d.site_power_w - tel.site_power_w - self._miners_w())
        self.status = Status(
            d.t_s,
            d.site_power_w,
            target,
            tel.it_power_w,
            d.plan.it_power_w,
            d.active_events,
            jobs,
            self.driver.name,
            health.ok,
            tel.t_s,
            bool(tel.estimated) and self.meter is None,
            miners=miners,
            site_power_source=self._power_sources()[2],
            queued_jobs=queued,
            held_jobs=tuple(sorted(d.held)),
            **self._grid_signal(d.t_s),
            queue=tuple(self._queued(job) for job in self.controller.queued),
            free_gpus=self._free_gpus(),
            event_windows=tuple(self.controller.event_windows(d.t_s)),
        )
        self.metrics.observe(d, tel, self.fleet, used, self.control.tolerance)

    def _grid_signal(self, t_s: float) -> dict[str, float | None]:
        """The shifting signal now, under its unit's name (a fleet coordinator places load by it)."""
        shifter = self.controller.shifting
        if shifter is None:
            return {}
        name = "price_usd_per_mwh" if self.config.shifting.live.kind == "ercot" else "carbon_g_per_kwh"
        return {name: shifter.value_now(t_s)}


class StoreJournal:
    """Writes every reading and decision to the store before the controller acts on it. A tick's
    telemetry row is written with its decision: the site power as the controller saw it (the
    meter's reading, else the drivers' plus the miners'), the miners' power, the meter's reading
    and the source, from `sources()`."""

    def __init__(
        self, store: Store, metrics: ServiceMetrics, accounts: Callable[[], tuple[list[JobState], dict[str, float]]],
        sources: Callable[[], tuple[float | None, float | None, str]],
    ):
        self.store, self.metrics, self.accounts, self.sources = store, metrics, accounts, sources
        self.last_tel: Telemetry | None = None
        self._read_at = time.perf_counter()

    def telemetry(self, tel: Telemetry) -> None:
        self._read_at = time.perf_counter()
        self.last_tel = tel

    def _telemetry_row(self, d: Decision) -> TelemetryRow:
        tel = self.last_tel
        miners_w, meter_w, source = self.sources()
        return TelemetryRow(
            t_s=tel.t_s,
            site_power_w=d.site_power_w,
            it_power_w=tel.it_power_w,
            estimated=bool(tel.estimated) and meter_w is None,  # a metered site power is measured
            job_power_w=[round(float(x), 1) for x in tel.job_power_w],
            miners_power_w=miners_w,
            meter_power_w=meter_w,
            source=source,
        )

    def decision(self, d: Decision) -> None:
        planner_s = time.perf_counter() - self._read_at
        self.metrics.planner_latency.observe(planner_s)
        row = DecisionRow(
            t_s=d.t_s,
            site_power_w=d.site_power_w,
            target_w=_finite(d.target_w),
            it_ceiling_w=_finite(d.it_ceiling_w),
            it_power_w=d.plan.it_power_w,
            shortfall_w=d.plan.shortfall_w,
            model_ratio=d.model_ratio,
            planner_s=planner_s,
            active_events=list(d.active_events),
            broken_tier=list(d.plan.broken_tier),
            notes=list(d.plan.notes),
            cap_w=[round(float(x), 1) for x in d.plan.cap_w],
            active=[round(float(x), 4) for x in d.plan.active],
        )
        self.store.add_decision(row, *self.accounts(), telemetry=self._telemetry_row(d))


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None




def _live_shifter(config: ServiceConfig, spec: SiteSpec, stagger_s: float, clock: Callable[[], float]) -> Shifter:
    """Time shifting on the live forecast the config names (it is fetched at the first decision)."""
    if config.shifting.live is None:
        raise InputError("shifting.live: the service reads its signal from a live source (kind: gb-carbon, watttime,"
                         " electricity-maps or ercot); `signal` names recorded weeks, for simulation")
    source = live_source(config.shifting.live, clock, settings=config.shifting)
    return Shifter(config.shifting, spec.site, spec.curves, stagger_s, known=lambda t_s: source)
