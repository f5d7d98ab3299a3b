"""NVML driver (nvidia-ml-py): per-GPU power, energy and power limits.

Reads each GPU's power draw, cumulative energy and power limit; sets per-GPU power limits
within the range the device allows; remembers every original limit in the `Ledger` before
the first change and puts it back on `restore()` (on exit, and after a crash from the state
file). GPUs map to jobs by a `GpuMap`: fixed indices per job (e.g. from a job's
CUDA_VISIBLE_DEVICES), or the processes NVML sees on each GPU, resolved to Slurm jobs (their
SLURM_JOB_ID) or to process groups. NVML cannot pause a job; a composite pairs it with
Slurm or the process driver for that. All NVML calls go through `pynvml`, or through any
module-like object with the same functions (the tests' fake NVML).

A job capped at or above the top of its power curve is uncapped: its GPUs get their original
limits back.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gridflex.drivers.base import DriverHealth, JobActions, Telemetry, pair_with_jobs
from gridflex.drivers.estimate import PowerEstimate
from gridflex.drivers.ledger import Ledger
from gridflex.errors import DriverError
from gridflex.model.curves import CurveLibrary
from gridflex.model.site import Action, Job, Site

#: Resolves the owning job of a process id (None: not a job's).
JobOfPid = Callable[[int], str | None]
#: Current GPU indices of each job.
GpuMap = Callable[[], dict[str, list[int]]]


class NvmlJob(Job):
    """A job on fixed GPUs (standalone NVML driver)."""

    gpu_indices: tuple[int, ...] = Field(min_length=1)
    gpus: int = 1  # replaced by len(gpu_indices)
    actions: frozenset[Action] = frozenset({Action.power_cap})

    def job(self) -> Job:
        return Job(**{**self.model_dump(exclude={"gpu_indices"}), "gpus": len(self.gpu_indices)})


class NvmlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: tuple[NvmlJob, ...] = Field((), description="standalone: jobs and their GPU indices")
    map: str = Field("static", pattern="^(static|slurm|process|cuda_visible)$",
                     description="how GPUs map to jobs (composite): static indices; slurm: the job's GPU "
                                 "allocation; process: the job owning each GPU process; cuda_visible: "
                                 "CUDA_VISIBLE_DEVICES of each process job")
    state_file: str | None = Field(None, description="ledger of original limits (default: in memory only)")
    read_only: bool = Field(False, description="measure only; never change a limit")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    min_limit_w: float
    max_limit_w: float
    default_limit_w: float


class Nvml:
    """The NVML calls gridflex uses, with NVML errors turned into `DriverError`s."""

    def __init__(self, lib: Any = None):
        try:
            self.lib = lib or importlib.import_module("pynvml")
        except ImportError:
            raise DriverError("NVML: the nvidia-ml-py package is not installed (pip install nvidia-ml-py)") from None
        self.call("initialise NVML (is the NVIDIA driver installed?)", self.lib.nvmlInit)
        n = self.call("count GPUs", self.lib.nvmlDeviceGetCount)
        self.handles = [self.call(f"open GPU {i}", self.lib.nvmlDeviceGetHandleByIndex, i) for i in range(n)]
        self.gpus = [self._info(i, h) for i, h in enumerate(self.handles)]

    def call(self, what: str, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.lib.NVMLError as e:
            raise DriverError(f"NVML: cannot {what}: {e}") from None

    def _info(self, i: int, h: Any) -> GpuInfo:
        lo, hi = self.call(f"read GPU {i} limit range", self.lib.nvmlDeviceGetPowerManagementLimitConstraints, h)
        uuid = self.call(f"read GPU {i} UUID", self.lib.nvmlDeviceGetUUID, h)
        name = self.call(f"read GPU {i} name", self.lib.nvmlDeviceGetName, h)
        default = self.call(f"read GPU {i} default limit", self.lib.nvmlDeviceGetPowerManagementDefaultLimit, h)
        as_str = (lambda v: v.decode() if isinstance(v, bytes) else str(v))
        return GpuInfo(i, as_str(uuid), as_str(name), lo / 1000, hi / 1000, default / 1000)

    def power_w(self, i: int) -> float:
        return self.call(f"read GPU {i} power", self.lib.nvmlDeviceGetPowerUsage, self.handles[i]) / 1000

    def energy_j(self, i: int) -> float:
        return self.call(f"read GPU {i} energy", self.lib.nvmlDeviceGetTotalEnergyConsumption, self.handles[i]) / 1000

    def limit_w(self, i: int) -> float:
        return self.call(f"read GPU {i} power limit", self.lib.nvmlDeviceGetPowerManagementLimit, self.handles[i]) / 1000

    def set_limit_w(self, i: int, limit_w: float) -> None:
        self.call(f"set GPU {i} power limit to {limit_w:.0f} W (needs root)",
                  self.lib.nvmlDeviceSetPowerManagementLimit, self.handles[i], int(round(limit_w * 1000)))

    def pids(self, i: int) -> list[int]:
        procs = self.call(f"list GPU {i} processes", self.lib.nvmlDeviceGetComputeRunningProcesses, self.handles[i])
        return [p.pid for p in procs]


class NvmlDriver:
    """Per-GPU power limits for jobs (see the module docstring)."""

    name = "nvml"

    def __init__(self, site: Site, curves: CurveLibrary, nvml: Nvml, gpu_map: GpuMap,
                 jobs: Sequence[Job] = (), state_file: str | Path | None = None,
                 clock: Callable[[], float] = time.time, read_only: bool = False):
        self.site, self.curves, self.nvml, self.gpu_map, self.clock = site, curves, nvml, gpu_map, clock
        self.read_only = read_only
        self.ledger = Ledger(state_file)
        self.jobs: list[Job] = []
        self.job_gpus: dict[str, list[int]] = {}
        self._configured = list(jobs)
        self._estimate = PowerEstimate([], curves, site)

    # --- driver verbs --------------------------------------------------------------------
    def discover(self) -> list[Job]:
        """The configured jobs (standalone use)."""
        return self.bind(self._configured)

    def bind(self, jobs: Sequence[Job]) -> list[Job]:
        """Act on these jobs (a composite's job list); returns them with power_cap allowed where
        NVML sees their GPUs and the tier permits it."""
        self.job_gpus = {jid: g for jid, g in self.gpu_map().items() if g}
        self.jobs = [j.model_copy(update={"actions": j.actions | {Action.power_cap}})
                     if j.id in self.job_gpus and j.flex_tier > 0 and not self.read_only else j for j in jobs]
        self._estimate = PowerEstimate(self.jobs, self.curves, self.site)
        return list(self.jobs)

    def queue(self) -> list[Job]:
        """NVML sees GPUs, not a queue."""
        return []

    def read(self) -> Telemetry:
        measured = np.array([sum(self.nvml.power_w(i) for i in self.job_gpus[j.id]) if j.id in self.job_gpus
                             else np.nan for j in self.jobs])
        cap = np.array([self._cap_w(j) for j in self.jobs])
        ones = np.ones(len(self.jobs))
        return self._estimate.telemetry(self.clock(), cap, ones, ones.astype(bool), measured_w=measured)

    def preview(self, actions: JobActions) -> list[str]:
        return [f"set GPU {i} power limit {w:.0f} W (job {jid})" for jid, i, w in self._steps(actions)]

    def apply(self, actions: JobActions) -> None:
        for _, i, limit_w in self._steps(actions):
            key = f"gpu:{self.nvml.gpus[i].uuid}"
            fresh = key not in self.ledger
            self.ledger.remember(key, {"index": i, "limit_w": self.nvml.limit_w(i)})
            try:
                self.nvml.set_limit_w(i, limit_w)
            except DriverError:
                if fresh:
                    self.ledger.forget(key)
                raise
            if limit_w == self.ledger.get(key)["limit_w"]:
                self.ledger.forget(key)

    def restore(self) -> None:
        """Put back every original limit this driver changed (also after a crash)."""
        by_uuid = {g.uuid: g.index for g in self.nvml.gpus}
        for key, orig in self.ledger.items():
            i = by_uuid.get(key.split(":", 1)[1])
            if i is not None:
                self.nvml.set_limit_w(i, float(orig["limit_w"]))
            self.ledger.forget(key)

    def health(self) -> DriverHealth:
        try:
            names = [g.name for g in self.nvml.gpus]
            for i in range(len(names)):
                self.nvml.power_w(i)
        except DriverError as e:
            return DriverHealth(False, str(e))
        return DriverHealth(True, f"{len(names)} GPU(s): {', '.join(sorted(set(names)))}; "
                                  f"{len(self.ledger)} limit(s) changed")

    def gpu_readings(self) -> list[dict[str, float | int | str]]:
        """Per-GPU power, energy and limits, read-only."""
        return [{"index": g.index, "name": g.name, "power_w": self.nvml.power_w(g.index),
                 "energy_j": self.nvml.energy_j(g.index), "limit_w": self.nvml.limit_w(g.index),
                 "min_limit_w": g.min_limit_w, "max_limit_w": g.max_limit_w, "default_limit_w": g.default_limit_w}
                for g in self.nvml.gpus]

    # --- internals ---------------------------------------------------------------------
    def _cap_w(self, job: Job) -> float:
        top = self.curves[job.workload].max_cap_w
        changed = [i for i in self.job_gpus.get(job.id, []) if f"gpu:{self.nvml.gpus[i].uuid}" in self.ledger]
        return float(np.mean([self.nvml.limit_w(i) for i in changed])) if changed else top

    def _steps(self, actions: JobActions) -> list[tuple[str, int, float]]:
        """Validated (job, GPU index, new limit) for every GPU whose limit changes."""
        steps = []
        for job, c, a in pair_with_jobs(actions, self.jobs):
            jid, top = job.id, self.curves[job.workload].max_cap_w
            if not np.isfinite(a) or a != 1.0:
                raise DriverError(f"job {jid!r}: active {a} not allowed; NVML cannot pause (allowed: 1; "
                                  "pair with slurm or process in a composite)")
            if not np.isfinite(c):
                raise DriverError(f"job {jid!r}: cap_w {c} is not a number")
            if c >= top - 1e-6:  # uncapped: original limits back
                for i in self.job_gpus.get(jid, []):
                    orig = self.ledger.get(f"gpu:{self.nvml.gpus[i].uuid}")
                    if orig is not None:
                        steps.append((jid, i, float(orig["limit_w"])))
                continue
            if self.read_only:
                raise DriverError(f"job {jid!r}: cap_w {c:.0f} refused; this NVML driver is read-only")
            if Action.power_cap not in job.actions or job.flex_tier == 0:
                raise DriverError(f"job {jid!r} (flex {job.flex_tier}) does not allow power_cap")
            if jid not in self.job_gpus:
                raise DriverError(f"job {jid!r}: no GPU of this job is visible to NVML; cannot cap it")
            for i in self.job_gpus[jid]:
                g = self.nvml.gpus[i]
                if not g.min_limit_w - 1e-6 <= c <= g.max_limit_w + 1e-6:
                    raise DriverError(f"job {jid!r}: cap_w {c:.0f} outside GPU {i} ({g.name}) allowed "
                                      f"{g.min_limit_w:.0f}..{g.max_limit_w:.0f} W")
                if abs(self.nvml.limit_w(i) - c) > 0.5:
                    steps.append((jid, i, float(c)))
        return steps


# --- GPU to job maps ---------------------------------------------------------------------------
def static_map(indices: Mapping[str, Sequence[int]]) -> GpuMap:
    """Fixed GPU indices per job (e.g. each job's CUDA_VISIBLE_DEVICES)."""
    fixed = {jid: list(v) for jid, v in indices.items()}
    return lambda: {k: list(v) for k, v in fixed.items()}


def process_map(nvml: Nvml, job_of_pid: JobOfPid) -> GpuMap:
    """Each GPU belongs to the job owning the processes NVML sees on it."""

    def current() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for g in nvml.gpus:
            owners = {job_of_pid(pid) for pid in nvml.pids(g.index)} - {None}
            for jid in owners:
                out.setdefault(jid, []).append(g.index)
        return out

    return current


def cuda_visible_map(nvml: Nvml, pids: Mapping[str, int], proc: Path = Path("/proc")) -> GpuMap:
    """Each job's GPUs from CUDA_VISIBLE_DEVICES (indices or UUIDs) in its process's environment."""
    by_uuid = {g.uuid: g.index for g in nvml.gpus}

    def current() -> dict[str, list[int]]:
        out = {}
        for jid, pid in pids.items():
            try:
                env = dict(item.split(b"=", 1) for item in (proc / str(pid) / "environ").read_bytes().split(b"\0")
                           if b"=" in item)
            except OSError:
                continue
            devices = [d.strip() for d in env.get(b"CUDA_VISIBLE_DEVICES", b"").decode().split(",") if d.strip()]
            out[jid] = [int(d) if d.isdigit() else by_uuid[d] for d in devices if d.isdigit() or d in by_uuid]
        return out

    return current


def slurm_job_of_pid(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The Slurm job id of a process: SLURM_JOB_ID in its environment, else its cgroup path."""
    try:
        env = (proc / str(pid) / "environ").read_bytes().split(b"\0")
        for item in env:
            if item.startswith(b"SLURM_JOB_ID="):
                return item.split(b"=", 1)[1].decode()
        m = re.search(r"/job_(\d+)", (proc / str(pid) / "cgroup").read_text())
        return m.group(1) if m else None
    except OSError:
        return None


def pgid_job_of_pid(pgids: Mapping[str, int]) -> JobOfPid:
    """The job whose process group a process belongs to."""
    by_pgid = {v: k for k, v in pgids.items()}

    def resolve(pid: int) -> str | None:
        try:
            return by_pgid.get(os.getpgid(pid))
        except ProcessLookupError:
            return None

    return resolve
