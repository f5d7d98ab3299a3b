"""`gridflex serve`: run the controller as a long-lived service; `gridflex restore`: undo what a
crashed run left changed."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from gridflex.errors import GridflexError, InputError

#: Libraries whose routine chatter (openleadr's scheduler runs every few seconds) would drown the log.
QUIET_LOGGERS = ("alembic", "apscheduler", "openleadr")
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="site config YAML (see examples/site.yaml)")]
LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error")]


def setup_logging(log_level: str) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="listen address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: api.port)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="plan and record, but only log what would be done")
    ] = False,
    log_level: LogLevel = "info",
) -> None:
    """Run the controller in wall-clock time with the REST API, dashboard, metrics and OpenADR client.

    SIGTERM or SIGINT restores every job to normal before exit."""
    import uvicorn

    from gridflex.service.app import api_token, create_app
    from gridflex.service.config import load_config
    from gridflex.service.openadr import Ven
    from gridflex.service.plant import load_site
    from gridflex.service.runtime import LiveService
    from gridflex.store import Store

    setup_logging(log_level)
    try:
        cfg = load_config(config)
        api_token(cfg)  # refuse before touching the store
        spec = load_site(cfg, config.parent if config else None)
        with store_errors(cfg.store.url):
            store = Store(cfg.store.url)
            store.migrate()
            service = LiveService(cfg, spec, store, dry_run=dry_run)
        ven = Ven(service, cfg.openadr) if cfg.openadr.enabled else None
        app = create_app(service, cfg, ven=ven)
    except GridflexError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(app, host=host or cfg.api.host, port=cfg.api.port if port is None else port, log_level=log_level)


@contextmanager
def store_errors(url: str):
    """Turns a store that cannot be reached (or read) into one `InputError` line naming `store.url`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        yield
    except ArgumentError as e:
        raise InputError(f"store.url: {e}; allowed: sqlite:///path or postgresql+psycopg://user@host/db") from None
    except SQLAlchemyError as e:
        shown = make_url(url).render_as_string(hide_password=True)
        cause = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise InputError(f"store.url: cannot use the store at {shown}: {cause}; check that the database"
                         " server is up and the URL, user and password are right") from None


def restore(config: ConfigOption = None, log_level: LogLevel = "info") -> None:
    """Return every job, GPU cap, process and miner that a gridflex run changed to normal, from
    the drivers' ledgers in `driver.state_dir`. For after a crash: e.g. systemd's ExecStopPost
    (examples/gridflex.service). `gridflex serve` does the same when it starts."""
    from gridflex.drivers.factory import make_driver
    from gridflex.drivers.pyasic_driver import PyasicDriver
    from gridflex.service.config import load_config
    from gridflex.service.plant import load_site

    setup_logging(log_level)
    try:
        cfg = load_config(config)
        if cfg.driver.kind == "twin":
            typer.echo("driver.kind is twin: nothing real was changed, nothing to restore")
            return
        if cfg.driver.state_dir is None:
            raise InputError("driver.state_dir: not set, so no ledger of changes is kept on disk and a crashed"
                             " run's changes cannot be found; set it (e.g. /var/lib/gridflex)")
        spec = load_site(cfg, config.parent if config else None)
        driver = make_driver({"kind": cfg.driver.kind, **cfg.driver.settings}, spec.site, spec.curves,
                             cfg.driver.state_dir)
        driver.restore()
        hosts = [h for g in cfg.miners.groups for h in g.hosts] if cfg.miners else []
        if hosts:  # real miners: back as they were found, from their saved state
            PyasicDriver(hosts, cfg.miner_driver.timeout_s, cfg.miner_driver.restart_stagger_s,
                         state_path=cfg.driver.state_dir / "miners.json").restore()
    except GridflexError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"restored every change recorded under {cfg.driver.state_dir}")
