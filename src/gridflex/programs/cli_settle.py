"""`gridflex settle`: a program's monthly settlement statement, from the store alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridflex.errors import GridflexError


def settle(
    program: Annotated[str, typer.Option(help="the program's name (as in the config's `programs:`)")],
    month: Annotated[str, typer.Option(help="YYYY-MM, in the program's local time")],
    out: Annotated[Path, typer.Option(help="folder for statement.html, statement.json and the CSVs")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="service config YAML: its store and its `programs:`")
    ] = None,
    programs: Annotated[
        Path | None, typer.Option(help="a YAML file whose `programs:` list is used instead of the config's")
    ] = None,
    store: Annotated[str | None, typer.Option(help="store URL instead of the config's store.url")] = None,
) -> None:
    """Settle a demand-response program for a month: baselines, delivered reduction, payment and
    penalty per event, with the evidence and a SHA-256 digest of the store records used."""
    from sqlalchemy import inspect, make_url

    from gridflex.config_file import load_yaml_model
    from gridflex.errors import InputError
    from gridflex.programs.model import ProgramsFile
    from gridflex.programs.settle import settle_month
    from gridflex.programs.statement import totals, write_statement
    from gridflex.service.config import load_config
    from gridflex.store import Store

    try:
        cfg = load_config(config)
        enrolment = load_yaml_model(programs, ProgramsFile, "programs file").programs if programs else cfg.programs
        url = make_url(store or cfg.store.url)
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
            raise InputError(f"store {url}: no such file; give the store a `serve` run wrote (--store or the"
                             " config's store.url)")
        db = Store(url.render_as_string(hide_password=False))
        try:
            if not inspect(db.engine).has_table("telemetry"):
                raise InputError(f"store {db.url}: no gridflex tables; give the store a `serve` run wrote (--store or"
                                 " the config's store.url)")
            statement = settle_month(db, enrolment, program, month)
        finally:
            db.close()
        paths = write_statement(statement, out)
    except GridflexError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    for key, value in totals(statement).items():
        typer.echo(f"{key:>26}: {value}")
    typer.echo(f"{'digest_sha256':>26}: {statement.records.digest}")
    for p in paths:
        typer.echo(f"wrote {p}", err=True)
