"""The hybrid site's section of the HTML report: site draw split into AI load and miners against
the setpoint and the grid's ceiling, and the power price against each model's breakeven."""

from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np

from gridflex.report.render import dates, minute_means, png, table
from gridflex.sim.run import RunResult


def hybrid_sections(result: RunResult, summary: dict) -> list[str]:
    m = result.miners
    if m is None:
        return []
    miners = summary["miners"]
    top = [{"site_draw_steadiness": summary["site_draw_steadiness"], "ai_load_swing": summary["ai_load_swing"]}
           | {k: v for k, v in miners.items() if not isinstance(v, dict)}]
    breakeven = [{"model": k, "breakeven_usd_per_mwh": v} for k, v in miners["breakeven_usd_per_mwh"].items()]
    return ["<h2>Miners</h2>", table(top, list(top[0])), table(breakeven, ["model", "breakeven_usd_per_mwh"]),
            _plot(result, breakeven)]


def _plot(result: RunResult, breakeven: list[dict]) -> str:
    m, sc = result.miners, result.scenario
    tz = sc.start.tzinfo
    t, ai = minute_means(result.step_times_s, m.gpu_site_w, sc.step_s)
    _, miners = minute_means(result.step_times_s, m.power_w, sc.step_s)
    price = m.side.prices.at(t)
    setpoint = np.array([m.side.setpoint_w(float(x), float(p)) for x, p in zip(t, price)])
    ceiling = result.timeline.ceiling_at(t)
    when = dates(t, tz)
    fig, (ax, axp) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=[2, 1])
    ax.stackplot(when, ai / 1e3, miners / 1e3, labels=["AI load", "miners"], alpha=0.8)
    ax.plot(when, np.where(np.isfinite(setpoint), setpoint, np.nan) / 1e3, "k:", lw=1.2, label="setpoint")
    ax.plot(when, np.where(np.isfinite(ceiling), ceiling, np.nan) / 1e3, "k--", lw=1.2, label="grid ceiling")
    ax.set_ylabel("kW (1-min mean)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Site draw: AI load + miners")
    axp.step(when, price, where="post", lw=1, label="power price")
    for i, row in enumerate(breakeven):
        axp.axhline(row["breakeven_usd_per_mwh"], ls="--", lw=0.8, color=f"C{i + 1}", label=f"breakeven {row['model']}")
    axp.set_yscale("symlog", linthresh=100)
    axp.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axp.set_ylabel("USD/MWh")
    axp.legend(loc="upper left", fontsize=8)
    axp.grid(alpha=0.3)
    axp.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    return png(fig)
