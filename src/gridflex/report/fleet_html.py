"""The HTML report of a fleet run: the fleet against its sites alone, the sites side by side."""

from __future__ import annotations

import html

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from gridflex.report.html import power_plot
from gridflex.report.render import dates, page, png, table
from gridflex.sim.fleet_run import FleetRun

TOTALS = ("weighted_performance", "events_met", "events", "work_gpu_h", "energy_kwh", "carbon_kg", "carbon_g_per_kwh",
          "carbon_g_per_gpu_h", "placement_carbon_kg", "energy_cost_usd", "requests", "requests_moved", "requests_failed",
          "budgets_kept", "batch_moved", "batch_moved_work_gpu_h", "batch_data_cost_usd")
SITE_COLUMNS = ("weighted_performance", "sla_violations", "work_gpu_h", "energy_kwh", "carbon_kg",
                "energy_cost_usd", "requests", "requests_failed", "traffic_share_mean", "batch_placed_in",
                "batch_placed_out")


def share_plot(run: FleetRun) -> str:
    """Each site's share of all requests over time, and the fleet's request rate."""
    tz = run.fleet.spec.start.tzinfo
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
    t = dates(run.t_s, tz)
    for i, s in enumerate(run.fleet.spec.sites):
        top.plot(t, run.share[:, i], lw=1.2, label=f"{s.name} ({s.region})")
    top.set_ylabel("share of requests")
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    for c, spec in enumerate(run.fleet.spec.classes):
        bottom.plot(t, run.rates_rps[:, c], lw=0.8, label=spec.name)
    bottom.set_ylabel("requests/s")
    bottom.legend(loc="upper left", fontsize=8, ncol=4)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    top.set_title(f"Traffic share per site ({run.mode})")
    return png(fig)


def fleet_report(summary: dict, runs: dict[str, FleetRun]) -> str:
    fleet = runs["fleet"]
    spec = fleet.fleet.spec
    modes = [m for m in ("fleet", "alone") if m in summary]
    totals = [{"metric": k, **{m: summary[m]["total"][k] for m in modes}} for k in TOTALS]
    columns = []
    for s in spec.sites:
        rows = [{"metric": k, **{m: summary[m]["sites"][s.name][k] for m in modes}} for k in SITE_COLUMNS]
        events = [{"mode": m, **e} for m in modes for e in summary[m]["sites"][s.name]["events"]]
        columns.append(
            f"<div style='flex:1;min-width:0'><h3>{html.escape(s.name)} ({html.escape(s.region)})</h3>"
            + power_plot([runs[m].sites[s.name] for m in modes])
            + table(rows, ["metric", *modes])
            + (table(events, ["mode", "id", "compliance", "met", "target_w", "mean_power_w"]) if events
               else "<p>no events</p>") + "</div>")
    classes = [{"class": name, **c} for name, c in summary["fleet"]["classes"].items()]
    return page(f"gridflex — {summary['scenario']} (fleet)", [
        f"<p>{html.escape(spec.description)}</p>",
        "<h2>The fleet with its coordinator, and the same sites alone</h2>",
        table(totals, ["metric", *modes]),
        "<h2>Sites side by side</h2>",
        f"<div style='display:flex;gap:1em'>{''.join(columns)}</div>",
        "<h2>Traffic</h2>",
        share_plot(fleet),
        "<h3>Request classes (fleet): requests moved and latency added</h3>",
        table(classes, ["class", "origin", "requests", "moved", "added_latency_mean_ms", "added_latency_p99_ms",
                        "latency_budget_ms", "budget_kept"]),
    ])
