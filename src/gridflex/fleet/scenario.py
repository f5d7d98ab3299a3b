"""Fleet scenarios: several site scenarios serving one model, for `gridflex simulate`.

A fleet scenario names each site's own scenario file (its jobs, events and controller
settings), the region it sits in, the job that serves the model and that job's capacity, the
site's carbon and price series, and the request classes: where each class's requests enter, the
real trace their rate follows (`sim/load_trace.py`) at what peak rate, and its latency budget.
`fleet_config` turns it into the `FleetConfig` the coordinator of `gridflex fleet` runs on.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from gridflex.errors import InputError
from gridflex.fleet.config import (
    _NAME,
    ClassConfig,
    CostsConfig,
    FleetConfig,
    ModelConfig,
    PlacementConfig,
    RouterConfig,
    SiteConfig,
    _Strict,
    unique_site_names,
)
from gridflex.signals.prices import StepSignal, load_prices, read_series_csv
from gridflex.sim.load_trace import TRACES
from gridflex.sim.scenarios import LoadedScenario, _builtin_dir, format_validation_error, load_scenario

TWIN_ROUTER = Path("twin-router")  # the twin of a fleet routes in memory: no admin socket


class SeriesSpec(_Strict):
    file: str = Field(description="CSV with a UTC time column and a value column, relative to the fleet file")
    column: str
    time_column: str = "datetime_utc"


class PricesSpec(_Strict):
    series: str = Field(description="a built-in price series or a CSV with `interval_start_utc`")
    column: str = "rt_usd_per_mwh"
    shift_days: int = Field(0, description="days added to the series' times (to lay a real series on the scenario's day)")


class FleetSiteSpec(_Strict):
    name: str = Field(pattern=_NAME)
    region: str = Field(description="region name as in the RTT table")
    scenario: str = Field(description="the site's scenario file (relative to the fleet file) or built-in name")
    serves: str = Field(description="id of the site's job that serves the model")
    capacity_rps: float = Field(gt=0, description="requests/s that job serves at full speed")
    carbon: SeriesSpec
    prices: PricesSpec | None = None
    price_usd_per_mwh: float = Field(50.0, ge=0, description="flat price where no `prices` series is given")
    slow_usd_per_mwh: float = Field(1000.0, ge=0, description="value of work lost per MWh the site sheds in place")


class RequestClassSpec(_Strict):
    name: str = Field(pattern=_NAME)
    origin: str = Field(description="region where the requests enter (a site's region)")
    trace: str = Field(description=f"the real trace the rate follows: {', '.join(TRACES)}")
    peak_rps: float = Field(gt=0, description="requests/s at the trace's 99th percentile at the busiest hour")
    latency_budget_ms: float = Field(ge=0)


class FleetScenario(_Strict):
    name: str
    description: str = ""
    start: datetime
    end: datetime
    rtt_file: str = Field(description="inter-region RTT CSV, relative to the fleet file")
    interval_s: float = Field(30.0, gt=0, description="seconds between coordinator ticks")
    max_step: float = Field(0.1, ge=0.01, le=1, description="largest change of a server's share per tick")
    costs: CostsConfig = CostsConfig()
    model: str = Field(pattern=_NAME)
    sites: tuple[FleetSiteSpec, ...] = Field(min_length=2)
    classes: tuple[RequestClassSpec, ...] = Field(min_length=1)
    placement: PlacementConfig | None = Field(None, description="place the sites' queued batch jobs across the fleet")

    @model_validator(mode="after")
    def _check(self) -> FleetScenario:
        unique_site_names(self.sites)
        regions = {s.region for s in self.sites}
        for i, c in enumerate(self.classes):
            if c.origin not in regions:
                raise ValueError(f"classes.{i}.origin: {c.origin!r} is no site's region; regions: {sorted(regions)}")
            if c.trace not in TRACES:
                raise ValueError(f"classes.{i}.trace: {c.trace!r}; allowed: {', '.join(TRACES)}")
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class LoadedFleet:
    """A fleet scenario with its sites' scenarios, carbon and price series loaded."""

    def __init__(self, spec: FleetScenario, base_dir: Path):
        self.spec, self.base_dir = spec, base_dir
        self.sites: dict[str, LoadedScenario] = {}
        self.carbon: dict[str, StepSignal] = {}
        self.prices: dict[str, StepSignal | None] = {}
        for i, s in enumerate(spec.sites):
            path = base_dir / s.scenario
            loaded = load_scenario(str(path) if path.is_file() else s.scenario)
            sc = loaded.scenario
            if (sc.start, sc.end) != (spec.start, spec.end):
                raise InputError(f"sites.{i}.scenario: {s.scenario} runs {sc.start}..{sc.end}; the fleet runs "
                                 f"{spec.start}..{spec.end}: they must match")
            if s.serves not in {j.id for j in sc.jobs}:
                raise InputError(f"sites.{i}.serves: no job {s.serves!r} in {s.scenario}")
            self.sites[s.name] = loaded
            self.carbon[s.name] = _series(base_dir, s.carbon, f"sites.{i}.carbon")
            self.prices[s.name] = None
            if s.prices is not None:
                raw = load_prices(s.prices.series, s.prices.column, base_dir)
                self.prices[s.name] = StepSignal(raw.times_s + 86400.0 * s.prices.shift_days, raw.values, raw.name)
        self._share_batch()
        intervals = {ls.scenario.control.interval_s for ls in self.sites.values()}
        if len(intervals) != 1 or spec.interval_s % next(iter(intervals)):
            raise InputError(f"interval_s: {spec.interval_s}; the sites' control.interval_s {sorted(intervals)} must be "
                             "one value dividing it")

    def _share_batch(self) -> None:
        """Every site's scenario also lists the other sites' queued jobs, so that a job placed
        elsewhere runs there as any new job; `batch_home` says where each was submitted (the
        fleet run withdraws every job from the sites it was not submitted at before it starts)."""
        own = dict(self.sites)
        self.batch_home = {j.id: name for name, ls in own.items() for j in ls.scenario.jobs if j.queued}
        for name, ls in own.items():
            foreign = tuple(j for other, o in own.items() if other != name for j in o.scenario.jobs if j.queued)
            clash = sorted({j.id for j in foreign} & {j.id for j in ls.scenario.jobs})
            if clash:
                raise InputError(f"sites: job id(s) {clash[:5]} of {name} also at another site; queued jobs need ids "
                                 "unique across the fleet")
            missing = sorted({j.workload for j in foreign} - set(ls.curves))
            curves = ls.curves.merged(o.curves[w] for o in own.values() for w in missing if w in o.curves)
            self.sites[name] = dataclasses.replace(
                ls, scenario=ls.scenario.model_copy(update={"jobs": ls.scenario.jobs + foreign}), curves=curves)

    @property
    def name(self) -> str:
        return self.spec.name

    def energy_per_request_j(self, site: FleetSiteSpec) -> float:
        """Marginal site energy per request of the serving job at full speed: its power above
        idle over its capacity, times the site's PUE."""
        sc = self.sites[site.name].scenario
        job = next(j for j in sc.jobs if j.id == site.serves)
        curve = self.sites[site.name].curves[job.workload]
        return job.gpus * (curve.full_power_w - curve.idle_w) * sc.site.pue / site.capacity_rps

    def fleet_config(self) -> FleetConfig:
        """The coordinator's config: one HAProxy-like backend per class, one server per site."""
        spec = self.spec
        sites = tuple(SiteConfig(
            name=s.name, region=s.region, api_url=f"http://twin.invalid/{s.name}",  # never polled: the twin reports
            carbon_g_per_kwh=float(self.carbon[s.name].values.mean()), price_usd_per_mwh=s.price_usd_per_mwh,
            slow_usd_per_mwh=s.slow_usd_per_mwh) for s in spec.sites)
        model = ModelConfig(
            name=spec.model, servers={s.name: s.name for s in spec.sites},
            capacity_rps={s.name: s.capacity_rps for s in spec.sites},
            energy_per_request_j={s.name: self.energy_per_request_j(s) for s in spec.sites},
            jobs={s.name: s.serves for s in spec.sites},
            classes=tuple(ClassConfig(name=c.name, backend=c.name, origin=c.origin, rate_rps=c.peak_rps,
                                      latency_budget_ms=c.latency_budget_ms) for c in spec.classes))
        return FleetConfig(interval_s=spec.interval_s, rtt_file=self.base_dir / spec.rtt_file,
                           router=RouterConfig(socket=TWIN_ROUTER, max_step=spec.max_step), costs=spec.costs,
                           sites=sites, models=(model,), placement=spec.placement)


def is_fleet_scenario(name_or_path: str) -> bool:
    """Whether `name_or_path` (a file or a built-in name) is a fleet scenario (it has `sites:` as a list)."""
    path = _path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and isinstance(data.get("sites"), list)


def load_fleet(name_or_path: str) -> LoadedFleet:
    path = _path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"cannot read fleet scenario {path}: {e}") from None
    try:
        spec = FleetScenario.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{path}: invalid fleet scenario\n{format_validation_error(e)}") from None
    return LoadedFleet(spec, path.parent)


def _path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    return Path(str(_builtin_dir().joinpath(f"{name_or_path}.yaml")))


def _series(base_dir: Path, spec: SeriesSpec, field: str) -> StepSignal:
    path = base_dir / spec.file
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{field}.file: cannot read {path}: {e.strerror}") from None
    return read_series_csv(text, f"{field} ({path.name})", spec.time_column, spec.column)
