"""What time shifting did in a run: emissions or energy cost by the true signal, deadlines,
delays, and that Flex 0 was never held nor slowed."""

from __future__ import annotations

import numpy as np

from gridflex.signals.recorded import builtin


def signal_total(step_times_s: np.ndarray, site_power_w: np.ndarray, step_s: float, signal_name: str
                 ) -> tuple[str, float]:
    """(name, total) of site energy priced by the true signal: kg CO2 (gCO2/kWh) or USD (USD/MWh);
    each step's energy at the signal's value at the step's start."""
    rec = builtin(signal_name)
    kwh = site_power_w * step_s / 3.6e6
    value = rec.actual.at(step_times_s - step_s)
    if rec.unit == "gCO2/kWh":
        return "emissions_kg_co2", float((kwh * value).sum() / 1000.0)
    return "energy_cost_usd", float((kwh * value).sum() / 1000.0)


def shift_metrics(result) -> dict:
    """A run's time-shifting figures (`result`: a `sim.run.RunResult` of a scenario with `shifting`)."""
    sc = result.scenario
    name, total = signal_total(result.step_times_s, result.site_power_w, sc.step_s, sc.shifting.signal)
    end_s = sc.end.timestamp()
    deadline = np.array([j.deadline.timestamp() if j.deadline else np.nan for j in sc.jobs])
    due = np.isfinite(deadline) & (deadline <= end_s)
    met = due & (result.ended_s <= deadline + 1e-6)  # NaN (not ended) compares False
    queued = np.array([j.queued for j in sc.jobs])
    submit_s = np.array([j.submit.timestamp() if j.submit else np.nan for j in sc.jobs])
    delay_s = (np.where(np.isnan(result.started_s), end_s, result.started_s) - submit_s)[queued]
    flex0 = np.array([j.flex_tier == 0 for j in sc.jobs])
    return {
        "policy": sc.shifting.policy,
        "forecast": sc.shifting.forecast,
        name: round(total, 3),
        "deadline_jobs": int(due.sum()),
        "deadlines_met": int(met.sum()),
        "mean_job_delay_s": round(float(delay_s.mean()), 1) if len(delay_s) else 0.0,
        "flex0_held_s": float(result.held_s[flex0].sum()),
        "flex0_lowest_performance": round(float(np.nanmin(result.performance[flex0])), 6) if flex0.any() else None,
    }
