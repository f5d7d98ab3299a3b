"""Benchmark: how fast each planner answers a no-notice dispatch.

The london-dispatch cluster, fully busy (96 GPUs, every slot's job running, long windows), runs
five minutes unconstrained; then a dispatch to cut 30 % (and, in a second run, 40 %) below the
measured baseline arrives with no notice and no ramp, held ten minutes. Response is the time from
the dispatch until site power (1-s samples) stays at or below the target, within the scenario's
compliance tolerance, for the rest of the hold. The jobs (all training) pause as the scenario says
(suspend) or, with `--pause-mode checkpoint`, by checkpoint-and-stop: the twin's calibrated save
(~35 s near idle, then the GPUs released) and restart (minutes) transitions (docs/twin.md), with the
jobs' default latencies as what the controller believes (checkpoint 180 s, restart 240 s). Caps
take effect after 1 s and the controller ticks every 2 s. The London
field demonstration reports about 40 s for 30 % and about 60 s for 40 %.

    .venv/bin/python bench/response.py [--planners optimal,dvfs-fair,...] [--seeds 1] [--pause-mode checkpoint]
        [--json out/response.json]
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta

import numpy as np

from gridflex.model.events import GridEvent, Target
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import PauseMode
from gridflex.sim.run import RunResult, run_scenario
from gridflex.sim.scenarios import LoadedScenario, load_scenario

CUTS = (0.3, 0.4)
PLANNERS = ("optimal", "dvfs-fair", "dvfs-pause-fair", "pause-greedy", "pause-resize-fair", "uniform-cap",
            "pause-by-tier")
WARMUP_S = 300
HOLD_S = 600


def busy_cluster(cut: float, pause_mode: PauseMode = PauseMode.suspend) -> LoadedScenario:
    """The london-dispatch jobs running at its start, each given a two-day window and
    `pause_mode`, and one no-notice dispatch after `WARMUP_S`."""
    london = load_scenario("london-dispatch")
    sc = london.scenario
    start = sc.start + timedelta(hours=6)
    running = [j for j in sc.jobs if sc.job_window(j)[0] <= start < sc.job_window(j)[1]]
    window = {"start": start - timedelta(days=1), "end": start + timedelta(days=1), "pause_mode": pause_mode}
    jobs = tuple(j.model_copy(update=window) for j in running)
    t0 = start + timedelta(seconds=WARMUP_S)
    event = GridEvent(id=f"no-notice-{round(cut * 100)}", start=t0, end=t0 + timedelta(seconds=HOLD_S), ramp_s=0,
                      notice_s=0, target=Target(reduction=cut))
    busy = sc.model_copy(update={
        "name": f"busy-{round(cut * 100)}", "start": start, "end": t0 + timedelta(seconds=HOLD_S), "jobs": jobs,
        "events": (event,), "control": ControlSettings(baseline_window_s=WARMUP_S, snapback_guard_s=0),
    })
    return LoadedScenario(busy, london.curves)


def response_s(result: RunResult) -> float | None:
    """Seconds from the dispatch until site power stays at or below target (+ tolerance)."""
    ev = result.timeline.events[0]
    band = result.timeline.ceiling_at(result.step_times_s) * (1 + result.scenario.control.tolerance)
    span = (result.step_times_s > ev.start_s) & (result.step_times_s <= ev.hold_end_s)
    over = np.flatnonzero(result.site_power_w[span] > band[span])
    if len(over) == 0:
        return float(result.step_times_s[span][0] - ev.start_s)
    if over[-1] == span.sum() - 1:
        return None
    return float(result.step_times_s[span][over[-1] + 1] - ev.start_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--seeds", type=int, default=1, help="twin seeds; the slowest response is reported")
    parser.add_argument("--pause-mode", choices=[m.value for m in PauseMode], default=PauseMode.suspend.value,
                        help="how the training jobs pause (checkpoint: the calibrated save and restart)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    rows = []
    print(f"{'planner':<18} {'cut':>4} {'response s':>11}   (London field: ~40 s for 30 %, ~60 s for 40 %)")
    for cut in CUTS:
        loaded = busy_cluster(cut, PauseMode(args.pause_mode))
        for planner in args.planners.split(","):
            times = [response_s(run_scenario(loaded, planner, seed)) for seed in range(args.seeds)]
            worst = None if None in times else max(times)
            rows.append({"planner": planner, "cut": cut, "response_s": worst})
            print(f"{planner:<18} {cut:>4.0%} {'never' if worst is None else f'{worst:.0f}':>11}", flush=True)
    print(f"\nload average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"results": rows, "seeds": args.seeds, "pause_mode": args.pause_mode, "warmup_s": WARMUP_S,
                       "hold_s": HOLD_S}, f, indent=2)


if __name__ == "__main__":
    main()
