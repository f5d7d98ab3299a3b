from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridflex.model.events import GridEvent, Target
from gridflex.model.scenario import ControlSettings
from gridflex.plan.targets import ResolvedEvent, TargetTimeline

T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)


def event(start_min, end_min, ramp_s=600, **target):
    return GridEvent(
        id=f"e{start_min}",
        start=T0 + timedelta(minutes=start_min),
        end=T0 + timedelta(minutes=end_min),
        ramp_s=ramp_s,
        target=Target(**target),
    )


def at(minute):
    return (T0 + timedelta(minutes=minute)).timestamp()


SETTINGS = ControlSettings(snapback_guard_s=1800, snapback_band=0.0)


def test_ramp_hold_and_ramp_back():
    tl = TargetTimeline.build([ResolvedEvent(event(10, 70, reduction=0.25), 100_000)], None, SETTINGS)
    assert np.isinf(tl.ceiling_at(at(9)))
    assert tl.ceiling_at(at(15)) == pytest.approx(87_500)  # half way down the 10-min ramp
    assert tl.ceiling_at(at(20)) == pytest.approx(75_000)
    assert tl.ceiling_at(at(60)) == pytest.approx(75_000)
    assert tl.ceiling_at(at(65)) == pytest.approx(87_500)  # half way back up


def test_no_snap_back_above_the_baseline_after_the_event():
    tl = TargetTimeline.build([ResolvedEvent(event(10, 70, reduction=0.25), 100_000)], None, SETTINGS)
    assert tl.ceiling_at(at(71)) == pytest.approx(100_000)
    assert tl.ceiling_at(at(99)) == pytest.approx(100_000)
    assert np.isinf(tl.ceiling_at(at(101)))
    banded = TargetTimeline.build(
        [ResolvedEvent(event(10, 70, reduction=0.25), 100_000)], None, ControlSettings(snapback_band=0.03)
    )
    assert banded.ceiling_at(at(80)) == pytest.approx(103_000)


def test_two_step_reduction_and_limit_take_the_minimum():
    tl = TargetTimeline.build(
        [
            ResolvedEvent(event(0, 60, ramp_s=0, power_w=80_000), 100_000),
            ResolvedEvent(event(30, 90, ramp_s=0, power_w=60_000), 100_000),
        ],
        90_000,
        SETTINGS,
    )
    assert tl.ceiling_at(at(10)) == 80_000
    assert tl.ceiling_at(at(45)) == 60_000
    assert tl.ceiling_at(at(200)) == 90_000  # only the interconnection limit is left
    assert [e.event.id for e in tl.active(at(45))] == ["e0", "e30"]


def test_event_validation_names_the_problem():
    with pytest.raises(ValueError, match="exactly one of"):
        Target(reduction=0.2, power_w=5)
    with pytest.raises(ValueError, match="no hold period"):
        event(0, 10, ramp_s=400, reduction=0.1)
    with pytest.raises(ValueError, match="must be below"):
        GridEvent(id="x", start=T0, end=T0 + timedelta(hours=1), target=Target(power_w=2000), baseline_w=1000)
    with pytest.raises(ValueError, match="timezone"):
        GridEvent(id="x", start=datetime(2025, 1, 1), end=T0, target=Target(reduction=0.1))
