"""Baseline planners: the four policies of the Phoenix field demonstration and two that an
operator would try first.

The published four are written from the pseudocode in the README of
ai-emerald/emerald-ai-demo-may-2025 ("Emerald AI Conductor Pseudocode"); every reading of it that
we had to choose is listed in docs/baselines.md. All plan open loop (see `openloop`).

- `dvfs-fair`: power caps only; every flexible job loses the same fraction of its power, clamped
  at the power that keeps its flex floor.
- `dvfs-pause-fair`: a set of ≥ 2 pausable jobs takes turns being paused (the block split evenly),
  `dvfs-fair` on the others; the set is the one that cuts least while meeting the target.
- `pause-greedy`: walking the block in rows, whenever the target is exceeded pause the next most
  flexible job for exactly its pause allowance, in one stretch.
- `pause-resize-fair`: pause the one job (of those allowed to stop for the whole block) that leaves
  the most power within the target, and take GPUs from the others by equal fractions.
- `uniform-cap`: one power cap for every flexible GPU, the highest that meets the target.
- `pause-by-tier`: pause whole jobs, most flexible tier first (largest first within a tier).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from gridflex.model.fleet import JobFleet, RowInterp
from gridflex.plan.base import PlanInput
from gridflex.plan.openloop import (
    BlockState,
    OpenLoopPlanner,
    equal_fraction_cut,
    it_ceiling_w,
    model_power_w,
    worst_it_ceiling_w,
)

#: Length of one row of the pause-greedy timeline table.
ROW_S = 60.0
#: Most pause candidates whose sets dvfs-pause-fair enumerates (2^6 sets at most).
MAX_PAUSE_CANDIDATES = 6


def floor_cap_power_w(fleet: JobFleet, floor: np.ndarray) -> np.ndarray:
    """Least per-GPU power, by capping alone, at which each job keeps throughput `floor`."""
    cap = RowInterp(fleet.throughput, fleet.cap_w)(floor)
    return fleet.power_at_cap(cap)


def dvfs_fair_caps(
    fleet: JobFleet, floor: np.ndarray, ceiling_w: float, active: np.ndarray
) -> np.ndarray:
    """Caps that cut every cappable working job's power by the same fraction to meet `ceiling_w`,
    each clamped at the power of its floor (and at its lowest cap)."""
    cap = fleet.max_cap_w.copy()
    adj = fleet.may_cap & (active > 0)
    need_w = model_power_w(fleet, cap, active) - ceiling_w
    if not np.isfinite(ceiling_w) or need_w <= 0 or not adj.any():
        return cap
    low = np.maximum(floor_cap_power_w(fleet, np.minimum(floor / np.maximum(active, 1e-9), 1.0)), fleet.power_w[:, 0])
    level = fleet.full_w.copy()
    level[adj] = equal_fraction_cut(fleet.full_w[adj], low[adj], (fleet.gpus * active)[adj], need_w)
    return np.where(adj, fleet.cap_at_power(level), cap)


def resize_fair_active(
    fleet: JobFleet, floor: np.ndarray, ceiling_w: float, paused: int | None
) -> np.ndarray:
    """Working fraction of each job: `paused` stopped, and whole GPUs taken from the other
    resizable jobs by equal fractions, none below its floor's GPUs, to meet `ceiling_w`."""
    active = np.ones(len(fleet))
    adj = (fleet.may_resize | fleet.may_pause)
    if paused is not None:
        active[paused], adj[paused] = 0.0, False
    need_w = model_power_w(fleet, fleet.max_cap_w, active) - ceiling_w
    if not np.isfinite(ceiling_w) or need_w <= 0 or not adj.any():
        return active
    gpus = fleet.gpus.astype(float)
    min_gpus = np.ceil(floor * gpus - 1e-9)
    per_gpu_w = fleet.full_w - fleet.paused_w
    kept = equal_fraction_cut(gpus[adj], min_gpus[adj], per_gpu_w[adj], need_w)
    active[adj] = np.maximum(np.floor(kept + 1e-9), min_gpus[adj]) / gpus[adj]
    return active


def pause_in_order(
    fleet: JobFleet, order: np.ndarray, active: np.ndarray, ceiling_w: float
) -> np.ndarray:
    """Pause jobs of `order`, in turn, until the modelled power meets `ceiling_w` (or none is left)."""
    need_w = model_power_w(fleet, fleet.max_cap_w, active) - ceiling_w
    active = active.copy()
    if not np.isfinite(ceiling_w) or need_w <= 0 or len(order) == 0:
        return active
    saving = (fleet.gpus * (fleet.full_w - fleet.paused_w) * active)[order]
    n = min(int(np.searchsorted(np.cumsum(saving), need_w - 1e-9)) + 1, len(order))
    active[order[:n]] = 0.0
    return active


def _full(fleet: JobFleet) -> tuple[np.ndarray, np.ndarray]:
    return fleet.max_cap_w.copy(), np.ones(len(fleet))


def _dvfs_fair(inp: PlanInput, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    active = np.ones(len(inp.fleet))
    ceiling = float(it_ceiling_w(inp, inp.t_s))
    return dvfs_fair_caps(inp.fleet, floor, ceiling, active), active


class DvfsFair(OpenLoopPlanner):
    """Published "DVFS, Fair"."""

    name = "dvfs-fair"

    def actions(self, inp, floor, state):
        return _dvfs_fair(inp, floor)


class DvfsPauseFair(OpenLoopPlanner):
    """Published "DVFS + Job Pausing, Fair"."""

    name = "dvfs-pause-fair"

    def begin_block(self, inp: PlanInput, state: BlockState) -> tuple[int, ...]:
        fleet, floor = inp.fleet, state.floor
        ceiling = worst_it_ceiling_w(inp, state.block)
        eligible = np.flatnonzero(fleet.may_pause & (floor <= 0.5))
        eligible = eligible[np.argsort(floor[eligible], kind="stable")][:MAX_PAUSE_CANDIDATES]
        full_w = model_power_w(fleet, *_full(fleet))
        best: tuple[float, int, tuple[int, ...]] | None = None
        for n in range(2, len(eligible) + 1):
            for pause_set in combinations(eligible.tolist(), n):
                if np.any(floor[list(pause_set)] > 1 - 1 / n):
                    continue
                powers = [self._power(inp, floor, pause_set, i, ceiling) for i in range(n)]
                if max(powers) > ceiling + 1e-6:
                    continue
                key = (full_w - float(np.mean(powers)), n, pause_set)
                best = key if best is None or key[:2] < best[:2] else best
        return best[2] if best else ()

    def actions(self, inp, floor, state):
        pause_set: tuple[int, ...] = state.extra if state else ()
        if not pause_set:
            return _dvfs_fair(inp, floor)
        ceiling = float(it_ceiling_w(inp, inp.t_s))
        start, end = state.block
        turn = min(int((inp.t_s - start) / ((end - start) / len(pause_set))), len(pause_set) - 1)
        return self._caps(inp, floor, pause_set, turn, ceiling)

    @staticmethod
    def _caps(inp, floor, pause_set, turn, ceiling):
        """Job `pause_set[turn]` paused; the set's others keep their floor over the time they run."""
        fleet = inp.fleet
        active = np.ones(len(fleet))
        active[pause_set[turn]] = 0.0
        raised = floor.copy()
        members = list(pause_set)
        raised[members] = np.minimum(floor[members] / (1 - 1 / len(pause_set)), 1.0)
        return dvfs_fair_caps(fleet, raised, ceiling, active), active

    def _power(self, inp, floor, pause_set, turn, ceiling) -> float:
        cap, active = self._caps(inp, floor, pause_set, turn, ceiling)
        return model_power_w(inp.fleet, cap, active)


class PauseGreedy(OpenLoopPlanner):
    """Published "Job Pausing, Greedy"."""

    name = "pause-greedy"

    def begin_block(self, inp: PlanInput, state: BlockState) -> dict[str, np.ndarray | int]:
        start, end = state.block
        rows = int(np.ceil((end - start) / ROW_S))
        return {
            "allowance": np.floor((1 - state.floor) * rows + 1e-9).astype(int),
            "paused_at": np.full(len(inp.fleet), -1),  # row each job's pause began (-1: not yet)
            "row": -1,  # last row walked
        }

    def actions(self, inp, floor, state):
        fleet = inp.fleet
        cap, active = _full(fleet)
        if state is None:
            return cap, active
        walk = state.extra
        row = int((inp.t_s - state.block[0]) // ROW_S)
        while walk["row"] < row:
            walk["row"] += 1
            self._walk_row(inp, state, walk)
        r, since = walk["row"], walk["paused_at"]
        active[(since >= 0) & (r < since + walk["allowance"])] = 0.0
        return cap, active

    @staticmethod
    def _walk_row(inp: PlanInput, state: BlockState, walk: dict) -> None:
        fleet, r, since = inp.fleet, walk["row"], walk["paused_at"]
        row_start = state.block[0] + r * ROW_S
        t = np.linspace(row_start, min(row_start + ROW_S, state.block[1]), 5)
        ceiling = float(np.min(it_ceiling_w(inp, t)))
        active = np.where((since >= 0) & (r < since + walk["allowance"]), 0.0, 1.0)
        fresh = np.flatnonzero(fleet.may_pause & (since < 0) & (walk["allowance"] > 0))
        order = fresh[np.lexsort((state.floor[fresh], -fleet.flex_tier[fresh]))]
        now = pause_in_order(fleet, order, active, ceiling)
        since[(now == 0) & (active == 1)] = r


class PauseResizeFair(OpenLoopPlanner):
    """Published "Job Pausing + Resource Allocation, Fair"."""

    name = "pause-resize-fair"

    def begin_block(self, inp: PlanInput, state: BlockState) -> int | None:
        fleet, floor = inp.fleet, state.floor
        ceiling = worst_it_ceiling_w(inp, state.block)
        candidates = np.flatnonzero(fleet.may_pause & (floor <= 1e-9)).tolist() or [None]
        scored = []
        for c in candidates:
            active = resize_fair_active(fleet, floor, ceiling, c)
            power = model_power_w(fleet, fleet.max_cap_w, active)
            within = power <= ceiling + 1e-6
            scored.append((not within, -power if within else power, int(np.sum(active < 1)), c))
        return min(scored, key=lambda s: s[:3])[3]

    def actions(self, inp, floor, state):
        paused = state.extra if state else None
        ceiling = float(it_ceiling_w(inp, inp.t_s))
        return inp.fleet.max_cap_w.copy(), resize_fair_active(inp.fleet, floor, ceiling, paused)


class UniformCap(OpenLoopPlanner):
    """One cap for every flexible GPU: the highest that meets the target. Ignores flex floors."""

    name = "uniform-cap"

    def actions(self, inp, floor, state):
        fleet = inp.fleet
        cap, active = _full(fleet)
        ceiling = float(it_ceiling_w(inp, inp.t_s))
        adj = fleet.may_cap
        if not np.isfinite(ceiling) or model_power_w(fleet, cap, active) <= ceiling or not adj.any():
            return cap, active

        def caps(c: float) -> np.ndarray:
            return np.where(adj, np.clip(c, fleet.cap_w[:, 0], fleet.max_cap_w), fleet.max_cap_w)

        lo, hi = float(fleet.cap_w[adj, 0].min()), float(fleet.max_cap_w[adj].max())
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if model_power_w(fleet, caps(mid), active) <= ceiling:
                lo = mid
            else:
                hi = mid
        return caps(lo), active


class PauseByTier(OpenLoopPlanner):
    """Pause whole jobs, most flexible tier first and the largest first within a tier, until the
    target is met. Ignores flex floors."""

    name = "pause-by-tier"

    def actions(self, inp, floor, state):
        fleet = inp.fleet
        cap, active = _full(fleet)
        ceiling = float(it_ceiling_w(inp, inp.t_s))
        pausable = np.flatnonzero(fleet.may_pause)
        size_w = (fleet.gpus * fleet.full_w)[pausable]
        order = pausable[np.lexsort((-size_w, -fleet.flex_tier[pausable]))]
        return cap, pause_in_order(fleet, order, active, ceiling)


BASELINES = (DvfsFair, DvfsPauseFair, PauseGreedy, PauseResizeFair, UniformCap, PauseByTier)
