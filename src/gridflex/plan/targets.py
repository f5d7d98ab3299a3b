"""Target timelines: the site's power ceiling over time after merging events and limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from gridflex.model.events import GridEvent
from gridflex.model.scenario import ControlSettings


@dataclass(frozen=True)
class ResolvedEvent:
    """An event with its baseline fixed; times in epoch seconds."""

    event: GridEvent
    baseline_w: float
    ceiling_w: float = field(init=False)
    start_s: float = field(init=False)
    end_s: float = field(init=False)
    hold_start_s: float = field(init=False)
    hold_end_s: float = field(init=False)

    def __post_init__(self) -> None:
        ev = self.event
        for name, value in (
            ("ceiling_w", ev.target.ceiling_w(self.baseline_w)),
            ("start_s", ev.start.timestamp()),
            ("end_s", ev.end.timestamp()),
            ("hold_start_s", ev.hold_start.timestamp()),
            ("hold_end_s", ev.hold_end.timestamp()),
        ):
            object.__setattr__(self, name, value)

    def ceiling_at(self, t_s: np.ndarray, snapback_guard_s: float, snapback_band: float) -> np.ndarray:
        """Site power ceiling [W] this event sets at epoch times `t_s` (inf where it sets none)."""
        b, c = self.baseline_w, self.ceiling_w
        ramp = self.event.ramp_s
        down = b + (c - b) * _ramp_fraction(t_s - self.start_s, ramp)
        up = c + (b - c) * _ramp_fraction(t_s - self.hold_end_s, ramp)
        out = np.full(np.shape(t_s), np.inf)
        out = np.where((t_s >= self.start_s) & (t_s < self.hold_start_s), down, out)
        out = np.where((t_s >= self.hold_start_s) & (t_s <= self.hold_end_s), c, out)
        out = np.where((t_s > self.hold_end_s) & (t_s <= self.end_s), up, out)
        guard = (t_s > self.end_s) & (t_s <= self.end_s + snapback_guard_s)
        return np.where(guard, b * (1 + snapback_band), out)


def _ramp_fraction(dt_s: np.ndarray, ramp_s: float) -> np.ndarray:
    if ramp_s <= 0:
        return np.ones(np.shape(dt_s))
    return np.clip(dt_s / ramp_s, 0.0, 1.0)


@dataclass(frozen=True)
class TargetTimeline:
    """The minimum of every event's ceiling and the interconnection limit."""

    events: tuple[ResolvedEvent, ...] = ()
    limit_w: float | None = None
    snapback_guard_s: float = 3600.0
    snapback_band: float = 0.03

    @classmethod
    def build(
        cls, events: Sequence[ResolvedEvent], limit_w: float | None, settings: ControlSettings
    ) -> TargetTimeline:
        return cls(tuple(events), limit_w, settings.snapback_guard_s, settings.snapback_band)

    def ceiling_at(self, t_s: float | np.ndarray) -> np.ndarray:
        """Site power ceiling [W] at epoch times `t_s` (inf where none). Each event is evaluated
        only at the times it covers, so long series of events stay cheap."""
        t = np.asarray(t_s, float)
        flat = t.ravel()
        order = np.argsort(flat, kind="stable")
        ts = flat[order]
        out = np.full(ts.shape, np.inf if self.limit_w is None else self.limit_w)
        if len(ts):
            first = np.searchsorted(ts, self._spans_s[:, 0], side="left")
            last = np.searchsorted(ts, self._spans_s[:, 1], side="right")
            for ev, i0, i1 in zip(self.events, first, last):
                if i1 > i0:
                    ceiling = ev.ceiling_at(ts[i0:i1], self.snapback_guard_s, self.snapback_band)
                    out[i0:i1] = np.minimum(out[i0:i1], ceiling)
        result = np.empty_like(out)
        result[order] = out
        return result.reshape(t.shape)

    @cached_property
    def _spans_s(self) -> np.ndarray:
        """[E, 2] first and last epoch second each event sets a ceiling (its guard included)."""
        return np.array([(e.start_s, e.end_s + self.snapback_guard_s) for e in self.events]).reshape(-1, 2)

    def governs(self, t_s: float) -> bool:
        """Whether any event shapes power at `t_s` (its ramps, hold or snap-back guard)."""
        spans = self._spans_s
        return bool(np.any((spans[:, 0] <= t_s) & (t_s <= spans[:, 1])))

    def active(self, t_s: float) -> list[ResolvedEvent]:
        """Events whose ramp or hold covers `t_s`."""
        return [e for e in self.events if e.start_s <= t_s <= e.end_s]
