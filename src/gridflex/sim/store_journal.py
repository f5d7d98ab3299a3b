"""A simulated run written into a gridflex store, in the tables the live service writes
(events, telemetry, decisions), so that `gridflex settle` reads a simulated month exactly as a
live one. Rows are buffered and bulk-inserted in batches: a month of ticks takes seconds."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import inspect

from gridflex.errors import InputError
from gridflex.sim.journal import TraceJournal
from gridflex.store import Store
from gridflex.store.models import TelemetryRow

if TYPE_CHECKING:
    from gridflex.control.controller import Decision
    from gridflex.drivers.base import Telemetry
    from gridflex.sim.run import RunResult
    from gridflex.sim.scenarios import LoadedScenario

#: Rows buffered before a bulk insert.
BATCH_ROWS = 5000
#: The events' `source` in the store.
SOURCE = "scenario"
#: What a simulated site's power is read from (telemetry `source`, as the service's "drivers (slurm)").
SIM_SOURCE = "drivers (twin)"


def open_run_store(url: str, loaded: LoadedScenario) -> Store:
    """The store at `url`, migrated, empty of telemetry, with the scenario's events recorded as
    received (known from their notice)."""
    store = Store(url)
    try:
        store.migrate()
        if inspect(store.engine).has_table("telemetry") and store.count(TelemetryRow):
            raise InputError(f"--store: {url} already holds telemetry; give a new (empty) store for a simulated run")
        start_s = loaded.scenario.start.timestamp()
        for ev in loaded.scenario.events:
            store.add_event(ev, SOURCE, ev.known_from_s(start_s))
    except Exception:
        store.close()
        raise
    return store


class StoreJournal(TraceJournal):
    """The run's journal (see `TraceJournal`) that also writes every reading and decision to the
    store: telemetry every `every_s` of simulated time (0: every tick), decisions at the same
    cadence and at every tick while an event is active (the settlement's evidence). Telemetry rows
    say what the live service's say: the miners' power (None: the site has none) and the source
    (the twin's drivers; a simulated site has no meter)."""

    def __init__(self, store: Store, every_s: float = 0.0, *args, has_miners: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if every_s < 0:
            raise InputError(f"--store-every-s: {every_s} not allowed; must be >= 0 (0: every tick)")
        self.store, self.every_s, self.has_miners = store, float(every_s), has_miners
        self._last_written_s = -np.inf
        self._reading: Telemetry | None = None
        self._read_at = time.perf_counter()
        self._telemetry: list[dict] = []
        self._decisions: list[dict] = []
        self.rows_written = 0

    def telemetry(self, tel: Telemetry) -> None:
        super().telemetry(tel)
        self._reading, self._read_at = tel, time.perf_counter()

    def decision(self, d: Decision) -> None:
        planner_s = time.perf_counter() - self._read_at
        tel = self._reading
        super().decision(d)
        t = float(d.t_s)
        due = t - self._last_written_s >= self.every_s - 1e-9
        if due and tel is not None:
            self._last_written_s = t
            # the meter: the decision's site power (GPU plant and miners), read at this tick
            self._telemetry.append({
                "t_s": t, "site_power_w": float(d.site_power_w), "it_power_w": float(tel.it_power_w),
                "estimated": bool(tel.estimated), "job_power_w": np.round(tel.job_power_w, 1).tolist(),
                "miners_power_w": float(d.site_power_w - tel.site_power_w) if self.has_miners else None,
                "meter_power_w": None, "source": SIM_SOURCE,
            })
        if due or d.active_events:
            plan = d.plan
            self._decisions.append({
                "t_s": t, "site_power_w": float(d.site_power_w), "target_w": _finite(d.target_w),
                "it_ceiling_w": _finite(d.it_ceiling_w), "it_power_w": float(plan.it_power_w),
                "shortfall_w": float(plan.shortfall_w), "model_ratio": float(d.model_ratio), "planner_s": planner_s,
                "active_events": list(d.active_events), "broken_tier": list(plan.broken_tier),
                "notes": list(plan.notes), "cap_w": np.round(plan.cap_w, 1).tolist(),
                "active": np.round(plan.active, 4).tolist(),
            })
        if len(self._telemetry) + len(self._decisions) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.store.add_ticks(self._telemetry, self._decisions)
        self.rows_written += len(self._telemetry) + len(self._decisions)
        self._telemetry, self._decisions = [], []

    def close(self) -> None:
        self.flush()
        super().close()


def record_baselines(store: Store, result: RunResult) -> None:
    """The event baselines the controller fixed, as the live service records them."""
    store.set_event_baselines({e.event.id: e.baseline_w for e in result.timeline.events if np.isfinite(e.baseline_w)})


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
