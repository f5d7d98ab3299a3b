"""Running a scenario: the live controller driving the digital twin in simulated time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from gridflex.assembly import control_ticks, simulated
from gridflex.control.controller import Decision
from gridflex.drivers.base import Telemetry
from gridflex.drivers.twin import TwinDriver
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.hybrid import MinerRun
from gridflex.sim.scenarios import LoadedScenario


@dataclass
class TraceJournal:
    """Keeps every tick's telemetry and decision in memory. Per-job values are laid out over
    the scenario's jobs (NaN where a job was not running)."""

    job_ids: tuple[str, ...] = ()
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
    _cols: tuple[tuple[str, ...], np.ndarray] | None = None  # (ids, their columns) of the last tick

    def _spread(self, ids: tuple[str, ...], values: np.ndarray) -> np.ndarray:
        if self._cols is None or self._cols[0] is not ids:
            index = {j: i for i, j in enumerate(self.job_ids)}
            self._cols = (ids, np.fromiter((index[i] for i in ids), np.int64, len(ids)))
        out = np.full(len(self.job_ids), np.nan)
        out[self._cols[1]] = values
        return out

    def telemetry(self, tel: Telemetry) -> None:
        if self.keep_jobs:
            self.throughput.append(self._spread(tel.job_ids, tel.throughput))

    def decision(self, d: Decision) -> None:
        self.t_s.append(d.t_s)
        self.target_w.append(d.target_w)
        if self.keep_jobs:
            self.cap_w.append(self._spread(d.job_ids, d.plan.cap_w))
            self.active.append(self._spread(d.job_ids, d.plan.active))
            if self.budget_source:
                self.budget_used.append(self._spread(d.job_ids, self.budget_source()))
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
    keep_jobs: bool = True,
) -> RunResult:
    """Simulate the scenario under a planner; `progress` gets the fraction done now and then."""
    sc = loaded.scenario
    trace = TraceJournal(tuple(j.id for j in sc.jobs), keep_jobs=keep_jobs)
    site = simulated(loaded, planner, seed, trace)
    controller, twin, hybrid = site.controller, site.driver, site.hybrid
    trace.budget_source = controller.budget_used
    ticks = control_ticks(loaded)
    report_every = max(1, len(ticks) // 200)
    for i, t in enumerate(ticks):
        site.tick(float(t))
        if progress and i % report_every == 0:
            progress(i / len(ticks))
    end_s = sc.end.timestamp()
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
    """Mean throughput of each job over the time it ran plus the time gridflex held it in the
    queue (a job slowed to half speed, or held as long as it then ran, scores 0.5). NaN: a job
    that never started."""
    return np.where(np.isnan(twin.started_s), np.nan, twin.throughput_s / np.maximum(twin.run_s + twin.held_s, 1e-9))
