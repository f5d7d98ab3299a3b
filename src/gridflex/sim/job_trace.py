"""Job traces: the jobs of a scenario read from a CSV, one row a job, as a scheduler logged them.

Columns (header required; order free):
- `id`: unique job id;
- `submit_s`: seconds from the scenario's start when the job enters the queue;
- `duration_s`: its work, seconds at full speed (a queued job ends once it has done it);
- `gpus`: GPUs it needs;
- `workload`: the name of a power curve;
- `flex_tier` (0-3), or `qos` mapped to a tier by the scenario's `job_trace.qos_tiers`;
- `gpu_model` (optional): the GPU pool it runs on;
- `deadline_s` (optional, empty for none): seconds from the scenario's start by which it must finish.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

from gridflex.errors import InputError
from gridflex.model.scenario import JobTraceSpec
from gridflex.model.site import Job

REQUIRED = ("id", "submit_s", "duration_s", "gpus", "workload")


def load_job_trace(spec: JobTraceSpec, base_dir: Path | None, start: datetime) -> tuple[Job, ...]:
    """The trace's jobs as queued jobs, submitted `submit_s` after `start`."""
    path = Path(spec.file) if base_dir is None else base_dir / spec.file
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"job_trace.file: cannot read {path}: {e.strerror}") from None
    header = set(rows[0]) if rows else set()
    missing = [c for c in REQUIRED if c not in header] + ([] if {"flex_tier", "qos"} & header else ["flex_tier or qos"])
    if missing:
        raise InputError(f"job_trace.file {path}: missing column(s) {', '.join(missing)}; needed: {', '.join(REQUIRED)}"
                         " and flex_tier or qos")
    jobs = []
    for line, row in enumerate(rows, start=2):
        try:
            tier = int(row["flex_tier"]) if row.get("flex_tier") not in (None, "") else spec.qos_tiers[row["qos"]]
            jobs.append(Job(
                id=row["id"], workload=row["workload"], gpus=int(row["gpus"]) * spec.gpu_scale, flex_tier=tier,
                submit=start + timedelta(seconds=float(row["submit_s"])), duration_s=float(row["duration_s"]),
                gpu_model=row.get("gpu_model") or None,
                deadline=start + timedelta(seconds=float(row["deadline_s"])) if row.get("deadline_s") else None,
            ))
        except KeyError:
            raise InputError(
                f"job_trace.file {path} line {line}: qos {row.get('qos')!r} has no tier in job_trace.qos_tiers"
                f" ({', '.join(spec.qos_tiers) or 'empty'})"
            ) from None
        except ValueError as e:
            raise InputError(f"job_trace.file {path} line {line}: {str(e).splitlines()[0]} ({row})") from None
    return tuple(jobs)
