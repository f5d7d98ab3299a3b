"""Forecast error of the bundled GB week by lead time, as a planner sees it.

Every hour t of the week 2023-03-14 13:00 to 03-21 13:00 UTC, the latest vintage issued by t
(`Forecast.forecast_at(t)`, uncorrected) is read at t + lead and compared with the actual
intensity there; MAE (gCO2/kWh) over the week's hours, per lead. The lead counts from the asking
time, not from the issue time, so a stale vintage costs what it costs the planner. `--issues`
keeps only the listed issue times (e.g. the eleven twice-daily vintages bundled before).

    .venv/bin/python bench/gb_forecast_error.py [--issues 2023-03-14T12:31Z,...] [--json out/x.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from gridflex.signals.forecast import Forecast
from gridflex.signals.recorded import builtin, epoch_s

WEEK_UTC = ("2023-03-14T13:00Z", "2023-03-21T13:00Z")
LEADS_H = (1, 6, 12, 24, 36)


def lead_mae(forecast: Forecast, actual, leads_h=LEADS_H) -> dict:
    """MAE per lead over the week's hours, and the age of the vintage in use (mean, max, hours)."""
    start, end = epoch_s(list(WEEK_UTC))
    asks = np.arange(start, end, 3600.0)
    known = [forecast.forecast_at(t) for t in asks]
    mae = {h: float(np.mean([abs(k.at(t + h * 3600.0) - actual.at(t + h * 3600.0)) for k, t in zip(known, asks)]))
           for h in leads_h}
    age_h = (asks - np.array([forecast.latest_issue_s(t) for t in asks])) / 3600.0
    return {"mae_g_per_kwh": mae, "vintages": int(len(np.unique(forecast.issued_s))),
            "age_h_mean": float(age_h.mean()), "age_h_max": float(age_h.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issues", help="comma-separated issue times (UTC, 2023-03-14T12:31Z) to keep; default all")
    ap.add_argument("--json", help="write the result to this JSON file")
    a = ap.parse_args()
    rec = builtin("gb-carbon-week")
    fc = rec.forecast
    if a.issues:
        keep = np.isin(fc.issued_s, epoch_s(a.issues.split(",")))
        fc = Forecast(fc.issued_s[keep], fc.target_s[keep], fc.values[keep], fc.name)
    out = lead_mae(fc, rec.actual)
    print(f"{out['vintages']} vintages; age of the vintage in use: mean {out['age_h_mean']:.1f} h, "
          f"max {out['age_h_max']:.1f} h")
    print("MAE g/kWh by lead: " + ", ".join(f"{h} h {v:.1f}" for h, v in out["mae_g_per_kwh"].items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
