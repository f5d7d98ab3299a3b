"""The site the service drives: its jobs and power curves, and the driver for its plant.

`build_driver` is the one place that turns the `driver:` config section into a driver: the
digital twin run in wall-clock time, or a real driver (Slurm, process groups, NVML, composite)
built by `gridflex.drivers.factory`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gridflex.assembly import Simulated
from gridflex.control.miner_side import MinerSide
from gridflex.drivers.base import Driver
from gridflex.drivers.factory import make_driver
from gridflex.drivers.miners_twin import MinerTwinDriver
from gridflex.drivers.pyasic_driver import PyasicDriver
from gridflex.drivers.twin import TwinDriver
from gridflex.errors import InputError
from gridflex.model.curves import CurveLibrary
from gridflex.model.site import Job, Site
from gridflex.service.config import DriverConfig, LiveControl, ServiceConfig
from gridflex.signals.prices import load_prices
from gridflex.sim.hybrid import hashprice_signal
from gridflex.sim.scenarios import load_scenario


@dataclass(frozen=True)
class SiteSpec:
    site: Site
    jobs: tuple[Job, ...]
    curves: CurveLibrary
    control: LiveControl
    base_dir: Path | None = None  # where the config's relative paths (prices) start


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
    control = config.control or LiveControl(**sc.control.model_dump())
    return SiteSpec(config.site or sc.site, tuple(jobs), loaded.curves, control, base_dir)


def build_driver(cfg: DriverConfig, spec: SiteSpec, start_s: float) -> tuple[Driver, tuple[Simulated, ...]]:
    """The plant driver named by the config, and the plants among it to bring up to the clock
    before each tick. The twin runs the site's jobs in wall-clock time and has run one step
    already so that its first reading is a real one."""
    if cfg.kind != "twin":
        return make_driver({"kind": cfg.kind, **cfg.settings}, spec.site, spec.curves, cfg.state_dir), ()
    twin = TwinDriver(
        spec.jobs, spec.curves, spec.site, start_s - cfg.step_s, cfg.step_s, cfg.twin, cfg.seed, record=False
    )
    twin.advance_to(start_s)
    return twin, (twin,)


def build_miners(
    config: ServiceConfig, spec: SiteSpec, start_s: float, dry_run: bool
) -> tuple[MinerSide | None, tuple[Simulated, ...]]:
    """The miner fleet of the config: real units through pyasic where its groups list hosts (each
    found and put back as it was found), else the simulated fleet in wall-clock time (then also
    returned as a plant to bring up to the clock)."""
    settings = config.miners
    if settings is None:
        return None, ()
    fleet = settings.build_fleet()
    real = [g for g in settings.groups if g.hosts]
    if real and len(real) != len(settings.groups):
        raise InputError("miners.groups: give hosts for every group (real miners) or for none (simulated)")
    if real:
        state = config.driver.state_dir / "miners.json" if config.driver.state_dir else None
        d = config.miner_driver
        driver = PyasicDriver(fleet.ids, d.timeout_s, d.restart_stagger_s, state_path=state, dry_run=dry_run)
        driver.restore()  # put back what a crashed run left changed (its saved state), then look afresh
        units = driver.discover()
        # what the units say of themselves beats the model table
        fleet = replace(fleet, power_w=np.array([u.power_w for u in units]),
                        hashrate_th_s=np.array([u.hashrate_th_s for u in units]),
                        min_power_w=np.array([u.min_power_w for u in units]))
        simulated = ()
    else:
        driver = MinerTwinDriver(fleet, start_s, config.miner_driver.step_s, settings.ramp_w_per_s)
        simulated = (driver,)
    prices = load_prices(settings.prices, settings.price_column, spec.base_dir)
    return MinerSide(fleet, driver, settings, prices, hashprice_signal(settings, spec.base_dir)), simulated
