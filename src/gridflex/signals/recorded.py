"""Recorded carbon and price series with their forecasts, from the project's real data.

Each loader returns a `Recorded`: the actuals as a `StepSignal` and a `Forecast` a planner may
read. Sources (see shared/data/*/SOURCE.txt; bundled slices in gridflex/data/signals/NOTICE.md):

- GB national carbon intensity (NESO Carbon Intensity API, average gCO2/kWh, half-hourly):
  the bundled week has the 48-h forecasts as actually issued (hourly, with gaps); the full-year
  file has only the API's last forecast per period, so for it the forecast is
  same-half-hour-yesterday persistence from the actuals.
- WattTime MOER, CAISO_NORTH (marginal gCO2/kWh, 5-min): the 65-min-ahead forecasts actually
  issued every 5 min.
- Electricity Maps hourly (average gCO2eq/kWh, direct) for ERCOT, PJM, CAISO, NYISO: actuals
  only; the forecast is same-hour-yesterday persistence.
- ERCOT HB_SOUTH prices (USD/MWh, 15-min): real-time actuals; the day-ahead market prices as
  the forecast, issued when ERCOT publishes them (13:30 Central the day before).

The shared folder is found at $GRIDFLEX_SHARED_DATA, else ../shared/data beside the repository
(the working directory of tests and benchmarks).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from gridflex.errors import InputError
from gridflex.signals.forecast import Forecast, persistence_forecast
from gridflex.signals.prices import StepSignal

HOUR_S = 3600.0
DAY_S = 86400.0
ERCOT_TZ = ZoneInfo("America/Chicago")
#: ERCOT publishes day-ahead market prices for day D at about 13:30 Central on day D-1.
ERCOT_DA_PUBLISHED = timedelta(hours=13, minutes=30)
EM_ZONES = ("US-TEX-ERCO", "US-MIDA-PJM", "US-CAL-CISO", "US-NY-NYIS")


@dataclass(frozen=True, eq=False)
class Recorded:
    """A recorded series and the forecast of it a planner may use."""

    actual: StepSignal
    forecast: Forecast
    unit: str  # "gCO2/kWh" or "USD/MWh"
    kind: str  # "carbon_average", "carbon_marginal" or "price"


def shared_data_dir() -> Path:
    """The shared real-data folder: $GRIDFLEX_SHARED_DATA, else ../shared/data."""
    return Path(os.environ.get("GRIDFLEX_SHARED_DATA", "../shared/data"))


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise InputError(
            f"{path}: {e.strerror}; set GRIDFLEX_SHARED_DATA to the folder holding the shared data"
        ) from None


def epoch_s(stamps: list[str], tz: ZoneInfo | None = None) -> np.ndarray:
    """Epoch seconds of ISO 8601 stamps; stamps without a zone are taken in `tz` (UTC if None)."""
    out = np.empty(len(stamps))
    for i, s in enumerate(stamps):
        t = datetime.fromisoformat(s.strip())
        if t.tzinfo is None:
            t = t.replace(tzinfo=tz or ZoneInfo("UTC"))
        out[i] = t.timestamp()
    return out


def _column(rows: list[dict[str, str]], name: str, source: str) -> list[str]:
    if rows and name not in rows[0]:
        raise InputError(f"{source}: no column {name!r}; columns: {', '.join(rows[0])}")
    return [r[name] for r in rows]


def _floats(raw: list[str]) -> np.ndarray:
    return np.array([float(v) if v.strip() not in ("", "nan", "NaN") else np.nan for v in raw])


def _step(times_s: np.ndarray, values: np.ndarray, name: str) -> StepSignal:
    ok = np.isfinite(values)
    return StepSignal(times_s[ok], values[ok], name)


def gb_carbon(path: Path | None = None) -> Recorded:
    """GB carbon intensity for 2023 (full year, shared folder). Actuals from the `actual`
    column; the forecast is same-half-hour-yesterday persistence issued every half hour
    (the file's `forecast` column is the API's last forecast per period, not as issued ahead)."""
    path = path or shared_data_dir() / "carbon-gb-2023" / "neso_2023_national_intensity.csv"
    rows = _rows(path)
    actual = _step(epoch_s(_column(rows, "from", str(path))), _floats(_column(rows, "actual", str(path))),
                   "carbon-gb-2023")
    issues = np.arange(actual.times_s[0] + DAY_S, actual.times_s[-1], 1800.0)
    forecast = persistence_forecast(actual, issues, 48 * HOUR_S, 1800.0, "yesterday", report_delay_s=1800.0)
    return Recorded(actual, forecast, "gCO2/kWh", "carbon_average")


def gb_carbon_week() -> Recorded:
    """A bundled week of GB carbon intensity (actuals 2023-03-14 to 03-23 UTC) with 111 48-h
    forecasts the NESO API actually issued between 2023-03-14 12:01 and 03-21 10:01 UTC
    (hourly where the archive that recorded them has a snapshot; its gaps are in the data NOTICE)."""
    base = resources.files("gridflex.data").joinpath("signals")
    act = list(csv.DictReader(base.joinpath("gb-carbon-2023-03-14-actual.csv").read_text().splitlines()))
    actual = _step(epoch_s([r["from_utc"] for r in act]), _floats([r["actual_g_per_kwh"] for r in act]),
                   "gb-carbon-week")
    fc = list(csv.DictReader(base.joinpath("gb-carbon-2023-03-14-issued.csv").read_text().splitlines()))
    forecast = Forecast(epoch_s([r["issued_utc"] for r in fc]), epoch_s([r["from_utc"] for r in fc]),
                        _floats([r["forecast_g_per_kwh"] for r in fc]), "gb-carbon-week issued")
    return Recorded(actual, forecast, "gCO2/kWh", "carbon_average")


def watttime_caiso_north(folder: Path | None = None) -> Recorded:
    """WattTime MOER for CAISO_NORTH, June-July 2023, with the forecasts actually issued
    (naive times in the files are UTC, as WattTime's API serves them)."""
    folder = folder or shared_data_dir() / "carbon-watttime-caiso-north-2023"
    act = _rows(folder / "watttime2023_caiso-north_actual.csv")
    actual = _step(epoch_s(_column(act, "time", "watttime actual")), _floats(_column(act, "Caiso_North", "")),
                   "watttime-caiso-north")
    fc = _rows(folder / "watttime2023_caiso-north_forecast.csv")
    forecast = Forecast(epoch_s(_column(fc, "request_time", "watttime forecast")),
                        epoch_s(_column(fc, "forecast_time", "watttime forecast")),
                        _floats(_column(fc, "Caiso_North", "watttime forecast")), "watttime-caiso-north issued")
    return Recorded(actual, forecast, "gCO2/kWh", "carbon_marginal")


def electricity_maps_hourly(zone: str, folder: Path | None = None, column: str = "direct") -> Recorded:
    """Electricity Maps hourly carbon intensity for 2023 (`column` "direct" or "LCA"); the
    forecast is same-hour-yesterday persistence issued every hour, 48 h ahead."""
    if zone not in EM_ZONES:
        raise InputError(f"zone {zone!r}: allowed {', '.join(EM_ZONES)}")
    if column not in ("direct", "LCA"):
        raise InputError(f"column {column!r}: allowed direct, LCA")
    path = (folder or shared_data_dir() / "carbon-us-iso-2023") / f"{zone}_2023_hourly.csv"
    rows = _rows(path)
    actual = _step(epoch_s(_column(rows, "Datetime (UTC)", str(path))),
                   _floats(_column(rows, f"Carbon Intensity gCO₂eq/kWh ({column})", str(path))), zone)
    issues = np.arange(actual.times_s[0] + DAY_S, actual.times_s[-1], HOUR_S)
    forecast = persistence_forecast(actual, issues, 48 * HOUR_S, HOUR_S, "yesterday", report_delay_s=HOUR_S)
    return Recorded(actual, forecast, "gCO2/kWh", "carbon_average")


def ercot_da_forecast(interval_start_s: np.ndarray, da_usd_per_mwh: np.ndarray, name: str) -> Forecast:
    """Day-ahead prices as a forecast: the vintage issued at 13:30 Central on day D-1 holds
    the day-ahead prices of days D-1 and D (all that is published by then and still ahead)."""
    local_days = sorted({datetime.fromtimestamp(t, ERCOT_TZ).date() for t in interval_start_s})
    day_start = {d: datetime(d.year, d.month, d.day, tzinfo=ERCOT_TZ).timestamp() for d in local_days}
    issued, target, values = [], [], []
    for d in local_days:
        prev = d - timedelta(days=1)
        issue = datetime(prev.year, prev.month, prev.day, tzinfo=ERCOT_TZ) + ERCOT_DA_PUBLISHED
        sel = interval_start_s >= day_start.get(prev, day_start[d])
        if d + timedelta(days=1) in day_start:
            sel &= interval_start_s < day_start[d + timedelta(days=1)]
        issued.append(np.full(sel.sum(), issue.timestamp()))
        target.append(interval_start_s[sel])
        values.append(da_usd_per_mwh[sel])
    return Forecast(np.concatenate(issued), np.concatenate(target), np.concatenate(values), f"{name} day-ahead")


def ercot_hb_south(path: Path | None = None) -> Recorded:
    """ERCOT HB_SOUTH prices, June 2024 - March 2025 (shared folder; local Central times)."""
    path = path or shared_data_dir() / "prices-ercot-hb-south-2024" / "ercot_hb_south_15min_2024-06-01_2025-03-27.csv"
    rows = _rows(path)
    t = epoch_s(_column(rows, "interval_start_local_CPT", str(path)), ERCOT_TZ)
    # the author's regular local grid fills the skipped spring-forward hour: keep rising times only
    keep = np.concatenate([[True], t[1:] > np.maximum.accumulate(t)[:-1]])
    rt = _floats(_column(rows, "hb_south_rt_spp_usd_per_mwh", str(path)))[keep]
    da = _floats(_column(rows, "hb_south_da_spp_usd_per_mwh", str(path)))[keep]
    t = t[keep]
    return Recorded(_step(t, rt, "ercot-hb-south rt"), ercot_da_forecast(t, da, "ercot-hb-south"), "USD/MWh", "price")


def ercot_week() -> Recorded:
    """A bundled week of ERCOT HB_SOUTH prices around the spike of 2024-08-20 (UTC times)."""
    text = resources.files("gridflex.data").joinpath("signals", "ercot-hb-south-2024-08-16-week.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    t = epoch_s([r["interval_start_utc"] for r in rows])
    rt = _floats([r["rt_usd_per_mwh"] for r in rows])
    da = _floats([r["da_usd_per_mwh"] for r in rows])
    return Recorded(_step(t, rt, "ercot-week rt"), ercot_da_forecast(t, da, "ercot-week"), "USD/MWh", "price")


#: Built-in recorded sources usable without the shared folder.
BUILTIN = {"gb-carbon-week": gb_carbon_week, "ercot-price-week": ercot_week}


def builtin(name: str) -> Recorded:
    """A bundled recorded source by name."""
    try:
        return BUILTIN[name]()
    except KeyError:
        raise InputError(f"signal source {name!r}: built-in sources are {', '.join(BUILTIN)}") from None
