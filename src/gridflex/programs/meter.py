"""Interval meter data: telemetry samples averaged into settlement intervals, and laid out as a
local-day × interval-of-day matrix (the shape every customer baseline method works on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from gridflex.errors import InputError

S_PER_DAY = 86400


@dataclass(frozen=True)
class IntervalLoad:
    """Mean power per interval on a regular UTC grid; NaN where the meter has too few samples."""

    start_s: np.ndarray  # [n] interval starts, epoch seconds
    power_w: np.ndarray  # [n]
    interval_s: float

    def window(self, start_s: float, end_s: float) -> np.ndarray:
        """Mask of the intervals lying inside [start_s, end_s)."""
        return (self.start_s >= start_s) & (self.start_s + self.interval_s <= end_s)

    def mean_w(self, start_s: float, end_s: float) -> float:
        """Mean power over the intervals in [start_s, end_s) (NaN when none has data)."""
        v = self.power_w[self.window(start_s, end_s)]
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


class IntervalAccumulator:
    """Interval means built from samples fed in chunks (in time order), so a month of 2-s telemetry
    never has to be held at once: memory grows with the number of intervals, not of samples."""

    def __init__(self, interval_s: float, start_s: float, end_s: float):
        if interval_s <= 0:
            raise InputError(f"interval_s: {interval_s} not allowed; must be > 0")
        self.interval_s, self.start_s = float(interval_s), float(start_s)
        self.n = int(np.ceil((end_s - start_s) / interval_s))
        self.sums = np.zeros(self.n)
        self.counts = np.zeros(self.n, dtype=np.int64)
        self.first = np.full(self.n, np.inf)
        self.last = np.full(self.n, -np.inf)
        self.step_s: float | None = None  # typical sample spacing, from the first chunk with two samples

    def add(self, t_s: np.ndarray, power_w: np.ndarray) -> None:
        t, p = np.asarray(t_s, float), np.asarray(power_w, float)
        keep = (t >= self.start_s) & (t < self.start_s + self.n * self.interval_s) & np.isfinite(p)
        t, p = t[keep], p[keep]
        if self.step_s is None and len(t) > 1:
            self.step_s = float(np.median(np.diff(t)))
        k = ((t - self.start_s) // self.interval_s).astype(int)
        self.sums += np.bincount(k, weights=p, minlength=self.n)
        self.counts += np.bincount(k, minlength=self.n)
        np.minimum.at(self.first, k, t)
        np.maximum.at(self.last, k, t)

    def result(self, min_coverage: float = 0.5) -> IntervalLoad:
        """Mean per interval; NaN where the samples span less than `min_coverage` of it (the span
        of the samples inside the interval plus one typical spacing)."""
        step = min(self.step_s or self.interval_s, self.interval_s)
        covered = np.where(self.counts > 0, self.last - self.first + step, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums / self.counts
        starts = self.start_s + self.interval_s * np.arange(self.n)
        return IntervalLoad(starts, np.where(covered >= min_coverage * self.interval_s, mean, np.nan), self.interval_s)


def interval_means(
    t_s: np.ndarray, power_w: np.ndarray, interval_s: float, start_s: float, end_s: float, min_coverage: float = 0.5
) -> IntervalLoad:
    """Average samples (at any, even irregular, rate) into intervals [start_s + k·interval_s, ...)."""
    acc = IntervalAccumulator(interval_s, start_s, end_s)
    acc.add(t_s, power_w)
    return acc.result(min_coverage)


@dataclass(frozen=True)
class DayMatrix:
    """Interval load as rows of local days and columns of intervals of the local day."""

    days: np.ndarray  # [D] local dates as day ordinals (date.toordinal())
    power_w: np.ndarray  # [D, S] NaN where there is no reading
    start_s: np.ndarray  # [D, S] UTC start of each cell, NaN where the local clock skips it
    interval_s: float
    tz: ZoneInfo

    def row(self, day: date) -> int:
        hit = np.flatnonzero(self.days == day.toordinal())
        if not len(hit):
            raise InputError(f"no meter data on {day.isoformat()}")
        return int(hit[0])

    def weekday(self) -> np.ndarray:
        """Day of week of each row, Monday = 0."""
        return (self.days - 1) % 7  # ordinal 1 (0001-01-01) was a Monday


def day_matrix(load: IntervalLoad, tz: str | ZoneInfo) -> DayMatrix:
    """Lay out `load` by local day and interval of the local day (mean of duplicates at DST fall-back)."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    if S_PER_DAY % load.interval_s:
        raise InputError(f"interval_s: {load.interval_s} must divide a day (86400 s)")
    local_s = load.start_s + utc_offsets_s(load.start_s, zone)
    day_index = np.floor_divide(local_s, S_PER_DAY).astype(int)
    slot = ((local_s - day_index * S_PER_DAY) // load.interval_s).astype(int)
    days, row = np.unique(day_index, return_inverse=True)
    shape = (len(days), int(S_PER_DAY // load.interval_s))
    ok = np.isfinite(load.power_w)
    sums = np.zeros(shape)
    counts = np.zeros(shape)
    np.add.at(sums, (row[ok], slot[ok]), load.power_w[ok])
    np.add.at(counts, (row[ok], slot[ok]), 1)
    starts = np.full(shape, np.nan)
    starts[row, slot] = load.start_s
    with np.errstate(invalid="ignore", divide="ignore"):
        power = sums / counts
    epoch_ordinal = date(1970, 1, 1).toordinal()
    return DayMatrix(days + epoch_ordinal, power, starts, load.interval_s, zone)


def utc_offsets_s(t_s: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """The local UTC offset (s) at each instant; looked up once per distinct hour."""
    hours, inverse = np.unique(np.floor_divide(np.asarray(t_s, float), 3600).astype(np.int64), return_inverse=True)
    per_hour = np.array(
        [datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(tz).utcoffset().total_seconds() for h in hours]
    )
    return per_hour[inverse] if len(hours) else np.zeros(0)


def local_date(t_s: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t_s, UTC).astimezone(tz).date()


def local_dates_between(start_s: float, end_s: float, tz: ZoneInfo) -> set[date]:
    """Every local date that [start_s, end_s) touches."""
    first, last = local_date(start_s, tz), local_date(max(start_s, end_s - 1e-6), tz)
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}
