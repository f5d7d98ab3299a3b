"""Power where no meter exists: modelled from each job's state and its power curve.

A GPU job that runs draws its curve's per-GPU power at its cap; a paused (suspended or
checkpoint-stopped) job draws the curve's paused power; GPUs of a job that is not running
draw idle power. Site power follows the site's PUE and overhead. Telemetry built here is
always marked ``estimated=True`` so every display can say so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gridflex.drivers.base import Telemetry
from gridflex.model.curves import CurveLibrary
from gridflex.model.fleet import JobFleet
from gridflex.model.site import Job, Site


class PowerEstimate:
    """Modelled telemetry for a fixed list of jobs."""

    def __init__(self, jobs: Sequence[Job], curves: CurveLibrary, site: Site):
        self.site = site
        self.fleet = JobFleet.build(jobs, curves) if jobs else None
        self.job_ids = tuple(j.id for j in jobs)

    @property
    def max_cap_w(self) -> np.ndarray:
        return self.fleet.max_cap_w if self.fleet is not None else np.zeros(0)

    def telemetry(
        self, t_s: float, cap_w: np.ndarray, active: np.ndarray, running: np.ndarray,
        measured_w: np.ndarray | None = None,
    ) -> Telemetry:
        """Telemetry for jobs in the given state. Where `measured_w` is given and not NaN it
        replaces the model (e.g. NVML readings); the result is estimated if any job was modelled."""
        if self.fleet is None:
            empty = np.zeros(0)
            return Telemetry(t_s, self.site.site_power_w(0.0), 0.0, (), empty, empty, empty, empty, True)
        f = self.fleet
        job_w = f.job_power_w(cap_w, active, running)
        estimated = True
        if measured_w is not None:
            have = ~np.isnan(measured_w)
            job_w = np.where(have, measured_w, job_w)
            estimated = not bool(have.all())
        throughput = np.where(running, active * f.throughput_at_cap(cap_w), 0.0)
        it_w = float(job_w.sum())
        return Telemetry(
            t_s=t_s,
            site_power_w=float(self.site.site_power_w(it_w)),
            it_power_w=it_w,
            job_ids=self.job_ids,
            job_power_w=job_w,
            throughput=throughput,
            cap_w=np.asarray(cap_w, float).copy(),
            active=np.asarray(active, float).copy(),
            estimated=estimated,
        )
