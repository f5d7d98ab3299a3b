"""fleet.yaml: the sites (API URL, region, costs), the router, and each model's HAProxy
backends and request classes. See docs/fleet.md for an annotated example."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridflex.config_file import load_yaml_model
from gridflex.fleet.placement import DATA_GB, DATA_USD_PER_GB

_NAME = r"^[A-Za-z0-9_.:-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouterConfig(_Strict):
    kind: Literal["haproxy"] = Field("haproxy", description="load balancer driver (HAProxy's runtime API)")
    socket: Path = Field(description="HAProxy admin socket ('stats socket PATH level admin')")
    state_file: Path | None = Field(None, description="ledger of original weights, for restore after a crash")
    max_step: float = Field(0.1, ge=0.01, le=1, description="largest change of a server's share per tick")
    measured_rates: bool = Field(False, description="plan with the requests/s the router counted for each class's "
                                                    "backend over the last tick, in place of the classes' rate_rps "
                                                    "(which serve until there are two readings)")


class SiteConfig(_Strict):
    name: str = Field(pattern=_NAME)
    region: str = Field(description="region name as in the RTT table (e.g. 'Washington DC')")
    api_url: str = Field(pattern=r"^https?://", description="the site's gridflex API, e.g. http://10.0.0.5:8080")
    token_env: str | None = Field(None, description="environment variable with the site API's bearer token "
                                                    "(reads; and writes where `models[].jobs` sets load floors)")
    limit_w: float | None = Field(None, gt=0, description="power limit when the site reports no target")
    carbon_g_per_kwh: float = Field(400.0, ge=0)
    price_usd_per_mwh: float = Field(50.0, ge=0)
    slow_usd_per_mwh: float = Field(1000.0, ge=0, description="value of work lost per MWh the site sheds in place")
    flex_w: float = Field(1e12, ge=0, description="how much the site can shed in place (default: no bound)")


class ClassConfig(_Strict):
    name: str = Field(pattern=_NAME)
    backend: str = Field(pattern=_NAME, description="the HAProxy backend serving this class")
    origin: str = Field(description="region where the class's requests enter")
    rate_rps: float = Field(ge=0, description="requests/s the coordinator plans with (see router.measured_rates)")
    latency_budget_ms: float = Field(ge=0, description="largest round trip a request may gain by moving")


class ModelConfig(_Strict):
    name: str = Field(pattern=_NAME)
    servers: dict[str, str] = Field(description="site -> HAProxy server name in each class's backend")
    capacity_rps: dict[str, float] = Field(description="site -> requests/s it can serve")
    capacity_margin: float = Field(0.05, ge=0, lt=1, description="share of each site's capacity left free for "
                                   "bursts between ticks (the split is decided on the rest)")
    energy_per_request_j: dict[str, float] = Field(description="site -> marginal energy per request")
    jobs: dict[str, str] = Field(default_factory=dict, description="site -> id of the job serving the model there: "
                                 "each tick the coordinator sets its load floor (the least throughput the traffic "
                                 "routed there needs) through the site's API; a site not named gets none")
    classes: tuple[ClassConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        sites = set(self.servers)
        if set(self.jobs) - sites:
            raise ValueError(f"jobs: sites {sorted(set(self.jobs) - sites)} are not among the servers {sorted(sites)}")
        for field in ("capacity_rps", "energy_per_request_j"):
            given = getattr(self, field)
            if set(given) != sites:
                raise ValueError(f"{field}: sites {sorted(given)}; needs exactly the sites of servers {sorted(sites)}")
            if any(v < 0 for v in given.values()) or (field == "energy_per_request_j" and min(given.values()) <= 0):
                raise ValueError(f"{field}: {given}; allowed: numbers >= 0 (energy > 0)")
        return self


class CostsConfig(_Strict):
    carbon_usd_per_t: float = Field(100.0, ge=0)
    latency_usd_per_request_s: float = Field(0.001, ge=0, description="cost of one second added to one request")
    shortfall_usd_per_mwh: float = Field(100_000.0, ge=0)
    failed_usd_per_request: float = Field(0.01, ge=0, description="cost of a request sent where it cannot be served")


class PlacementConfig(_Strict):
    """Placing queued batch jobs across sites (`fleet/placement.py`): their data's move is a cost."""

    data_usd_per_gb: float = Field(DATA_USD_PER_GB, ge=0, description="cost of moving one GB of a job's data "
                                                                      "to another site (default: AWS inter-region)")
    data_gb: float = Field(DATA_GB, ge=0, description="data a batch job moves with it (datasets, checkpoints)")


class FleetConfig(_Strict):
    interval_s: float = Field(5.0, gt=0, description="seconds between ticks: poll, decide, one step per backend")
    store_url: str | None = Field(None, description="gridflex store (SQLAlchemy URL; PostgreSQL when shared) keeping "
                                                    "the coordinator's state across restarts (none: in memory)")
    timeout_s: float = Field(5.0, gt=0, le=60, description="timeout of each site API request")
    rtt_file: Path = Field(description="inter-region RTT CSV (snapshot_date, src_region, dst_region, avg_latency_ms)")
    router: RouterConfig
    costs: CostsConfig = CostsConfig()
    sites: tuple[SiteConfig, ...] = Field(min_length=1)
    models: tuple[ModelConfig, ...] = Field(min_length=1)
    placement: PlacementConfig | None = Field(None, description="place queued batch jobs across sites (none: each "
                                              "runs where submitted; `gridflex fleet` advises the moves in its "
                                              "tick line, nothing moves jobs yet: docs/fleet.md)")

    @model_validator(mode="after")
    def _check(self) -> FleetConfig:
        names = unique_site_names(self.sites)
        backends = [c.backend for m in self.models for c in m.classes]
        if self.router.measured_rates and len(set(backends)) != len(backends):
            raise ValueError(f"router.measured_rates: classes share a backend ({backends}); each class needs its "
                             "own backend for its requests to be counted apart")
        for m in self.models:
            unknown = sorted(set(m.servers) - set(names))
            if unknown:
                raise ValueError(f"models.{m.name}.servers: unknown site(s) {unknown}; sites: {names}")
        return self


def load_fleet_config(path: str | Path) -> FleetConfig:
    """Read and check fleet.yaml; relative file paths in it are relative to the file."""
    path = Path(path)
    cfg = load_yaml_model(path, FleetConfig, "fleet config")
    base = path.parent
    router = cfg.router.model_copy(update={
        "socket": base / cfg.router.socket,
        "state_file": base / cfg.router.state_file if cfg.router.state_file else None})
    return cfg.model_copy(update={"rtt_file": base / cfg.rtt_file, "router": router})


def unique_site_names(sites) -> list[str]:
    """The sites' names; ValueError if two share one."""
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"sites: names must be unique, got {names}")
    return names
