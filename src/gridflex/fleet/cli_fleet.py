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
        coordinator = FleetCoordinator(cfg, router)
    except (InputError, DriverError) as e:
        typer.echo(f"error: {e}", err=True)
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
