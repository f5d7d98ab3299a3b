"""A measured site-power trace to set beside a simulated one: a CSV of UTC time and power."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np

from gridflex.errors import InputError

#: The SRP event of the Phoenix demonstration as measured (src/gridflex/data/NOTICE.md).
SRP_MEASURED = "srp_measured_power.csv"


@dataclass(frozen=True)
class MeasuredSeries:
    t_s: np.ndarray  # UTC epoch seconds of each sample (start of its interval)
    power_w: np.ndarray
    label: str


def read_measured(path: str | Path) -> MeasuredSeries:
    """Read a CSV whose first column is a time (ISO 8601; without an offset it is UTC) and
    whose second is site power in W; a header row is allowed."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as e:
        raise InputError(f"--measured: cannot read {path}: {e.strerror}") from None
    t, p = [], []
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        try:
            when = datetime.fromisoformat(row[0].strip())
            power = float(row[1])
        except (ValueError, IndexError):
            if n == 1:
                continue  # a header
            raise InputError(
                f"--measured: {path} line {n}: expected 'time,power_w' (ISO 8601 time, watts), got {','.join(row)!r}"
            ) from None
        t.append((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
        p.append(power)
    if len(t) < 2:
        raise InputError(f"--measured: {path} has fewer than two 'time,power_w' rows")
    order = np.argsort(t)
    return MeasuredSeries(np.array(t)[order], np.array(p)[order], path.stem)


def builtin_measured(name: str = SRP_MEASURED) -> MeasuredSeries:
    """A measured trace bundled with gridflex."""
    return read_measured(Path(str(resources.files("gridflex.data").joinpath(name))))
