"""The summary of a run: the numbers `gridflex simulate` prints and writes as JSON."""

from __future__ import annotations

import numpy as np

from gridflex.model.fleet import JobFleet
from gridflex.report.metrics import overall_compliance, score_event, weighted_performance
from gridflex.report.miners import hybrid_summary
from gridflex.sim.run import RunResult


def summarize(result: RunResult) -> dict:
    sc = result.scenario
    events = [
        score_event(ev, result.step_times_s, result.site_power_w, sc.step_s, sc.control.tolerance)
        for ev in result.timeline.events
    ]
    started = ~np.isnan(result.performance)  # a queued job that never started is scored apart
    performance = result.performance[started]
    jobs = [j for j, s in zip(sc.jobs, started) if s]
    tiers = np.array([j.flex_tier for j in jobs], dtype=int)
    within = performance >= np.array([j.flex_factor for j in jobs]) - 1e-9
    submit_s = np.array([j.submit.timestamp() if j.submit else np.nan for j in sc.jobs])
    delay_s = (result.started_s - submit_s)[started]
    responses = [e.response_s for e in events]
    return {
        "scenario": sc.name,
        "planner": result.planner,
        "seed": result.seed,
        "baseline_w": _r(events[0].baseline_w) if events else None,
        "compliance": _r(overall_compliance(events)),
        "sla_violations": int((~within).sum()),
        "weighted_performance": _r(weighted_performance(performance, tiers)) if len(jobs) else None,
        "jobs_never_started": int((~started).sum()),
        "over_delivery": _r(float(np.mean([e.over_delivery for e in events]))) if events else 0.0,
        "response_s": None if None in responses else _r(max(responses, default=0.0)),
        "energy_kwh": _r(result.energy_kwh),
        "mean_power_w": _r(float(result.site_power_w.mean())),
        "peak_power_w": _r(float(result.site_power_w.max())),
        "events": [e.as_dict() for e in events],
        "jobs": [
            {
                "id": j.id,
                "workload": j.workload,
                "gpus": j.gpus,
                "flex_tier": j.flex_tier,
                "flex_factor": j.flex_factor,
                "performance": _r(float(p)),
                "within_sla": bool(w),
                **({"delay_s": _r(float(d)), "held_s": _r(float(h))} if j.queued else {}),
            }
            for j, p, w, d, h in zip(jobs, performance, within, delay_s, result.held_s[started])
        ],
        "warnings": result.trace.warnings(sc.start.tzinfo),
        **hybrid_summary(result),  # site_draw_steadiness, ai_load_swing, miners: only for sites with miners
    }


def _r(v: float) -> float | None:
    return round(float(v), 6) if np.isfinite(v) else None


def nominal_power_w(result: RunResult) -> float:
    """Site power with every job running uncapped."""
    fleet = JobFleet.build(result.scenario.jobs, result.loaded.curves)
    return float(result.scenario.site.site_power_w((fleet.gpus * fleet.full_w).sum()))
