"""One way to assemble a site, for simulation and live operation alike.

A site is its jobs' plant (a driver: the digital twin or real hardware), its miners, its
planner, its controller and its journal. `simulated` builds it around the digital twin from a
scenario; the live service builds the same controller around the drivers its config names
(`gridflex.service.runtime`). The clock and the drivers are the only differences: both
controllers discover their jobs from the plant every tick and are driven by `tick`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gridflex.control.controller import Controller, Decision, Journal, WindowRule
from gridflex.control.shifting import Shifter
from gridflex.drivers.base import Driver
from gridflex.drivers.twin import TwinDriver
from gridflex.model.site import Job
from gridflex.plan.registry import make_planner
from gridflex.sim.hybrid import HybridPlant, build_hybrid
from gridflex.sim.load_trace import utilization_fn
from gridflex.sim.scenarios import LoadedScenario

#: (step times [n], job rows [R]) -> load [n, R] scaling each job's power above idle.
Utilization = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Simulated(Protocol):
    """A plant simulated in step with the clock (the twin, the miner twin)."""

    def advance_to(self, t_s: float) -> None: ...


@dataclass
class Site:
    """An assembled site: what the controller drives, what it drives it with, and which of its
    plants are simulated (they are brought up to the clock before each tick)."""

    controller: Controller
    driver: Driver
    hybrid: HybridPlant | None = None  # miners of a simulated site
    simulated: tuple[Simulated, ...] = ()

    def tick(self, t_s: float) -> Decision:
        """Bring simulated plants up to `t_s`, then run one control tick."""
        for plant in self.simulated:
            plant.advance_to(t_s)
        return self.controller.step(t_s)


def scenario_windows(loaded: LoadedScenario) -> WindowRule:
    """Flex-budget windows in a scenario: a fixed-window job's own window (the scenario's start
    and end where it gives none); a queued job's nominal run, its work at full speed from when it
    started. Both end by the scenario's end, where the run is scored."""
    sc = loaded.scenario
    start_s, end_s = sc.start.timestamp(), sc.end.timestamp()

    def window(job: Job, seen_s: float, t_s: float) -> tuple[float, float]:
        if job.queued:
            return seen_s, min(seen_s + float(job.duration_s), end_s)
        return (job.start.timestamp() if job.start else start_s), (job.end.timestamp() if job.end else end_s)

    return window


def simulated(loaded: LoadedScenario, planner: str = "optimal", seed: int = 0, journal: Journal | None = None,
              record: bool = True, utilization: Utilization | None = None) -> Site:
    """The scenario's site around the digital twin, at the scenario's start. `utilization`
    replaces the load the scenario's `load_traces` give (e.g. the traffic a fleet sends the site)."""
    sc = loaded.scenario
    start_s = sc.start.timestamp()
    ids = tuple(j.id for j in sc.jobs)
    twin = TwinDriver(
        sc.jobs, loaded.curves, sc.site, start_s, sc.step_s, sc.twin, seed, record=record,
        utilization=utilization or utilization_fn(sc.load_traces, ids, sc.start.tzinfo),
    )
    hybrid = build_hybrid(sc.miners, start_s, sc.step_s, loaded.base_dir) if sc.miners else None
    chosen = make_planner(planner)
    if hasattr(chosen, "bind_scenario"):  # an offline planner (the oracle) sees the whole scenario ahead
        chosen.bind_scenario(loaded, seed)
    controller = Controller(
        sc.site, sc.control, twin, chosen, loaded.curves, scenario_windows(loaded), start_s, journal,
        miners=hybrid.side if hybrid else None,
    )
    controller.add_events(sc.events, start_s)
    if sc.shifting is not None:
        controller.shifting = Shifter(sc.shifting, sc.site, loaded.curves, sc.control.release_stagger_s)
    return Site(controller, twin, hybrid, (twin, hybrid.twin) if hybrid else (twin,))


def control_ticks(loaded: LoadedScenario) -> np.ndarray:
    sc = loaded.scenario
    return np.arange(sc.start.timestamp(), sc.end.timestamp(), sc.control.interval_s)
