"""Self-contained HTML reports: summary tables and plots embedded as PNG."""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from gridflex.report.measured import MeasuredSeries
from gridflex.report.miners_html import hybrid_sections
from gridflex.report.render import dates, minute_means, page, png, table
from gridflex.report.summary import job_performance
from gridflex.sim.journal import TIERS
from gridflex.sim.run import RunResult

#: Histogram bins of job performance (normal = 1).
PERFORMANCE_BINS = np.linspace(0.0, 1.0, 21)


def power_plot(results: Sequence[RunResult], measured: MeasuredSeries | None = None) -> str:
    """Site power of one or more runs against the target (and a measured trace, if given)."""
    first = results[0]
    tz = first.scenario.start.tzinfo
    fig, ax = plt.subplots(figsize=(11, 4))
    t, _ = minute_means(first.step_times_s, first.site_power_w, first.scenario.step_s)
    target = first.timeline.ceiling_at(t)
    for r in results:
        tr, p = minute_means(r.step_times_s, r.site_power_w, r.scenario.step_s)
        ax.plot(dates(tr, tz), p / 1e3, lw=1.2, label=f"site power ({r.planner})" if len(results) > 1 else "site power")
    ax.plot(dates(t, tz), np.where(np.isfinite(target), target, np.nan) / 1e3, "k--", lw=1.5, label="target")
    if measured is not None:
        ax.plot(dates(measured.t_s, tz), measured.power_w / 1e3, color="grey", lw=1, label=f"measured ({measured.label})")
    for ev in first.timeline.events:
        ax.axvspan(*dates(np.array([ev.hold_start_s, ev.hold_end_s]), tz), color="orange", alpha=0.12)
    ax.set_ylabel("kW (1-min mean)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    ax.set_title("Site power vs target (shaded: hold periods)")
    return png(fig)


def job_plots(result: RunResult) -> str:
    """Per-job throughput, effective caps and flex budget used over time (small runs: the journal
    keeps per-job series only up to `JOB_HISTORY_LIMIT` jobs)."""
    tr = result.trace
    if tr.job_history("throughput") is None or not len(tr.t_s):
        return ""
    tiers = [tr.jobs[i].flex_tier if i in tr.jobs else "?" for i in tr.ids]
    panels = [
        ("throughput (normal = 1)", tr.job_history("throughput")),
        ("per-GPU cap (W) × active", tr.job_history("effective_cap_w")),
        ("flex budget used", tr.job_history("budget_used")),
    ]
    return _panels(result, panels, [f"{i} (F{k})" for i, k in zip(tr.ids, tiers)])


def tier_plots(result: RunResult) -> str:
    """Per flex tier: measured power, throughput in full-speed GPUs, GPU-mean effective cap."""
    tr = result.trace
    if not len(tr.t_s):
        return ""
    present = [k for k in range(TIERS) if np.nansum(tr.series(f"tier{k}_power_w")) > 0]
    panels = [
        (label, np.column_stack([tr.series(f"tier{k}_{name}") * scale for k in present]))
        for label, name, scale in (
            ("power (kW)", "power_w", 1e-3),
            ("throughput (full-speed GPUs)", "throughput_gpus", 1.0),
            ("per-GPU cap (W) × active, GPU mean", "effective_cap_w", 1.0),
        )
    ]
    return _panels(result, panels, [f"flex {k}" for k in present])


def _panels(result: RunResult, panels: list[tuple[str, np.ndarray]], labels: list[str]) -> str:
    """Stacked time plots sharing one legend; columns of each panel's [ticks, n] array are lines."""
    tz = result.scenario.start.tzinfo
    t = result.trace.t_s
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8), sharex=True)
    for ax, (label, values) in zip(axes, panels):
        tm, v = minute_means(t, values, result.scenario.control.interval_s)
        for j, name in enumerate(labels):
            ax.plot(dates(tm, tz), v[:, j], lw=1, label=name)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3, loc="lower left")
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    return png(fig)


def performance_histogram(result: RunResult) -> str:
    """How many GPUs' jobs ended at each performance, by flex tier (stacked)."""
    performance, _ = job_performance(result)
    jobs = result.scenario.jobs
    tiers = np.array([j.flex_tier for j in jobs])
    gpus = np.array([j.gpus for j in jobs], float)
    fig, ax = plt.subplots(figsize=(11, 3.5))
    present = np.unique(tiers)
    ax.hist([np.clip(performance[tiers == k], 0, 1) for k in present], PERFORMANCE_BINS, stacked=True,
            weights=[gpus[tiers == k] for k in present], label=[f"flex {k}" for k in present])
    ax.set_xlabel("job performance over its window (normal = 1)")
    ax.set_ylabel("GPUs")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"Distribution of job performance ({len(jobs):,} jobs, {int(gpus.sum()):,} GPUs)")
    return png(fig)


def _job_sections(result: RunResult, summary: dict) -> list[str]:
    """The jobs one by one on small sites; by tier and workload, the jobs furthest behind and the
    distribution of performance on large ones."""
    columns = ["id", "workload", "gpus", "flex_tier", "flex_factor", "performance", "within_sla"]
    if summary["jobs_total"] <= len(summary["jobs"]):
        return ["<h2>Jobs</h2>", table(summary["jobs"], columns), job_plots(result)]
    groups = ["jobs", "gpus", "performance", "lowest_performance", "sla_violations", "energy_kwh"]
    return [
        f"<h2>Jobs ({summary['jobs_total']:,})</h2>",
        "<h3>By flex tier</h3>", table(summary["tiers"], ["flex_tier", *groups]),
        "<h3>By workload</h3>", table(summary["workloads"], ["workload", *groups]),
        performance_histogram(result),
        tier_plots(result),
        f"<h3>The {len(summary['jobs'])} jobs furthest behind (SLA violations first, then lowest performance)</h3>",
        table(summary["jobs"], columns),
    ]


def run_report(result: RunResult, summary: dict, measured: MeasuredSeries | None = None) -> str:
    """The report of one `gridflex simulate` run."""
    overall = [{k: summary[k] for k in ("planner", "seed", "compliance", "sla_violations",
                                        "weighted_performance", "over_delivery", "response_s", "energy_kwh")}]
    warnings = "".join(f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in summary["warnings"])
    return page(
        f"gridflex — {summary['scenario']}",
        [
            f"<p>{html.escape(result.scenario.description)}</p>",
            table(overall, list(overall[0])),
            warnings,
            "<h2>Site power</h2>",
            power_plot([result], measured),
            "<h2>Events</h2>",
            table(summary["events"], ["id", "baseline_w", "target_w", "compliance", "response_s",
                                      "over_delivery", "mean_power_w"]),
            *_job_sections(result, summary),
            *hybrid_sections(result, summary),
        ],
    )
