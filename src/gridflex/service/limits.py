"""Bounds on an event beyond what the site can carry out: when it may start, how long it may
last, and how large a given baseline may be (`events:` in the service config)."""

from __future__ import annotations

from datetime import datetime, timezone

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.service.config import EventLimits


def check_event_limits(ev: GridEvent, now_s: float, limits: EventLimits, full_w: float, least_w: float) -> None:
    """Refuse an event outside the configured bounds, naming the field and what is allowed."""
    start_s, end_s = ev.start.timestamp(), ev.end.timestamp()
    earliest_s, latest_s = now_s - limits.max_past_s, now_s + limits.max_ahead_s
    if not earliest_s <= start_s <= latest_s:
        raise InputError(
            f"start: {ev.start.isoformat()} is out of range; allowed: from {_iso(earliest_s)} to {_iso(latest_s)}"
            " (events.max_past_s, events.max_ahead_s)"
        )
    if end_s - start_s > limits.max_duration_s:
        raise InputError(
            f"end: the event lasts {(end_s - start_s) / 3600:.1f} h; allowed: at most"
            f" {limits.max_duration_s / 3600:.1f} h (events.max_duration_s)"
        )
    if ev.baseline_w is not None:
        most_w = full_w * (1 + limits.baseline_margin)
        if not least_w <= ev.baseline_w <= most_w:
            raise InputError(
                f"baseline_w: {ev.baseline_w:.0f} W is outside what the site can draw; allowed: {least_w:.0f}"
                f" to {most_w:.0f} W (full power {full_w:.0f} W + events.baseline_margin), or leave it out"
                " to use the measured baseline"
            )


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, timezone.utc).isoformat(timespec="seconds")
