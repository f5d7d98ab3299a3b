from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridflex.model.events import GridEvent, Target
from gridflex.plan.targets import ResolvedEvent
from gridflex.report.metrics import overall_compliance, score_event, weighted_performance

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def setup(ramp_s=0):
    ev = GridEvent(id="e", start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=30), ramp_s=ramp_s,
                   target=Target(power_w=80.0))
    r = ResolvedEvent(ev, 100.0)
    t = T0.timestamp() + np.arange(1, 40 * 60 + 1, dtype=float)  # 40 minutes at 1 s
    return r, t


def test_compliance_counts_whole_minutes_in_band():
    r, t = setup()
    p = np.full(len(t), 79.0)
    hold = (t > r.hold_start_s) & (t <= r.hold_end_s)
    idx = np.flatnonzero(hold)
    p[idx[120:180]] = 81.0  # minute 3 of the hold: 81 > 80 × 1.01
    p[idx[300:360]] = 80.7  # minute 6: inside the 1 % tolerance
    s = score_event(r, t, p, 1.0, 0.01)
    assert s.intervals == 20
    assert s.compliance == pytest.approx(19 / 20)
    assert s.mean_power_w == pytest.approx(p[hold].mean())


def test_response_time_is_when_power_stays_in_band():
    r, t = setup()
    p = np.full(len(t), 100.0)
    p[t >= r.start_s + 45] = 79.0  # reaches the target 45 s after the start and stays
    s = score_event(r, t, p, 1.0, 0.01)
    assert 45 <= s.response_s <= 45 + 10  # 10-s smoothing
    p[t >= r.hold_end_s - 5] = 95.0  # leaves the band at the very end: never stayed
    assert score_event(r, t, p, 1.0, 0.01).response_s is None


def test_over_delivery_is_relative_to_the_baseline():
    r, t = setup()
    p = np.full(len(t), 70.0)  # 10 W below an 80 W target, baseline 100 W
    assert score_event(r, t, p, 1.0, 0.01).over_delivery == pytest.approx(0.10)


def test_weighted_performance_uses_tier_weights():
    perf = np.array([1.0, 0.5])
    tiers = np.array([0, 3])  # weights 1.0 and 0.5
    assert weighted_performance(perf, tiers) == pytest.approx((1.0 + 0.25) / 1.5)


def test_overall_compliance_pools_intervals():
    r, t = setup()
    good = score_event(r, t, np.full(len(t), 70.0), 1.0, 0.01)
    bad = score_event(r, t, np.full(len(t), 90.0), 1.0, 0.01)
    assert overall_compliance([good, bad]) == pytest.approx(0.5)
    assert overall_compliance([]) == 1.0


def test_response_of_a_ramped_event_is_the_time_to_reach_the_hold_target():
    """Power that follows a 5-min ramp exactly was in band all along: its response is the ramp
    (about 300 s), not 0."""
    r, t = setup(ramp_s=300)
    p = np.maximum(r.ceiling_at(t, 0.0, 0.0), 0.0)
    p = np.where(np.isfinite(p), p, 100.0) * 0.995
    s = score_event(r, t, p, 1.0, 0.01)
    assert 280 <= s.response_s <= 310


def test_in_band_counts_seconds_where_compliance_averages_minutes():
    r, t = setup()
    hold = np.flatnonzero((t > r.hold_start_s) & (t <= r.hold_end_s))
    p = np.full(len(t), 79.0)
    p[hold[::4]] = 81.5  # every 4th second above band; each minute's mean still in band
    s = score_event(r, t, p, 1.0, 0.01)
    assert s.compliance == 1.0
    assert s.in_band == pytest.approx(0.75)
