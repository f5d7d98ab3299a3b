"""The simulated miner fleet: units answer power targets after their latency, restarts are
staggered by a fleet ramp limit (no synchronised inrush), and power and hashrate are recorded
step by step for the site's meter and the mining account."""

from __future__ import annotations

import numpy as np

from gridflex.drivers.base import DriverHealth
from gridflex.drivers.miner_base import MinerActions, MinerTelemetry, MinerUnit
from gridflex.errors import DriverError
from gridflex.model.miners import MinerFleet


class MinerTwinDriver:
    name = "miner-twin"

    def __init__(
        self,
        fleet: MinerFleet,
        start_s: float,
        step_s: float = 1.0,
        ramp_w_per_s: float = np.inf,
        initial_w: np.ndarray | None = None,
    ):
        self.fleet, self.step_s, self.t_s = fleet, step_s, start_s
        self.ramp_w_per_s = ramp_w_per_s
        self.initial_w = fleet.power_w.copy() if initial_w is None else np.asarray(initial_w, float)
        fleet.check_targets(self.initial_w)
        self.target_w = self.initial_w.copy()  # in effect
        self._pend_w = self.target_w.copy()
        self._pend_at_s = np.full(len(fleet), np.inf)
        self._ramp_free_s = start_s  # when the fleet ramp limit next allows a rise
        self._sum_w, self._sum_th, self._n = np.zeros(len(fleet)), np.zeros(len(fleet)), 0
        self._power_chunks: list[np.ndarray] = []
        self._hash_chunks: list[np.ndarray] = []
        self.energy_j = 0.0

    # --- driver verbs -------------------------------------------------------------------
    def discover(self) -> list[MinerUnit]:
        f = self.fleet
        return [
            MinerUnit(i, f.groups[g].model, float(p), float(h), float(m))
            for i, g, p, h, m in zip(f.ids, f.group, f.power_w, f.hashrate_th_s, f.min_power_w)
        ]

    def read(self) -> MinerTelemetry:
        n = max(self._n, 1)
        now_w = self.fleet.draw_w(self.target_w)
        power = self._sum_w / n if self._n else now_w
        hashrate = self._sum_th / n if self._n else self.fleet.hashrate_at(self.target_w)
        self._sum_w, self._sum_th, self._n = np.zeros(len(self.fleet)), np.zeros(len(self.fleet)), 0
        return MinerTelemetry(self.t_s, self.fleet.ids, power, hashrate, self.target_w.copy(),
                              np.ones(len(self.fleet), bool))

    def apply(self, actions: MinerActions) -> None:
        f = self.fleet
        if tuple(actions.unit_ids) != f.ids:
            raise DriverError(f"miner actions must list every unit in order ({len(f)} units)")
        target = np.asarray(actions.target_w, float)
        try:
            f.check_targets(target)
        except ValueError as e:
            raise DriverError(str(e)) from None
        goal = np.where(np.isfinite(self._pend_at_s), self._pend_w, self.target_w)
        changed = np.abs(target - goal) > 1e-6
        if not changed.any():
            return
        old_draw, new_draw = f.draw_w(self.target_w), f.draw_w(target)
        waking = (self.target_w <= 0) & (target > 0)
        latency = np.where(target <= 0, f.sleep_s, np.where(waking, f.restart_s, f.power_target_s))
        at_s = self.t_s + latency
        # A unit re-targeted to another hashing power before its last one took effect (mid power
        # change or mid restart) keeps the old schedule.
        retarget = np.isfinite(self._pend_at_s) & (self._pend_w > 0) & (target > 0)
        at_s = np.where(retarget, np.minimum(self._pend_at_s, at_s), at_s)
        rises = np.flatnonzero(changed & (new_draw > old_draw) & ~retarget)
        if len(rises) and np.isfinite(self.ramp_w_per_s):
            at_s[rises] = self._staggered(at_s[rises], (new_draw - old_draw)[rises])
        self._pend_w = np.where(changed, target, self._pend_w)
        self._pend_at_s = np.where(changed, at_s, self._pend_at_s)

    def restore(self) -> None:
        self.apply(MinerActions(self.fleet.ids, self.initial_w.copy()))

    def health(self) -> DriverHealth:
        return DriverHealth(True, "simulated miner fleet")

    # --- simulation -------------------------------------------------------------------
    def _staggered(self, ready_s: np.ndarray, rise_w: np.ndarray) -> np.ndarray:
        """Start times of rises queued behind the fleet ramp limit, in unit order:
        start_k = max(ready_k, start_{k-1} + rise_{k-1} / ramp), beginning after earlier rises."""
        dur = rise_w / self.ramp_w_per_s
        before = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
        ready = ready_s.copy()
        ready[0] = max(ready[0], self._ramp_free_s)
        start = before + np.maximum.accumulate(ready - before)
        self._ramp_free_s = float(start[-1] + dur[-1])
        return start

    def advance_to(self, t_s: float) -> None:
        n = int(round((t_s - self.t_s) / self.step_s))
        if n <= 0:
            return
        f = self.fleet
        times = self.t_s + self.step_s * np.arange(1, n + 1)
        done = times[:, None] >= self._pend_at_s[None, :]  # [n, N]
        waking = (self.target_w <= 0) & (self._pend_w > 0)
        draw = np.where(done, f.draw_w(self._pend_w), np.where(waking, f.sleep_w, f.draw_w(self.target_w)))
        hashrate = np.where(done, f.hashrate_at(self._pend_w), f.hashrate_at(self.target_w))
        finished = self._pend_at_s <= times[-1]
        self.target_w = np.where(finished, self._pend_w, self.target_w)
        self._pend_at_s = np.where(finished, np.inf, self._pend_at_s)
        self._sum_w += draw.sum(axis=0)
        self._sum_th += hashrate.sum(axis=0)
        self._n += n
        self._power_chunks.append(draw.sum(axis=1))
        self._hash_chunks.append(hashrate.sum(axis=1))
        self.energy_j += float(draw.sum()) * self.step_s
        self.t_s = float(times[-1])

    def power_trace(self) -> np.ndarray:
        """Fleet power [W] of every simulated step so far."""
        return np.concatenate(self._power_chunks) if self._power_chunks else np.zeros(0)

    def hashrate_trace(self) -> np.ndarray:
        """Fleet hashrate [TH/s] of every simulated step so far."""
        return np.concatenate(self._hash_chunks) if self._hash_chunks else np.zeros(0)
