"""The driver contract: the verbs every plant (twin, Slurm, NVML, miners) implements.

The controller talks only to this interface and never knows whether the plant is the
digital twin or real hardware.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gridflex.errors import DriverError
from gridflex.model.site import Job


@dataclass(frozen=True, eq=False)
class JobActions:
    """What every running job should do: a per-GPU power cap and the fraction of its GPUs
    working (1: running, 0: paused, in between: resized); and which queued jobs to hold (every
    other queued job this driver held before is released)."""

    job_ids: tuple[str, ...]
    cap_w: np.ndarray
    active: np.ndarray
    held: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[tuple[str, float, float]]:
        return zip(self.job_ids, self.cap_w.tolist(), self.active.tolist())


def pair_with_jobs(actions: JobActions, jobs: Sequence[Job], kind: str = "job") -> list[tuple[Job, float, float]]:
    """(job, cap_w, active) for every action, or `DriverError` for the whole set if the arrays
    disagree in length or an action names a job the driver does not know."""
    by_id = {j.id: j for j in jobs}
    ids = tuple(actions.job_ids)
    cap, active = np.asarray(actions.cap_w, float), np.asarray(actions.active, float)
    if len(cap) != len(ids) or len(active) != len(ids):
        raise DriverError(f"actions: {len(ids)} job_ids but {len(cap)} cap_w and {len(active)} active")
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise DriverError(f"actions: unknown {kind}(s) {unknown}; discovered: {sorted(by_id) or 'none'}")
    return [(by_id[i], c, a) for i, c, a in zip(ids, cap.tolist(), active.tolist())]


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

    def discover(self) -> Sequence[Job]:
        """The jobs running now, in the order of `read()`'s arrays. A driver that finds no change
        since the last call may return the very same sequence object (a cheap no-change test)."""
        ...

    def queue(self) -> Sequence[Job]:
        """Jobs waiting to start (queued or held), oldest first; empty where the plant has no queue."""
        ...

    def read(self) -> Telemetry: ...

    def apply(self, actions: JobActions) -> None: ...

    def restore(self) -> None: ...

    def health(self) -> DriverHealth: ...
