"""The summary of a run: the numbers `gridflex simulate` prints and writes as JSON.

Per-job records are kept for every job up to `JOB_RECORDS_LIMIT` jobs (in the scenario's order);
above it, only the `JOB_RECORDS_LIMIT` jobs furthest behind (SLA violations first, then the
lowest performance) unless `job_records=None` asks for all. Aggregates by flex tier and by
workload (`tiers`, `workloads`) are always there, whatever the size of the site.
"""

from __future__ import annotations

import numpy as np

from gridflex.model.fleet import JobFleet
from gridflex.report.metrics import overall_compliance, score_event, weighted_performance
from gridflex.report.miners import hybrid_summary
from gridflex.report.shifting import shift_metrics
from gridflex.sim.run import RunResult

#: Per-job records kept in a summary unless all are asked for.
JOB_RECORDS_LIMIT = 50


def summarize(result: RunResult, job_records: int | None = JOB_RECORDS_LIMIT) -> dict:
    """The run's summary; `job_records`: most per-job records kept (None: every job)."""
    sc = result.scenario
    events = [
        score_event(ev, result.step_times_s, result.site_power_w, sc.step_s, sc.control.tolerance)
        for ev in result.timeline.events
    ]
    performance, within = job_performance(result)
    started = ~np.isnan(performance)  # a queued job that never started is counted apart
    tiers = np.array([j.flex_tier for j in sc.jobs])
    submit_s = np.array([j.submit.timestamp() if j.submit else np.nan for j in sc.jobs])
    delay_s = result.started_s - submit_s
    responses = [e.response_s for e in events]
    energy_kwh = _job_energy_kwh(result)
    shifting = {"shifting": shift_metrics(result)} if sc.shifting is not None else {}
    return {
        "scenario": sc.name,
        "planner": result.planner,
        "seed": result.seed,
        "baseline_w": _r(events[0].baseline_w) if events else None,
        "compliance": _r(overall_compliance(events)),
        "sla_violations": int((~within).sum()),
        "weighted_performance": _r(weighted_performance(performance[started], tiers[started])) if started.any() else None,
        "jobs_never_started": int((~started).sum()),
        "over_delivery": _r(float(np.mean([e.over_delivery for e in events]))) if events else 0.0,
        "response_s": None if None in responses else _r(max(responses, default=0.0)),
        "energy_kwh": _r(result.energy_kwh),
        "mean_power_w": _r(float(result.site_power_w.mean())),
        "peak_power_w": _r(float(result.site_power_w.max())),
        **shifting,
        "events": [e.as_dict() for e in events],
        "jobs_total": len(sc.jobs),
        "jobs": [
            {
                "id": sc.jobs[i].id,
                "workload": sc.jobs[i].workload,
                "gpus": sc.jobs[i].gpus,
                "flex_tier": sc.jobs[i].flex_tier,
                "flex_factor": sc.jobs[i].flex_factor,
                "performance": _r(float(performance[i])),
                "within_sla": bool(within[i]),
                "energy_kwh": _r(float(energy_kwh[i])),
                **({"delay_s": _r(float(delay_s[i])), "held_s": _r(float(result.held_s[i]))}
                   if sc.jobs[i].queued else {}),
            }
            for i in kept_jobs(performance, within, job_records)
        ],
        "tiers": _groups("flex_tier", tiers, result, performance, within, energy_kwh),
        "workloads": _groups("workload", np.array([j.workload for j in sc.jobs]), result, performance, within,
                             energy_kwh),
        "warnings": result.trace.warnings(sc.start.tzinfo),
        **hybrid_summary(result),  # site_draw_steadiness, ai_load_swing, miners: only for sites with miners
    }


def job_performance(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """Each job's performance (`RunResult.performance`: NaN for a job that never started) and
    whether it met its tier (a job that never started did not miss it)."""
    performance = result.performance
    flex_factor = np.array([j.flex_factor for j in result.scenario.jobs])
    within = np.isnan(performance) | (performance >= flex_factor - 1e-9)
    deadline = np.array([j.deadline.timestamp() if j.deadline else np.nan for j in result.scenario.jobs])
    due = np.isfinite(deadline)  # a job with a deadline keeps its contract by finishing by it
    late = (result.ended_s > deadline) | (np.isnan(result.ended_s) & (deadline <= result.scenario.end.timestamp()))
    return performance, np.where(due, ~late, within)


def kept_jobs(performance: np.ndarray, within: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the jobs given one by one: all (in order) up to `limit`, else the `limit` furthest
    behind, SLA violations first, then by performance."""
    if limit is None or len(performance) <= limit:
        return np.arange(len(performance))
    return np.lexsort((np.nan_to_num(performance, nan=np.inf), within))[:limit]


def _groups(key: str, keys: np.ndarray, result: RunResult, performance: np.ndarray, within: np.ndarray,
            energy_kwh: np.ndarray) -> list[dict]:
    """One record per value of `keys`: jobs, GPUs, GPU-weighted and lowest performance, SLA violations, energy."""
    names, group = np.unique(keys, return_inverse=True)
    gpus = np.array([j.gpus for j in result.scenario.jobs], float)
    count = np.bincount(group)
    total_gpus = np.bincount(group, gpus)
    ran = ~np.isnan(performance)
    mean = np.bincount(group, gpus * np.where(ran, performance, 0.0)) / np.maximum(np.bincount(group, gpus * ran), 1e-9)
    lowest = np.full(len(names), np.inf)
    np.minimum.at(lowest, group, np.where(ran, performance, np.inf))
    violations = np.bincount(group, ~within)
    energy = np.bincount(group, energy_kwh)
    return [
        {key: (int(n) if key == "flex_tier" else str(n)), "jobs": int(count[g]), "gpus": int(total_gpus[g]),
         "performance": _r(mean[g]), "lowest_performance": _r(lowest[g]), "sla_violations": int(violations[g]),
         "energy_kwh": _r(energy[g])}
        for g, n in enumerate(names)
    ]


def _job_energy_kwh(result: RunResult) -> np.ndarray:
    """Each scenario job's measured IT energy from the journal (0 for a job it never saw)."""
    table = result.trace.job_table()
    row = {job_id: k for k, job_id in enumerate(table["id"])}
    energy_j = np.append(table["energy_j"], 0.0)
    return energy_j[[row.get(j.id, -1) for j in result.scenario.jobs]] / 3.6e6


def _r(v: float) -> float | None:
    return round(float(v), 6) if np.isfinite(v) else None


def nominal_power_w(result: RunResult) -> float:
    """Site power with every job running uncapped."""
    fleet = JobFleet.build(result.scenario.jobs, result.loaded.curves)
    return float(result.scenario.site.site_power_w((fleet.gpus * fleet.full_w).sum()))
