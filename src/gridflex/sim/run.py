"""Running a scenario: the live controller driving the digital twin in simulated time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from gridflex.control.controller import Controller, Decision
from gridflex.drivers.base import Telemetry
from gridflex.drivers.twin import TwinDriver
from gridflex.model.fleet import JobFleet
from gridflex.plan.registry import make_planner
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.hybrid import MinerRun, build_hybrid
from gridflex.sim.load_trace import utilization_fn
from gridflex.sim.scenarios import LoadedScenario


@dataclass
class TraceJournal:
    """Keeps every tick's telemetry and decision in memory, as arrays at the end."""

    keep_jobs: bool = True
    t_s: list[float] = field(default_factory=list)
    target_w: list[float] = field(default_factory=list)
    cap_w: list[np.ndarray] = field(default_factory=list)
    active: list[np.ndarray] = field(default_factory=list)
    throughput: list[np.ndarray] = field(default_factory=list)
    budget_used: list[np.ndarray] = field(default_factory=list)
    miner_w: list[float] = field(default_factory=list)  # planned miner fleet power per tick (sites with miners)
    below_tier_s: dict[str, list[float]] = field(default_factory=dict)  # job -> ticks it was pushed below its tier
    short_s: list[float] = field(default_factory=list)  # ticks whose plan could not meet the target
    worst_short_w: float = 0.0
    budget_source: Callable[[], np.ndarray] | None = None

    def telemetry(self, tel: Telemetry) -> None:
        if self.keep_jobs:
            self.throughput.append(tel.throughput)

    def decision(self, d: Decision) -> None:
        self.t_s.append(d.t_s)
        self.target_w.append(d.target_w)
        if self.keep_jobs:
            self.cap_w.append(d.plan.cap_w)
            self.active.append(d.plan.active)
            if self.budget_source:
                self.budget_used.append(self.budget_source())
        if d.plan.miner_w is not None:
            self.miner_w.append(float(d.plan.miner_w.sum()))
        for job in d.plan.broken_tier:
            self.below_tier_s.setdefault(job, []).append(d.t_s)
        if d.plan.shortfall_w > 0:
            self.short_s.append(d.t_s)
            self.worst_short_w = max(self.worst_short_w, d.plan.shortfall_w)

    def warnings(self, tz) -> list[str]:
        """What the operator must know: targets the plan could not meet, tiers it had to break."""
        out = [
            f"job {job} was pushed below its flex-budget floor (its tier at risk) to meet the target, {_span(ticks, tz)}"
            for job, ticks in self.below_tier_s.items()
        ]
        if self.short_s:
            out.append(
                f"the target could not be met even by the plan, {_span(self.short_s, tz)};"
                f" worst shortfall {self.worst_short_w:,.0f} W"
            )
        return out


def _span(ticks: list[float], tz) -> str:
    first, last = (datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") for t in (ticks[0], ticks[-1]))
    return f"at {len(ticks)} control ticks between {first} and {last}"


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
    keep_jobs: bool = True,
) -> RunResult:
    """Simulate the scenario under a planner; `progress` gets the fraction done now and then."""
    sc = loaded.scenario
    fleet = JobFleet.build(sc.jobs, loaded.curves)
    windows = job_windows(loaded)
    start_s, end_s = sc.start.timestamp(), sc.end.timestamp()
    utilization = utilization_fn(sc.load_traces, fleet.ids, sc.start.tzinfo)
    twin = TwinDriver(sc.jobs, fleet, sc.site, windows, start_s, sc.step_s, sc.twin, seed, utilization=utilization)
    trace = TraceJournal(keep_jobs=keep_jobs)
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
