"""Generates the built-in time-shifting scenarios `carbon-week-gb` and `price-week-ercot`:
`python -m gridflex.sim.shift_weeks [--shared PATH]` rewrites their YAML and job CSVs byte for
byte (deterministic).

Jobs: the flexible pods of the Alibaba GPU cluster trace 2023 (`alibaba-gpu-2023`, best-effort
pods as training, Flex 3; Burstable pods as fine-tuning, Flex 2) submitted in the trace's last
`DAYS` days and running `MIN_RUN_S` to `MAX_RUN_S`, each keeping its submit time within the week
and its run time, with `GPU_SCALE` GPUs per pod GPU. The trace has no deadlines: each job is due
its run time plus a slack of 12, 24 or 36 h after it is submitted (in turn), and jobs whose
deadline would fall after the week are left out, so all work is due within the week. Beside them
run a firm inference service (Flex 0) and a flexible one (Flex 1) the whole week. The pool is
`POOL_HEADROOM` times the busiest minute's demand if every job ran on arrival.

Signals: `carbon-week-gb` is the week 2023-03-14 13:00 to 03-21 13:00 UTC of GB carbon
intensity with the 48-h forecasts the NESO API actually issued (bundled: `gb-carbon-week`);
`price-week-ercot` the week of ERCOT HB_SOUTH prices from 2024-08-16 00:00 Central with the
real-time spike to $4,858/MWh on 08-20 evening, the day-ahead price as the forecast
(`ercot-price-week`). Each has one grid event with a day's notice.
"""

from __future__ import annotations

import argparse
import csv
import io
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np

TRACE = "alibaba-gpu-2023/openb_pod_list_default.csv"
DAYS = 7
GPU_SCALE = 8
MIN_RUN_S = 1800.0
MAX_RUN_S = 12 * 3600.0
SLACK_H = (12, 24, 36)
POOL_HEADROOM = 1.5
DAY_S = 86_400.0
CLASSES = {"BE": ("pt_mpt_7b_fast", 3), "Burstable": ("ft_llama_8b_p3", 2)}
SERVICES_GPUS = {"inference-firm": (32, 0), "inference-flex": (64, 1)}

WEEKS = {
    "carbon-week-gb": dict(
        title="a week of real GB carbon intensity (NESO, 2023-03-14 13:00 to 03-21 13:00 UTC)\n  with the"
              " 48-h forecasts the NESO API actually issued",
        start="2023-03-14T13:00:00Z", end="2023-03-21T13:00:00Z",
        event_start="2023-03-16T17:00:00Z", event_end="2023-03-16T19:00:00Z",
        shifting="{signal: gb-carbon-week, corrected_tau_s: 10800, persistence_weight: 0.5}"),
    "price-week-ercot": dict(
        title="a week of real ERCOT HB_SOUTH prices (2024-08-16 to 08-23)\n  with the real-time spike to"
              " $4,858/MWh on 08-20 evening, the day-ahead price as the forecast",
        start="2024-08-16T05:00:00Z", end="2024-08-23T05:00:00Z",
        event_start="2024-08-22T00:00:00Z", event_end="2024-08-22T02:00:00Z",
        shifting="{signal: ercot-price-week}"),
}

SCENARIO = """\
name: {name}
description: |
  Time shifting on {title}.
  {jobs} flexible training and fine-tuning jobs from the real Alibaba GPU cluster trace 2023 (its last {days} days, {scale} GPUs per pod GPU), each due 12-36 h after
  it arrives, beside a firm (Flex 0) and a flexible (Flex 1) inference service; a pool of {pool}
  A100s; a 20 % grid event of 2 h with a day's notice. Made by `python -m gridflex.sim.shift_weeks`.
start: "{start}"
end: "{end}"
step_s: 60
site:
  name: {name}
  pue: 1.2
  gpu_pools: {{A100: {{gpus: {pool}, idle_w: 50}}}}
jobs:
{services}job_trace:
  file: {name}-jobs.csv
events:
  - id: evening-peak
    start: "{event_start}"
    end: "{event_end}"
    ramp_s: 900
    notice_s: 86400
    target: {{reduction: 0.2}}
control: {{interval_s: 60, release_stagger_s: 60, snapback_guard_s: 1800}}
shifting: {shifting}
"""


def week_jobs(shared: Path, week_s: float) -> list[dict]:
    """The flexible jobs of the trace's last `DAYS` days, in submit order, all due within `week_s`."""
    with (shared / TRACE).open(newline="") as f:
        pods = [p for p in csv.DictReader(f) if int(p["num_gpu"]) > 0 and p["scheduled_time"] and p["qos"] in CLASSES]
    submit = np.array([float(p["creation_time"]) for p in pods])
    run = np.array([float(p["deletion_time"]) - float(p["scheduled_time"]) for p in pods])
    first = float(submit.max()) - DAYS * DAY_S
    rows = []
    for i in np.flatnonzero((submit >= first) & (run >= MIN_RUN_S) & (run <= MAX_RUN_S)):
        at_s = submit[i] - first
        deadline_s = at_s + run[i] + SLACK_H[len(rows) % len(SLACK_H)] * 3600.0
        if deadline_s > week_s:
            continue
        workload, tier = CLASSES[pods[i]["qos"]]
        rows.append({"id": pods[i]["name"].removeprefix("openb-pod-"), "submit_s": round(at_s, 1),
                     "duration_s": round(run[i], 1), "gpus": int(pods[i]["num_gpu"]) * GPU_SCALE,
                     "workload": workload, "flex_tier": tier, "deadline_s": round(deadline_s, 1)})
    rows.sort(key=lambda r: (r["submit_s"], r["id"]))
    return rows


def pool_gpus(rows: list[dict], week_s: float) -> int:
    """`POOL_HEADROOM` times the most GPUs held at once if every job ran on arrival, services included."""
    t = np.arange(0.0, week_s, 60.0)
    demand = np.full(len(t), float(sum(g for g, _ in SERVICES_GPUS.values())))
    for r in rows:
        demand[(t >= r["submit_s"]) & (t < r["submit_s"] + r["duration_s"])] += r["gpus"]
    return int(np.ceil(demand.max() * POOL_HEADROOM / 8) * 8)


def render(name: str, shared: Path) -> tuple[str, str]:
    """(scenario YAML, job CSV) texts of one week."""
    w = WEEKS[name]
    week_s = (datetime.fromisoformat(w["end"]) - datetime.fromisoformat(w["start"])).total_seconds()
    rows = week_jobs(shared, week_s)
    services = "".join(f"  - {{id: {sid}, workload: infer_llama_8b, gpus: {g}, flex_tier: {tier}}}\n"
                       for sid, (g, tier) in SERVICES_GPUS.items())
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    yaml_text = SCENARIO.format(name=name, jobs=len(rows), days=DAYS, scale=GPU_SCALE, pool=pool_gpus(rows, week_s),
                                services=services, **w)
    return yaml_text, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[4] / "shared" / "data",
                        help="the shared data folder holding alibaba-gpu-2023/ (default: ../shared/data)")
    args = parser.parse_args()
    folder = Path(str(resources.files("gridflex.data").joinpath("scenarios")))
    for name in WEEKS:
        yaml_text, csv_text = render(name, args.shared)
        (folder / f"{name}.yaml").write_text(yaml_text)
        (folder / f"{name}-jobs.csv").write_text(csv_text)
        print(f"wrote {folder / (name + '.yaml')} and {name}-jobs.csv")


if __name__ == "__main__":
    main()
