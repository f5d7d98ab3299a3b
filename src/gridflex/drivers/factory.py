"""Build a driver from a site config's ``driver`` section.

    make_driver(spec, site, curves, state_dir=None) -> Driver

`spec` is a mapping with a ``kind`` and that kind's settings; any spec may add
``dry_run: true`` to log actions instead of taking them. Kinds:

- ``slurm``: fields of `SlurmSettings` (``rules: {default_flex, flex_by_qos, flex_by_partition,
  default_workload, workload_by_partition, checkpoint_qos, default_gpus, partitions}``,
  ``checkpoint_signal``, ``checkpoint_grace_s``, ``hold_pending``, ``bin_dir``, ...).
- ``process``: ``jobs: [{id, pgid, workload, gpus, flex_tier, actions}]``, ``duty_period_s``.
- ``nvml``: ``jobs: [{id, gpu_indices, workload, flex_tier}]`` (static GPU map).
- ``composite``: ``jobs: {kind: slurm|process, ...}`` and ``power: {kind: nvml, map: ...}``:
  the first owns jobs and pauses, NVML caps and measures. ``map``: ``slurm`` (the jobs' GPU
  allocation on this node), ``process`` (the job owning each process NVML sees on a GPU),
  ``cuda_visible`` (CUDA_VISIBLE_DEVICES of each process job) or ``static`` (``jobs:
  [{id, gpu_indices}]``).

The digital twin is not built here: `gridflex simulate` assembles it (`gridflex.assembly`), and
`gridflex serve` with ``driver.kind: twin`` runs it in wall-clock time (`service/plant.py`).

Each real driver keeps a ledger of what it changed in ``state_dir/<kind>-ledger.json`` (in
memory when `state_dir` is None). Call ``driver.restore()`` once before the first control
step: it undoes whatever a crashed earlier run left changed (the dry run only logs it).
Bad specs raise `InputError` naming the field and what is allowed.

    driver = make_driver({"kind": "slurm", "rules": {"flex_by_partition": {"preempt": 3}}},
                         site, builtin_curves(), state_dir=Path("/var/lib/gridflex"))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gridflex.drivers.base import Driver
from gridflex.drivers.composite import CompositeDriver
from gridflex.drivers.dry_run import DryRunDriver
from gridflex.drivers.nvml import (
    Nvml,
    NvmlDriver,
    NvmlSettings,
    cuda_visible_map,
    pgid_job_of_pid,
    process_map,
    slurm_job_of_pid,
    static_map,
)
from gridflex.drivers.process import ProcessDriver, ProcessSettings
from gridflex.drivers.slurm import SlurmDriver, SlurmSettings
from gridflex.errors import InputError
from gridflex.model.curves import CurveLibrary
from gridflex.model.site import Site

KINDS = ("slurm", "process", "nvml", "composite")


def make_driver(spec: Mapping[str, Any], site: Site, curves: CurveLibrary, state_dir: Path | None = None,
                nvml_lib: Any = None) -> Driver:
    """The driver described by `spec` (see the module docstring). `nvml_lib` replaces the
    pynvml module (tests)."""
    spec = dict(spec)
    dry_run = spec.pop("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InputError(f"driver.dry_run: {dry_run!r} must be true or false")
    driver = _build(spec, site, curves, state_dir, nvml_lib, "driver")
    return DryRunDriver(driver) if dry_run else driver


def _build(spec: dict, site: Site, curves: CurveLibrary, state_dir: Path | None, nvml_lib: Any, where: str):
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise InputError(f"{where}.kind: {kind!r} is not a driver; allowed: {', '.join(KINDS)}")
    ledger = (lambda name: str(state_dir / f"{name}-ledger.json") if state_dir else None)
    if kind == "composite":
        extra = set(spec) - {"jobs", "power"}
        if extra or not isinstance(spec.get("jobs"), Mapping) or not isinstance(spec.get("power"), Mapping):
            raise InputError(f"{where}: a composite needs 'jobs' ({{kind: slurm|process, ...}}) and 'power' "
                             f"({{kind: nvml, map: ...}}) sections{f'; unknown: {sorted(extra)}' if extra else ''}")
        jobs_spec, power_spec = dict(spec["jobs"]), dict(spec["power"])
        if jobs_spec.get("kind") not in ("slurm", "process") or power_spec.pop("kind", "nvml") != "nvml":
            raise InputError(f"{where}: composite jobs.kind must be slurm or process and power.kind nvml")
        jobs = _build(jobs_spec, site, curves, state_dir, nvml_lib, f"{where}.jobs")
        return CompositeDriver(jobs, _nvml(power_spec, site, curves, ledger("nvml"), nvml_lib, jobs, f"{where}.power"))
    if kind == "slurm":
        settings = _settings(SlurmSettings, {**spec, "state_file": spec.get("state_file") or ledger("slurm")}, where)
        return SlurmDriver(site, curves, settings)
    if kind == "process":
        settings = _settings(ProcessSettings, {**spec, "state_file": spec.get("state_file") or ledger("process")},
                             where)
        return ProcessDriver(site, curves, settings)
    return _nvml(spec, site, curves, ledger("nvml"), nvml_lib, None, where)


def _nvml(spec: dict, site: Site, curves: CurveLibrary, ledger: str | None, nvml_lib: Any,
          jobs: Driver | None, where: str) -> NvmlDriver:
    settings = _settings(NvmlSettings, {**spec, "state_file": spec.get("state_file") or ledger}, where)
    for j in settings.jobs:
        if j.workload not in curves:
            raise InputError(f"{where}.jobs: job {j.id!r}: workload {j.workload!r} has no power curve")
    allowed = {SlurmDriver: ("static", "slurm", "process"), ProcessDriver: ("static", "process", "cuda_visible")}
    choices = allowed.get(type(jobs), ("static",))
    if settings.map not in choices:
        raise InputError(f"{where}.map: {settings.map!r} not possible with {jobs.name if jobs else 'no jobs driver'}; "
                         f"allowed: {', '.join(choices)}")
    nvml = Nvml(nvml_lib)
    if settings.map == "static":
        gpu_map = static_map({j.id: j.gpu_indices for j in settings.jobs})
    elif settings.map == "slurm":
        gpu_map = jobs.gpu_indices
    elif settings.map == "cuda_visible":
        gpu_map = cuda_visible_map(nvml, jobs.pgid)
    else:
        gpu_map = process_map(nvml, slurm_job_of_pid if isinstance(jobs, SlurmDriver) else pgid_job_of_pid(jobs.pgid))
    return NvmlDriver(site, curves, nvml, gpu_map, [j.job() for j in settings.jobs], settings.state_file,
                      read_only=settings.read_only)


def _settings(model, data: dict, where: str):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{where}.{loc}: {first['msg']}"
                         + (f" (got {first['input']!r})" if "input" in first and loc else "")) from None
