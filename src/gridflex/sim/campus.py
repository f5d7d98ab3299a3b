"""Generates the built-in `campus` scenario from the Alibaba GPU cluster trace 2023:
`python -m gridflex.sim.campus [--shared PATH]` rewrites `data/scenarios/campus.yaml` and
`campus-jobs.csv` byte for byte (deterministic).

The trace (`shared/data/alibaba-gpu-2023/openb_pod_list_default.csv`, a production cluster's
GPU pods with submit, start and end times) runs about 50 GPUs at a time, so a day of a
10,000-GPU campus is made by overlaying its last `DAYS` days on one day (each pod keeps its
time of day, its run time and its QoS) and giving each pod `GPU_SCALE` GPUs per GPU it asked
for (a 1-GPU pod becomes an 8-GPU job, one server). Pods already running when a day begins
enter at the campus day's start with the run time they had left; pods that never started are
left out. QoS classes become workloads and tiers: latency-sensitive (LS) pods are inference
(Flex 1), best-effort (BE) pods training (Flex 3, two model sizes alternating), Burstable
pods fine-tuning (Flex 2) and Guaranteed pods firm inference (Flex 0). The GPU pool is
`POOL_HEADROOM` times the busiest minute's demand, so the queue is short but real.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gridflex.sim.job_trace import trace_csv, write_builtin_scenarios

NAME = "campus"
TRACE = "alibaba-gpu-2023/openb_pod_list_default.csv"
DAYS = 28
GPU_SCALE = 8
POOL_HEADROOM = 1.15
MIN_RUN_S = 10.0
DAY_S = 86_400.0
#: QoS class -> (workload(s), flex tier)
CLASSES = {
    "LS": (("infer_llama_8b",), 1),
    "BE": (("pt_mpt_7b_fast", "pt_mpt_13b_sm"), 3),
    "Burstable": (("ft_llama_8b_p3",), 2),
    "Guaranteed": (("infer_llama_8b_32g",), 0),
}

SCENARIO = """\
name: campus
description: |
  A day of a {gpus:,}-GPU AI campus from the real Alibaba GPU cluster trace 2023: {jobs:,} jobs arrive,
  queue for a pool of {pool:,} A100s and end (the trace's last {days} days overlaid, {scale} GPUs per pod GPU;
  inference Flex 1, training Flex 3, fine-tuning Flex 2, a little firm inference), with a day-ahead
  20 % afternoon event and a 15 % emergency with no notice. Made by `python -m gridflex.sim.campus`.
start: "2025-07-15T00:00:00-05:00"
end: "2025-07-16T00:00:00-05:00"
site:
  name: campus
  pue: 1.25
  gpu_pools: {{A100: {{gpus: {pool}, idle_w: 50}}}}
job_trace:
  file: campus-jobs.csv
events:
  - id: afternoon-peak
    start: "2025-07-15T15:00:00-05:00"
    end: "2025-07-15T18:00:00-05:00"
    ramp_s: 900
    notice_s: 86400
    target: {{reduction: 0.2}}
  - id: emergency
    start: "2025-07-15T20:10:00-05:00"
    end: "2025-07-15T20:40:00-05:00"
    notice_s: 0
    target: {{reduction: 0.15}}
control: {{baseline_window_s: 3600, snapback_guard_s: 1800, release_stagger_s: 20}}
"""


def campus_jobs(shared: Path) -> list[dict]:
    """The campus day's jobs, in submit order."""
    with (shared / TRACE).open(newline="") as f:
        pods = [p for p in csv.DictReader(f) if int(p["num_gpu"]) > 0 and p["scheduled_time"]]
    submit = np.array([float(p["creation_time"]) for p in pods])
    start = np.array([float(p["scheduled_time"]) for p in pods])
    end = np.array([float(p["deletion_time"]) for p in pods])
    trace_end = float(end.max())
    rows = []
    for day in range(DAYS):
        day_start = trace_end - (day + 1) * DAY_S
        running = (start < day_start) & (end > day_start + MIN_RUN_S)
        arriving = (submit >= day_start) & (submit < day_start + DAY_S) & (end - start >= MIN_RUN_S)
        for i in np.flatnonzero(running | arriving):
            p = pods[i]
            workloads, tier = CLASSES[p["qos"]]
            at_s = 0.0 if running[i] else submit[i] - day_start
            rows.append({
                "id": f"d{day:02d}-{p['name'].removeprefix('openb-pod-')}",
                "submit_s": round(at_s, 1),
                "duration_s": round(end[i] - max(start[i], day_start), 1),
                "gpus": int(p["num_gpu"]) * GPU_SCALE,
                "workload": workloads[i % len(workloads)],
                "flex_tier": tier,
            })
    rows.sort(key=lambda r: (r["submit_s"], r["id"]))
    return rows


def peak_demand_gpus(rows: list[dict]) -> int:
    """Most GPUs the jobs would hold at once if each ran from its submit time, minute by minute."""
    t = np.arange(0.0, DAY_S, 60.0)
    demand = np.zeros(len(t))
    for r in rows:
        demand[(t >= r["submit_s"]) & (t < r["submit_s"] + r["duration_s"])] += r["gpus"]
    return int(demand.max())


def render(shared: Path) -> tuple[str, str]:
    """(campus.yaml, campus-jobs.csv) texts."""
    rows = campus_jobs(shared)
    peak = peak_demand_gpus(rows)
    pool = int(np.ceil(peak * POOL_HEADROOM / 8) * 8)
    yaml_text = SCENARIO.format(gpus=pool, jobs=len(rows), pool=pool, days=DAYS, scale=GPU_SCALE)
    return yaml_text, trace_csv(rows)


def main() -> None:
    write_builtin_scenarios(__doc__.splitlines()[0], lambda shared: {NAME: render(shared)})


if __name__ == "__main__":
    main()
