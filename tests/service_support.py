"""Shared pieces of the service tests: store URLs for SQLite and PostgreSQL, a small config, free ports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

#: PostgreSQL URL for the store tests; `.ci/run` sets it (and fails if the server is down).
PG_ENV = "GRIDFLEX_TEST_PG_URL"
TOKEN = "test-token-0123456789abcdef"


@contextmanager
def store_url(backend: str, tmp_path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a throwaway schema on the PostgreSQL server."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/gridflex.db"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (CI sets it and requires PostgreSQL)")
    schema = f"gf_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """Wall-clock stand-in the tests move by hand."""

    def __init__(self, t_s: float):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def make_service(url: str, clock, **config):
    """A live service on the default site (phoenix-srp jobs), its store migrated."""
    from gridflex.service.config import ServiceConfig
    from gridflex.service.plant import load_site
    from gridflex.service.runtime import LiveService
    from gridflex.store import Store

    cfg = ServiceConfig.model_validate({"store": {"url": url}, "api": {"token": TOKEN}, **config})
    store = Store(url)
    store.migrate()
    return LiveService(cfg, load_site(cfg), store, clock=clock)


def run_ticks(service, clock, n: int, interval_s: float = 2.0) -> None:
    for _ in range(n):
        clock.t_s += interval_s
        service.tick(clock.t_s)


def serve_argv(config_path, port: int) -> list[str]:
    """`gridflex serve` as a subprocess command line (with this interpreter)."""
    import sys

    return [sys.executable, "-m", "gridflex.cli", "serve", "--config", str(config_path), "--port", str(port)]


def dispatch_now(event_id: str, minutes: float, target: dict, ramp_s: float = 0) -> dict:
    """A POST /api/v1/events body for an event starting now and lasting `minutes`."""
    now = datetime.now(UTC)
    return {
        "id": event_id,
        "start": now.isoformat(),
        "end": (now + timedelta(minutes=minutes)).isoformat(),
        "ramp_s": ramp_s,
        "target": target,
    }


@contextmanager
def api_env(tmp_path, monkeypatch, t0_s: float) -> Iterator[tuple]:
    """(client, service, clock): the API on a live service of the default site, two ticks in."""
    from fastapi.testclient import TestClient

    from gridflex.service.app import create_app
    from gridflex.service.config import TOKEN_ENV

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    clock = FakeClock(t0_s)
    svc = make_service(f"sqlite:///{tmp_path}/api.db", clock)
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        run_ticks(svc, clock, 2)
        yield client, svc, clock
