"""Reading power-cap sweeps in the Phoenix `dvfs_sweep.csv` format."""

from __future__ import annotations

import csv
from collections import defaultdict
from importlib import resources
from pathlib import Path

from gridflex.errors import InputError
from gridflex.model.curves import CurveLibrary, PowerCurve, SweepPoint, fit_curve

COLUMNS = ("Workload", "GPU power cap", "normalized throughput", "power per GPU")


def read_sweep_csv(text: str, source: str) -> list[PowerCurve]:
    """Fit one curve per workload from CSV text with the columns of `COLUMNS`."""
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise InputError(f"{source}: no rows")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; needed: {list(COLUMNS)}")
    points: dict[str, list[SweepPoint]] = defaultdict(list)
    for n, row in enumerate(rows, start=2):
        try:
            point = SweepPoint(
                row["Workload"].strip(),
                float(row["GPU power cap"]),
                float(row["power per GPU"]),
                float(row["normalized throughput"]),
            )
        except (TypeError, ValueError) as e:
            raise InputError(f"{source}, line {n}: numbers expected in {list(COLUMNS[1:])}: {e}") from None
        points[point.workload].append(point)
    try:
        return [fit_curve(w, pts) for w, pts in points.items()]
    except ValueError as e:
        raise InputError(f"{source}: {e}") from None


def builtin_curves() -> CurveLibrary:
    """Curves fitted to the A100 sweep of the Phoenix field demonstration (bundled)."""
    text = resources.files("gridflex.data").joinpath("dvfs_sweep.csv").read_text()
    return CurveLibrary(read_sweep_csv(text, "built-in dvfs_sweep.csv"))


def load_curves(path: Path) -> list[PowerCurve]:
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"curves: cannot read {path}: {e.strerror}") from None
    return read_sweep_csv(text, str(path))
