"""Self-contained HTML reports: summary tables and plots embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gridflex.report.measured import MeasuredSeries  # noqa: E402
from gridflex.sim.run import RunResult  # noqa: E402

PLOT_RESOLUTION_S = 60.0


def minute_means(t_s: np.ndarray, values: np.ndarray, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive `PLOT_RESOLUTION_S` blocks (rows of `values` follow `t_s`)."""
    per = max(1, int(round(PLOT_RESOLUTION_S / step_s)))
    n = len(t_s) // per
    if n == 0:
        return t_s, values
    shape = (n, per) + values.shape[1:]
    return t_s[: n * per : per], np.nanmean(values[: n * per].reshape(shape), axis=1)


def _dates(t_s: np.ndarray, tz) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), UTC).astimezone(tz) for t in t_s]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def power_plot(results: Sequence[RunResult], measured: MeasuredSeries | None = None) -> str:
    """Site power of one or more runs against the target (and a measured trace, if given)."""
    first = results[0]
    tz = first.scenario.start.tzinfo
    fig, ax = plt.subplots(figsize=(11, 4))
    t, _ = minute_means(first.step_times_s, first.site_power_w, first.scenario.step_s)
    target = first.timeline.ceiling_at(t)
    for r in results:
        tr, p = minute_means(r.step_times_s, r.site_power_w, r.scenario.step_s)
        ax.plot(_dates(tr, tz), p / 1e3, lw=1.2, label=f"site power ({r.planner})" if len(results) > 1 else "site power")
    ax.plot(_dates(t, tz), np.where(np.isfinite(target), target, np.nan) / 1e3, "k--", lw=1.5, label="target")
    if measured is not None:
        ax.plot(_dates(measured.t_s, tz), measured.power_w / 1e3, color="grey", lw=1, label=f"measured ({measured.label})")
    for ev in first.timeline.events:
        ax.axvspan(*_dates(np.array([ev.hold_start_s, ev.hold_end_s]), tz), color="orange", alpha=0.12)
    ax.set_ylabel("kW (1-min mean)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    ax.set_title("Site power vs target (shaded: hold periods)")
    return _png(fig)


def job_plots(result: RunResult) -> str:
    """Per-job throughput, caps and flex budget used over time."""
    tr = result.trace
    if not tr.cap_w:
        return ""
    tz = result.scenario.start.tzinfo
    t = np.array(tr.t_s)
    dt = result.scenario.control.interval_s
    panels = [
        ("throughput (normal = 1)", np.array(tr.throughput, dtype=float)),
        ("per-GPU cap (W) × active", np.array(tr.cap_w) * np.array(tr.active)),
        ("flex budget used", np.array(tr.budget_used)),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8), sharex=True)
    for ax, (label, values) in zip(axes, panels):
        tm, v = minute_means(t, values, dt)
        for j, job in enumerate(result.scenario.jobs):
            ax.plot(_dates(tm, tz), v[:, j], lw=1, label=f"{job.id} (F{job.flex_tier})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3, loc="lower left")
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    return _png(fig)


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return "—" if v is None else str(v)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}.warn{color:#a40}"""


def page(title: str, sections: Sequence[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )


def run_report(result: RunResult, summary: dict, measured: MeasuredSeries | None = None) -> str:
    """The report of one `gridflex simulate` run."""
    from gridflex.report.miners_html import hybrid_sections  # builds on this module's helpers

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
            "<h2>Jobs</h2>",
            table(summary["jobs"], ["id", "workload", "gpus", "flex_tier", "flex_factor", "performance",
                                    "within_sla"]),
            job_plots(result),
            *hybrid_sections(result, summary),
        ],
    )
