import numpy as np
import pytest

from gridflex.control.budget import FlexBudget


def budget():
    # Two jobs with 1000-s windows: Flex 3 (0.5) and Flex 0 (1.0).
    return FlexBudget(np.array([0.5, 1.0]), np.array([0.0, 0.0]), np.array([1000.0, 1000.0]), safety=0.0)


def test_records_only_inside_the_window_and_tracks_use():
    b = budget()
    b.record(-100, 100, np.array([0.5, 1.0]))  # only 100 s fall inside the window
    assert b.elapsed_s == pytest.approx([100, 100])
    assert b.delivered_s == pytest.approx([50, 100])
    assert b.used() == pytest.approx([50 / 500, 0.0])  # lost 50 of an allowance of 500 throughput-seconds
    assert b.performance() == pytest.approx([0.5, 1.0])


def test_floor_spreads_what_is_left_over_the_constrained_time():
    b = budget()
    b.record(0, 200, np.array([1.0, 1.0]))
    # It needs 500 throughput-seconds: 200 delivered + 400 from the free time is enough -> floor 0.
    assert b.floor(np.array([400.0, 400.0])) == pytest.approx([0.0, 1.0])
    # Constrained for all 800 s left: it needs 300 more over 800 s.
    assert b.floor(np.array([800.0, 800.0])) == pytest.approx([300 / 800, 1.0])


def test_a_job_that_used_its_allowance_gets_floor_one():
    b = budget()
    b.record(0, 500, np.array([0.0, 1.0]))  # used all 500 s of slack already
    assert b.floor(np.array([500.0, 500.0]))[0] == pytest.approx(1.0)
    assert b.used()[0] == pytest.approx(1.0)


def test_unknown_throughput_counts_as_full():
    b = budget()
    b.record(0, 10, np.array([np.nan, np.nan]))
    assert b.delivered_s == pytest.approx([10, 10])
