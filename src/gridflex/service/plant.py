"""The site the service drives: its jobs and power curves, and the driver for its plant.

`build_driver` is the one place that turns the `driver:` config section into a driver: the
digital twin run in wall-clock time, or a real driver (Slurm, process groups, NVML, composite)
built by `gridflex.drivers.factory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridflex.drivers.base import Driver
from gridflex.drivers.dry_run import DryRunDriver
from gridflex.drivers.factory import make_driver
from gridflex.drivers.twin import TwinDriver
from gridflex.errors import InputError
from gridflex.model.curves import CurveLibrary
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Job, Site
from gridflex.service.config import DriverConfig, ServiceConfig
from gridflex.sim.scenarios import load_scenario

@dataclass(frozen=True)
class SiteSpec:
    site: Site
    jobs: tuple[Job, ...]
    curves: CurveLibrary
    control: ControlSettings


def load_site(config: ServiceConfig, base_dir: Path | None = None) -> SiteSpec:
    """Site, jobs and control settings: the config's own, else those of its `scenario`."""
    source = config.scenario
    if base_dir is not None and (base_dir / source).is_file():
        source = str(base_dir / source)
    loaded = load_scenario(source)
    sc = loaded.scenario
    jobs = config.jobs if config.jobs is not None else sc.jobs
    for i, job in enumerate(jobs):
        if job.workload not in loaded.curves:
            raise InputError(
                f"jobs.{i}.workload: unknown workload {job.workload!r}; allowed: {', '.join(sorted(loaded.curves))}"
            )
    if len({j.id for j in jobs}) != len(jobs):
        raise InputError("jobs: job ids must be unique")
    return SiteSpec(config.site or sc.site, tuple(jobs), loaded.curves, config.control or sc.control)


def build_driver(cfg: DriverConfig, spec: SiteSpec, start_s: float) -> Driver:
    """The plant driver named by the config. The twin runs the site's jobs in wall-clock time and
    has run one step already so that its first reading is a real one."""
    if cfg.kind != "twin":
        return make_driver({"kind": cfg.kind, **cfg.settings}, spec.site, spec.curves, cfg.state_dir)
    twin = TwinDriver(
        spec.jobs, spec.curves, spec.site, start_s - cfg.step_s, cfg.step_s, cfg.twin, cfg.seed, record=False
    )
    twin.advance_to(start_s)
    return twin


def advance(driver: Driver, t_s: float) -> None:
    """Bring a simulated plant up to wall-clock time; real plants live in it already."""
    inner = driver.inner if isinstance(driver, DryRunDriver) else driver
    if isinstance(inner, TwinDriver):
        inner.advance_to(t_s)
