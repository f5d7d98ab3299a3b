"""Running a scenario: the live controller driving the digital twin in simulated time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gridflex.control.controller import Controller
from gridflex.drivers.twin import TwinDriver
from gridflex.model.fleet import JobFleet
from gridflex.plan.registry import make_planner
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.hybrid import MinerRun, build_hybrid
from gridflex.sim.journal import TraceJournal
from gridflex.sim.load_trace import utilization_fn
from gridflex.sim.scenarios import LoadedScenario


@dataclass
class RunResult:
    loaded: LoadedScenario
    planner: str
    seed: int
    step_times_s: np.ndarray  # end of every simulated step
    site_power_w: np.ndarray  # per step
    timeline: TargetTimeline  # every event, baselines as the controller fixed them
    throughput_s: np.ndarray  # per job, true throughput-seconds inside its window
    window_s: np.ndarray  # per job
    energy_kwh: float
    trace: TraceJournal
    miners: MinerRun | None = None

    @property
    def scenario(self):
        return self.loaded.scenario


def job_windows(loaded: LoadedScenario) -> tuple[np.ndarray, np.ndarray]:
    sc = loaded.scenario
    spans = [sc.job_window(j) for j in sc.jobs]
    return np.array([a.timestamp() for a, _ in spans]), np.array([b.timestamp() for _, b in spans])


def run_scenario(
    loaded: LoadedScenario,
    planner: str = "optimal",
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    journal: TraceJournal | None = None,
) -> RunResult:
    """Simulate the scenario under a planner; `progress` gets the fraction done now and then;
    `journal` (one streaming traces to disk, say) replaces the default in-memory aggregate."""
    sc = loaded.scenario
    fleet = JobFleet.build(sc.jobs, loaded.curves)
    windows = job_windows(loaded)
    start_s, end_s = sc.start.timestamp(), sc.end.timestamp()
    utilization = utilization_fn(sc.load_traces, fleet.ids, sc.start.tzinfo)
    twin = TwinDriver(sc.jobs, fleet, sc.site, windows, start_s, sc.step_s, sc.twin, seed, utilization=utilization)
    trace = journal or TraceJournal(sc.jobs, loaded.curves)
    hybrid = None
    if sc.miners is not None:
        hybrid = build_hybrid(sc.miners, fleet, start_s, sc.step_s, loaded.base_dir)
    chosen = make_planner(planner)
    if hasattr(chosen, "bind_scenario"):  # an offline planner (the oracle) sees the whole scenario ahead
        chosen.bind_scenario(loaded, seed)
    controller = Controller(
        fleet, sc.site, sc.control, twin, chosen, windows, start_s, trace,
        miners=hybrid.side if hybrid else None,
    )
    trace.budget_source = controller.budget.used
    controller.add_events(sc.events, start_s)
    ticks = np.arange(start_s, end_s, sc.control.interval_s)
    report_every = max(1, len(ticks) // 200)
    for i, t in enumerate(ticks):
        twin.advance_to(t)
        if hybrid:
            hybrid.twin.advance_to(t)
        controller.step(float(t))
        if progress and i % report_every == 0:
            progress(i / len(ticks))
    twin.advance_to(end_s)
    if hybrid:
        hybrid.twin.advance_to(end_s)
    trace.close()
    if progress:
        progress(1.0)
    final = TargetTimeline.build(
        [ResolvedEvent(ev, controller.baselines_w.get(ev.id, ev.baseline_w or np.nan)) for ev in sc.events],
        sc.site.interconnection_limit_w,
        sc.control,
    )
    site = twin.site_power_trace()
    miners = hybrid.result(site) if hybrid else None
    if hybrid:
        site = site + miners.power_w
    return RunResult(
        loaded=loaded,
        planner=planner,
        seed=seed,
        step_times_s=start_s + sc.step_s * np.arange(1, len(site) + 1),
        site_power_w=site,
        timeline=final,
        throughput_s=twin.throughput_s,
        window_s=windows[1] - windows[0],
        energy_kwh=(twin.energy_j + (hybrid.twin.energy_j if hybrid else 0.0)) / 3.6e6,
        trace=trace,
        miners=miners,
    )
