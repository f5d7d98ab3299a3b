"""Settling a month from a store as `gridflex serve` fills it: 2-s telemetry over the month and the
baseline lookback before it. Reports the wall time of building the store, of the settlement and of
the statement, and the peak memory of the process.

    .venv/bin/python bench/programs_settle.py --tick-s 2 --json out/programs_settle.json
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import insert

from gridflex.model.events import GridEvent
from gridflex.programs.model import parse_enrolment
from gridflex.programs.settle import settle_month
from gridflex.programs.statement import write_statement
from gridflex.store import Store
from gridflex.store.models import TelemetryRow

TZ = ZoneInfo("America/Chicago")
PROGRAM = {"name": "ers-10", "kind": "emergency", "modelled_on": "ERCOT ERS-10", "committed_w": 20000,
           "notice_s": 600, "response_s": 600, "max_duration_s": 28800,
           "measurement": {"method": "x_of_y", "x": 8, "y": 10, "select": "middle", "adjustment": "additive",
                           "adjustment_window_s": 7200, "adjustment_gap_s": 0, "interval_s": 900},
           "payment": {"capacity_usd_per_mw_month": 6000}, "penalty": {"usd_per_mw_short": 1000}}


def build(url: str, tick_s: float, seed: int = 0) -> int:
    store = Store(url)
    store.migrate()
    rng = np.random.default_rng(seed)
    t0, t1 = datetime(2026, 5, 15, tzinfo=TZ).timestamp(), datetime(2026, 8, 1, tzinfo=TZ).timestamp()
    events = [datetime(2026, 7, d, 14, tzinfo=TZ) for d in (8, 15, 22, 29)]
    n = 0
    for a in np.arange(t0, t1, 86400.0):
        t = np.arange(a, min(a + 86400.0, t1), tick_s)
        p = 94e3 + 3e3 * rng.standard_normal(len(t))
        for s in events:
            p[(t >= s.timestamp()) & (t < s.timestamp() + 7200)] -= 25e3
        with store.engine.begin() as conn:
            conn.execute(insert(TelemetryRow), [{"t_s": float(x), "site_power_w": float(y), "it_power_w": float(y),
                                                 "estimated": False, "job_power_w": []} for x, y in zip(t, p)])
        n += len(t)
    for i, s in enumerate(events):
        store.add_event(GridEvent(id=f"ers-10:{i}", start=s, end=s + timedelta(hours=2), notice_s=600,
                                  target={"reduction": 0.25}), "api", s.timestamp() - 600)
    store.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tick-s", type=float, default=2.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t = time.perf_counter()
        with ProcessPoolExecutor(1) as pool:  # built in a child: the peak memory below is the settlement's
            rows = pool.submit(build, url, args.tick_s).result()
        build_s = time.perf_counter() - t
        store = Store(url)
        t = time.perf_counter()
        st = settle_month(store, parse_enrolment({"programs": [PROGRAM]}, "bench"), "ers-10", "2026-07")
        settle_s = time.perf_counter() - t
        t = time.perf_counter()
        write_statement(st, Path(tmp) / "out")
        statement_s = time.perf_counter() - t
        store.close()
    result = {"telemetry_rows": rows, "tick_s": args.tick_s, "build_store_s": round(build_s, 1),
              "settle_s": round(settle_s, 2), "statement_s": round(statement_s, 2),
              "peak_rss_mb_settle_and_statement": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "events": len(st.events), "performance_factors": [round(e.performance_factor, 3) for e in st.events]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
