"""`shift_traffic` and the guards of `RouterDriver`, on random splits through an in-memory
balancer that checks every single write (the real HAProxy runs in test_router_haproxy.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gridflex.drivers.router_base import BackendStats, RouterDriver, shift_traffic
from gridflex.errors import DriverError, InputError


class MemoryRouter(RouterDriver):
    """One backend whose weights live in memory; applies a batch one write at a time (the
    worst a balancer can do) and records the split after every single write."""

    name = "memory"

    def __init__(self, weights: list[int], up: list[bool] | None = None, state_file=None):
        super().__init__(state_file)
        self.servers = tuple(f"s{i}" for i in range(len(weights)))
        self.weight = np.array(weights)
        self.admin = ["ready"] * len(weights)
        self.up = np.array(up if up is not None else [True] * len(weights))
        self.history: list[np.ndarray] = [self.read("b").shares]

    def backends(self):
        return {"b": self.servers}

    def read(self, backend):
        if backend != "b":
            raise InputError(f"backend {backend!r} unknown; backends: ['b']")
        n = len(self.servers)
        zero = np.zeros(n)
        return BackendStats(time.time(), "b", self.servers, self.weight.copy(), tuple(self.admin), self.up.copy(),
                            zero, zero, zero, zero, zero)

    def _write_weights(self, backend, weights):
        for server, weight in weights.items():
            self.weight[self.servers.index(server)] = weight
            self.history.append(self.read(backend).shares)

    def _write_admin(self, backend, server, state):
        self.admin[self.servers.index(server)] = state
        self.history.append(self.read(backend).shares)


@pytest.mark.parametrize("seed", range(20))
def test_every_write_keeps_traffic_served_and_bounded(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    start_w = list(rng.integers(0, 10, n) + (np.arange(n) == 0)) if seed % 2 else list(np.diff(
        np.r_[0, np.sort(rng.integers(1, 256, n - 1)), 256]))
    router = MemoryRouter(start_w)
    start = router.read("b").shares
    target = rng.dirichlet(np.ones(n)) * (rng.random(n) > 0.3)
    target = target / target.sum() if target.sum() > 0 else np.eye(n)[0]
    max_step = float(rng.uniform(0.02, 0.5))
    sleeps, marks = [], [1]
    steps = shift_traffic(router, "b", dict(zip(router.servers, target)), max_step, 2.0, sleep=sleeps.append,
                          on_step=lambda _: marks.append(len(router.history)))

    splits = np.array([start] + [list(s.shares.values()) for s in steps])
    assert np.abs(np.diff(splits, axis=0)).max() <= max_step + 1e-9
    assert np.allclose(router.read("b").shares, target, atol=1 / 256)
    history = np.array(router.history)
    assert np.allclose(history.sum(axis=1), 1)  # every write left a server taking traffic
    # once weights are on shift_traffic's scale (summing to 256), no single write of a step gives
    # a server more than the larger of its shares before and after (the first step from another
    # scale relies on the balancer taking the batch at once)
    for k, (before, after) in enumerate(zip(splits[:-1], splits[1:])):
        if k > 0 or sum(start_w) == 256:
            assert (history[marks[k]:marks[k + 1]] <= np.maximum(before, after) + 1e-9).all()
    assert sleeps == [2.0] * (len(steps) - 1)
    gap = np.abs(target - start).max()  # each step closes at least max_step less two roundings of 1/256
    assert np.ceil(gap / max_step - 1e-9) <= len(steps) <= np.ceil(gap / (max_step - 2 / 256)) + 1


def test_shift_does_not_move_when_the_split_is_already_there():
    router = MemoryRouter([1, 1])
    assert shift_traffic(router, "b", {"s0": 0.5, "s1": 0.5}) == [] and len(router.ledger) == 0


def test_a_down_receiver_stops_the_shift_before_any_change():
    router = MemoryRouter([1, 1, 0], up=[True, True, False])
    with pytest.raises(DriverError, match=r"\['s2'\] down or not ready"):
        shift_traffic(router, "b", {"s0": 0.5, "s2": 0.5})
    assert list(router.weight) == [1, 1, 0] and len(router.ledger) == 0


@pytest.mark.parametrize("bad, match", [
    (dict(target_shares={"s0": 1.2, "s1": -0.2}), "allowed: a number in"),
    (dict(target_shares={"s0": 0.5}), "sum to 1"),
    (dict(target_shares={"s9": 1.0}), "'s9' is not in backend 'b'"),
    (dict(target_shares={"s0": 1.0}, max_step=0), "max_step"),
    (dict(target_shares={"s0": 1.0}, step_interval_s=-1), "step_interval_s"),
])
def test_bad_shift_requests_name_the_field(bad, match):
    router = MemoryRouter([1, 1])
    with pytest.raises(InputError, match=match):
        shift_traffic(router, "b", **bad)
    assert list(router.weight) == [1, 1]


def test_restore_after_a_crash_reads_the_ledger_file(tmp_path):
    ledger = tmp_path / "ledger.json"
    crashed = MemoryRouter([3, 1], state_file=ledger)
    shift_traffic(crashed, "b", {"s0": 0.0, "s1": 1.0}, max_step=1.0)
    crashed.drain("b", "s0")
    assert list(crashed.weight) == [0, 256] and crashed.admin == ["drain", "ready"]
    fresh = MemoryRouter([0, 256], state_file=ledger)  # a new process: same balancer state, ledger on disk
    fresh.admin = ["drain", "ready"]
    fresh.restore()
    assert list(fresh.weight) == [3, 1] and fresh.admin == ["ready", "ready"] and len(fresh.ledger) == 0
    # capacity came back before anything was cut: s0 ready and weighted before s1 went down to 1
    assert all(np.isclose(h.sum(), 1) for h in fresh.history)
