"""The service's configuration file (YAML): the site, its driver, the API, the store and OpenADR."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gridflex.errors import InputError
from gridflex.model.scenario import ControlSettings, TwinSettings
from gridflex.model.site import Job, Site
from gridflex.programs.model import Enrolment
from gridflex.sim.scenarios import DEFAULT_SCENARIO, format_validation_error

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
    state_dir: Path | None = Field(None, description="where a real driver keeps the ledger of what it changed")
    seed: int = Field(0, description="seed of the twin's curve errors and power noise")
    step_s: float = Field(1.0, gt=0, le=60, description="the twin's simulation step")
    twin: TwinSettings = TwinSettings()


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: str | None = Field(None, min_length=16, description=f"bearer token for writes ({TOKEN_ENV} overrides)")
    writes_enabled: bool = True
    protect_reads: bool = Field(False, description="require the token for reads too")


class StoreConfig(_Strict):
    url: str = Field("sqlite:///gridflex.db", description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://...")
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
    control: ControlSettings | None = None
    planner: str = "optimal"
    budget_window_s: float = Field(
        86400.0, gt=0, description="flex budgets are kept over rolling windows of this length from each job's start"
    )
    driver: DriverConfig = DriverConfig()
    api: ApiConfig = ApiConfig()
    store: StoreConfig = StoreConfig()
    openadr: OpenAdrConfig = OpenAdrConfig()
    programs: Enrolment = Field(Enrolment(()), description="demand-response programs enrolled in (docs/programs.md)")

    def token(self) -> str | None:
        """The bearer token: the environment variable, else the config."""
        return os.environ.get(TOKEN_ENV) or self.api.token


def load_config(path: str | Path | None) -> ServiceConfig:
    """Read and check a config file (None: all defaults)."""
    if path is None:
        return ServiceConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping (keys: {', '.join(ServiceConfig.model_fields)})")
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{path}: invalid config\n{format_validation_error(e)}") from None
