"""`gridflex serve`: run the controller as a long-lived service."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gridflex.errors import GridflexError


def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="site config YAML (see examples/site.yaml)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="listen address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: api.port)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="plan and record, but only log what would be done")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
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

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        cfg = load_config(config)
        api_token(cfg)  # refuse before touching the store
        spec = load_site(cfg, config.parent if config else None)
        store = Store(cfg.store.url)
        store.migrate()
        service = LiveService(cfg, spec, store, dry_run=dry_run)
        ven = Ven(service, cfg.openadr) if cfg.openadr.enabled else None
        app = create_app(service, cfg, ven=ven)
    except GridflexError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(app, host=host or cfg.api.host, port=cfg.api.port if port is None else port, log_level=log_level)
