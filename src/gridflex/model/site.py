"""The site behind one grid meter and the GPU jobs it runs."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Fraction of normal average throughput each flex tier must keep over its window.
FLEX_FACTOR: dict[int, float] = {0: 1.0, 1: 0.9, 2: 0.75, 3: 0.5}


class Action(str, Enum):
    """What gridflex may do to a job."""

    power_cap = "power_cap"
    pause = "pause"
    resize = "resize"


class PauseMode(str, Enum):
    """How a pause is carried out: suspend in memory, or checkpoint and stop."""

    suspend = "suspend"
    checkpoint = "checkpoint"


class Latency(BaseModel):
    """Seconds from a command to its effect on the job's power."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    power_cap_s: float = Field(1.0, ge=0)
    suspend_s: float = Field(3.0, ge=0)
    resume_s: float = Field(3.0, ge=0)
    checkpoint_s: float = Field(180.0, ge=0, description="checkpoint-and-stop before the GPUs go idle")
    restart_s: float = Field(240.0, ge=0, description="restart from a checkpoint before work resumes")

    def pause_s(self, mode: PauseMode) -> float:
        return self.checkpoint_s if mode is PauseMode.checkpoint else self.suspend_s

    def unpause_s(self, mode: PauseMode) -> float:
        return self.restart_s if mode is PauseMode.checkpoint else self.resume_s


class Job(BaseModel):
    """An AI workload on N GPUs with a flex tier.

    Two ways to say when it runs: a fixed window (`start`, `end`: it runs exactly then), or a
    queued job (`submit` and `duration_s`: it waits in the site's queue from `submit`, starts
    when its GPU pool has room and gridflex does not hold it, and ends once it has done
    `duration_s` seconds of full-speed work, so a slowed job runs longer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    workload: str = Field(min_length=1, description="name of a power curve")
    gpus: int = Field(gt=0)
    flex_tier: int = Field(ge=0, le=3, description="0 = never slowed; 1/2/3 keep 90/75/50 %")
    start: datetime | None = None
    end: datetime | None = None
    submit: datetime | None = Field(None, description="when a queued job enters the queue")
    duration_s: float | None = Field(None, gt=0, description="work of a queued job: seconds at full speed")
    gpu_model: str | None = Field(None, description="GPU pool the job runs on (default: the site's first)")
    begin: datetime | None = Field(None, description="earliest start (Slurm --begin); none: when submitted")
    deadline: datetime | None = Field(None, description="latest finish (Slurm --deadline); time shifting keeps it")
    actions: frozenset[Action] = frozenset({Action.power_cap, Action.pause})
    pause_mode: PauseMode = PauseMode.suspend
    latency: Latency = Latency()

    @field_validator("start", "end", "begin", "deadline")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return require_aware(v)

    @model_validator(mode="after")
    def _window(self) -> Job:
        if self.start and self.end and self.end <= self.start:
            raise ValueError(f"job {self.id!r}: end ({self.end}) must be after start ({self.start})")
        if self.submit is not None and (self.start is not None or self.end is not None):
            raise ValueError(
                f"job {self.id!r}: give either a fixed window (start/end) or a queued job (submit, duration_s)"
            )
        if self.submit is not None and self.duration_s is None:
            raise ValueError(f"job {self.id!r}: a queued job (submit) needs duration_s, its work at full speed")
        earliest = max((t for t in (self.submit, self.begin, self.start) if t is not None), default=None)
        if self.deadline is not None and earliest is not None and self.deadline <= earliest:
            raise ValueError(f"job {self.id!r}: deadline ({self.deadline}) must be after its submit/begin/start"
                             f" ({earliest})")
        return self

    @property
    def queued(self) -> bool:
        """Whether the job goes through the site's queue (rather than a fixed window)."""
        return self.submit is not None

    @property
    def flex_factor(self) -> float:
        return FLEX_FACTOR[self.flex_tier]


class GpuPool(BaseModel):
    """The GPUs of one model at a site; those no job holds draw `idle_w` each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(gt=0)
    idle_w: float = Field(50.0, ge=0, description="per-GPU power with no job (A100: ~50 W)")


class Site(BaseModel):
    """Everything behind one grid meter apart from the jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "site"
    pue: float = Field(1.0, ge=1.0, le=3.0, description="site power = IT power × pue + overhead_w")
    overhead_w: float = Field(0.0, ge=0)
    interconnection_limit_w: float | None = Field(None, gt=0)
    margin: float = Field(
        0.02, ge=0, lt=0.2, description="fraction of the target kept in reserve by the controller"
    )
    priority: str = Field(
        "grid",
        pattern="^(grid|sla)$",
        description="when target and flex tiers conflict: 'grid' meets the target, 'sla' keeps the tiers",
    )

    gpu_pools: dict[str, GpuPool] = Field(
        default_factory=dict,
        description="GPU model -> pool; queued jobs wait for room in theirs (none: no limit, no idle GPUs)",
    )

    def pool_of(self, job: Job) -> str | None:
        """Name of the pool a job runs on (None: the site has no pools)."""
        if not self.gpu_pools:
            return None
        name = job.gpu_model or next(iter(self.gpu_pools))
        if name not in self.gpu_pools:
            raise ValueError(f"job {job.id!r}: gpu_model {name!r} is not a pool; allowed: {', '.join(self.gpu_pools)}")
        return name

    def site_power_w(self, it_power_w):
        return it_power_w * self.pue + self.overhead_w

    def it_power_w(self, site_power_w):
        return (site_power_w - self.overhead_w) / self.pue


def require_aware(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is None:
        raise ValueError("time must carry a timezone (e.g. 2025-05-03T14:40:00-07:00 or ...Z)")
    return v
