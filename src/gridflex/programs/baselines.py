"""Customer baseline load (CBL) methods: what the site would have drawn without the event.

All methods are pure functions of interval meter data (`meter.IntervalLoad` / `meter.DayMatrix`)
and return a `Baseline` on the event day's intervals, with the days used and why others were not.

- `x_of_y`: the mean, interval by interval, of X of the Y most recent eligible days: all of them
  (10-of-10), the X with the highest load in the event window (high 5-of-10), or the middle X
  (middle 8-of-10 drops the highest and the lowest). Eligible: same day type (weekday, or
  weekend/holiday), not an event day, not a holiday, within `lookback_days` before the event day.
- `adjust`: same-day adjustment over a window before the event (usually ending a gap before the
  event or its notice): additive (baseline + actual − baseline) or multiplicative
  (baseline × actual / baseline), capped at ± `cap` of the window's baseline.
- `meter_before_after`: a flat baseline, the mean load just before the event (and, optionally,
  averaged with the mean just after it).
- `regression`: ordinary least squares of load on interval-of-day and day-of-week dummies over the
  recent non-event, non-holiday days, predicted for the event day (weather-free).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Literal

import numpy as np

from gridflex.errors import InputError
from gridflex.programs.meter import DayMatrix, IntervalLoad

Select = Literal["all", "high", "middle"]


@dataclass(frozen=True)
class Baseline:
    method: str
    start_s: np.ndarray  # [S] UTC interval starts
    power_w: np.ndarray  # [S]
    days_used: tuple[date, ...] = ()
    days_skipped: tuple[tuple[date, str], ...] = ()
    adjustment: dict = field(default_factory=dict)

    def at(self, start_s: np.ndarray) -> np.ndarray:
        """The baseline at the given interval starts (NaN where it has none)."""
        out = np.full(len(start_s), np.nan)
        idx = np.searchsorted(self.start_s, start_s)
        ok = idx < len(self.start_s)
        ok[ok] = self.start_s[idx[ok]] == np.asarray(start_s)[ok]
        out[ok] = self.power_w[idx[ok]]
        return out


def is_weekday(day: date, holidays: Collection[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def eligible_days(
    m: DayMatrix,
    event_day: date,
    needed_slots: np.ndarray,
    y: int,
    lookback_days: int,
    excluded: Collection[date] = (),
    holidays: Collection[date] = (),
) -> tuple[list[date], list[tuple[date, str]]]:
    """The up to `y` most recent eligible days before `event_day` (newest first), and the days
    within the lookback that were passed over, each with its reason."""
    want_weekday = is_weekday(event_day, holidays)
    used: list[date] = []
    skipped: list[tuple[date, str]] = []
    have = {int(d): i for i, d in enumerate(m.days)}
    for back in range(1, lookback_days + 1):
        if len(used) == y:
            break
        day = event_day - timedelta(days=back)
        if day in holidays:
            skipped.append((day, "holiday"))
            continue
        if is_weekday(day, holidays) != want_weekday:
            continue  # another day type: not a candidate, not worth listing
        reason = ""
        if day in excluded:
            reason = "event day"
        elif day.toordinal() not in have:
            reason = "no meter data"
        elif not np.isfinite(m.power_w[have[day.toordinal()], needed_slots]).all():
            reason = "meter data missing in the event window"
        if reason:
            skipped.append((day, reason))
        else:
            used.append(day)
    return used, skipped


def x_of_y(
    m: DayMatrix,
    event_day: date,
    event_slots: np.ndarray,
    x: int,
    y: int,
    select: Select = "all",
    lookback_days: int = 45,
    excluded: Collection[date] = (),
    holidays: Collection[date] = (),
) -> Baseline:
    """X-of-Y day average over every interval of `event_day`; `event_slots` (intervals of the day)
    rank the days for `high` and `middle`. Fewer than Y eligible days: X of those found (at least X)."""
    if not 1 <= x <= y:
        raise InputError(f"x, y: {x}-of-{y} not allowed; need 1 <= x <= y")
    days, skipped = eligible_days(m, event_day, event_slots, y, lookback_days, excluded, holidays)
    if len(days) < x:
        raise InputError(
            f"{x}-of-{y} baseline for {event_day}: only {len(days)} eligible day(s) in the {lookback_days} days"
            f" before it (need {x}); keep more history in the store or lengthen lookback_days"
        )
    rows = np.array([m.row(d) for d in days])
    window_w = np.nanmean(m.power_w[np.ix_(rows, event_slots)], axis=1)
    order = np.argsort(-window_w, kind="stable")  # highest first
    drop = len(days) - x
    if select == "all":
        x = len(days)
        chosen = order
    elif select == "high":
        chosen = order[:x]
    elif select == "middle":
        chosen = order[drop - drop // 2 : len(days) - drop // 2]  # drop the highest and the lowest
    else:
        raise InputError(f"select: {select!r} not allowed; allowed: all, high, middle")
    profile = m.power_w[rows[chosen]].mean(axis=0)
    used = tuple(sorted((days[i] for i in chosen), reverse=True))
    left_out = [(days[i], f"not among the {select} {x}") for i in np.setdiff1d(order, chosen)]
    label = f"{select} {x}-of-{y}" if select != "all" else f"{x}-of-{y}"
    return _on_day(m, event_day, label, profile, used, tuple(skipped + left_out))


def adjust(
    b: Baseline,
    load: IntervalLoad,
    window_start_s: float,
    window_end_s: float,
    kind: Literal["additive", "multiplicative"],
    cap: float | None,
) -> Baseline:
    """Same-day adjustment from the window [window_start_s, window_end_s) before the event.
    Additive: + (actual − baseline), capped at ± cap × baseline; multiplicative: × actual / baseline,
    clipped to [1 − cap, 1 + cap]. No data in the window: no adjustment, and the reason is kept."""
    actual_w = load.mean_w(window_start_s, window_end_s)
    inside = (b.start_s >= window_start_s) & (b.start_s + load.interval_s <= window_end_s)
    base_w = float(np.nanmean(b.power_w[inside])) if inside.any() else float("nan")
    info = {"kind": kind, "cap": cap, "window_start_s": window_start_s, "window_end_s": window_end_s,
                "actual_w": actual_w, "baseline_w": base_w}
    if not (np.isfinite(actual_w) and np.isfinite(base_w) and base_w > 0):
        return replace(b, adjustment=info | {"applied": None, "note": "no meter data or baseline in the window"})
    hi = np.inf if cap is None else cap
    if kind == "additive":
        raw = actual_w - base_w
        applied = float(np.clip(raw, -hi * base_w, hi * base_w))
        power = b.power_w + applied
    elif kind == "multiplicative":
        raw = actual_w / base_w
        applied = float(np.clip(raw, 1 - hi, 1 + hi))
        power = b.power_w * applied
    else:
        raise InputError(f"kind: {kind!r} not allowed; allowed: additive, multiplicative")
    capped = applied != raw
    cap_text = f", capped at ±{cap:.0%}" if cap is not None else ""
    return replace(b, method=f"{b.method}, {kind} adjustment{cap_text}", power_w=power,
                   adjustment=info | {"raw": raw, "applied": applied, "capped": bool(capped)})


def meter_before_after(
    load: IntervalLoad, event_start_s: float, event_end_s: float, before_s: float, after_s: float = 0.0
) -> Baseline:
    """A flat baseline over the event's intervals: the mean load over `before_s` before the start,
    averaged with the mean over `after_s` after the end when `after_s` > 0."""
    before = load.mean_w(event_start_s - before_s, event_start_s)
    level = before
    method = f"meter before ({before_s / 60:.0f} min)"
    if after_s > 0:
        level = (before + load.mean_w(event_end_s, event_end_s + after_s)) / 2
        method = f"meter before/after ({before_s / 60:.0f} + {after_s / 60:.0f} min)"
    if not np.isfinite(level):
        raise InputError(f"{method}: no meter data around the event starting at {event_start_s:.0f}")
    starts = load.start_s[load.window(event_start_s, event_end_s)]
    return Baseline(method, starts, np.full(len(starts), level))


def regression(
    m: DayMatrix,
    event_day: date,
    lookback_days: int = 28,
    excluded: Collection[date] = (),
    holidays: Collection[date] = (),
) -> Baseline:
    """OLS of load on interval-of-day and day-of-week dummies over the non-event, non-holiday days
    within `lookback_days` before `event_day`, predicted for every interval of `event_day`."""
    first = (event_day - timedelta(days=lookback_days)).toordinal()
    day_list = [date.fromordinal(int(d)) for d in m.days]
    skipped = tuple(
        (d, "holiday" if d in holidays else "event day")
        for d in day_list
        if first <= d.toordinal() < event_day.toordinal() and (d in holidays or d in excluded)
    )
    train = np.array([first <= d.toordinal() < event_day.toordinal() and not (d in holidays or d in excluded)
                      for d in day_list])
    rows = np.flatnonzero(train)
    values = m.power_w[rows]
    r, s = np.nonzero(np.isfinite(values))
    dow = m.weekday()[rows][r]
    want = event_day.weekday()
    if want not in set(dow.tolist()):
        raise InputError(
            f"regression baseline for {event_day}: no {event_day:%A} among the usable days in the"
            f" {lookback_days} days before it; lengthen lookback_days"
        )
    n_slots = values.shape[1]
    dows = np.unique(dow)
    others = dows[dows != want]  # the event's weekday is the reference level: its prediction is the slot term
    design = np.zeros((len(r), n_slots + len(others)))
    design[np.arange(len(r)), s] = 1.0
    design[:, n_slots:] = dow[:, None] == others[None, :]
    coef, *_ = np.linalg.lstsq(design, values[r, s], rcond=None)
    profile = np.where(np.bincount(s, minlength=n_slots) > 0, coef[:n_slots], np.nan)
    used = tuple(sorted((day_list[i] for i in rows), reverse=True))
    return _on_day(m, event_day, f"regression on {len(rows)} day(s): interval-of-day + day-of-week", profile,
                   used, skipped)


def _on_day(m: DayMatrix, day: date, method: str, profile: np.ndarray, used, skipped) -> Baseline:
    starts = m.start_s[m.row(day)]
    ok = np.isfinite(starts) & np.isfinite(profile)
    return Baseline(method, starts[ok], profile[ok], tuple(used), tuple(skipped))
