"""The store: every write commits before the caller acts on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.store.models import DecisionRow, EventRow, JobOverridesRow, JobStateRow, MetaRow, PriceRow, TelemetryRow


@dataclass(frozen=True)
class EventRecord:
    event: GridEvent
    source: str
    status: str
    reason: str
    known_from_s: float
    baseline_w: float | None
    created_s: float


@dataclass(frozen=True)
class JobState:
    job_id: str
    flex_tier: int | None
    window_start_s: float
    window_end_s: float
    delivered_s: float
    elapsed_s: float


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest migration."""
        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("gridflex.store").joinpath("migrations")))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # --- events -------------------------------------------------------------------------------
    def add_event(self, ev: GridEvent, source: str, known_from_s: float) -> None:
        now = time.time()
        row = EventRow(
            id=ev.id,
            body=ev.model_dump(mode="json"),
            source=source,
            status="active",
            reason="",
            known_from_s=known_from_s,
            baseline_w=None,
            created_s=now,
            updated_s=now,
        )
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:
            raise InputError(f"id: event {ev.id!r} already exists; use another id") from None

    def set_event_status(self, event_id: str, status: str, reason: str = "") -> None:
        with self._session.begin() as s:
            row = s.get(EventRow, event_id)
            if row is None:
                raise InputError(f"no event {event_id!r}")
            row.status, row.reason, row.updated_s = status, reason, time.time()

    def event(self, event_id: str) -> EventRecord | None:
        with self._session() as s:
            row = s.get(EventRow, event_id)
            return _event_record(row) if row else None

    def events(self, status: str | None = None) -> list[EventRecord]:
        q = select(EventRow).order_by(EventRow.created_s)
        if status:
            q = q.where(EventRow.status == status)
        with self._session() as s:
            return [_event_record(r) for r in s.scalars(q)]

    # --- ticks --------------------------------------------------------------------------------
    def add_telemetry(self, row: TelemetryRow) -> None:
        with self._session.begin() as s:
            s.add(row)

    def add_decision(self, row: DecisionRow, jobs: list[JobState], baselines_w: dict[str, float],
                     telemetry: TelemetryRow | None = None) -> None:
        """The decision, the flex-budget accounts and the event baselines it was made with (and the
        tick's reading), in one transaction."""
        with self._session.begin() as s:
            if telemetry is not None:
                s.add(telemetry)
            s.add(row)
            _merge_jobs(s, jobs)
            for event_id, baseline_w in baselines_w.items():
                ev = s.get(EventRow, event_id)
                if ev is not None and ev.baseline_w is None:
                    ev.baseline_w = float(baseline_w)

    def add_ticks(self, telemetry: list[dict], decisions: list[dict]) -> None:
        """Many telemetry and decision rows (dicts of their columns) in one transaction, as bulk
        inserts: a simulated run writes a month of ticks in batches."""
        with self.engine.begin() as conn:
            if telemetry:
                conn.execute(insert(TelemetryRow), telemetry)
            if decisions:
                conn.execute(insert(DecisionRow), decisions)

    def set_event_baselines(self, baselines_w: dict[str, float]) -> None:
        """Record the baselines events were fixed with, where none is recorded yet."""
        with self.engine.begin() as conn:
            for event_id, baseline_w in baselines_w.items():
                conn.execute(update(EventRow).where(EventRow.id == event_id, EventRow.baseline_w.is_(None))
                             .values(baseline_w=float(baseline_w)))

    def save_job_states(self, jobs: list[JobState]) -> None:
        with self._session.begin() as s:
            _merge_jobs(s, jobs)

    def telemetry(self, since_s: float = 0.0, limit: int = 1000) -> list[TelemetryRow]:
        return self._recent(TelemetryRow, since_s, limit)

    def decisions(self, since_s: float = 0.0, limit: int = 1000) -> list[DecisionRow]:
        return self._recent(DecisionRow, since_s, limit)

    def count(self, table: type) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(table)) or 0

    def last_decision_s(self) -> float | None:
        with self._session() as s:
            return s.scalar(select(func.max(DecisionRow.t_s)))

    def prune(self, before_s: float) -> None:
        with self._session.begin() as s:
            s.execute(delete(TelemetryRow).where(TelemetryRow.t_s < before_s))
            s.execute(delete(DecisionRow).where(DecisionRow.t_s < before_s))

    def _recent(self, table, since_s: float, limit: int) -> list:
        """The newest `limit` rows after `since_s`, oldest first."""
        q = select(table).where(table.t_s > since_s).order_by(table.id.desc()).limit(limit)
        with self._session() as s:
            return list(reversed(s.scalars(q).all()))

    # --- read-only range queries (settlement) --------------------------------------------------
    def telemetry_between(self, start_s: float, end_s: float, chunk: int = 100_000) -> Iterator[list[tuple]]:
        """(id, t_s, site_power_w, estimated) of every telemetry row in [start_s, end_s), by time, in
        lists of up to `chunk` rows (a month of 2-s ticks is millions of rows)."""
        t = TelemetryRow
        q = select(t.id, t.t_s, t.site_power_w, t.estimated).where(t.t_s >= start_s, t.t_s < end_s)
        with self.engine.connect() as conn:  # Core, not the ORM: rows as plain tuples, fast
            for part in conn.execution_options(yield_per=chunk).execute(q.order_by(t.t_s, t.id)).partitions():
                yield [tuple(r) for r in part]

    def decisions_between(self, start_s: float, end_s: float) -> list[DecisionRow]:
        """Every decision in [start_s, end_s), by time."""
        q = select(DecisionRow).where(DecisionRow.t_s >= start_s, DecisionRow.t_s < end_s)
        with self._session() as s:
            return list(s.scalars(q.order_by(DecisionRow.t_s, DecisionRow.id)))

    # --- jobs ---------------------------------------------------------------------------------
    def job_states(self) -> dict[str, JobState]:
        with self._session() as s:
            return {
                r.job_id: JobState(r.job_id, r.flex_tier, r.window_start_s, r.window_end_s, r.delivered_s, r.elapsed_s)
                for r in s.scalars(select(JobStateRow))
            }

    def save_job_override(self, job_id: str, times: dict[str, datetime] | None = None,
                          load_floor: float | None = None) -> None:
        """Record what was set on a job: its `deadline` and/or `begin`, its load floor (others kept)."""
        with self._session.begin() as s:
            row = s.get(JobOverridesRow, job_id) or JobOverridesRow(job_id=job_id)
            for name, t in (times or {}).items():
                setattr(row, f"{name}_s", t.timestamp())
            if load_floor is not None:
                row.load_floor = float(load_floor)
            row.updated_s = time.time()
            s.merge(row)

    def job_overrides(self) -> dict[str, dict]:
        """job id -> what was set on it: `deadline` and `begin` (UTC datetimes), `load_floor`."""
        with self._session() as s:
            return {r.job_id: {name: datetime.fromtimestamp(t_s, timezone.utc) for name, t_s in
                               (("deadline", r.deadline_s), ("begin", r.begin_s)) if t_s is not None}
                    | ({"load_floor": r.load_floor} if r.load_floor is not None else {})
                    for r in s.scalars(select(JobOverridesRow))}

    # --- prices and settings ------------------------------------------------------------------
    def add_price(self, event_id: str, start_s: float, end_s: float, price: float, source: str) -> None:
        with self._session.begin() as s:
            s.add(PriceRow(event_id=event_id, start_s=start_s, end_s=end_s, price=price, source=source))

    def prices(self) -> list[PriceRow]:
        with self._session() as s:
            return list(s.scalars(select(PriceRow).order_by(PriceRow.start_s)))

    def meta(self, key: str) -> str | None:
        with self._session() as s:
            row = s.get(MetaRow, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._session.begin() as s:
            s.merge(MetaRow(key=key, value=value))


def _merge_jobs(s: Session, jobs: list[JobState]) -> None:
    now = time.time()
    for j in jobs:
        s.merge(JobStateRow(**j.__dict__, updated_s=now))


def _event_record(row: EventRow) -> EventRecord:
    return EventRecord(
        GridEvent.model_validate(row.body),
        row.source,
        row.status,
        row.reason,
        row.known_from_s,
        row.baseline_w,
        row.created_s,
    )


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before we act
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
