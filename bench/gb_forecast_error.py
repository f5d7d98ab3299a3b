"""Forecast error of the bundled GB week by lead time, as a planner sees it.

Every hour t of the week 2023-03-14 13:00 to 03-21 13:00 UTC, the forecast known at t (the latest
vintage issued by t, `Forecast.forecast_at(t)`; with `--corrected-tau-s` / `--persistence-weight`
corrected and blended as the shifting policies do, `control.shifting.signal_known`) is read at
t + lead and compared with the actual intensity there: MAE (gCO2/kWh) over the week's hours per
lead, and the mean Spearman correlation of its ranking of the next 36 h with the actual one (0
where the forecast is flat: an asking time past its vintage's last target). The lead counts from
the asking time, not from the issue time, so a stale vintage costs what it costs the planner.
`--issues` keeps only the listed issue times (e.g. the eleven twice-daily vintages bundled
before).

    .venv/bin/python bench/gb_forecast_error.py [--issues 2023-03-14T12:31Z,...]
        [--corrected-tau-s 10800] [--persistence-weight 0.5] [--json out/x.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
from scipy.stats import spearmanr

from gridflex.control.shifting import signal_known
from gridflex.model.shifting import ShiftSettings
from gridflex.signals.forecast import Forecast
from gridflex.signals.recorded import builtin, epoch_s

WEEK_UTC = ("2023-03-14T13:00Z", "2023-03-21T13:00Z")
LEADS_H = (1, 6, 12, 24, 36)
RANK_H = 36


def lead_error(known, actual, asks_s: np.ndarray, leads_h=LEADS_H) -> dict:
    """MAE per lead over the asking times, and the mean Spearman correlation over the next RANK_H hours."""
    sig = [known(t) for t in asks_s]
    mae = {h: float(np.mean([abs(s.at(t + h * 3600.0) - actual.at(t + h * 3600.0)) for s, t in zip(sig, asks_s)]))
           for h in leads_h}
    ahead = np.arange(0.0, RANK_H * 3600.0, 1800.0)
    flat = [np.ptp(s.at(t + ahead)) == 0 for s, t in zip(sig, asks_s)]  # past a vintage's end: no ranking, 0
    rho = np.mean([0.0 if f else spearmanr(s.at(t + ahead), actual.at(t + ahead)).statistic
                   for s, t, f in zip(sig, asks_s, flat)])
    return {"mae_g_per_kwh": mae, f"spearman_next_{RANK_H}h": float(rho)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issues", help="comma-separated issue times (UTC, 2023-03-14T12:31Z) to keep; default all")
    ap.add_argument("--corrected-tau-s", type=float, help="as shifting.corrected_tau_s")
    ap.add_argument("--persistence-weight", type=float, default=0.0, help="as shifting.persistence_weight")
    ap.add_argument("--json", help="write the result to this JSON file")
    a = ap.parse_args()
    rec = builtin("gb-carbon-week")
    fc = rec.forecast
    if a.issues:
        keep = np.isin(fc.issued_s, epoch_s(a.issues.split(",")))
        fc = Forecast(fc.issued_s[keep], fc.target_s[keep], fc.values[keep], fc.name)
    settings = ShiftSettings(signal="gb-carbon-week", corrected_tau_s=a.corrected_tau_s,
                             persistence_weight=a.persistence_weight)
    asks = np.arange(*epoch_s(list(WEEK_UTC)), 3600.0)
    out = lead_error(signal_known(settings, dataclasses.replace(rec, forecast=fc)), rec.actual, asks)
    age_h = (asks - np.array([fc.latest_issue_s(t) for t in asks])) / 3600.0
    out |= {"vintages": int(len(fc.issue_times_s)), "age_h_mean": float(age_h.mean()), "age_h_max": float(age_h.max())}
    print(f"{out['vintages']} vintages; age of the vintage in use: mean {out['age_h_mean']:.1f} h, "
          f"max {out['age_h_max']:.1f} h; Spearman, next {RANK_H} h: {out[f'spearman_next_{RANK_H}h']:.2f}")
    print("MAE g/kWh by lead: " + ", ".join(f"{h} h {v:.1f}" for h, v in out["mae_g_per_kwh"].items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
