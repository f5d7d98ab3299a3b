"""Benchmark: how planning and simulation cost grow with the size of the site.

Planner time per control tick (median and p99 over `--ticks` ticks, a 30 % cut in force) for
sites of 1,000, 10,000 and 100,000 GPUs (100 to 10,000 jobs of 4-16 GPUs, mixed workloads and
tiers), and simulation speed (simulated seconds per wall second: twin, controller and planner
together) for the same sites and for a 100 MW campus, through 30 minutes with a 25 % cut.
Both wall and CPU time are measured; the machine is shared, so the load average is printed too.

    .venv/bin/python bench/scale.py [--planner optimal] [--ticks 200] [--json out/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from gridflex.model.events import GridEvent, Target
from gridflex.model.fleet import JobFleet
from gridflex.model.scenario import ControlSettings, Scenario
from gridflex.model.site import Job, Site
from gridflex.plan.base import PlanInput
from gridflex.plan.registry import make_planner
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.curve_csv import builtin_curves
from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import LoadedScenario

SIZES_GPUS = (1_000, 10_000, 100_000)
CAMPUS_W = 100e6
PUE = 1.3
START = datetime(2025, 6, 2, 12, tzinfo=UTC)
TIER_P = (0.1, 0.3, 0.3, 0.3)


def make_jobs(gpus: int, seed: int = 0) -> list[Job]:
    """Jobs of 4, 8 or 16 GPUs (10 on average) adding up to `gpus`, random workloads and tiers."""
    rng = np.random.default_rng(seed)
    workloads = sorted(builtin_curves())
    jobs, left = [], gpus
    while left > 0:
        n = min(left, int(rng.choice([4, 8, 16], p=[0.3, 0.4, 0.3])))
        jobs.append(Job(id=f"j{len(jobs)}", workload=workloads[int(rng.integers(len(workloads)))], gpus=n,
                        flex_tier=int(rng.choice(4, p=TIER_P))))
        left -= n
    return jobs


def tick_times_ms(planner_name: str, gpus: int, ticks: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of jobs, and wall and CPU milliseconds of each planner tick."""
    jobs = make_jobs(gpus)
    fleet = JobFleet.build(jobs, builtin_curves())
    site = Site(pue=PUE)
    full_it_w = float((fleet.gpus * fleet.full_w).sum())
    baseline_w = float(site.site_power_w(full_it_w))
    ev = GridEvent(id="cut", start=START, end=START + timedelta(hours=2), target=Target(reduction=0.3))
    timeline = TargetTimeline.build([ResolvedEvent(ev, baseline_w)], None, ControlSettings())
    rng = np.random.default_rng(1)
    window_s = np.full(len(fleet), 8 * 3600.0)
    floor = np.clip(1 - (1 - fleet.flex_factor) * 4, 0, 1)  # the event takes a quarter of each window
    planner = make_planner(planner_name)
    wall, cpu = [], []
    for k in range(ticks):
        t_s = START.timestamp() + 600 + 2 * k
        ceiling = float(site.it_power_w(timeline.ceiling_at(t_s) * 0.98)) * rng.uniform(0.98, 1.02)
        inp = PlanInput(t_s, fleet, site, timeline, ceiling, floor, window_s)
        t0, c0 = time.perf_counter(), time.process_time()
        planner.plan(inp)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return len(jobs), np.array(wall), np.array(cpu)


def sim_speed(planner_name: str, gpus: int) -> dict:
    """Thirty simulated minutes with a no-notice 25 % cut for the middle twenty."""
    jobs = make_jobs(gpus)
    ev = GridEvent(id="cut", start=START + timedelta(minutes=5), end=START + timedelta(minutes=25), ramp_s=60,
                   notice_s=0, target=Target(reduction=0.25))
    sc = Scenario(name=f"scale-{gpus}", start=START, end=START + timedelta(minutes=30), site=Site(pue=PUE), jobs=jobs,
                  events=(ev,), control=ControlSettings(baseline_window_s=300, snapback_guard_s=300))
    loaded = LoadedScenario(sc, builtin_curves())
    t0, cpu0 = time.perf_counter(), time.process_time()
    run_scenario(loaded, planner_name)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    fleet = JobFleet.build(jobs, loaded.curves)
    site_mw = float(sc.site.site_power_w((fleet.gpus * fleet.full_w).sum())) / 1e6
    return {"gpus": gpus, "jobs": len(jobs), "site_mw": round(site_mw, 2), "wall_s": round(wall_s, 2),
            "cpu_s": round(cpu_s, 2), "sim_s_per_wall_s": round(sc.duration_s / wall_s, 1),
            "sim_s_per_cpu_s": round(sc.duration_s / cpu_s, 1)}


def campus_gpus() -> int:
    """GPUs of a 100 MW campus of this mix (uncapped, at PUE 1.3)."""
    fleet = JobFleet.build(make_jobs(10_000), builtin_curves())
    per_gpu_w = PUE * float((fleet.gpus * fleet.full_w).sum()) / 10_000
    return int(round(CAMPUS_W / per_gpu_w, -3))


def _ms(x: float) -> float:
    return round(float(x), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planner", default="optimal")
    parser.add_argument("--ticks", type=int, default=200, help="planner ticks timed per size")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    ticks = []
    print(f"planner {args.planner}: time per control tick (wall clock; CPU time of this process)")
    print(f"{'gpus':>8} {'jobs':>6} {'median ms':>10} {'p99 ms':>8} {'cpu median':>11} {'cpu p99':>8}")
    for gpus in SIZES_GPUS:
        jobs, wall, cpu = tick_times_ms(args.planner, gpus, args.ticks)
        row = {"gpus": gpus, "jobs": jobs, "median": _ms(np.median(wall)), "p99": _ms(np.percentile(wall, 99)),
               "cpu_median": _ms(np.median(cpu)), "cpu_p99": _ms(np.percentile(cpu, 99))}
        ticks.append(row)
        print(f"{gpus:>8} {jobs:>6} {row['median']:>10.3f} {row['p99']:>8.3f} {row['cpu_median']:>11.3f}"
              f" {row['cpu_p99']:>8.3f}", flush=True)
    for a, b in zip(ticks, ticks[1:]):
        for key in ("median", "cpu_median"):
            growth = np.log(b[key] / a[key]) / np.log(b["gpus"] / a["gpus"])
            print(f"  {a['gpus']:,} -> {b['gpus']:,} GPUs: {key} x{b[key] / a[key]:.1f}"
                  f" (cost ~ size^{growth:.2f}; 1.00 is linear)")
    print("\nsimulation speed (30 min, no-notice 25 % cut for 20 min, 1-s steps, 2-s control ticks)")
    print(f"{'gpus':>8} {'jobs':>6} {'site MW':>8} {'wall s':>7} {'cpu s':>6} {'sim s / wall s':>15}")
    speeds = []
    for gpus in (*SIZES_GPUS, campus_gpus()):
        row = sim_speed(args.planner, gpus)
        speeds.append(row)
        print(f"{gpus:>8} {row['jobs']:>6} {row['site_mw']:>8.1f} {row['wall_s']:>7.1f} {row['cpu_s']:>6.1f}"
              f" {row['sim_s_per_wall_s']:>15.1f}", flush=True)
    load = os.getloadavg()[0]
    print(f"\nload average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"planner": args.planner, "planner_tick_ms": ticks, "sim_speed": speeds,
                       "load_average_1min": load, "cpus": os.cpu_count()}, f, indent=2)


if __name__ == "__main__":
    main()
