"""The store's records a settlement uses, read once, with a SHA-256 digest over exactly them: a
later change to any of those rows gives another digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from gridflex.programs.meter import IntervalAccumulator, IntervalLoad
from gridflex.store import EventRecord, Store


@dataclass(frozen=True)
class Records:
    load: IntervalLoad  # the telemetry's site power (the meter, or the estimate), as interval means
    telemetry_rows: int
    estimated_rows: int  # rows whose power was estimated, not metered
    decisions: list[dict]  # in the settled period, by time
    events: list[EventRecord]  # every event in the store, as received, with its state
    digest: str  # sha256 hex of all of the above
    telemetry_range_s: tuple[float, float]
    decision_range_s: tuple[float, float]


def event_dict(r: EventRecord) -> dict:
    """An event record as received (the GridEvent as JSON), with its source and state."""
    return {"event": r.event.model_dump(mode="json"), "source": r.source, "status": r.status, "reason": r.reason,
                "known_from_s": r.known_from_s, "baseline_w": r.baseline_w, "created_s": r.created_s}


def decision_dict(d) -> dict:
    return {"id": d.id, "t_s": d.t_s, "site_power_w": d.site_power_w, "target_w": d.target_w, "it_ceiling_w": d.it_ceiling_w,
                "it_power_w": d.it_power_w, "shortfall_w": d.shortfall_w, "active_events": list(d.active_events),
                "notes": list(d.notes), "broken_tier": list(d.broken_tier)}


def read_records(store: Store, telemetry_s: tuple[float, float], decisions_s: tuple[float, float],
                 interval_s: float) -> Records:
    """Read the records once, in chunks: telemetry into interval means, and everything into the digest.
    The digest hashes the telemetry as rows of (id, t_s, site_power_w, estimated) in float64, so it
    does not depend on the chunk size."""
    h = hashlib.sha256()
    h.update(json.dumps({"telemetry_s": telemetry_s, "decisions_s": decisions_s}).encode())
    load, rows, estimated = _read_telemetry(store, telemetry_s, interval_s, h)
    decisions = [decision_dict(d) for d in store.decisions_between(*decisions_s)]
    events = sorted(store.events(), key=lambda r: (r.event.start, r.event.id))
    h.update(json.dumps(decisions, sort_keys=True).encode())
    h.update(json.dumps([event_dict(r) for r in events], sort_keys=True).encode())
    return Records(load, rows, estimated, decisions, events, h.hexdigest(), telemetry_s, decisions_s)


def read_load(store: Store, telemetry_s: tuple[float, float], interval_s: float) -> IntervalLoad:
    """The telemetry's site power over `telemetry_s` as interval means."""
    return _read_telemetry(store, telemetry_s, interval_s)[0]


def _read_telemetry(store: Store, telemetry_s: tuple[float, float], interval_s: float,
                    digest=None) -> tuple[IntervalLoad, int, int]:
    """Interval means, rows read and rows estimated, read in chunks (each also into `digest`)."""
    acc = IntervalAccumulator(interval_s, *telemetry_s)
    rows = estimated = 0
    for chunk in store.telemetry_between(*telemetry_s):
        tel = np.array(chunk, dtype=float).reshape(-1, 4)
        if digest is not None:
            digest.update(np.ascontiguousarray(tel).tobytes())
        acc.add(tel[:, 1], tel[:, 2])
        rows += len(tel)
        estimated += int(tel[:, 3].sum())
    return acc.result(), rows, estimated
