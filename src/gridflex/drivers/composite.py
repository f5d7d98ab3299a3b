"""A site made of several drivers: one that owns the jobs (Slurm or process groups: discovery
and pauses) and NVML for per-GPU power caps and measured power."""

from __future__ import annotations

import numpy as np

from gridflex.drivers.base import Driver, DriverHealth, JobActions, Telemetry
from gridflex.drivers.nvml import NvmlDriver
from gridflex.errors import DriverError
from gridflex.model.fleet import JobFleet
from gridflex.model.site import Job


class CompositeDriver:
    """Jobs and pauses from `jobs`; caps and power readings from `power`. Actions are checked by
    both parts before either acts."""

    def __init__(self, jobs: Driver, power: NvmlDriver):
        self.jobs_driver, self.power = jobs, power
        self.name = f"{jobs.name}+{power.name}"
        self.jobs: list[Job] = []
        self._fleet: JobFleet | None = None

    def discover(self) -> list[Job]:
        self.jobs = self.power.bind(self.jobs_driver.discover())
        self._fleet = JobFleet.build(self.jobs, self.power.curves) if self.jobs else None
        return list(self.jobs)

    def queue(self) -> list[Job]:
        return list(self.jobs_driver.queue())

    def read(self) -> Telemetry:
        base, meas = self.jobs_driver.read(), self.power.read()
        if base.job_ids != meas.job_ids:
            raise DriverError(f"{self.name}: job lists differ; call discover() again")
        mapped = np.array([j.id in self.power.job_gpus for j in self.jobs], dtype=bool)
        job_w = np.where(mapped, meas.job_power_w, base.job_power_w)
        it_w = float(job_w.sum())
        return Telemetry(
            t_s=base.t_s,
            site_power_w=float(self.power.site.site_power_w(it_w)),
            it_power_w=it_w,
            job_ids=base.job_ids,
            job_power_w=job_w,
            throughput=base.throughput * (self._fleet.throughput_at_cap(meas.cap_w) if self._fleet else 1.0),
            cap_w=meas.cap_w,
            active=base.active,
            estimated=not bool(mapped.all()),
        )

    def _split(self, actions: JobActions) -> tuple[JobActions, JobActions]:
        top = np.array([self.power.curves[j.workload].max_cap_w for j in self.jobs])
        if tuple(actions.job_ids) != tuple(j.id for j in self.jobs):
            raise DriverError(f"{self.name}: actions must list the discovered jobs in order")
        return (JobActions(actions.job_ids, top, np.asarray(actions.active, float)),
                JobActions(actions.job_ids, np.asarray(actions.cap_w, float), np.ones(len(top))))

    def preview(self, actions: JobActions) -> list[str]:
        for_jobs, for_power = self._split(actions)
        return self.jobs_driver.preview(for_jobs) + self.power.preview(for_power)

    def apply(self, actions: JobActions) -> None:
        for_jobs, for_power = self._split(actions)
        self.jobs_driver.preview(for_jobs)  # both parts check everything before either acts
        self.power.preview(for_power)
        self.power.apply(for_power)
        self.jobs_driver.apply(for_jobs)

    def restore(self) -> None:
        errors = []
        for part in (self.power, self.jobs_driver):
            try:
                part.restore()
            except DriverError as e:
                errors.append(f"{part.name}: {e}")
        if errors:
            raise DriverError("restore incomplete: " + "; ".join(errors))

    def health(self) -> DriverHealth:
        parts = [(p.name, p.health()) for p in (self.jobs_driver, self.power)]
        return DriverHealth(all(h.ok for _, h in parts), "; ".join(f"{n}: {h.detail}" for n, h in parts))
