"""Time shifting on a real Slurm (see slurm_cluster.py): deferrable jobs submitted with
`--deadline` before a high-carbon window start after it and before their deadline; the held
jobs are released with a stagger."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from gridflex.control.shifting import Shifter
from gridflex.model.scenario import ControlSettings
from gridflex.model.shifting import ShiftSettings
from gridflex.signals.forecast import Forecast
from gridflex.signals.prices import StepSignal
from gridflex.signals.recorded import Recorded
from tests.test_slurm import WORKER, controller_for, make_driver, start_jobs

pytestmark = pytest.mark.slurm
WINDOW_S = 20.0  # the high-carbon window, from the test's start
STAGGER_S = 5.0


@pytest.fixture
def cluster(slurm_cluster):
    yield slurm_cluster
    slurm_cluster.cancel_all()


def submit_deferrable(cluster, out: Path, deadline_s: int) -> str:
    """A Flex-3 job of one minute (its time limit) due `deadline_s` from now."""
    cmd = f"exec {shutil.which('python3') or 'python3'} {WORKER} {out}"
    return cluster.run("sbatch", "--parsable", "--partition=debug", f"--output={cluster.root / 'log' / 'job-%j.out'}",
                       f"--chdir={cluster.root}", "--time=1", f"--deadline=now+{deadline_s}",
                       "--comment=gridflex:flex=3", f"--wrap={cmd}").strip().split(";")[0]


def test_deferrable_jobs_start_after_a_high_carbon_window_before_their_deadline_staggered(cluster, tmp_path):
    t0 = time.time()
    steps = t0 + np.array([0.0, WINDOW_S])
    actual = StepSignal(steps, np.array([450.0, 40.0]), "carbon")
    recorded = Recorded(actual, Forecast(np.full(2, t0 - 1), steps, actual.values, "issued"), "gCO2/kWh",
                        "carbon_average")
    start_jobs(cluster, tmp_path, firm=dict(comment="gridflex:flex=0"))  # a service that runs throughout
    jobs = [submit_deferrable(cluster, tmp_path / f"{n}.log", 600) for n in ("a", "b")]
    driver = make_driver(tmp_path)
    settings = ControlSettings(interval_s=1.0, release_stagger_s=STAGGER_S)
    controller = controller_for(driver, settings)
    controller.shifting = Shifter(ShiftSettings(signal="test", slot_s=5.0, horizon_s=180.0, replan_s=2.0), driver.site,
                                  driver.curves, STAGGER_S, recorded)
    released: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(released) < len(jobs) and time.monotonic() < deadline:
        controller.step(time.time())
        reasons = {e.job_id: (e.state, e.reason) for e in driver.cli.queue()}
        for j in jobs:
            state, reason = reasons.get(j, ("GONE", ""))
            if j not in released and not (state == "PENDING" and "Held" in reason):
                released[j] = time.time()
        if time.time() - t0 < WINDOW_S - 2:  # inside the window both wait, held by the plan
            assert all(reasons[j][0] == "PENDING" and "Held" in reasons[j][1] for j in jobs), reasons
        time.sleep(0.5)
    assert set(released) == set(jobs), f"not released within 120 s: {reasons}"
    first, second = sorted(released.values())
    assert first >= t0 + WINDOW_S - 1  # after the window (one tick of slack for the release to show)
    assert second - first >= STAGGER_S - 1.5  # one per stagger
    for j in jobs:
        cluster.wait_state(j, ("RUNNING", "COMPLETED", "COMPLETING"), timeout_s=60)
    (deadline_of,) = {driver.job_of(e).deadline for e in driver.cli.queue() if e.job_id == jobs[0]} or {None}
    starts = {e.job_id: e.start for e in driver.cli.queue()}
    for j in jobs:  # started after the window and well before its deadline (10 minutes)
        assert starts[j] and time.mktime(time.strptime(starts[j], "%Y-%m-%dT%H:%M:%S")) < t0 + 600
    assert deadline_of is not None and abs(deadline_of.timestamp() - (t0 + 600)) < 30  # --deadline was read
    controller.shutdown()
