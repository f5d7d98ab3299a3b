"""Benchmark: wall time, CPU time and peak memory of `gridflex simulate` on campuses of 1k, 10k and 100k GPUs.

Each campus is a scenario file in the ordinary format, written here: jobs whose GPU counts,
QoS classes and lengths are drawn from the real Alibaba GPU trace (../shared/data/alibaba-gpu-2023:
mostly 1-GPU jobs, so 100k GPUs is about 94k jobs), arriving uniformly over the run, each with
its start-end window; QoS sets the tier and the workload (LS: inference, flex 1; Burstable:
fine-tuning, flex 2; BE: pre-training, flex 3; Guaranteed: inference, flex 0). Two grid events:
a 15 % cut with two hours' notice and a 10 % cut with none. Every run is the real command,
`gridflex simulate FILE --report R.html --json S.json`, in a child process of its own; the peak
RSS is that child's (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, read in a wrapper process
that runs only that one command). CPU time (user + system) is reported beside wall time: on a
machine shared with other work it is the figure that compares between runs.

    .venv/bin/python bench/campus_scale.py [--gpus 1000 10000 100000] [--hours 24] [--json out/campus.json]
    .venv/bin/python bench/campus_scale.py --load-only   # scenario loading: YAML (pure Python, libyaml), JSON
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

TRACE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alibaba-gpu-2023" / "openb_pod_list_default.csv"
START = datetime(2025, 7, 15, 0, 0, tzinfo=UTC)
#: QoS class -> (flex tier, workload)
QOS = {"LS": (1, "infer_llama_8b"), "Burstable": (2, "ft_llama_8b_p3"), "BE": (3, "pt_mpt_7b_fast"),
       "Guaranteed": (0, "infer_llama_8b")}
MIN_JOB_S = 600.0


def trace_jobs() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """GPUs, run length [s] and QoS of every finished GPU task of the real trace."""
    gpus, length, qos = [], [], []
    with open(TRACE) as f:
        for row in csv.DictReader(f):
            if int(row["num_gpu"]) > 0 and row["deletion_time"] and row["scheduled_time"]:
                gpus.append(int(row["num_gpu"]))
                length.append(float(row["deletion_time"]) - float(row["scheduled_time"]))
                qos.append(row["qos"])
    return np.array(gpus), np.array(length), qos


def campus(gpus: int, hours: float, seed: int = 0) -> dict:
    """A scenario document: jobs drawn from the trace until they add up to `gpus` GPUs."""
    trace_gpus, trace_len, trace_qos = trace_jobs()
    rng = np.random.default_rng(seed)
    run_s = hours * 3600.0
    jobs, total = [], 0
    while total < gpus:
        k = int(rng.integers(len(trace_gpus)))
        n = min(int(trace_gpus[k]), gpus - total)
        length = float(np.clip(trace_len[k], MIN_JOB_S, run_s))
        start = float(rng.uniform(0, run_s - length)) if length < run_s else 0.0
        tier, workload = QOS[trace_qos[k]]
        jobs.append({"id": f"t{len(jobs)}", "workload": workload, "gpus": n, "flex_tier": tier,
                     "start": _iso(start), "end": _iso(start + length)})
        total += n
    events = [
        {"id": "noticed", "start": _iso(0.40 * run_s), "end": _iso(0.40 * run_s + min(7200, 0.2 * run_s)),
         "ramp_s": min(600, 0.02 * run_s), "notice_s": 7200, "target": {"reduction": 0.15}},
        {"id": "no-notice", "start": _iso(0.75 * run_s), "end": _iso(0.75 * run_s + min(1800, 0.1 * run_s)),
         "notice_s": 0, "target": {"reduction": 0.10}},
    ]
    return {
        "name": f"campus-{gpus}",
        "description": f"{gpus:,} GPUs, {len(jobs):,} jobs from the Alibaba GPU trace, {hours:g} h, two events",
        "start": _iso(0), "end": _iso(run_s), "step_s": 1.0,
        "jobs": jobs, "events": events,
        "control": {"interval_s": 2.0, "baseline_window_s": 1800, "snapback_guard_s": 900},
    }


def _iso(offset_s: float) -> str:
    return (START + timedelta(seconds=round(offset_s))).isoformat().replace("+00:00", "Z")


def measure(scenario: Path, out: Path) -> dict:
    """Run `gridflex simulate` on the file in a wrapper process; its wall time and peak RSS."""
    wrapper = [sys.executable, __file__, "--child", str(scenario), str(out)]
    done = subprocess.run(wrapper, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(scenario: str, out: str) -> None:
    """Runs only the command, so that RUSAGE_CHILDREN is that command's own peak."""
    exe = Path(sys.executable).with_name("gridflex")
    cmd = [str(exe), "simulate", scenario, "--report", f"{out}.html", "--json", f"{out}.json"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_kib = usage.ru_maxrss  # Linux: KiB
    summary = json.loads(Path(f"{out}.json").read_text())
    print(json.dumps({"wall_s": round(wall_s, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mib": round(rss_kib / 1024, 1),
                      "compliance": summary["compliance"], "sla_violations": summary["sla_violations"],
                      "report_mib": round(Path(f"{out}.html").stat().st_size / 2**20, 2)}))


def load_times(gpus: int = 100_000) -> None:
    """Seconds to parse a campus scenario of `gpus` GPUs as YAML (pure Python, libyaml) and JSON,
    and to load it whole (parse and check) the way `gridflex simulate` does."""
    from gridflex.sim.scenarios import load_scenario

    doc = campus(gpus, 24)
    with tempfile.TemporaryDirectory() as tmp:
        y, j = Path(tmp, "c.yaml"), Path(tmp, "c.json")
        y.write_text(yaml.safe_dump(doc, sort_keys=False))
        j.write_text(json.dumps(doc))
        text = y.read_text()
        print(f"{len(doc['jobs']):,} jobs; YAML {y.stat().st_size / 2**20:.1f} MiB, JSON {j.stat().st_size / 2**20:.1f} MiB")
        for label, fn in (
            ("parse YAML, pure-Python SafeLoader (before)", lambda: yaml.load(text, Loader=yaml.SafeLoader)),
            ("parse YAML, libyaml CSafeLoader", lambda: yaml.load(text, Loader=yaml.CSafeLoader)),
            ("parse JSON", lambda: json.loads(j.read_text())),
            ("load_scenario(YAML): parse + validate + check", lambda: load_scenario(str(y))),
            ("load_scenario(JSON): parse + validate + check", lambda: load_scenario(str(j))),
        ):
            t0 = time.perf_counter()
            fn()
            print(f"  {label:<48} {time.perf_counter() - t0:6.1f} s", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:4])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--hours", type=float, nargs="+", default=[24.0],
                        help="simulated hours, one for all sizes or one per size")
    parser.add_argument("--load-only", action="store_true", help="only time scenario loading (100k GPUs)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    if args.load_only:
        return load_times()
    hours = args.hours * len(args.gpus) if len(args.hours) == 1 else args.hours
    rows = []
    print(f"{'gpus':>8} {'jobs':>7} {'hours':>6} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'compliance':>10}"
          f" {'sla viol.':>9} {'report MiB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for gpus, h in zip(args.gpus, hours):
            doc = campus(gpus, h)
            path = Path(tmp, f"campus-{gpus}.json")
            path.write_text(json.dumps(doc))
            row = {"gpus": gpus, "jobs": len(doc["jobs"]), "hours": h, **measure(path, Path(tmp, f"out-{gpus}"))}
            rows.append(row)
            print(f"{gpus:>8} {row['jobs']:>7} {h:>6g} {row['wall_s']:>8.1f} {row.get('cpu_s', float('nan')):>8.1f} {row['peak_rss_mib']:>13.1f}"
                  f" {row['compliance']!s:>10} {row['sla_violations']:>9} {row['report_mib']:>10.2f}", flush=True)
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
