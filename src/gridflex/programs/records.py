"""The store's records a settlement uses, read once, with a SHA-256 digest over exactly them: a
later change to any of those rows gives another digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from gridflex.store import EventRecord, Store


@dataclass(frozen=True)
class Records:
    telemetry_id: np.ndarray  # [n] int64
    t_s: np.ndarray  # [n]
    site_power_w: np.ndarray  # [n] the meter (or the estimate, where `estimated`)
    estimated: np.ndarray  # [n] bool
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


def read_records(store: Store, telemetry_s: tuple[float, float], decisions_s: tuple[float, float]) -> Records:
    parts = [np.array(rows, dtype=float).reshape(-1, 4) for rows in store.telemetry_between(*telemetry_s)]
    tel = np.concatenate(parts) if parts else np.zeros((0, 4))
    decisions = [decision_dict(d) for d in store.decisions_between(*decisions_s)]
    events = sorted(store.events(), key=lambda r: (r.event.start, r.event.id))
    ids, t_s, power_w, estimated = tel[:, 0].astype(np.int64), tel[:, 1], tel[:, 2], tel[:, 3].astype(bool)
    h = hashlib.sha256()
    h.update(json.dumps({"telemetry_s": telemetry_s, "decisions_s": decisions_s}).encode())
    for arr in (ids, t_s, power_w, estimated):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(decisions, sort_keys=True).encode())
    h.update(json.dumps([event_dict(r) for r in events], sort_keys=True).encode())
    return Records(ids, t_s, power_w, estimated, decisions, events, h.hexdigest(), telemetry_s, decisions_s)
