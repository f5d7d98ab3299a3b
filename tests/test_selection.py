"""`cheapest_first`, the linear-time selection behind the optimal planner's greedy shed, takes
exactly what a full stable sort by cost would."""

from __future__ import annotations

import numpy as np
import pytest

from gridflex.plan.optimal import cheapest_first


def by_sorting(cost: np.ndarray, width: np.ndarray, amount: float) -> np.ndarray:
    usable = np.flatnonzero(width > 0)
    order = usable[np.argsort(cost[usable], kind="stable")]
    cum = np.cumsum(width[order])
    n = int(np.searchsorted(cum, amount))
    taken = np.zeros(width.shape)
    taken[order[:n]] = width[order[:n]]
    if n < len(order):
        taken[order[n]] = amount - (cum[n - 1] if n else 0.0)
    return taken


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_full_sort_with_ties_and_empty_items(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2_000, 30_000))
    distinct = rng.random(int(rng.integers(1, 60))) if seed % 2 else rng.random(n)  # many ties, or none
    cost = rng.choice(distinct, n)
    width = np.where(rng.random(n) < 0.2, 0.0, rng.random(n) * 100)
    for amount in (0.0, 0.3 * width.sum(), width.sum(), 1.2 * width.sum()):
        taken = cheapest_first(cost, width, amount)
        assert taken == pytest.approx(by_sorting(cost, width, amount), abs=1e-6)
        assert taken.sum() == pytest.approx(min(amount, width.sum()))
