"""Settlement of one program for one month, from the store alone: per event the baseline, the
metered load, the reduction per interval, the performance factor, payment and penalty, and the
evidence (the event as received, how it was matched, every decision with its time)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from gridflex.errors import InputError
from gridflex.model.economics import J_PER_MWH
from gridflex.programs import baselines as bl
from gridflex.programs.match import which_program
from gridflex.programs.meter import DayMatrix, IntervalLoad, day_matrix, local_date, local_dates_between
from gridflex.programs.model import CapacityProgram, CoincidentPeak, Enrolment, FlexBids, Measurement
from gridflex.programs.peaks import avoided_transmission_usd
from gridflex.programs.records import Records, event_dict, read_records
from gridflex.store import EventRecord, Store


@dataclass
class EventSettlement:
    event_id: str
    matched: str  # how the event was assigned to the program
    received: dict  # the event as received, with its source and state
    hold_s: tuple[float, float]
    obligation_w: float
    price_usd_per_mwh: float
    is_test: bool = False
    baseline: bl.Baseline | None = None
    error: str = ""  # why there is no baseline
    start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [k] intervals of the hold period
    metered_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    baseline_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    performance_factor: float = float("nan")  # mean reduction / obligation (not clipped)
    delivered_mwh: float = 0.0  # reduction clipped to [0, obligation], summed
    payment_usd: float = 0.0
    penalty_usd: float = 0.0
    decisions: list[dict] = field(default_factory=list)  # from the notice to the end

    @property
    def reduction_w(self) -> np.ndarray:
        return self.baseline_w - self.metered_w


@dataclass
class PeakSettlement:
    """One coincident-peak interval: the load the site avoided there and what that saves."""

    start_s: float
    metered_w: float
    baseline_w: float
    avoided_usd: float
    method: str
    error: str = ""


@dataclass
class MonthStatement:
    program: object
    month: str
    period_s: tuple[float, float]
    events: list[EventSettlement]
    peaks: list[PeakSettlement]
    load: IntervalLoad  # the interval meter series over the month (plots and evidence)
    capacity_usd: float
    performance_factor: float  # the month's: mean of event factors clipped to [0, 1] (1 with no events)
    records: Records
    unmatched: list[tuple[str, str]]  # events of the month that are not this program's, and why

    @property
    def energy_usd(self) -> float:
        return sum(e.payment_usd for e in self.events)

    @property
    def penalty_usd(self) -> float:
        return sum(e.penalty_usd for e in self.events)

    @property
    def avoided_usd(self) -> float:
        return sum(p.avoided_usd for p in self.peaks)

    @property
    def net_usd(self) -> float:
        return self.capacity_usd + self.energy_usd + self.avoided_usd - self.penalty_usd


def month_bounds(month: str, tz) -> tuple[float, float]:
    if not re.fullmatch(r"\d{4}-\d{2}", month) or not 1 <= int(month[5:]) <= 12:
        raise InputError(f"--month: {month!r} not allowed; expected YYYY-MM, e.g. 2026-07")
    y, m = int(month[:4]), int(month[5:])
    start = datetime(y, m, 1, tzinfo=tz)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=tz)
    return start.timestamp(), end.timestamp()


def settle_month(store: Store, enrolment: Enrolment, program: str, month: str) -> MonthStatement:
    prog = enrolment.get(program)
    ms = prog.measurement
    m0, m1 = month_bounds(month, prog.tz)
    hist0 = (m0 - (ms.lookback_days + 2) * 86400) // ms.interval_s * ms.interval_s
    hist1 = m1 + 86400
    rec = read_records(store, (hist0, hist1), (m0 - 86400, m1 + 86400), ms.interval_s)
    load = rec.load
    matrix = day_matrix(load, prog.tz)
    event_days = set().union(*(local_dates_between(r.event.start.timestamp(), r.event.end.timestamp(), prog.tz)
                               for r in rec.events))
    mine, unmatched = [], []
    for r in rec.events:
        if not m0 <= r.event.start.timestamp() < m1:
            continue
        match = which_program(r.event, r.source, r.known_from_s, enrolment)
        if match.program == prog.name:
            mine.append((r, match.how))
        else:
            unmatched.append((r.event.id, match.how if match.program is None else f"program {match.program}"))
    events = [settle_event(prog, r, how, chain, load, matrix, event_days, rec.decisions)
              for (r, how), chain in zip(mine, dispatches([r for r, _ in mine]))]
    peaks = settle_peaks(prog, load, matrix, event_days, m0, m1) if isinstance(prog, CoincidentPeak) else []
    factors = [np.clip(e.performance_factor, 0, 1) if np.isfinite(e.performance_factor) else 0.0
               for e in events if e.obligation_w > 0]
    month_pf = float(np.mean(factors)) if factors else 1.0
    scale = month_pf if prog.penalty.capacity_at_risk and month_pf < prog.penalty.threshold else 1.0
    capacity = prog.payment.capacity_usd_per_mw_month * prog.committed_w / 1e6 * scale
    window = load.window(m0, m1)
    month_load = IntervalLoad(load.start_s[window], load.power_w[window], load.interval_s)
    return MonthStatement(prog, month, (m0, m1), events, peaks, month_load, capacity, month_pf, rec, unmatched)


def dispatches(records: list[EventRecord]) -> list[tuple[float, float, float]]:
    """For each event (sorted by start), the (start_s, end_s, known_from_s) of the dispatch it is part
    of: back-to-back or overlapping events (an OpenADR event's intervals) are one dispatch, so the
    baseline of the later ones is taken before the first, not from the reduced load of the earlier."""
    chains: list[list[EventRecord]] = []
    for r in records:
        if chains and r.event.start <= max(c.event.end for c in chains[-1]):
            chains[-1].append(r)
        else:
            chains.append([r])
    return [(min(c.event.start for c in chain).timestamp(), max(c.event.end for c in chain).timestamp(),
             min(c.known_from_s for c in chain)) for chain in chains for _ in chain]


def settle_event(prog, r: EventRecord, how: str, dispatch: tuple[float, float, float], load: IntervalLoad,
                 matrix: DayMatrix, event_days: set, decisions: list[dict]) -> EventSettlement:
    """One event, measured over its hold period (once the program's response time has passed) against
    the baseline of the dispatch it is part of."""
    ev = r.event
    if dispatch[:2] != (ev.start.timestamp(), ev.end.timestamp()):
        how += f"; part of a dispatch from {datetime.fromtimestamp(dispatch[0], UTC):%Y-%m-%d %H:%M} to" \
               f" {datetime.fromtimestamp(dispatch[1], UTC):%H:%M} UTC, baselined as one"
    obligation, price = prog.committed_w, prog.payment.energy_usd_per_mwh
    note = ""
    if isinstance(prog, FlexBids):
        bid = prog.bid(ev.id)
        obligation, price = (bid.reduction_w, bid.price_usd_per_mwh) if bid else (0.0, 0.0)
        note = "" if bid else f"no bid for event {ev.id!r}: nothing owed, nothing paid"
    # measured from when full reduction is due: the end of the event's ramp, and not before the
    # program's response time after the instruction (the event becoming known)
    hold = (max(ev.hold_start.timestamp(), r.known_from_s + prog.response_s), ev.hold_end.timestamp())
    s = EventSettlement(
        ev.id, how, event_dict(r), hold, obligation, price,
        is_test=isinstance(prog, CapacityProgram) and prog.test_prefix in ev.id, error=note,
        decisions=[d for d in decisions if r.known_from_s - 60 <= d["t_s"] < ev.end.timestamp()],
    )
    try:
        s.baseline = event_baseline(prog.measurement, load, matrix, *dispatch, event_days, prog.holidays)
    except InputError as e:
        s.error = str(e)
        return s
    inside = load.window(*hold)
    s.start_s, s.metered_w = load.start_s[inside], load.power_w[inside]
    s.baseline_w = s.baseline.at(s.start_s)
    if obligation > 0 and len(s.start_s):
        red = s.reduction_w
        s.performance_factor = float(np.nanmean(red) / obligation) if np.isfinite(red).any() else 0.0
        s.delivered_mwh = float(np.nansum(np.clip(red, 0, obligation)) * load.interval_s / J_PER_MWH)
        s.payment_usd = s.delivered_mwh * price
        if s.performance_factor < prog.penalty.threshold:
            short_w = obligation * (1 - max(s.performance_factor, 0.0))
            s.penalty_usd = prog.penalty.usd_per_mw_short * short_w / 1e6
    return s


def event_baseline(ms: Measurement, load: IntervalLoad, matrix: DayMatrix, start_s: float, end_s: float,
                   known_from_s: float, event_days: set, holidays) -> bl.Baseline:
    """The program's baseline for an event [start_s, end_s) known from `known_from_s`."""
    if ms.method == "meter_before_after":
        return bl.meter_before_after(load, start_s, end_s, ms.before_s, ms.after_s)
    day = local_date(start_s, matrix.tz)
    if ms.method == "x_of_y":
        row = matrix.start_s[matrix.row(day)]
        slots = np.flatnonzero((row >= start_s) & (row < end_s))
        b = bl.x_of_y(matrix, day, slots, ms.x, ms.y, ms.select, ms.lookback_days, event_days, holidays)
    else:
        b = bl.regression(matrix, day, ms.lookback_days, event_days, holidays)
    if ms.adjustment == "none":
        return b
    anchor = min(known_from_s, start_s) if ms.adjustment_from == "notice" else start_s
    w1 = anchor - ms.adjustment_gap_s
    return bl.adjust(b, load, w1 - ms.adjustment_window_s, w1, ms.adjustment, ms.adjustment_cap)


def settle_peaks(prog: CoincidentPeak, load: IntervalLoad, matrix: DayMatrix, event_days: set, m0: float,
                 m1: float) -> list[PeakSettlement]:
    """Each published system-peak interval of the month: baseline (the program's method, the peak as
    a one-interval event with no notice) minus metered load, times the tariff's share of one peak."""
    out = []
    step = prog.measurement.interval_s
    for t in prog.peak_intervals:
        t_s = t.astimezone(UTC).timestamp()
        if not m0 <= t_s < m1:
            continue
        metered = load.mean_w(t_s, t_s + step)
        try:
            b = event_baseline(prog.measurement, load, matrix, t_s, t_s + step, t_s, event_days, prog.holidays)
        except InputError as e:
            out.append(PeakSettlement(t_s, metered, float("nan"), 0.0, "", str(e)))
            continue
        base = float(b.at(np.array([t_s]))[0])
        avoided_kw = (base - metered) / 1e3  # negative: the site drew more than its baseline at the peak
        if not np.isfinite(avoided_kw):
            out.append(PeakSettlement(t_s, metered, base, 0.0, b.method, "no meter data or baseline at the peak"))
            continue
        usd = avoided_transmission_usd(np.array([avoided_kw]), prog.transmission_usd_per_kw_year, prog.peaks_per_season)
        out.append(PeakSettlement(t_s, metered, base, usd, b.method))
    return out
