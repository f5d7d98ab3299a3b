"""Response bodies of the REST API (they make the OpenAPI document describe every field)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gridflex.model.events import Target


class JobPlan(BaseModel):
    id: str
    cap_w: float = Field(description="per-GPU power cap now")
    active: float = Field(description="fraction of the job's GPUs working (0: paused)")
    power_w: float = Field(description="measured job power, mean since the previous tick")
    flex_budget_used: float = Field(description="share of the tier's slowdown allowance spent in the window")
    flex_tier: int = Field(description="its flex tier now (0..3)")
    throughput: float | None = Field(None, description="share of normal throughput, mean since the previous tick"
                                     " (null: not known); a fleet coordinator counts a serving job's capacity by it")


class MinerOut(BaseModel):
    id: str
    power_w: float = Field(description="measured power (a unit not answering counts at its nameplate)")
    target_w: float = Field(description="power target in effect (0: asleep)")
    mode: str = Field(description="full, reduced or sleep")
    responding: bool


class QueuedJobOut(BaseModel):
    """A job waiting in the plant's queue: what time shifting holds and the fleet coordinator places."""

    id: str
    workload: str
    gpus: int
    flex_tier: int
    queued: bool = Field(True, description="waiting in the plant's queue (time shifting may hold it)")
    deadline: datetime | None = None
    begin: datetime | None = None
    submit_s: float | None = Field(None, description="when it entered the queue (epoch s)")
    work_s: float | None = Field(None, description="its work at full speed, seconds: its expected run")
    power_w: float | None = Field(None, description="site power it adds at full speed (its GPUs above idle, with the"
                                  " PUE; null: no curve for its workload)")


class EventWindowOut(BaseModel):
    """An event the site knows, as a fleet coordinator placing batch jobs reads it."""

    id: str
    start_s: float = Field(description="the event's start (epoch seconds): its cut runs to `end_s`")
    end_s: float
    quiet_from_s: float = Field(description="from here (its baseline window) to `quiet_until_s` (its snap-back guard"
                                " over) the site wants no new load")
    quiet_until_s: float


class StatusOut(BaseModel):
    t_s: float | None = Field(description="epoch seconds of the latest tick (null before the first)")
    site_power_w: float | None
    target_w: float | None = Field(description="site power ceiling now (null: none)")
    it_power_w: float | None = None
    planned_it_power_w: float | None = None
    active_events: list[str] = Field(description="ids of the events in force now")
    known_events: list[str] = Field(description="ids of the events not yet over, upcoming included")
    jobs: list[JobPlan]
    driver: str | None = None
    driver_ok: bool | None = None
    interval_s: float
    age_s: float | None = Field(None, description="age of the reading shown (seconds since the plant was read)")
    estimated: bool | None = Field(None, description="the power is estimated from a model, not measured")
    degraded: bool = Field(description="the reading is older than `stale_after_s`, or the plant or store failed")
    degraded_reasons: list[str] = Field(description="why `degraded` (empty when not)")
    stale_after_s: float = Field(description="a reading older than this makes the status degraded")
    miners: list[MinerOut] = Field(default_factory=list, description="the miner fleet behind the meter (empty: none)")
    site_power_source: str = Field("drivers", description="what site power is read from: the site meter, or the"
                                   " sum of the drivers' readings")
    queued_jobs: int = Field(0, description="jobs waiting in the plant's queue")
    held_jobs: list[str] = Field(default_factory=list, description="queued jobs gridflex holds (deferred)")
    carbon_g_per_kwh: float | None = Field(None, description="grid carbon intensity now, from the site's time-shifting"
                                           " signal as known now (null: the site has none, or cannot read it)")
    price_usd_per_mwh: float | None = Field(None, description="energy price now, likewise (null: none)")
    queue: list[QueuedJobOut] = Field(default_factory=list, description="the jobs waiting in the plant's queue, "
                                      "oldest first (what the fleet coordinator places across sites)")
    free_gpus: int | None = Field(None, description="GPUs no running job holds (null: the site has no GPU pools)")
    event_windows: list[EventWindowOut] = Field(default_factory=list, description="the events known now, with their"
                                                " times (what batch placement across sites avoids)")


class EventOut(BaseModel):
    """An event as received (fields as in scenario files), with its state."""

    id: str
    start: datetime
    end: datetime
    ramp_s: float
    notice_s: float | None
    target: Target
    baseline_w: float | None = Field(description="as given, else as frozen at the event's start (null before)")
    source: str = Field(description="api or openadr")
    status: str = Field(description="active, cancelled or completed")
    reason: str
    created_s: float


class JobOut(BaseModel):
    id: str
    workload: str
    gpus: int
    flex_tier: int
    flex_factor: float = Field(description="share of normal throughput the tier keeps over the window")
    flex_budget_used: float
    performance: float = Field(description="mean throughput so far in the window")
    window_start_s: float
    window_end_s: float
    controllable: bool
    deadline: datetime | None = Field(None, description="latest finish (the plant's, or as set through the API)")
    begin: datetime | None = Field(None, description="earliest start (the plant's, or as set through the API)")


class JobChange(BaseModel):
    """Any of: a running job's flex tier and load floor, a running or queued job's deadline and earliest start.
    All are checked before any is applied; a field left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")

    flex_tier: int | None = Field(None, ge=0, le=3, description="0 = never slowed; 1/2/3 keep 90/75/50 % of"
                                  " throughput (a running job)")
    deadline: AwareDatetime | None = Field(None, description="latest finish, ISO 8601 with a UTC offset, e.g."
                                           " 2026-05-04T06:00:00+01:00; time shifting keeps it")
    begin: AwareDatetime | None = Field(None, description="earliest start, ISO 8601 with a UTC offset")
    load_floor: float | None = Field(None, ge=0, le=1, description="least throughput (normal = 1) a running job must"
                                     " keep for the load it serves, e.g. set by the fleet coordinator for the"
                                     " requests it routes to an inference job; 0 clears it")

    @model_validator(mode="after")
    def _some_and_ordered(self) -> JobChange:
        if self.flex_tier is None and self.deadline is None and self.begin is None and self.load_floor is None:
            raise ValueError("give at least one of flex_tier, deadline, begin, load_floor")
        if self.deadline is not None and self.begin is not None and self.deadline <= self.begin:
            raise ValueError(f"deadline ({self.deadline.isoformat()}) must be after begin ({self.begin.isoformat()})")
        return self


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=1024, description="the API token (api.token or GRIDFLEX_API_TOKEN)")


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TelemetryOut(_Row):
    t_s: float
    site_power_w: float = Field(description="as the controller saw it: the site meter, else the drivers plus miners")
    it_power_w: float
    estimated: bool = Field(description="site power estimated from a model, not measured")
    job_power_w: list[float]
    miners_power_w: float | None = Field(None, description="the miners' power (null: no miners)")
    meter_power_w: float | None = Field(None, description="the site meter's reading (null: no meter)")
    source: str | None = Field(None, description="what the site power is read from")


class DecisionOut(_Row):
    id: int
    t_s: float
    site_power_w: float = Field(description="measured")
    target_w: float | None = Field(description="site ceiling aimed at (null: none)")
    it_ceiling_w: float | None = Field(description="IT power the planner was asked to stay under")
    it_power_w: float = Field(description="planned IT power")
    shortfall_w: float = Field(description="planned IT power above the ceiling (0: target met)")
    model_ratio: float = Field(description="measured / modelled IT power")
    planner_s: float = Field(description="time from reading the plant to the decision")
    active_events: list[str]
    broken_tier: list[str] = Field(description="jobs pushed below their tier's floor to meet the target")
    notes: list[str]
    cap_w: list[float]
    active: list[float]


class PriceOut(_Row):
    event_id: str
    start_s: float
    end_s: float
    price: float
    source: str
