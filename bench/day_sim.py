"""Benchmark: wall time of a 24-hour, 1-second simulation of the default scenario.

The phoenix-srp site and event, with the scenario (and every job's window) stretched to 24 hours.
Prints simulated seconds per wall second; `--json PATH` writes the numbers.

    .venv/bin/python bench/day_sim.py [--planner optimal] [--json out/day_sim.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta

from gridflex.report.summary import summarize
from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import LoadedScenario, load_scenario


def day_long(loaded: LoadedScenario) -> LoadedScenario:
    sc = loaded.scenario
    return LoadedScenario(sc.model_copy(update={"end": sc.start + timedelta(hours=24)}), loaded.curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planner", default="optimal")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    loaded = day_long(load_scenario("phoenix-srp"))
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = run_scenario(loaded, args.planner)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    summary = summarize(result)
    sim_s = loaded.scenario.duration_s
    row = {
        "scenario": "phoenix-srp stretched to 24 h",
        "step_s": loaded.scenario.step_s,
        "control_interval_s": loaded.scenario.control.interval_s,
        "simulated_s": sim_s,
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "sim_s_per_wall_s": round(sim_s / wall_s, 1),
        "compliance": summary["compliance"],
        "load_average_1min": os.getloadavg()[0],
    }
    print(f"{'simulated':>12} {'wall':>8} {'cpu':>8} {'sim s / wall s':>15} {'compliance':>11} {'load':>5}")
    print(
        f"{sim_s:>11.0f}s {wall_s:>7.1f}s {cpu_s:>7.1f}s {sim_s / wall_s:>15.0f} {summary['compliance']:>11}"
        f" {row['load_average_1min']:>5.1f}"
    )
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
