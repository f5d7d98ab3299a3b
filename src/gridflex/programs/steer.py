"""Events aimed at the baseline their program settles on.

The controller's own baseline of a `reduction` event is the site's recent unconstrained power; a
program settles on its own baseline (X-of-Y days, meter before, regression) and measures the
reduction from it. An event matched to a program whose `event_target` is not `event` is handed to
the controller as soon as the program's baseline can be computed from the store's meter history
(every reading it needs is in: from the notice for X-of-Y and regression baselines, or when their
same-day adjustment window has closed; at the start for meter-before), with that baseline:

- `program_baseline`: a reduction is a fraction of the program's baseline;
- `obligation` (default): as `program_baseline`, and the ceiling is at most the program's baseline
  less the event's obligation (the commitment, or the accepted bid), so that the reduction the
  settlement measures meets it.

The baseline is the program's mean over the intervals settlement measures (the event's hold, from
the program's response time after the notice): the performance factor is the mean reduction
there. A dispatch of back-to-back events is baselined as one, as settlement does. The store keeps
the event as received; the controller gets the steered one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gridflex.control.controller import Controller
from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.programs.match import which_program
from gridflex.programs.meter import day_matrix, local_dates_between
from gridflex.programs.model import Enrolment, FlexBids
from gridflex.programs.records import read_load
from gridflex.programs.settle import dispatches, event_baseline
from gridflex.sim.scenarios import LoadedScenario
from gridflex.sim.store_journal import SOURCE
from gridflex.store import EventRecord, Store

log = logging.getLogger(__name__)
S_PER_DAY = 86400.0


@dataclass(frozen=True)
class _Pending:
    """An event to steer, its program and its dispatch."""

    record: EventRecord
    program: object  # the matched program
    dispatch: tuple[float, float, float]  # (start_s, end_s, known_from_s) of the dispatch it is part of

    @property
    def ready_s(self) -> float:
        """When every meter reading the program's baseline needs is in."""
        ms, (start_s, _, known_s) = self.program.measurement, self.dispatch
        if ms.method == "meter_before_after":
            return start_s
        if ms.adjustment == "none":
            return known_s
        anchor = min(known_s, start_s) if ms.adjustment_from == "notice" else start_s
        return max(known_s, anchor - ms.adjustment_gap_s)


class ProgramTargets:
    """Steers the program-matched events of one site. `flush` makes the journal's buffered
    readings reach the store before a baseline is computed (a simulated run's batched writes)."""

    def __init__(self, store: Store, enrolment: Enrolment, flush: Callable[[], None] | None = None):
        self.store, self.enrolment, self.flush = store, enrolment, flush
        self._records: dict[str, tuple[EventRecord, object]] = {}  # every event added, not cancelled: (record, program)
        self._steer: set[str] = set()  # ids of the events still to steer
        self._pending: list[_Pending] = []  # those events with their dispatch, soonest ready first
        self.baselines_w: dict[str, float] = {}  # event id -> the program baseline it was steered on
        self._lock = threading.Lock()  # events arrive from the API's threads; `apply` runs in the tick

    @classmethod
    def for_scenario(cls, store: Store, enrolment: Enrolment, loaded: LoadedScenario,
                     flush: Callable[[], None] | None = None) -> ProgramTargets:
        """For a simulated run (`simulate --store --programs`): the scenario's events, as the store holds them."""
        targets = cls(store, enrolment, flush)
        for ev in loaded.scenario.events:
            targets.add(ev, SOURCE, ev.known_from_s(loaded.scenario.start.timestamp()))
        return targets

    def add(self, ev: GridEvent, source: str, known_from_s: float) -> None:
        rec = EventRecord(ev, source, "active", "", known_from_s, None, 0.0)
        name = which_program(ev, source, known_from_s, self.enrolment).program
        prog = self.enrolment.get(name) if name else None
        with self._lock:
            self._records[ev.id] = (rec, prog)
            if prog is not None and prog.event_target != "event":
                self._steer.add(ev.id)
            self._plan()

    def cancel(self, event_id: str) -> None:
        with self._lock:
            self._records.pop(event_id, None)
            self._steer.discard(event_id)
            self._plan()

    def _plan(self) -> None:
        """Each event to steer with the dispatch it is part of (back-to-back events of its program)."""
        self._pending = []
        for ev_id in self._steer:
            rec, prog = self._records[ev_id]
            same = sorted((r for r, p in self._records.values() if p is prog),
                          key=lambda r: (r.event.start, r.event.id))
            chain = dispatches(same)[[r.event.id for r in same].index(ev_id)]
            self._pending.append(_Pending(rec, prog, chain))
        self._pending.sort(key=lambda p: p.ready_s)

    def apply(self, controller: Controller, t_s: float) -> None:
        """Hand the controller every pending event whose program baseline can now be computed."""
        pending = self._pending
        if not pending or pending[0].ready_s > t_s:
            return
        with self._lock:
            due = [p for p in self._pending if p.ready_s <= t_s]
            self._steer.difference_update(p.record.event.id for p in due)
            self._plan()
        if self.flush:
            self.flush()
        for p in due:
            ev_id = p.record.event.id
            try:
                baseline_w = self._baseline_w(p)
            except InputError as e:
                log.warning("event %s: no %s baseline (%s); its target stays the event's own", ev_id,
                            p.program.name, e)
                continue
            steered = steered_event(p.record.event, p.program, baseline_w)
            if steered is None:
                continue
            with self._lock:  # `cancel` waits for the swap: an event cancelled meanwhile is not brought back
                if ev_id not in self._records or ev_id not in controller.events():
                    continue
                controller.cancel_event(ev_id)
                controller.add_event(steered, p.record.known_from_s)
            controller.baselines_w[ev_id] = baseline_w
            self.baselines_w[ev_id] = baseline_w
            log.info("event %s: aimed at program %s's baseline %.0f W: ceiling %.0f W", ev_id, p.program.name,
                     baseline_w, steered.target.power_w)

    def _baseline_w(self, p: _Pending) -> float:
        """The program's baseline, from the store's meter history, averaged over the event's hold."""
        prog, ev = p.program, p.record.event
        ms = prog.measurement
        start_s, end_s, known_s = p.dispatch
        if ms.method == "meter_before_after":
            first_s = start_s - ms.before_s
            ms = ms.model_copy(update={"after_s": 0.0})  # the meter after is not in yet: the before alone
        else:
            first_s = start_s - (ms.lookback_days + 2) * S_PER_DAY
        iv = ms.interval_s
        load = read_load(self.store, (first_s // iv * iv, end_s + iv), iv)
        event_days = set().union(*(local_dates_between(r.event.start.timestamp(), r.event.end.timestamp(), prog.tz)
                                   for r in self.store.events()))
        b = event_baseline(ms, load, day_matrix(load, prog.tz), start_s, end_s, known_s, event_days, prog.holidays)
        measured_s = max(ev.hold_start.timestamp(), p.record.known_from_s + prog.response_s)  # as settle_event
        starts = np.arange(np.ceil(measured_s / iv) * iv, ev.hold_end.timestamp() - iv + 1e-6, iv)
        if not len(starts):  # less than an interval measured: the interval it starts in
            starts = np.array([np.floor(measured_s / iv) * iv])
        values = b.at(starts)
        if not np.isfinite(values).any():
            raise InputError(f"the {b.method} baseline has no value in the event's hold period")
        return float(np.nanmean(values))


def steered_event(ev: GridEvent, prog, baseline_w: float) -> GridEvent | None:
    """`ev` as the controller should pursue it under `prog`, given the program's baseline (None:
    nothing to change: an absolute ceiling needs no baseline unless the obligation lowers it)."""
    if ev.target.power_w is not None:
        ceiling_w = ev.target.power_w
    else:
        ceiling_w = baseline_w * (1 - ev.target.reduction)
    if prog.event_target == "obligation":
        obligation_w = prog.committed_w
        if isinstance(prog, FlexBids):
            bid = prog.bid(ev.id)
            obligation_w = bid.reduction_w if bid else 0.0
        ceiling_w = min(ceiling_w, baseline_w - obligation_w)
    elif ev.target.power_w is not None:
        return None
    if ceiling_w >= baseline_w:
        return None
    return GridEvent.model_validate(
        {**ev.model_dump(), "target": {"power_w": max(0.0, ceiling_w)}, "baseline_w": baseline_w})
