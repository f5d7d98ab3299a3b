"""Actuation latency of the Slurm driver on a real (single-node, loopback) Slurm.

    python bench/slurm_actuation.py [--jobs 16] [--rounds 3]

Starts slurmctld + slurmd + munged like the tests do (needs scripts/ci/slurm.sh), submits
`--jobs` flexible jobs, then per round: one `apply` pausing all of them, timed until every
process of every job is stopped (state T), and one resuming them, timed until none is.
Prints the driver's own command-to-confirmed latency per verb as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from gridflex.drivers.base import JobActions  # noqa: E402
from gridflex.drivers.slurm import SlurmDriver, SlurmSettings  # noqa: E402
from gridflex.model.site import Site  # noqa: E402
from gridflex.sim.curve_csv import builtin_curves  # noqa: E402
from tests.slurm_cluster import SlurmCluster  # noqa: E402

WORKER = ROOT / "tests" / "fixtures" / "worker.py"


def wait_all(cluster: SlurmCluster, jobs: list[str], stopped: bool, timeout_s: float = 30) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        states = [cluster.proc_state(p) for j in jobs for p in cluster.pids(j)]
        if states and all((s == "T") == stopped for s in states):
            return time.monotonic() - t0
        time.sleep(0.01)
    raise TimeoutError("processes did not follow")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = SlurmCluster(Path(tmp), cpus=max(8, args.jobs))
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            jobs = [cluster.submit(WORKER, os.devnull, comment="gridflex:flex=2") for _ in range(args.jobs)]
            for j in jobs:
                cluster.wait_state(j, ("RUNNING",), timeout_s=60)
            driver = SlurmDriver(Site(), builtin_curves(), SlurmSettings(hold_pending=False))
            ids = tuple(j.id for j in driver.discover())
            top = np.full(len(ids), 400.0)
            pause_s, resume_s = [], []
            for _ in range(args.rounds):
                t0 = time.monotonic()
                driver.apply(JobActions(ids, top, np.zeros(len(ids))))
                pause_s.append(time.monotonic() - t0 + wait_all(cluster, jobs, True))
                t0 = time.monotonic()
                driver.apply(JobActions(ids, top, np.ones(len(ids))))
                resume_s.append(time.monotonic() - t0 + wait_all(cluster, jobs, False))
            print(f"{len(ids)} jobs, {args.rounds} rounds (apply until every process has followed):")
            print(f"  pause all : median {np.median(pause_s):.3f} s, worst {max(pause_s):.3f} s")
            print(f"  resume all: median {np.median(resume_s):.3f} s, worst {max(resume_s):.3f} s")
            print(f"  per command (to squeue confirmation): {driver.latency_summary()}")
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    main()
