"""The start-time LP (plan/start_times.py) on hand-made cases."""

import numpy as np

from gridflex.plan.start_times import StartInput, occupancy, solve_starts


def test_a_job_starts_in_the_cheapest_window_before_its_latest_start():
    signal = np.array([300, 300, 100, 100, 300, 50, 50, 300.0])
    shares = solve_starts(StartInput(signal, np.array([8]), np.array([2400.0]), np.array([2]), np.array([4]),
                                     np.full(8, 8.0)))
    assert shares.sum() == 1 and shares[0, 2] > 0.99  # slots 5-6 are cleaner but start too late
    late = solve_starts(StartInput(signal, np.array([8]), np.array([2400.0]), np.array([2]), np.array([6]),
                                   np.full(8, 8.0)))
    assert late[0, 5] > 0.99


def test_the_pool_and_a_ceiling_push_the_second_job_out_of_the_cheap_window():
    signal = np.array([100, 100, 300, 300, 300, 300.0])
    two = StartInput(signal, np.array([8, 8]), np.array([2400.0, 2400.0]), np.array([2, 2]), np.array([4, 4]),
                     np.full(6, 8.0))
    shares = solve_starts(two)
    assert np.allclose(shares[:, 0].sum(), 1.0)  # only one fits in slots 0-1
    assert occupancy(shares, np.array([2, 2]), np.array([8.0, 8.0])).max() <= 8 + 1e-6
    capped = StartInput(signal, np.array([8]), np.array([2400.0]), np.array([2]), np.array([4]),
                        np.full(6, 16.0), headroom_w=np.array([0.0, 0.0, np.inf, np.inf, np.inf, np.inf]))
    assert solve_starts(capped)[0, 2] > 0.99  # a grid event over slots 0-1 leaves no room
    released = StartInput(signal, np.array([8]), np.array([2400.0]), np.array([2]), np.array([4]),
                          np.full(6, 16.0), earliest_start=np.array([3]))
    assert solve_starts(released)[0, :3].sum() == 0


def test_a_site_without_a_pool_limits_nothing():
    signal = np.array([300, 100, 100, 300.0])
    shares = solve_starts(StartInput(signal, np.array([8, 8]), np.array([2400.0, 2400.0]), np.array([2, 2]),
                                     np.array([2, 2]), np.full(4, np.inf)))
    assert np.allclose(shares[:, 1], 1.0)  # both in the clean window: no pool to share
