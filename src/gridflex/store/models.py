"""Tables. Schema changes go through an Alembic migration in `migrations/versions/`."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class EventRow(Base):
    """A grid event as received, with its state. `body` is the GridEvent as JSON."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    body: Mapped[dict] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(32))  # api | openadr
    status: Mapped[str] = mapped_column(String(16), index=True)  # active | cancelled | completed
    reason: Mapped[str] = mapped_column(Text, default="")
    known_from_s: Mapped[float] = mapped_column(Float)
    baseline_w: Mapped[float | None] = mapped_column(Float, nullable=True)  # frozen at the event's start
    created_s: Mapped[float] = mapped_column(Float)
    updated_s: Mapped[float] = mapped_column(Float)


class DecisionRow(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    t_s: Mapped[float] = mapped_column(Float, index=True)
    site_power_w: Mapped[float] = mapped_column(Float)
    target_w: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: no ceiling
    it_ceiling_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    it_power_w: Mapped[float] = mapped_column(Float)  # planned
    shortfall_w: Mapped[float] = mapped_column(Float)
    model_ratio: Mapped[float] = mapped_column(Float)
    planner_s: Mapped[float] = mapped_column(Float)
    active_events: Mapped[list] = mapped_column(JSON)
    broken_tier: Mapped[list] = mapped_column(JSON)
    notes: Mapped[list] = mapped_column(JSON)
    cap_w: Mapped[list] = mapped_column(JSON)
    active: Mapped[list] = mapped_column(JSON)


class TelemetryRow(Base):
    __tablename__ = "telemetry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    t_s: Mapped[float] = mapped_column(Float, index=True)
    site_power_w: Mapped[float] = mapped_column(Float)
    it_power_w: Mapped[float] = mapped_column(Float)
    estimated: Mapped[bool] = mapped_column(Boolean)  # site power estimated from a model, not metered
    job_power_w: Mapped[list] = mapped_column(JSON)
    miners_power_w: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: no miners
    meter_power_w: Mapped[float | None] = mapped_column(Float, nullable=True)  # the site meter (None: none)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)  # what site power is read from


class JobStateRow(Base):
    """A job's flex-budget account over its current window, and its tier if changed by the operator."""

    __tablename__ = "job_state"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    flex_tier: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_start_s: Mapped[float] = mapped_column(Float)
    window_end_s: Mapped[float] = mapped_column(Float)
    delivered_s: Mapped[float] = mapped_column(Float)
    elapsed_s: Mapped[float] = mapped_column(Float)
    updated_s: Mapped[float] = mapped_column(Float)


class JobOverridesRow(Base):
    """What was set on a job through `PATCH /api/v1/jobs/{id}`: its deadline and earliest start
    (the operator), its load floor (a fleet coordinator); None: not set."""

    __tablename__ = "job_overrides"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    deadline_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    begin_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    load_floor: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_s: Mapped[float] = mapped_column(Float)


class PriceRow(Base):
    """A price signal (OpenADR ELECTRICITY_PRICE), recorded, not acted on."""

    __tablename__ = "prices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32))


class MetaRow(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
