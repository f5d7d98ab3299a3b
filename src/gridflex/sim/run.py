"""Running a scenario: the live controller driving the digital twin in simulated time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gridflex.assembly import Site, Utilization, control_ticks, simulated
from gridflex.drivers.twin import TwinDriver
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.hybrid import MinerRun
from gridflex.sim.journal import TraceJournal
from gridflex.sim.scenarios import LoadedScenario


@dataclass
class RunResult:
    loaded: LoadedScenario
    planner: str
    seed: int
    step_times_s: np.ndarray  # end of every simulated step
    site_power_w: np.ndarray  # per step
    timeline: TargetTimeline  # every event, baselines as the controller fixed them
    performance: np.ndarray  # per scenario job: mean throughput over its window (NaN: never started)
    started_s: np.ndarray  # per scenario job (NaN: never started)
    ended_s: np.ndarray  # per scenario job (NaN: still running or never started)
    held_s: np.ndarray  # per scenario job: seconds gridflex held it in the queue
    energy_kwh: float
    trace: TraceJournal
    miners: MinerRun | None = None

    @property
    def scenario(self):
        return self.loaded.scenario


def run_scenario(
    loaded: LoadedScenario,
    planner: str = "optimal",
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    journal: TraceJournal | None = None,
) -> RunResult:
    """Simulate the scenario under a planner; `progress` gets the fraction done now and then;
    `journal` (one streaming traces to disk, say) replaces the default in-memory aggregate."""
    site, trace = start_site(loaded, planner, seed, journal)
    ticks = control_ticks(loaded)
    report_every = max(1, len(ticks) // 200)
    for i, t in enumerate(ticks):
        site.tick(float(t))
        if progress and i % report_every == 0:
            progress(i / len(ticks))
    result = finish_site(loaded, planner, seed, site, trace)
    if progress:
        progress(1.0)
    return result


def start_site(loaded: LoadedScenario, planner: str = "optimal", seed: int = 0, journal: TraceJournal | None = None,
               utilization: Utilization | None = None) -> tuple[Site, TraceJournal]:
    """The scenario's site at its start and the journal it writes to (see `simulated`)."""
    trace = journal or TraceJournal(loaded.scenario.jobs, loaded.curves)
    site = simulated(loaded, planner, seed, trace, utilization=utilization)
    trace.budget_source = site.controller.budget_used
    return site, trace


def finish_site(loaded: LoadedScenario, planner: str, seed: int, site: Site, trace: TraceJournal) -> RunResult:
    """Bring the site's plants to the scenario's end and score the run."""
    sc = loaded.scenario
    controller, twin, hybrid = site.controller, site.driver, site.hybrid
    end_s = sc.end.timestamp()
    twin.advance_to(end_s)
    if hybrid:
        hybrid.twin.advance_to(end_s)
    trace.close()
    final = TargetTimeline.build(
        [ResolvedEvent(ev, controller.baselines_w.get(ev.id, ev.baseline_w or np.nan)) for ev in sc.events],
        sc.site.interconnection_limit_w,
        sc.control,
    )
    site_w = twin.site_power_trace()
    miners = hybrid.result(site_w) if hybrid else None
    if hybrid:
        site_w = site_w + miners.power_w
    return RunResult(
        loaded=loaded,
        planner=planner,
        seed=seed,
        step_times_s=sc.start.timestamp() + sc.step_s * np.arange(1, len(site_w) + 1),
        site_power_w=site_w,
        timeline=final,
        performance=job_performance(twin),
        started_s=twin.started_s,
        ended_s=twin.ended_s,
        held_s=twin.held_s,
        energy_kwh=(twin.energy_j + (hybrid.twin.energy_j if hybrid else 0.0)) / 3.6e6,
        trace=trace,
        miners=miners,
    )


def job_performance(twin: TwinDriver) -> np.ndarray:
    """Each job's performance, normal = 1 (NaN: a job that never started). A fixed-window job: its
    mean throughput over the time it ran. A queued job: its work over the time it took, counting
    the time gridflex held it in the queue (a job slowed to half speed, or held as long as it then
    ran, scores 0.5) unless it has a deadline (waiting before it is its contract, kept or not as
    `report.shifting` scores); a job still running at the end is scored as if it went on at full speed."""
    no_deadline = np.array([j.deadline is None for j in twin.jobs], dtype=bool)
    lost_s = twin.run_s - twin.throughput_s + twin.held_s * no_deadline
    queued = np.isfinite(twin.work_s)
    work_s = np.where(queued, twin.work_s, 1.0)
    performance = np.where(queued, work_s / (work_s + lost_s), twin.throughput_s / np.maximum(twin.run_s, 1e-9))
    return np.where(np.isnan(twin.started_s), np.nan, performance)
