"""The service's configuration file (YAML): the site, its driver, the API, the store and OpenADR."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridflex.config_file import load_yaml_model
from gridflex.drivers.meter import MeterConfig
from gridflex.model.miners import MinerSettings
from gridflex.model.scenario import ControlSettings, TwinSettings
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import Job, Site
from gridflex.programs.model import Enrolment
from gridflex.sim.scenarios import DEFAULT_SCENARIO

#: Environment variable holding the bearer token for writes (overrides `api.token`).
TOKEN_ENV = "GRIDFLEX_API_TOKEN"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriverConfig(_Strict):
    """Which plant the controller drives. `twin`: the digital twin in wall-clock time; the others
    are real drivers built by `gridflex.drivers.factory.make_driver` from `settings` (docs/slurm.md),
    whose jobs are the ones they discover."""

    kind: str = Field("twin", pattern="^(twin|slurm|process|nvml|composite)$", description="plant driver")
    settings: dict[str, Any] = Field(default_factory=dict, description="a real driver's settings (docs/slurm.md)")
    state_dir: Path | None = Field(
        None, description="where a real driver keeps the ledger of what it changed (relative to the config file)"
    )
    seed: int = Field(0, description="seed of the twin's curve errors and power noise")
    step_s: float = Field(1.0, gt=0, le=60, description="the twin's simulation step")
    twin: TwinSettings = TwinSettings()


class MinerDriverConfig(_Strict):
    """How real miners are reached (pyasic); their ledger is `driver.state_dir`/miners.json."""

    timeout_s: float = Field(5.0, gt=0, description="deadline of every pyasic call")
    restart_stagger_s: float = Field(2.0, ge=0, description="seconds between miner restarts (no synchronised inrush)")
    step_s: float = Field(1.0, gt=0, le=60, description="the simulated miners' step (groups without hosts)")


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: str | None = Field(None, min_length=16, description=f"bearer token for writes ({TOKEN_ENV} overrides)")
    writes_enabled: bool = True
    protect_reads: bool = Field(False, description="require the token for reads too")


class LiveControl(ControlSettings):
    """The scenario's control settings plus what only a live service needs."""

    stale_after_s: float | None = Field(
        None, gt=0, description="a reading older than this makes /status `degraded` (default: 3 ticks, at least 10 s)"
    )
    fail_safe: Literal["hold", "curtail", "restore"] = Field(
        "hold", description="after `failed_ticks` failed ticks (meter or plant unreadable): 'hold' keeps the last"
        " plan (nothing paused is resumed blind), 'curtail' takes every flexible job to its least power,"
        " 'restore' returns every job to normal"
    )
    failed_ticks: int = Field(2, ge=1, description="failed ticks in a row that trigger the fail-safe")


def stale_after_s(control: ControlSettings) -> float:
    """Age beyond which the last reading no longer stands for the plant."""
    given = getattr(control, "stale_after_s", None)
    return given if given is not None else max(3 * control.interval_s, 10.0)


class EventLimits(_Strict):
    """Bounds on events from the API and OpenADR beyond what the site can carry out."""

    max_past_s: float = Field(86400.0, ge=0, description="an event may start at most this long before now")
    max_ahead_s: float = Field(365 * 86400.0, gt=0, description="an event may start at most this long after now")
    max_duration_s: float = Field(7 * 86400.0, gt=0, description="longest event (start to end)")
    baseline_margin: float = Field(
        0.25, ge=0, description="a given baseline_w may exceed the site's full power by at most this fraction"
    )


class StoreConfig(_Strict):
    url: str = Field(
        "sqlite:///gridflex.db",
        description="SQLAlchemy URL: sqlite:///path (relative to the config file) or postgresql+psycopg://...",
    )
    history_s: float = Field(7 * 86400, gt=0, description="telemetry and decisions kept this long")


class OpenAdrConfig(_Strict):
    """The OpenADR 2.0b VEN."""

    enabled: bool = False
    vtn_url: str = Field("http://127.0.0.1:8081/OpenADR2/Simple/2.0b", description="VTN endpoint")
    ven_name: str = Field("gridflex", min_length=1)
    retry_s: float = Field(30.0, gt=0, description="seconds between registration attempts while the VTN is away")
    report_interval_s: float = Field(10.0, gt=0, description="telemetry report sampling and sending interval")
    setpoint_unit_w: float = Field(
        1000.0, gt=0, description="watts per LOAD_DISPATCH setpoint unit when the signal gives no scale"
    )
    simple_levels: dict[int, float] = Field(
        default_factory=lambda: {1: 0.1, 2: 0.25, 3: 0.4},
        description="SIMPLE signal level -> fraction of baseline to shed (level 0: no reduction)",
    )

    @model_validator(mode="after")
    def _levels(self) -> OpenAdrConfig:
        for level, reduction in self.simple_levels.items():
            if not 0 < level <= 3 or not 0 < reduction < 1:
                raise ValueError(f"simple_levels: level {level} -> {reduction}; allowed levels 1..3, reductions 0..1")
        return self


class ServiceConfig(_Strict):
    """Everything `gridflex serve` needs. Site and jobs default to the built-in phoenix-srp scenario's."""

    scenario: str = Field(DEFAULT_SCENARIO, description="scenario (name or file) whose site, jobs, curves are used")
    site: Site | None = None
    jobs: tuple[Job, ...] | None = None
    control: LiveControl | None = None
    planner: str = "optimal"
    budget_window_s: float = Field(
        86400.0, gt=0, description="flex budgets are kept over rolling windows of this length from each job's start"
    )
    driver: DriverConfig = DriverConfig()
    api: ApiConfig = ApiConfig()
    store: StoreConfig = StoreConfig()
    openadr: OpenAdrConfig = OpenAdrConfig()
    events: EventLimits = EventLimits()
    meter: MeterConfig | None = Field(  # type: ignore[valid-type]
        None, description="the site's meter: `kind: modbus` (Modbus TCP, the default) or `kind: prometheus` (a"
        " PromQL query); drivers/meter.py. None: site power is the sum of the drivers' readings"
    )
    miners: MinerSettings | None = Field(
        None, description="the miner fleet behind the site meter (docs/miners.md): groups with `hosts` are real"
        " miners driven through pyasic, groups with a `count` only are simulated"
    )
    miner_driver: MinerDriverConfig = MinerDriverConfig()
    programs: Enrolment = Field(Enrolment(()), description="demand-response programs enrolled in (docs/programs.md)")
    shifting: ShiftSettings | None = Field(
        None, description="time shifting of queued deferrable work by a live carbon or price forecast"
        " (`shifting.live`; docs/shifting.md)")

    def token(self) -> str | None:
        """The bearer token: the environment variable, else the config."""
        return os.environ.get(TOKEN_ENV) or self.api.token


def load_config(path: str | Path | None) -> ServiceConfig:
    """Read and check a config file (None: all defaults)."""
    if path is None:
        return ServiceConfig()
    cfg = load_yaml_model(path, ServiceConfig)
    base = Path(path).parent
    url = sqlite_url_beside(cfg.store.url, base)
    state_dir = cfg.driver.state_dir
    if state_dir is not None and not state_dir.is_absolute():
        state_dir = (base / state_dir).resolve()
    return cfg.model_copy(update={"store": cfg.store.model_copy(update={"url": url}),
                                  "driver": cfg.driver.model_copy(update={"state_dir": state_dir})})


def sqlite_url_beside(url: str, base_dir: Path) -> str:
    """A relative SQLite path is taken relative to `base_dir` (the config's folder), like `scenario`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    file, sep, query = url[len(prefix):].partition("?")
    if not file or file == ":memory:" or Path(file).is_absolute():
        return url
    return f"{prefix}{(base_dir / file).resolve()}{sep}{query}"
