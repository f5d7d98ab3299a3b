"""The planner interface: a pure function from the site's state and targets to a plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gridflex.model.fleet import JobFleet
from gridflex.model.miners import MinerFleet
from gridflex.model.site import Site
from gridflex.plan.targets import TargetTimeline


@dataclass(frozen=True, eq=False)
class MinerInput:
    """The miner fleet at one tick, as the planner needs it."""

    fleet: MinerFleet
    want_w: np.ndarray  # [N] power each unit would mine at if nothing limited it (0: uneconomic)
    value_usd_per_mwh: np.ndarray  # [N] mining value of its energy
    running_w: np.ndarray  # [N] targets in effect now (kept running in preference to restarts)
    grid_ceiling_w: float  # site draw the grid allows now (targets, interconnection limit, margin)
    setpoint_w: float  # site draw to hold by filling with miners (inf: mine whatever is economic)
    gpu_site_w_per_it_w: float  # site watts per modelled GPU IT watt (PUE × measured/modelled)
    qos_usd_per_gpu_hour: np.ndarray  # [J] stated cost of a GPU-hour of lost throughput


@dataclass(frozen=True, eq=False)
class PlanInput:
    t_s: float  # epoch seconds
    fleet: JobFleet
    site: Site
    timeline: TargetTimeline  # what is known of the targets, now and ahead
    it_ceiling_w: float  # IT power to stay under now, after margin and feedback (inf: none)
    floor_throughput: np.ndarray  # [J] least throughput each job may run at now within its tier
    window_s: np.ndarray  # [J] length of each job's window
    miners: MinerInput | None = None  # the miner fleet sharing the meter (None: no miners)
    # [J] per-GPU power level each job may run at most now (time shifting's power shaping, inf: no
    # bound); the planner sheds from there to meet the ceiling. None: every job may run at full power
    upper_level_w: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Plan:
    cap_w: np.ndarray  # [J] per-GPU power cap
    active: np.ndarray  # [J] fraction of the job's GPUs working (0: paused)
    it_power_w: float  # modelled IT power of this plan
    shortfall_w: float = 0.0  # modelled IT power above the ceiling (0: target met)
    broken_tier: tuple[str, ...] = ()  # jobs pushed below their tier's floor to meet the target
    notes: tuple[str, ...] = field(default=())
    miner_w: np.ndarray | None = None  # [N] power target of each miner (0: asleep); None: the planner leaves
    # the miners as they are (the published baselines do: they know GPU jobs only; docs/baselines.md says which)

    @classmethod
    def unconstrained(cls, inp: PlanInput) -> Plan:
        """Every job at full power, or at its `upper_level_w`."""
        fleet = inp.fleet
        if inp.upper_level_w is None:
            cap, active = fleet.max_cap_w.copy(), np.ones(len(fleet))
        else:
            cap, active = level_to_actions(fleet, start_level_w(inp))
        return cls(cap, active, float(fleet.job_power_w(cap, active).sum()))


class Planner(Protocol):
    name: str

    def plan(self, inp: PlanInput) -> Plan: ...


def start_level_w(inp: PlanInput) -> np.ndarray:
    """[J] per-GPU level each job may run at before any shedding: full power, or its upper bound."""
    full_w = inp.fleet.full_w
    return full_w if inp.upper_level_w is None else np.minimum(full_w, inp.upper_level_w)


def level_to_actions(fleet: JobFleet, level_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn each job's per-GPU power level on its hull into a cap and an active fraction.

    Above the hull's lowest capped point the level is a cap. Below it the job mixes paused and
    capped GPUs: resizable jobs keep whole GPUs working (rounded down); the others pause."""
    first_cap_w = first_cap_vertex_w(fleet)
    cap = fleet.cap_at_power(np.maximum(level_w, first_cap_w))
    span = np.maximum(first_cap_w - fleet.paused_w, 1e-9)
    frac = np.clip((level_w - fleet.paused_w) / span, 0.0, 1.0)
    frac = np.where(level_w >= first_cap_w - 1e-9, 1.0, frac)
    resized = np.floor(frac * fleet.gpus + 1e-9) / fleet.gpus
    active = np.where(fleet.may_resize, resized, np.where(frac >= 1.0, 1.0, 0.0))
    return cap, active


def first_cap_vertex_w(fleet: JobFleet) -> np.ndarray:
    """Per-GPU power of the lowest hull vertex reached by capping (not pausing)."""
    return np.where(fleet.may_pause, fleet.hull_w[:, min(1, fleet.hull_w.shape[1] - 1)], fleet.hull_w[:, 0])
