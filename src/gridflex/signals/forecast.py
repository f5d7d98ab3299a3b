"""Forecasts as first-class objects: what was known at an issue time about later times.

A `Forecast` holds vintages: row i says that at `issued_s[i]` the value at `target_s[i]` was
expected to be `values[i]`. `forecast_at(t)` returns the latest vintage issued at or before `t`
as a `StepSignal` (the one `at(t_s)` interface of `signals.prices`), so a planner asking at time
`t` can never read a value issued after `t`: rows issued later are cut off before anything else
is looked at. Where a source has only actuals, `persistence_forecast` builds a documented
forecast from what had been observed by each issue time (last value, or the same time of the
previous day), so a planner still sees no future it would not know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflex.errors import InputError
from gridflex.signals.prices import StepSignal

PERSISTENCE_METHODS = ("last", "yesterday")


@dataclass(frozen=True, eq=False)
class Forecast:
    """Vintages of a forecast, sorted by (issue time, target time)."""

    issued_s: np.ndarray
    target_s: np.ndarray
    values: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        issued, target, values = (np.asarray(a, float) for a in (self.issued_s, self.target_s, self.values))
        if not (len(issued) == len(target) == len(values)) or len(issued) == 0:
            raise InputError(f"{self.name or 'forecast'}: issued_s, target_s and values need the same non-zero length")
        if not np.all(np.isfinite(values)):
            raise InputError(f"{self.name or 'forecast'}: values must be finite numbers (drop missing rows)")
        order = np.lexsort((target, issued))
        issued, target, values = issued[order], target[order], values[order]
        same = (np.diff(issued) == 0) & (np.diff(target) == 0)
        if same.any():
            raise InputError(f"{self.name or 'forecast'}: two values for one (issue, target) time")
        for field, arr in (("issued_s", issued), ("target_s", target), ("values", values)):
            arr.setflags(write=False)
            object.__setattr__(self, field, arr)

    @property
    def issue_times_s(self) -> np.ndarray:
        """The distinct issue times, ascending."""
        return np.unique(self.issued_s)

    def latest_issue_s(self, now_s: float) -> float:
        """The last issue time at or before `now_s`."""
        n = int(np.searchsorted(self.issued_s, now_s, side="right"))
        if n == 0:
            raise InputError(
                f"{self.name or 'forecast'}: nothing issued by t={now_s:.0f}; first issue at {self.issued_s[0]:.0f}"
            )
        return float(self.issued_s[n - 1])

    def forecast_at(self, issued_s: float) -> StepSignal:
        """The latest vintage known at time `issued_s`, as a step signal over its target times.
        Only rows issued at or before `issued_s` are read."""
        n = int(np.searchsorted(self.issued_s, issued_s, side="right"))  # rows issued later: never looked at
        if n == 0:
            raise InputError(
                f"{self.name or 'forecast'}: nothing issued by t={issued_s:.0f}; "
                f"first issue at {self.issued_s[0]:.0f}"
            )
        first = int(np.searchsorted(self.issued_s[:n], self.issued_s[n - 1], side="left"))
        return StepSignal(self.target_s[first:n], self.values[first:n], f"{self.name}@{self.issued_s[n - 1]:.0f}")

    def lead_times_s(self) -> np.ndarray:
        """Target minus issue time of every row (how far ahead each value was forecast)."""
        return self.target_s - self.issued_s


def persistence_forecast(
    actual: StepSignal,
    issue_times_s: np.ndarray,
    horizon_s: float,
    step_s: float,
    method: str = "yesterday",
    report_delay_s: float = 0.0,
    name: str = "",
) -> Forecast:
    """A forecast made only from actuals observed by each issue time.

    A value of `actual` for time τ counts as observed at τ + `report_delay_s` (for an interval
    average: the end of its interval). `method` "last": every target gets the last observed
    value; "yesterday": each target gets the value observed at the same time of day on the
    latest day already observed (t - 24 h, or t - 48 h, ...)."""
    if method not in PERSISTENCE_METHODS:
        raise InputError(f"persistence method {method!r}: allowed {', '.join(PERSISTENCE_METHODS)}")
    if step_s <= 0 or horizon_s < step_s:
        raise InputError(f"persistence forecast: need 0 < step_s ({step_s}) <= horizon_s ({horizon_s})")
    issued = np.asarray(issue_times_s, float)
    leads = np.arange(step_s, horizon_s + step_s / 2, step_s)
    target = issued[:, None] + leads[None, :]
    latest = (issued - report_delay_s)[:, None]  # the newest sample time observed at issue
    i = np.searchsorted(actual.times_s, latest, side="right") - 1
    if np.any(i < 0):
        raise InputError(f"persistence forecast: an issue time comes before any observed {actual.name or 'actual'}")
    newest = actual.times_s[i]  # the newest sample observed by each issue time
    if method == "last":
        src = np.broadcast_to(newest, target.shape)
    else:
        days = np.ceil((target - newest) / 86400.0)
        src = target - np.maximum(days, 1) * 86400.0
    values = actual.at(src)
    return Forecast(
        np.broadcast_to(issued[:, None], target.shape).ravel(), target.ravel(), values.ravel(),
        name or f"{actual.name} persistence ({method})",
    )


@dataclass(frozen=True, eq=False)
class CorrectedForecast:
    """A forecast corrected by its last observed error: the latest vintage plus the error seen
    in the newest actual (actual - forecast), fading with lead time as exp(-lead / tau_s).
    Forecast errors persist for hours, so a planner that re-plans often gains from it; only
    actuals observed by the asking time (time + `report_delay_s`) are read."""

    forecast: Forecast
    actual: StepSignal
    tau_s: float = 3 * 3600.0
    report_delay_s: float = 0.0

    def forecast_at(self, issued_s: float) -> StepSignal:
        f = self.forecast.forecast_at(issued_s)
        i = int(np.searchsorted(self.actual.times_s, issued_s - self.report_delay_s, side="right")) - 1
        if i < 0:
            return f
        t_obs = self.actual.times_s[i]
        err = float(self.actual.values[i] - f.at(t_obs))
        lead = np.maximum(f.times_s - t_obs, 0.0)
        return StepSignal(f.times_s, f.values + err * np.exp(-lead / self.tau_s), f"{f.name} corrected")


@dataclass(frozen=True, eq=False)
class BlendedForecast:
    """A forecast combination: `weight` x one forecast + (1 - weight) x another, each the vintage
    known at the asking time (anything with `forecast_at`), on the union of their target times."""

    first: Forecast | CorrectedForecast
    second: Forecast | CorrectedForecast
    weight: float

    def forecast_at(self, issued_s: float) -> StepSignal:
        a, b = self.first.forecast_at(issued_s), self.second.forecast_at(issued_s)
        t = np.union1d(a.times_s, b.times_s)
        return StepSignal(t, self.weight * a.at(t) + (1 - self.weight) * b.at(t), f"{a.name} + {b.name}")


def as_known(forecast: Forecast, actual: StepSignal, corrected_tau_s: float | None = None,
             persistence_weight: float = 0.0, horizon_s: float = 172800.0) -> Forecast | CorrectedForecast | BlendedForecast:
    """What a planner may know of `forecast` given the `actual` series observed so far: corrected by
    its last observed error if `corrected_tau_s`; blended with same-time-yesterday persistence of the
    actuals (each counted as observed one step after its start) if `persistence_weight`. The same
    for recorded weeks and for a live source (whose actuals are the past day it publishes)."""
    known: Forecast | CorrectedForecast | BlendedForecast = forecast
    if corrected_tau_s is not None:
        known = CorrectedForecast(forecast, actual, corrected_tau_s)
    if persistence_weight > 0:
        step_s = float(np.median(np.diff(actual.times_s))) if len(actual.times_s) > 1 else 1800.0
        issues = np.arange(actual.times_s[0] + step_s, actual.times_s[-1] + 1.5 * step_s, step_s)  # each step observed
        yesterday = persistence_forecast(actual, issues, horizon_s, step_s, "yesterday", report_delay_s=step_s)
        known = BlendedForecast(known, yesterday, 1 - persistence_weight)
    return known
