"""A month's settlement statement: HTML with embedded plots, and CSVs a utility can import
(intervals.csv: one row per event interval; events.csv: one per event; decisions.csv: the evidence),
plus statement.json with every number and the digest of the store records used."""

from __future__ import annotations

import csv
import html
import json
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from gridflex.programs.settle import EventSettlement, MonthStatement
from gridflex.report.render import dates, page, png, table

DECISIONS_SHOWN = 40
EVENT_COLUMNS = ("event_id", "is_test", "start_local", "end_local", "notice_s", "obligation_kw", "baseline_method",
                 "baseline_kw", "metered_kw", "reduction_kw", "performance_factor", "delivered_mwh", "payment_usd",
                 "penalty_usd", "note")


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


def _num(v: float, ndigits: int = 3) -> float | None:
    return round(float(v), ndigits) if np.isfinite(v) else None


def event_row(e: EventSettlement, tz) -> dict:
    ev = e.received["event"]
    b = e.baseline
    return {
        "event_id": e.event_id, "is_test": "yes" if e.is_test else "",
        "start_local": datetime.fromisoformat(ev["start"]).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "end_local": datetime.fromisoformat(ev["end"]).astimezone(tz).strftime("%H:%M"),
        "notice_s": _num(datetime.fromisoformat(ev["start"]).timestamp() - e.received["known_from_s"], 0),
        "obligation_kw": _num(e.obligation_w / 1e3), "baseline_method": b.method if b else "",
        "baseline_kw": _num(np.nanmean(e.baseline_w) / 1e3) if len(e.baseline_w) else None,
        "metered_kw": _num(np.nanmean(e.metered_w) / 1e3) if len(e.metered_w) else None,
        "reduction_kw": _num(np.nanmean(e.reduction_w) / 1e3) if len(e.metered_w) else None,
        "performance_factor": _num(e.performance_factor), "delivered_mwh": _num(e.delivered_mwh, 4),
        "payment_usd": _num(e.payment_usd, 2), "penalty_usd": _num(e.penalty_usd, 2), "note": e.error,
    }


def totals(st: MonthStatement) -> dict:
    return {"capacity_usd": _num(st.capacity_usd, 2), "energy_usd": _num(st.energy_usd, 2),
            "avoided_transmission_usd": _num(st.avoided_usd, 2), "penalty_usd": _num(st.penalty_usd, 2),
            "net_usd": _num(st.net_usd, 2), "performance_factor": _num(st.performance_factor), "events": len(st.events)}


def write_statement(st: MonthStatement, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / n for n in ("statement.html", "statement.json", "intervals.csv", "events.csv", "decisions.csv")]
    paths[0].write_text(statement_html(st))
    paths[1].write_text(json.dumps(statement_json(st), indent=2))
    tz = st.program.tz
    _csv(paths[2], ["program", "event_id", "interval_start_utc", "interval_end_utc", "baseline_kw", "metered_kw",
                    "reduction_kw", "obligation_kw", "baseline_method"],
         ([st.program.name, e.event_id, _iso(t), _iso(t + st.load.interval_s), _num(b / 1e3), _num(m / 1e3),
           _num((b - m) / 1e3), _num(e.obligation_w / 1e3), e.baseline.method]
          for e in st.events if e.baseline for t, b, m in zip(e.start_s, e.baseline_w, e.metered_w)))
    rows = [event_row(e, tz) for e in st.events]
    _csv(paths[3], ["program", *EVENT_COLUMNS], ([st.program.name, *r.values()] for r in rows))
    _csv(paths[4], ["event_id", "t_utc", "site_power_w", "target_w", "it_ceiling_w", "shortfall_w", "active_events",
                    "notes"],
         ([e.event_id, _iso(d["t_s"]), d["site_power_w"], d["target_w"], d["it_ceiling_w"], d["shortfall_w"],
           " ".join(d["active_events"]), " | ".join(map(str, d["notes"]))] for e in st.events for d in e.decisions))
    return paths


def statement_json(st: MonthStatement) -> dict:
    p = st.program
    return {
        "program": p.name, "kind": p.kind, "modelled_on": p.modelled_on, "month": st.month, "timezone": p.timezone,
        "period_utc": [_iso(t) for t in st.period_s], "totals": totals(st),
        "digest_sha256": st.records.digest,
        "records": {"telemetry": st.records.telemetry_rows, "decisions": len(st.records.decisions),
                    "events": len(st.records.events), "telemetry_range_utc": [_iso(t) for t in st.records.telemetry_range_s],
                    "decision_range_utc": [_iso(t) for t in st.records.decision_range_s],
                    "estimated_fraction": _num(st.records.estimated_rows / st.records.telemetry_rows)
                    if st.records.telemetry_rows else None},
        "events": [event_row(e, p.tz) | {"matched": e.matched, "received": e.received,
                                          "baseline_days_used": [d.isoformat() for d in e.baseline.days_used] if e.baseline else [],
                                          "baseline_days_skipped": [[d.isoformat(), why] for d, why in e.baseline.days_skipped] if e.baseline else [],
                                          "adjustment": e.baseline.adjustment if e.baseline else {}}
                   for e in st.events],
        "peaks": [{"start_utc": _iso(k.start_s), "metered_kw": _num(k.metered_w / 1e3), "baseline_kw": _num(k.baseline_w / 1e3),
                   "avoided_usd": _num(k.avoided_usd, 2), "method": k.method, "note": k.error} for k in st.peaks],
        "not_this_program": [{"event": i, "why": why} for i, why in st.unmatched],
    }


def statement_html(st: MonthStatement) -> str:
    p, tz = st.program, st.program.tz
    j = statement_json(st)
    head = (f"<p>Modelled on: {html.escape(p.modelled_on)}. Committed {p.committed_w / 1e3:,.0f} kW; measurement:"
            f" {html.escape(p.measurement.method)} at {p.measurement.interval_s / 60:.0f}-min intervals; times in"
            f" {html.escape(p.timezone)}.</p><p>Records used: {j['records']['telemetry']:,} telemetry rows"
            f" ({j['records']['telemetry_range_utc'][0]} to {j['records']['telemetry_range_utc'][1]}),"
            f" {j['records']['decisions']:,} decisions, {j['records']['events']} events.<br>"
            f"SHA-256 of those records: <code>{st.records.digest}</code> (re-run <code>gridflex settle</code>: a"
            f" changed record gives another digest).</p>")
    estimated = j["records"]["estimated_fraction"]
    if estimated:
        head += (f"<p class='warn'>{estimated:.1%} of the telemetry rows are estimated from a model, not metered:"
                 " a utility may not settle on them.</p>")
    sections = [head, f"<p>Rules: {html.escape(rules_text(p))}</p>", "<h2>Month</h2>", table([j["totals"]], list(j["totals"])), month_plot(st)]
    if st.events:
        rows = [event_row(e, tz) for e in st.events]
        sections += ["<h2>Events</h2>", table(rows, EVENT_COLUMNS)]
    if st.peaks:
        sections += ["<h2>Coincident peaks</h2>", table(j["peaks"], list(j["peaks"][0]))]
    for e, ej in zip(st.events, j["events"]):
        sections.append(event_section(e, ej, st))
    if st.unmatched:
        sections += ["<h2>Events of the month settled elsewhere</h2>", table(j["not_this_program"], ["event", "why"])]
    return page(f"Settlement statement — {p.name} — {st.month}", sections)


def rules_text(p) -> str:
    """The program's payment and penalty rules in one line."""
    parts = [f"notice >= {p.notice_s:.0f} s, response {p.response_s:.0f} s, events up to {p.max_duration_s / 3600:g} h",
             f"capacity {p.payment.capacity_usd_per_mw_month:,.0f} USD/MW-month",
             f"energy {p.payment.energy_usd_per_mwh:,.0f} USD/MWh delivered",
             f"penalty {p.penalty.usd_per_mw_short:,.0f} USD/MW short when PF < {p.penalty.threshold:g}"
             + (" (capacity scaled by the month's PF)" if p.penalty.capacity_at_risk else "")]
    if p.kind == "price_curtailment":
        parts.append(f"strike {p.strike_price_usd_per_mwh:,.0f} USD/MWh")
    if p.kind == "coincident_peak":
        parts.append(f"tariff {p.transmission_usd_per_kw_year:,.2f} USD/kW-year over {p.peaks_per_season} peaks")
    if p.kind == "flex_bids":
        parts.append("paid per event at the accepted bid")
    return "; ".join(parts)


def event_section(e: EventSettlement, ej: dict, st: MonthStatement) -> str:
    parts = [f"<h2>Event {html.escape(e.event_id)}</h2><p>Matched: {html.escape(e.matched)}</p>"]
    if e.error:
        parts.append(f"<p class='warn'>{html.escape(e.error)}</p>")
    if e.baseline:
        parts.append(event_plot(e, st))
        skipped = ", ".join(f"{d} ({why})" for d, why in ej["baseline_days_skipped"]) or "none"
        parts.append(f"<p>Baseline: {html.escape(e.baseline.method)}. Days used:"
                     f" {', '.join(ej['baseline_days_used']) or '—'}. Days passed over: {html.escape(skipped)}.</p>")
        if e.baseline.adjustment:
            a = e.baseline.adjustment
            parts.append("<p>Adjustment: " + html.escape(json.dumps(
                {k: (_iso(v) if k.endswith("_s") and v else v) for k, v in a.items()}, default=str)) + "</p>")
    shown = e.decisions[:DECISIONS_SHOWN]
    parts.append(f"<p>{len(e.decisions)} decisions from the notice to the end (all in decisions.csv); the first"
                 f" {len(shown)}:</p>")
    parts.append(table([{"t (UTC)": _iso(d["t_s"]), "target_kw": _num(d["target_w"] / 1e3) if d["target_w"] else None,
                         "site_kw": _num(d["site_power_w"] / 1e3), "active_events": " ".join(d["active_events"]),
                         "notes": "; ".join(map(str, d["notes"]))} for d in shown],
                       ["t (UTC)", "target_kw", "site_kw", "active_events", "notes"]))
    parts.append("<details><summary>The event as received</summary><pre>"
                 + html.escape(json.dumps(e.received, indent=2)) + "</pre></details>")
    return "".join(parts)


def event_plot(e: EventSettlement, st: MonthStatement) -> str:
    tz = st.program.tz
    b = e.baseline
    day = (st.load.start_s >= b.start_s[0]) & (st.load.start_s <= b.start_s[-1]) if len(b.start_s) else []
    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.step(dates(st.load.start_s[day], tz), st.load.power_w[day] / 1e3, where="post", label="metered")
    ax.step(dates(b.start_s, tz), b.power_w / 1e3, where="post", ls="--", label=f"baseline ({b.method})")
    ax.axvspan(*dates(np.array(e.hold_s), tz), color="orange", alpha=0.15, label="event (hold)")
    ax.set_ylabel("kW (interval mean)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


def month_plot(st: MonthStatement) -> str:
    tz = st.program.tz
    fig, ax = plt.subplots(figsize=(11, 3))
    ax.plot(dates(st.load.start_s, tz), st.load.power_w / 1e3, lw=0.8, label="metered")
    for e in st.events:
        ax.axvspan(*dates(np.array(e.hold_s), tz), color="orange", alpha=0.4)
    for k in st.peaks:
        ax.axvline(dates(np.array([k.start_s]), tz)[0], color="red", lw=0.8)
    ax.set_ylabel("kW")
    ax.set_title("Metered load (orange: events; red: coincident peaks)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d", tz=tz))
    ax.grid(alpha=0.3)
    return png(fig)


def _csv(path: Path, header: list, rows) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)

