"""What the open-loop baselines share: the event blocks they plan for, the power ceiling they plan
against, the modelled power of a plan, and the equal-fraction ("fair") cut.

Open loop, as the published conductor ran: power comes from the model curves and the known
targets only, never from measured power. The flex floors are the controller's at the first tick of
each block (the published `calculate_job_min_throughput`, computed once before the event) and are
then held for the whole block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflex.model.fleet import JobFleet
from gridflex.plan.base import Plan, PlanInput
from gridflex.plan.targets import TargetTimeline


def it_ceiling_w(inp: PlanInput, t_s: float | np.ndarray) -> np.ndarray:
    """IT power the targets allow at `t_s`, after the site margin (inf: no target); no feedback."""
    site_w = inp.timeline.ceiling_at(t_s) * (1 - inp.site.margin)
    return inp.site.it_power_w(site_w)


def event_blocks(timeline: TargetTimeline) -> list[tuple[float, float]]:
    """Known events merged into blocks of touching or overlapping spans [start_s, end_s]: a
    dispatch made of back-to-back target steps is planned as one event."""
    spans = sorted((e.start_s, e.end_s) for e in timeline.events)
    blocks: list[list[float]] = []
    for start, end in spans:
        if blocks and start <= blocks[-1][1]:
            blocks[-1][1] = max(blocks[-1][1], end)
        else:
            blocks.append([start, end])
    return [(a, b) for a, b in blocks]


def block_at(timeline: TargetTimeline, t_s: float) -> tuple[float, float] | None:
    for start, end in event_blocks(timeline):
        if start <= t_s < end:
            return start, end
    return None


def worst_it_ceiling_w(inp: PlanInput, block: tuple[float, float], step_s: float = 60.0) -> float:
    """Lowest IT ceiling over a block (sampled every `step_s` and at each event's hold start)."""
    start, end = block
    holds = [e.hold_start_s for e in inp.timeline.events if start <= e.hold_start_s <= end]
    t = np.concatenate([np.arange(start, end, step_s), holds, [end - 1e-6]])
    return float(np.min(it_ceiling_w(inp, t)))


def model_power_w(fleet: JobFleet, cap_w: np.ndarray, active: np.ndarray) -> float:
    return float(fleet.job_power_w(cap_w, active).sum())


def equal_fraction_cut(full: np.ndarray, low: np.ndarray, weight: np.ndarray, shed: float) -> np.ndarray:
    """Cut every x_j from `full_j` by the same fraction α of `full_j`, never below `low_j`, with α the
    least that sheds Σ weight_j (full_j - x_j) ≥ `shed` (α = 1, all at `low`, if none does).

    This is the water-filling of the published fair share: jobs that reach their floor drop out and
    the rest keep sharing the cut equally."""
    low = np.minimum(low, full)
    most = float(np.sum(weight * (full - low)))
    if shed <= 0:
        return full.copy()
    if shed >= most:
        return low.copy()
    lo_a, hi_a = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo_a + hi_a)
        if np.sum(weight * (full - np.maximum(full * (1 - mid), low))) >= shed:
            hi_a = mid
        else:
            lo_a = mid
    return np.maximum(full * (1 - hi_a), low)


@dataclass
class BlockState:
    """What a baseline fixed when a block began."""

    block: tuple[float, float]
    floor: np.ndarray  # [J] least throughput each job keeps during the block
    extra: object = None  # the policy's own choice (pause set, pause allowances, ...)


class OpenLoopPlanner:
    """Base of the baselines: keeps the state of the current block and turns actions into a Plan."""

    name = "open-loop"

    def __init__(self) -> None:
        self._state: BlockState | None = None

    def plan(self, inp: PlanInput) -> Plan:
        block = block_at(inp.timeline, inp.t_s)
        if block is None:
            self._state = None
            floor = inp.floor_throughput
        else:
            if self._state is None or self._state.block[0] != block[0]:
                self._state = BlockState(block, inp.floor_throughput.copy())
                self._state.extra = self.begin_block(inp, self._state)
            self._state.block = block  # a dispatch may grow by steps announced later
            floor = self._state.floor
        cap, active = self.actions(inp, floor, self._state)
        fleet = inp.fleet
        power = model_power_w(fleet, cap, active)
        ceiling = float(it_ceiling_w(inp, inp.t_s))
        thr = active * fleet.throughput_at_cap(cap)
        broken = tuple(np.asarray(fleet.ids)[thr < floor - 1e-6])
        return Plan(cap, active, power, max(0.0, power - ceiling), broken)

    def begin_block(self, inp: PlanInput, state: BlockState) -> object:
        """The policy's plan for a whole block, made at its first tick (default: none)."""
        return None

    def actions(self, inp: PlanInput, floor: np.ndarray, state: BlockState | None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError
