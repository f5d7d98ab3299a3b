"""The `gridflex` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gridflex.console import err, fail, fmt, out, progress, write
from gridflex.errors import InputError
from gridflex.fleet.cli_fleet import fleet, simulate_fleet
from gridflex.plan.registry import PLANNERS
from gridflex.programs.cli_settle import settle
from gridflex.report.summary import JOB_RECORDS_LIMIT
from gridflex.service.cli_serve import restore, serve
from gridflex.sim.compare import compare

app = typer.Typer(
    help="gridflex: turn an AI data center (and its miners) into a flexible, grid-responsive load.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.command()(restore)
app.command()(compare)
app.command()(fleet)
app.command()(settle)
@app.command()
def scenarios() -> None:
    """List the built-in scenarios."""
    from gridflex.sim.scenarios import DEFAULT_SCENARIO, builtin_scenarios

    table = Table("name", "description")
    for name, desc in builtin_scenarios().items():
        table.add_row(name + (" (default)" if name == DEFAULT_SCENARIO else ""), desc)
    out.print(table)


@app.command()
def simulate(
    scenario: Annotated[str, typer.Argument(help="built-in scenario name or path to a YAML/JSON file")] = "phoenix-srp",
    planner: Annotated[str, typer.Option(help=f"one of: {', '.join(PLANNERS)}")] = "optimal",
    seed: Annotated[int, typer.Option(help="seed of the twin's model error and noise")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the summary as JSON here")] = None,
    report: Annotated[Path | None, typer.Option(help="write a self-contained HTML report here")] = None,
    measured: Annotated[Path | None, typer.Option(
        help="CSV of UTC time and measured site power (W) to overlay in the report, e.g. a field trace")] = None,
    trace: Annotated[Path | None, typer.Option(
        help="stream the per-tick time series here as the run goes (.csv or .parquet): UTC time, site, target,"
             " IT and miner power, and per flex tier power, throughput and effective cap")] = None,
    trace_jobs: Annotated[Path | None, typer.Option(
        help="stream every job's power, cap, active fraction, throughput and state at every tick here"
             " (.csv or .parquet, one row per job and tick: large on big sites)")] = None,
    all_jobs: Annotated[bool, typer.Option(
        "--all-jobs", help=f"keep every job's record in the JSON summary (default: all up to {JOB_RECORDS_LIMIT}"
                           " jobs, else the ones furthest behind)")] = False,
    store: Annotated[str | None, typer.Option(
        help="write the run's events, telemetry and decisions into this (new) gridflex store, e.g."
             " sqlite:///run.db, for `gridflex settle`")] = None,
    store_every_s: Annotated[float, typer.Option(
        help="with --store: telemetry every this many simulated seconds (0: every tick); decisions too, and at"
             " every tick of an event")] = 0.0,
    programs: Annotated[Path | None, typer.Option(
        help="with --store: the programs the site is enrolled in (YAML, `programs:`); events of a program are"
             " aimed at its baseline, from the store (docs/programs.md)")] = None,
) -> None:
    """Run a scenario: the controller drives the digital twin in simulated time. A fleet scenario
    (e.g. geo-fleet) runs its sites with the fleet coordinator and again alone."""
    from gridflex.fleet.scenario import is_fleet_scenario

    if is_fleet_scenario(scenario):
        if any((measured, trace, trace_jobs, store, programs)):
            raise fail("--measured, --trace, --trace-jobs, --store and --programs are for single-site scenarios,"
                       " not fleets")
        return simulate_fleet(scenario, planner, seed, json_path, report)
    from gridflex.config_file import load_yaml_model
    from gridflex.programs.model import ProgramsFile
    from gridflex.programs.steer import ProgramTargets
    from gridflex.report.html import run_report
    from gridflex.report.measured import read_measured
    from gridflex.report.summary import summarize
    from gridflex.sim.journal import TraceJournal
    from gridflex.sim.run import run_scenario
    from gridflex.sim.scenarios import load_scenario
    from gridflex.sim.store_journal import StoreJournal, open_run_store, record_baselines
    from gridflex.sim.trace_writer import TraceWriter

    try:
        loaded = load_scenario(scenario)
        overlay = read_measured(measured) if measured else None
        if planner not in PLANNERS:
            raise InputError(f"--planner: unknown planner {planner!r}; choose one of: {', '.join(PLANNERS)}")
        writers = {
            "writer": TraceWriter(trace, "--trace") if trace else None,
            "job_writer": TraceWriter(trace_jobs, "--trace-jobs") if trace_jobs else None,
        }
        if programs and not store:
            raise InputError("--programs: needs --store (program baselines come from the store's meter history)")
        enrolment = load_yaml_model(programs, ProgramsFile, "programs file").programs if programs else None
        db = open_run_store(store, loaded) if store else None
        journal = (StoreJournal(db, store_every_s, loaded.scenario.jobs, loaded.curves,
                                has_miners=loaded.scenario.miners is not None, **writers) if db
                   else TraceJournal(loaded.scenario.jobs, loaded.curves, **writers))
        steer = ProgramTargets.for_scenario(db, enrolment, loaded, journal.flush) if enrolment else None
        try:
            with progress(f"{loaded.scenario.name} · {planner}") as tick:
                result = run_scenario(loaded, planner, seed, progress=tick, journal=journal,
                                      each_tick=steer.apply if steer else None)
            if db:
                record_baselines(db, result)
        finally:
            if db:
                db.close()
    except InputError as e:
        raise fail(str(e)) from None
    if store:
        err.print(f"wrote {journal.rows_written:,} telemetry and decision rows to {store}")
    summary = summarize(result, job_records=None if all_jobs else JOB_RECORDS_LIMIT)
    print_summary(summary)
    for path in (trace, trace_jobs):
        if path:
            err.print(f"wrote {path}")
    if json_path:
        write(json_path, json.dumps(summary, indent=2))
    if report:
        write(report, run_report(result, summary, overlay))


def print_summary(summary: dict) -> None:
    top = Table("metric", "value", title=f"{summary['scenario']} · planner {summary['planner']} · seed {summary['seed']}")
    for key in ("compliance", "sla_violations", "weighted_performance", "over_delivery", "response_s",
                "baseline_w", "energy_kwh"):
        top.add_row(key, fmt(summary[key]))
    out.print(top)
    ev = Table("event", "target_w", "compliance", "response_s", "over_delivery", "mean_power_w", title="events")
    for e in summary["events"]:
        ev.add_row(e["id"], *(fmt(e[k]) for k in ("target_w", "compliance", "response_s", "over_delivery",
                                                    "mean_power_w")))
    out.print(ev)
    shown = summary["jobs"][:JOB_RECORDS_LIMIT]
    if summary["jobs_total"] > len(shown):
        for key in ("flex_tier", "workload"):
            groups = Table(key, "jobs", "gpus", "performance", "lowest", "sla_violations", title=f"jobs by {key}")
            for g in summary["tiers" if key == "flex_tier" else "workloads"]:
                groups.add_row(str(g[key]), str(g["jobs"]), str(g["gpus"]), fmt(g["performance"]),
                               fmt(g["lowest_performance"]), str(g["sla_violations"]))
            out.print(groups)
    title = "jobs" if summary["jobs_total"] <= len(shown) else (
        f"the {len(shown)} of {summary['jobs_total']:,} jobs furthest behind")
    jobs = Table("job", "flex_tier", "gpus", "performance", "within_sla", title=title)
    for j in shown:
        jobs.add_row(j["id"], str(j["flex_tier"]), str(j["gpus"]), fmt(j["performance"]),
                     "yes" if j["within_sla"] else "[red]NO[/]")
    out.print(jobs)
    if "miners" in summary:
        hy = Table("hybrid site", "value", title="miners")
        hy.add_row("site_draw_steadiness", fmt(summary["site_draw_steadiness"]))
        hy.add_row("ai_load_swing", fmt(summary["ai_load_swing"]))
        for key, value in summary["miners"].items():
            if not isinstance(value, dict):
                hy.add_row(key, fmt(value))
        out.print(hy)
    if "shifting" in summary:
        sh = Table("time shifting", "value", title="shifting")
        for key, value in summary["shifting"].items():
            sh.add_row(key, fmt(value) if not isinstance(value, str) else value)
        out.print(sh)
    for w in summary["warnings"]:
        out.print(f"[yellow]warning:[/] {w}")




if __name__ == "__main__":
    app()
