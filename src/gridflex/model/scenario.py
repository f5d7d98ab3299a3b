"""A scenario: a site, its jobs and the grid events over a stretch of time."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.model.miners import MinerSettings
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import Job, Site, require_aware


class TwinSettings(BaseModel):
    """How far the digital twin departs from the planner's model, as multipliers on its calibrated
    figures (docs/twin.md): 1 = as measured in the field, 0 = none (a quiet twin, for tests)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    curve_spread: float = Field(
        1.0, ge=0, le=5, description="multiplier on the true curves' calibrated errors (knee, low-cap slope, power"
        " scale and bias); 0: the twin's curves are the model's"
    )
    fluctuation: float = Field(
        1.0, ge=0, le=5, description="multiplier on the calibrated power fluctuation (iteration, minute, drift)"
    )
    checkpoints: bool = Field(True, description="training jobs stall for their periodic checkpoint save")
    recovery: float = Field(
        1.0, ge=0, le=5, description="multiplier on the calibrated post-event deficit of a job released from a"
        " curtailment; 0: back to full power at once"
    )


class JobTraceSpec(BaseModel):
    """A scenario's `job_trace:` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1, description="CSV of jobs, relative to the scenario file")
    qos_tiers: dict[str, int] = Field(default_factory=dict, description="QoS class -> flex tier (for a `qos` column)")
    gpu_scale: int = Field(1, ge=1, description="every job needs this many times its GPUs (a larger campus)")


class ControlSettings(BaseModel):
    """How the controller runs and how events are turned into targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: float = Field(2.0, gt=0, description="seconds between control ticks")
    baseline_window_s: float = Field(
        3600.0, gt=0, description="seconds of unconstrained site power before an event that make its baseline"
    )
    baseline_source: str = Field(
        "unconstrained",
        pattern="^(unconstrained|model)$",
        description="a 'reduction' event's baseline: 'unconstrained' = mean measured site power over the last"
        " baseline_window_s seconds not under any event (ramp, hold or snap-back guard); 'model' = the modelled"
        " power of the site with nothing slowed, at the event's start",
    )
    snapback_guard_s: float = Field(
        3600.0, ge=0, description="after an event, hold power near its baseline this long (no snap-back)"
    )
    snapback_band: float = Field(
        0.03, ge=0, lt=0.5, description="after an event, power may exceed the baseline by this fraction"
    )
    tolerance: float = Field(0.01, ge=0, lt=0.2, description="compliance band above target")
    ramp_up_w_per_min: float | None = Field(
        None, gt=0, description="most the site's planned power may rise in a minute, the return after an event"
        " and jobs starting included (None: no limit)"
    )
    defer_lookahead_s: float = Field(
        900.0, ge=0, description="queued flexible jobs are held from this long before an event's start"
    )
    release_stagger_s: float = Field(60.0, ge=0, description="after an event, release one held job every this long")
    hold_work_s: float = Field(
        14400.0, gt=0, description="most work counted when sizing a queued job's hold allowance (and the work of a"
        " job of unknown length)"
    )


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    start: datetime
    end: datetime
    step_s: float = Field(1.0, gt=0, le=60)
    curves: str | None = Field(None, description="CSV of extra power curves, relative to the scenario file")
    site: Site = Site()
    jobs: tuple[Job, ...] = ()
    job_trace: JobTraceSpec | None = Field(None, description="more jobs, queued, from a CSV job trace")
    events: tuple[GridEvent, ...] = ()
    twin: TwinSettings = TwinSettings()
    control: ControlSettings = ControlSettings()
    miners: MinerSettings | None = Field(None, description="a bitcoin miner fleet behind the same meter")
    shifting: ShiftSettings | None = Field(None, description="hold and release deferrable work by carbon or price")
    load_traces: dict[str, str] = Field(
        default_factory=dict,
        description="job id -> utilization trace scaling its power above idle (e.g. azure-llm-conv)",
    )

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return require_aware(v)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if not self.jobs and self.job_trace is None:
            raise ValueError("jobs: a scenario needs at least one job (or a job_trace)")
        seen: set[str] = set()
        for job in self.jobs:
            if job.id in seen:
                raise ValueError(f"jobs: duplicate id {job.id!r}")
            seen.add(job.id)
        seen.clear()
        for ev in self.events:
            if ev.id in seen:
                raise ValueError(f"events: duplicate id {ev.id!r}")
            seen.add(ev.id)
        job_ids = sorted(j.id for j in self.jobs)
        for job_id in self.load_traces:
            if job_id not in job_ids:
                raise ValueError(f"load_traces: no job {job_id!r}; jobs: {', '.join(job_ids)}")
        if self.control.interval_s < self.step_s:
            raise ValueError(
                f"control.interval_s ({self.control.interval_s}) must be at least step_s ({self.step_s})"
            )
        return self

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def job_window(self, job: Job) -> tuple[datetime, datetime]:
        return (job.start or self.start, job.end or self.end)

    def fixed_windows_s(self) -> tuple[np.ndarray, np.ndarray]:
        """Epoch-second windows of the fixed-window jobs, for planners that see the whole
        scenario ahead; refuses a scenario with queued jobs (their windows are not known ahead)."""
        queued = [j.id for j in self.jobs if j.queued]
        if queued:
            raise InputError(f"jobs: {queued[0]!r} and {len(queued) - 1} more are queued; only fixed-window jobs here")
        spans = [self.job_window(j) for j in self.jobs]
        return np.array([a.timestamp() for a, _ in spans]), np.array([b.timestamp() for _, b in spans])
