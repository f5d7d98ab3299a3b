#!/usr/bin/env python3
"""Check gridflex's NVML and process drivers on a machine with a real NVIDIA GPU.

    python scripts/gpu_check.py [--gpu 0] [--target-w W] [--seconds 60] [--json out.json]

1. Readings (read-only): per-GPU power, energy, power limit and its allowed range through
   the NVML driver's own code path; checks they are plausible and that energy grows.
2. Closed loop: starts a GPU workload (a CUDA matmul loop: torch, else cupy) in its own
   process group, then runs the gridflex controller with the process driver (pause/resume
   by SIGSTOP/SIGCONT) and the NVML driver (measured power) against a grid event that caps
   the GPU's power at a target between idle and full. Reports the power before, during and
   after the event, how much of the event stayed at or under the target, and the time from
   the pause to the power drop.

It never changes a GPU setting: NVML is wrapped so that every set/reset call raises, the
NVML driver is read-only, and the power limits are compared before and after. Only the
workload process it started itself is paused and resumed. Needs nvidia-ml-py and numpy,
plus torch or cupy for the workload (without one, only step 1 runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gridflex.control.controller import Controller
from gridflex.drivers.composite import CompositeDriver
from gridflex.drivers.nvml import Nvml, NvmlDriver, pgid_job_of_pid, process_map, static_map
from gridflex.drivers.process import ProcessDriver, ProcessJob, ProcessSettings
from gridflex.errors import DriverError
from gridflex.model.events import GridEvent, Target
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Action, Latency, Site
from gridflex.plan.registry import make_planner
from gridflex.sim.curve_csv import builtin_curves

WORKLOAD = """
import sys, time
gpu = int(sys.argv[1])
try:
    import torch
    dev = torch.device("cuda", gpu)
    a = torch.randn(8192, 8192, device=dev); b = torch.randn(8192, 8192, device=dev)
    step = lambda: (a @ b, torch.cuda.synchronize(dev))
except ImportError:
    import cupy
    cupy.cuda.Device(gpu).use()
    a = cupy.random.rand(8192, 8192, dtype=cupy.float32); b = cupy.random.rand(8192, 8192, dtype=cupy.float32)
    step = lambda: (a @ b, cupy.cuda.Device(gpu).synchronize())
print("ready", flush=True)
while True:
    step()
"""


class ReadOnlyNvml:
    """pynvml with every call that could change a device refused."""

    def __init__(self, lib):
        self._lib = lib

    def __getattr__(self, name):
        if any(w in name for w in ("Set", "Reset", "Clear")) and name.startswith("nvml"):
            raise RuntimeError(f"gpu_check is read-only: refused NVML call {name}")
        return getattr(self._lib, name)


def readings_check(driver: NvmlDriver) -> dict:
    first = driver.gpu_readings()
    time.sleep(1.0)
    second = driver.gpu_readings()
    problems = []
    for a, b in zip(first, second):
        if not 0 < b["power_w"] < 1.5 * b["max_limit_w"]:
            problems.append(f"GPU {b['index']}: power {b['power_w']:.1f} W implausible")
        if not b["min_limit_w"] <= b["limit_w"] <= b["max_limit_w"]:
            problems.append(f"GPU {b['index']}: limit {b['limit_w']} outside {b['min_limit_w']}..{b['max_limit_w']}")
        if b["energy_j"] <= a["energy_j"]:
            problems.append(f"GPU {b['index']}: energy counter did not grow")
    return {"gpus": second, "problems": problems}


def mean_power_w(nvml: Nvml, gpu: int, samples: int = 5) -> float:
    out = []
    for _ in range(samples):
        out.append(nvml.power_w(gpu))
        time.sleep(0.2)
    return float(np.mean(out))


def closed_loop(nvml: Nvml, gpu: int, target_w: float | None, seconds: float) -> dict:
    idle_w = mean_power_w(nvml, gpu)
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(gpu)], start_new_session=True,
                            stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            return {"skipped": "no GPU workload (install torch or cupy)"}
        time.sleep(3.0)
        site, curves = Site(), builtin_curves()
        job = ProcessJob(id="workload", pgid=proc.pid, workload="pt_mpt_7b_fast", gpus=1, flex_tier=3,
                         actions={Action.pause}, latency=Latency(suspend_s=0.5, resume_s=0.5))
        jobs_driver = ProcessDriver(site, curves, ProcessSettings(jobs=(job,)))
        gpu_map = process_map(nvml, pgid_job_of_pid({"workload": proc.pid}))
        if not gpu_map():  # some containers hide GPU processes from NVML
            gpu_map = static_map({"workload": [gpu]})
        power = NvmlDriver(site, curves, nvml, gpu_map, read_only=True)
        driver = CompositeDriver(jobs_driver, power)
        driver.discover()
        full_w = mean_power_w(nvml, gpu)
        target = target_w or (idle_w + full_w) / 2
        now = time.time()
        ctl = Controller(site, ControlSettings(interval_s=0.5, snapback_guard_s=0.0), driver, make_planner("optimal"),
                         curves, lambda job, seen_s, t_s: (now - 60, now + 3600), now)
        start = datetime.now(UTC) + timedelta(seconds=seconds / 4)
        end = start + timedelta(seconds=seconds / 3)
        ctl.add_event(GridEvent(id="gpu-check", start=start, end=end, target=Target(power_w=target)))
        trace = []
        paused_at = dropped_at = None
        t_end = time.time() + seconds
        while time.time() < t_end:
            d = ctl.step(time.time())
            w = sum(nvml.power_w(i) for i in power.job_gpus.get("workload", [gpu]))
            trace.append((time.time(), w, float(d.plan.active[0]), bool(d.active_events)))
            if paused_at is None and d.plan.active[0] == 0:
                paused_at = time.time()
            if paused_at and dropped_at is None and w <= target:
                dropped_at = time.time()
            time.sleep(0.5)
        ctl.shutdown()
        t, w, active, in_event = (np.array(x) for x in zip(*trace))
        settle_s = 1.5  # power needs about a second to follow a pause or resume
        hold = in_event & (t > start.timestamp() + settle_s)
        after = t > end.timestamp() + settle_s
        before = t < start.timestamp() - settle_s  # the controller may act a pause's latency early
        return {
            "target_w": round(target, 1), "idle_w": round(idle_w, 1), "full_w": round(full_w, 1),
            "mean_w_before": round(float(w[before].mean()), 1) if before.any() else None,
            "mean_w_during": round(float(w[hold].mean()), 1) if hold.any() else None,
            "mean_w_after": round(float(w[after].mean()), 1) if after.any() else None,
            "share_during_at_or_under_target": round(float((w[hold] <= target * 1.02).mean()), 3) if hold.any()
            else None,
            "pause_to_power_drop_s": round(dropped_at - paused_at, 2) if paused_at and dropped_at else None,
            "resumed_after": bool(active[-1] == 1.0),
            "measured": not driver.read().estimated,
        }
    finally:
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", type=int, default=0, help="GPU index for the closed loop (default 0)")
    ap.add_argument("--target-w", type=float, default=None, help="power target in W (default: half-way)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the closed-loop run")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--readings-only", action="store_true", help="skip the closed loop")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import pynvml

    try:
        nvml = Nvml(ReadOnlyNvml(pynvml))
    except DriverError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    limits_before = [nvml.limit_w(g.index) for g in nvml.gpus]
    reader = NvmlDriver(Site(), builtin_curves(), nvml, static_map({}), read_only=True)
    result = {"readings": readings_check(reader)}
    if not args.readings_only:
        result["closed_loop"] = closed_loop(nvml, args.gpu, args.target_w, args.seconds)
    result["limits_unchanged"] = [nvml.limit_w(g.index) for g in nvml.gpus] == limits_before
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    ok = result["limits_unchanged"] and not result["readings"]["problems"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
