"""Evaluation: how well a run met its grid events and its jobs' service levels.

Definitions (the Phoenix field demonstration's, made precise):
- compliance of an event: the fraction of whole 1-minute intervals of its hold period whose
  mean site power is at or below the target plus `tolerance` (a fraction of the target);
- response_s: seconds from the start of the reduction (the ramp's start) until site power
  (10-s mean) has reached the hold target plus tolerance and stays at or below the ramping
  target plus tolerance until the hold ends (a 15-min ramp followed exactly gives ~900 s);
- in_band: the fraction of simulated steps of the hold at or below the target plus tolerance
  (stricter than the 1-minute compliance, which averages within each minute);
- over_delivery: mean of (target − power, floored at 0) over the hold, as a fraction of the baseline;
- job performance: mean throughput over the job's window, relative to normal;
- weighted_performance: mean of job performances weighted by tier (Flex 0: 1.0, else the flex factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflex.model.site import FLEX_FACTOR
from gridflex.plan.targets import ResolvedEvent

INTERVAL_S = 60.0
RESPONSE_SMOOTHING_S = 10.0


@dataclass(frozen=True)
class EventScore:
    id: str
    baseline_w: float
    target_w: float
    compliance: float
    in_band: float
    intervals: int
    response_s: float | None  # None: never stayed in band
    over_delivery: float
    mean_power_w: float

    def as_dict(self) -> dict:
        return {k: _round(v) for k, v in self.__dict__.items()}


def score_event(
    ev: ResolvedEvent,
    t_s: np.ndarray,
    power_w: np.ndarray,
    step_s: float,
    tolerance: float,
) -> EventScore:
    """Score one event, against its own target, on site power sampled every `step_s` at times `t_s`."""
    in_hold = (t_s > ev.hold_start_s) & (t_s <= ev.hold_end_s)
    per = max(1, int(round(INTERVAL_S / step_s)))
    hold_p, hold_t = power_w[in_hold], t_s[in_hold]
    target = ev.ceiling_at(hold_t, 0.0, 0.0)
    n = len(hold_p) // per
    minute_p = hold_p[: n * per].reshape(n, per).mean(axis=1)
    minute_target = target[: n * per].reshape(n, per).mean(axis=1)
    ok = minute_p <= minute_target * (1 + tolerance)
    over = np.clip(target - hold_p, 0, None).mean() / ev.baseline_w if len(hold_p) and ev.baseline_w > 0 else 0.0
    return EventScore(
        id=ev.event.id,
        baseline_w=ev.baseline_w,
        target_w=ev.ceiling_w,
        compliance=float(ok.mean()) if n else 1.0,
        in_band=float(np.mean(hold_p <= target * (1 + tolerance))) if len(hold_p) else 1.0,
        intervals=n,
        response_s=_response_s(ev, t_s, power_w, step_s, tolerance),
        over_delivery=float(over),
        mean_power_w=float(hold_p.mean()) if len(hold_p) else float("nan"),
    )


def _response_s(ev: ResolvedEvent, t_s: np.ndarray, power_w: np.ndarray, step_s: float, tolerance: float) -> float | None:
    span = (t_s > ev.start_s) & (t_s <= ev.hold_end_s)
    if not span.any():
        return None
    k = max(1, int(round(RESPONSE_SMOOTHING_S / step_s)))
    p = power_w[span]
    smooth = np.convolve(p, np.ones(k) / k, mode="full")[: len(p)]
    smooth[: k - 1] = p[: k - 1]
    out = smooth > ev.ceiling_at(t_s[span], 0.0, 0.0) * (1 + tolerance)
    stays_from = int(np.flatnonzero(out)[-1]) + 1 if out.any() else 0
    reached = np.flatnonzero(smooth <= ev.ceiling_w * (1 + tolerance))
    if stays_from == len(out) or not len(reached):
        return None
    first = max(stays_from, int(reached[0]))
    return float(t_s[span][first] - ev.start_s)


def weighted_performance(performance: np.ndarray, flex_tier: np.ndarray) -> float:
    weight = np.array([FLEX_FACTOR[int(t)] for t in flex_tier])
    return float((weight * performance).sum() / weight.sum())


def overall_compliance(scores: list[EventScore]) -> float:
    """Fraction of all scored 1-minute intervals, over every event, that were in band."""
    total = sum(s.intervals for s in scores)
    if total == 0:
        return 1.0
    return sum(s.compliance * s.intervals for s in scores) / total


def _round(v):
    if isinstance(v, float):
        return None if not np.isfinite(v) else round(v, 6)
    return v
