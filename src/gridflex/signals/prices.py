"""Time-varying signals (power prices, hashprice) behind one `at(t_s)` interface.

A recorded series, a constant and a live source all answer `at(t_s)`, so simulation and live
operation read prices the same way (the pattern of vessim's `Signal.at`). `PolledSignal` turns
any fetch function (for example a gridstatus query returning the latest real-time prices) into
a live signal that refreshes itself and refuses to answer from data that has gone stale.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from gridflex.errors import GridflexError, InputError

#: Price series bundled with gridflex (name -> file under gridflex/data/prices).
BUILTIN_PRICES = {"ercot-hb-south-2024-08-20": "ercot-hb-south-2024-08-20.csv"}


class Signal(Protocol):
    def at(self, t_s: float | np.ndarray) -> np.ndarray:
        """Value at epoch second(s) `t_s`."""
        ...


@dataclass(frozen=True)
class ConstantSignal:
    value: float

    def at(self, t_s: float | np.ndarray) -> np.ndarray:
        return np.full(np.shape(t_s), float(self.value))


@dataclass(frozen=True, eq=False)
class StepSignal:
    """A recorded series: each value holds from its time until the next one. Before the first
    sample the first value holds; after the last, the last."""

    times_s: np.ndarray  # ascending epoch seconds
    values: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.times_s) == 0 or len(self.times_s) != len(self.values):
            raise InputError(f"{self.name or 'signal'}: needs at least one (time, value) pair")
        if np.any(np.diff(self.times_s) <= 0):
            raise InputError(f"{self.name or 'signal'}: times must be strictly ascending")

    def at(self, t_s: float | np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.times_s, np.asarray(t_s, float), side="right") - 1
        return self.values[np.clip(i, 0, len(self.values) - 1)]


class PolledSignal:
    """A live signal: `fetch()` returns the latest (times_s, values); it is called again when the
    last successful fetch is `refresh_s` old. A failing fetch keeps the last series until it is
    `max_age_s` old; after that `at` raises, so a controller never acts on a price it no longer has."""

    def __init__(
        self,
        fetch: Callable[[], tuple[np.ndarray, np.ndarray]],
        refresh_s: float = 300.0,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ):
        self.fetch, self.refresh_s, self.max_age_s, self.clock = fetch, refresh_s, max_age_s, clock
        self._series: StepSignal | None = None
        self._fetched_s = -np.inf

    def at(self, t_s: float | np.ndarray) -> np.ndarray:
        now = self.clock()
        if now - self._fetched_s >= self.refresh_s:
            try:
                times, values = self.fetch()
                self._series, self._fetched_s = StepSignal(np.asarray(times, float), np.asarray(values, float)), now
            except Exception as e:  # any source failure: keep the last series a while
                if self._series is None or now - self._fetched_s > self.max_age_s:
                    raise GridflexError(f"live signal: no usable data ({type(e).__name__}: {e})") from e
        return self._series.at(t_s)


def read_series_csv(text: str, source: str, time_column: str, value_column: str) -> StepSignal:
    """A series from CSV text. Times are ISO 8601 with a zone, or dates (taken as UTC midnight)."""
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise InputError(f"{source}: no rows")
    for col in (time_column, value_column):
        if col not in rows[0]:
            raise InputError(f"{source}: no column {col!r}; columns: {', '.join(rows[0])}")
    times, values = [], []
    for n, row in enumerate(rows, start=2):
        raw_v = row[value_column].strip()
        if not raw_v:
            continue  # a gap: the previous value holds
        try:
            t = datetime.fromisoformat(row[time_column].strip())
            v = float(raw_v)
        except ValueError as e:
            raise InputError(f"{source}, line {n}: {time_column!r}/{value_column!r}: {e}") from None
        if t.tzinfo is None:
            if len(row[time_column].strip()) > 10:
                raise InputError(f"{source}, line {n}: {time_column!r} needs a timezone (e.g. ...Z)")
            t = t.replace(tzinfo=UTC)
        times.append(t.timestamp())
        values.append(v)
    return StepSignal(np.array(times), np.array(values), source)


def load_prices(name_or_path: str, column: str = "rt_usd_per_mwh", base_dir: Path | None = None) -> StepSignal:
    """Power prices [USD/MWh]: a built-in series by name, or a CSV with `interval_start_utc`."""
    if name_or_path in BUILTIN_PRICES:
        text = resources.files("gridflex.data").joinpath("prices", BUILTIN_PRICES[name_or_path]).read_text()
    else:
        path = Path(name_or_path) if base_dir is None else base_dir / name_or_path
        try:
            text = path.read_text()
        except OSError as e:
            raise InputError(
                f"prices: cannot read {path}: {e.strerror}; built-in series: {', '.join(BUILTIN_PRICES)}"
            ) from None
    return read_series_csv(text, name_or_path, "interval_start_utc", column)


def load_hashprice(path: Path) -> StepSignal:
    """Daily hashprice [USD per TH/s per day] from a CSV in the btc-network-daily format
    (columns `Date`, `hashprice_usd_per_th_day`)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"hashprice: cannot read {path}: {e.strerror}") from None
    return read_series_csv(text, str(path), "Date", "hashprice_usd_per_th_day")
