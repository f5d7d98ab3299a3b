"""Coincident-peak avoidance: which intervals are likely system peaks, and what a reduction there
saves under a transmission tariff charged on the site's load at the season's peaks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gridflex.errors import InputError


def peak_alerts(system_load: np.ndarray, margin: float = 0.03, season_max: float = 0.0) -> np.ndarray:
    """Mask of the intervals whose (forecast) system load is within `margin` of the highest of the
    series and of the season's peak so far (`season_max`): the intervals worth curtailing in."""
    load = np.asarray(system_load, float)
    if not 0 <= margin < 1:
        raise InputError(f"margin: {margin} not allowed; allowed: 0 <= margin < 1")
    bar = (1 - margin) * max(np.nanmax(load), season_max)
    return load >= bar


def avoided_transmission_usd(reduction_kw_at_peaks: np.ndarray, usd_per_kw_year: float, peaks_per_season: int) -> float:
    """Charge avoided: the tariff bills the mean of the site's load over the season's peaks, so each
    kW off one peak saves usd_per_kw_year / peaks_per_season (negative if the site drew more)."""
    return float(np.sum(reduction_kw_at_peaks) * usd_per_kw_year / peaks_per_season)


def read_srp_day(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Hour ending (1..24) and actual system load (GW) from an SRP daily load file (SRP_0503.csv)."""
    try:
        with Path(path).open() as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    return np.array([int(r["hour"]) for r in rows]), np.array([float(r["SRP Actual"]) for r in rows])
