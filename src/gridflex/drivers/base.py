"""The driver contract: the verbs every plant (twin, Slurm, NVML, miners) implements.

The controller talks only to this interface and never knows whether the plant is the
digital twin or real hardware.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gridflex.model.site import Job


@dataclass(frozen=True, eq=False)
class JobActions:
    """What every job should do: a per-GPU power cap and the fraction of its GPUs working
    (1: running, 0: paused, in between: resized)."""

    job_ids: tuple[str, ...]
    cap_w: np.ndarray
    active: np.ndarray

    def __iter__(self) -> Iterator[tuple[str, float, float]]:
        return zip(self.job_ids, self.cap_w.tolist(), self.active.tolist())


@dataclass(frozen=True, eq=False)
class Telemetry:
    """One reading of the plant. Per-job arrays follow `job_ids`; throughput is the mean
    normalised throughput since the previous reading (NaN where unknown)."""

    t_s: float
    site_power_w: float
    it_power_w: float
    job_ids: tuple[str, ...]
    job_power_w: np.ndarray
    throughput: np.ndarray
    cap_w: np.ndarray  # caps in effect
    active: np.ndarray  # active fractions in effect
    estimated: bool = False  # power estimated from a model, not measured


@dataclass(frozen=True)
class DriverHealth:
    ok: bool
    detail: str = ""


class Driver(Protocol):
    """Verbs of a plant. `apply` checks every action before changing anything and raises
    `DriverError` naming the job and field if one is not allowed; `restore` undoes all
    changes this driver made."""

    name: str

    def discover(self) -> list[Job]: ...

    def read(self) -> Telemetry: ...

    def apply(self, actions: JobActions) -> None: ...

    def restore(self) -> None: ...

    def health(self) -> DriverHealth: ...
