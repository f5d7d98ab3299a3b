"""`gridflex fleet`: run the fleet coordinator as a separate, long-lived process."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from gridflex.errors import DriverError, InputError


def fleet(
    config: Annotated[Path, typer.Option("--config", "-c", help="fleet config YAML (see docs/fleet.md)")],
    ticks: Annotated[int | None, typer.Option(min=1, help="stop after this many ticks (default: run until stopped)")]
    = None,
    keep_on_exit: Annotated[bool, typer.Option(
        "--keep-on-exit", help="leave the router's weights as they are on exit (default: restore them)")] = False,
) -> None:
    """Coordinate sites: poll each site's API, decide the traffic split, step HAProxy's weights.

    Prints one JSON line per tick. SIGTERM or SIGINT restores the router's weights (unless --keep-on-exit).

    Killed outright, the router keeps the last split; the ledger keeps the original weights for restore."""
    from gridflex.drivers.router_haproxy import HAProxyDriver
    from gridflex.fleet.config import load_fleet_config
    from gridflex.fleet.loop import FleetCoordinator

    try:
        cfg = load_fleet_config(config)
        router = HAProxyDriver(cfg.router.socket, cfg.router.state_file)
        router.backends()  # the admin socket answers
        store = None
        if cfg.store_url:
            from gridflex.store.db import Store

            store = Store(cfg.store_url)
            store.migrate()
        coordinator = FleetCoordinator(cfg, router, store=store)
    except (InputError, DriverError, SQLAlchemyError) as e:
        typer.echo(f"error: {str(e).splitlines()[0] if isinstance(e, SQLAlchemyError) else e}", err=True)
        raise typer.Exit(2 if isinstance(e, InputError) else 1) from None

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    n = 0
    try:
        while not stop.is_set() and (ticks is None or n < ticks):
            t0 = time.monotonic()
            try:
                line = coordinator.tick()
            except DriverError as e:  # the router is away: sites carry on by themselves
                line = {"error": str(e)}
            print(json.dumps({"t_s": round(time.time(), 3), **line}), flush=True)
            n += 1
            if ticks is None or n < ticks:
                stop.wait(max(0.0, cfg.interval_s - (time.monotonic() - t0)))
    finally:
        if not keep_on_exit:
            try:
                router.restore()
            except DriverError as e:
                print(f"restore incomplete: {e}", file=sys.stderr)


def simulate_fleet(scenario: str, planner: str, seed: int, json_path: Path | None, report: Path | None) -> None:
    """`gridflex simulate` of a fleet scenario: the fleet with its coordinator and the same sites
    alone, one after the other; prints both side by side, writes the summary and report."""
    from rich.table import Table

    from gridflex.console import fail, fmt, out, progress, write
    from gridflex.fleet.scenario import load_fleet
    from gridflex.report.fleet_html import TOTALS, fleet_report
    from gridflex.sim.fleet_run import compare_fleet

    try:
        fleet = load_fleet(scenario)
        with progress(f"{fleet.name} · {planner} · fleet and alone") as tick:
            summary, runs = compare_fleet(fleet, planner, seed, progress=tick)
    except InputError as e:
        raise fail(str(e)) from None
    modes = ("fleet", "alone")
    total = Table("metric", *modes, title=f"{fleet.name} · planner {planner} · seed {seed}")
    for key in TOTALS:
        total.add_row(key, *(fmt(summary[m]["total"][key]) for m in modes))
    out.print(total)
    columns = ("weighted_performance", "work_gpu_h", "energy_kwh", "carbon_kg", "requests", "requests_failed")
    sites = Table("site", "mode", "events met", *columns, title="sites")
    for name in summary["fleet"]["sites"]:
        for m in modes:
            s = summary[m]["sites"][name]
            sites.add_row(name, m, f"{sum(e['met'] for e in s['events'])}/{len(s['events'])}",
                          *(fmt(s[k]) for k in columns))
    out.print(sites)
    classes = Table("class", "origin", "requests", "moved", "added mean ms", "added p99 ms", "budget ms",
                    title="request classes (fleet)")
    for name, c in summary["fleet"]["classes"].items():
        classes.add_row(name, c["origin"], *(fmt(c[k]) for k in ("requests", "moved", "added_latency_mean_ms",
                                                                  "added_latency_p99_ms", "latency_budget_ms")))
    out.print(classes)
    if json_path:
        write(json_path, json.dumps(summary, indent=2))
    if report:
        write(report, fleet_report(summary, runs))
