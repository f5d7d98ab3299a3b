"""Durable record of events, decisions, telemetry and flex budgets (SQLAlchemy; SQLite or PostgreSQL)."""

from gridflex.store.db import EventRecord, Store

__all__ = ["EventRecord", "Store"]
