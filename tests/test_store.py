"""The store on SQLite and on a real PostgreSQL server: same tests, both backends."""

from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.store import Store
from gridflex.store.db import JobState
from gridflex.store.models import Base, DecisionRow, TelemetryRow
from tests.service_support import store_url

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with store_url(request.param, tmp_path) as url:
        s = Store(url)
        s.migrate()
        yield s
        s.close()


def _event(ev_id="e1", **kw) -> GridEvent:
    return GridEvent(id=ev_id, start=T0, end=T0 + timedelta(hours=1), ramp_s=60, target={"reduction": 0.2}, **kw)


def _decision(t_s: float, **kw) -> DecisionRow:
    fields = dict(
        t_s=t_s,
        site_power_w=90e3,
        target_w=None,
        it_ceiling_w=None,
        it_power_w=89e3,
        shortfall_w=0.0,
        model_ratio=1.0,
        planner_s=0.002,
        active_events=[],
        broken_tier=[],
        notes=[],
        cap_w=[400.0],
        active=[1.0],
    )
    return DecisionRow(**{**fields, **kw})


def test_schema_matches_models_after_migration(store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_is_idempotent(store):
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"


def test_event_round_trip_and_status(store):
    ev = _event()
    store.add_event(ev, "api", known_from_s=T0.timestamp() - 60)
    rec = store.event("e1")
    assert rec.event == ev and rec.status == "active" and rec.source == "api"
    store.set_event_status("e1", "cancelled", "operator")
    assert [r.event.id for r in store.events("cancelled")] == ["e1"]
    assert store.events("active") == []


def test_duplicate_event_id_is_refused_and_names_the_field(store):
    store.add_event(_event(), "api", 0.0)
    with pytest.raises(InputError, match="id: event 'e1' already exists"):
        store.add_event(_event(), "openadr", 0.0)
    assert len(store.events()) == 1


def test_decision_budget_and_baseline_written_together(store):
    store.add_event(_event(), "api", 0.0)
    jobs = [JobState("j1", None, 0.0, 86400.0, 500.0, 600.0), JobState("j2", 3, 0.0, 86400.0, 10.0, 600.0)]
    store.add_decision(_decision(600.0, active_events=["e1"], cap_w=[250.0, 300.0]), jobs, {"e1": 91e3})
    assert store.job_states()["j2"] == jobs[1]
    assert store.event("e1").baseline_w == 91e3
    # A baseline once frozen is never overwritten.
    store.add_decision(_decision(602.0), jobs, {"e1": 50e3})
    assert store.event("e1").baseline_w == 91e3
    rows = store.decisions()
    assert [r.t_s for r in rows] == [600.0, 602.0] and rows[0].cap_w == [250.0, 300.0]
    assert store.last_decision_s() == 602.0


def test_recent_rows_since_and_limit_and_prune(store):
    for t in range(10):
        store.add_telemetry(
            TelemetryRow(t_s=float(t), site_power_w=t * 1e3, it_power_w=t * 1e3, estimated=False, job_power_w=[1.0])
        )
    assert [r.t_s for r in store.telemetry(since_s=4.0, limit=3)] == [7.0, 8.0, 9.0]
    store.prune(before_s=8.0)
    assert store.count(TelemetryRow) == 2


def test_meta_and_prices(store):
    assert store.meta("epoch_s") is None
    store.set_meta("epoch_s", "12.5")
    store.set_meta("epoch_s", "13.5")
    assert store.meta("epoch_s") == "13.5"
    store.add_price("ev", 0.0, 3600.0, 0.25, "openadr")
    assert [(p.event_id, p.price) for p in store.prices()] == [("ev", 0.25)]


def test_sqlite_runs_in_wal_mode(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/wal.db")
    s.migrate()
    with s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
