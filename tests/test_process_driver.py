"""The process driver on real process groups: SIGSTOP/SIGCONT, duty-cycling, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gridflex.drivers.base import JobActions
from gridflex.drivers.process import ProcessDriver, ProcessJob, ProcessSettings
from gridflex.errors import DriverError
from gridflex.model.site import Action, Site
from gridflex.sim.curve_csv import builtin_curves

WORKER = Path(__file__).parent / "fixtures" / "worker.py"
CURVES = builtin_curves()


@pytest.fixture
def group():
    """A worker with a child, both in one new session: the group is what gets stopped."""
    p = subprocess.Popen(["bash", "-c", f"{sys.executable} {WORKER} {os.devnull} & wait"], start_new_session=True)
    time.sleep(0.3)
    yield p.pid
    try:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    except (ProcessLookupError, ChildProcessError):
        pass


def states(pgid: int) -> set[str]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid:
                out.add(stat[0])
    return out


def settled(pgid: int, stopped: bool, timeout_s: float = 30.0) -> set[str]:
    """The group's states once all are stopped (or none is), or after the timeout: signals land
    asynchronously."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = states(pgid)
        if (got == {"T"} if stopped else "T" not in got) or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def driver_for(pgid: int, **kw) -> ProcessDriver:
    job = ProcessJob(id="train", pgid=pgid, workload="pt_mpt_7b_fast", gpus=2, flex_tier=2,
                     actions={Action.pause, Action.resize})
    d = ProcessDriver(Site(), CURVES, ProcessSettings(jobs=(job,), **kw))
    d.discover()
    return d


def act(active: float) -> JobActions:
    return JobActions(("train",), np.array([400.0]), np.array([active]))


def test_pause_stops_the_whole_group_and_resume_continues_it(group):
    d = driver_for(group)
    d.apply(act(0.0))
    assert settled(group, stopped=True) == {"T"}
    tel = d.read()
    assert tel.estimated and tel.active[0] == 0.0
    assert tel.job_power_w[0] == pytest.approx(2 * CURVES["pt_mpt_7b_fast"].paused_w)
    d.apply(act(1.0))
    assert "T" not in settled(group, stopped=False)


def test_duty_cycling_runs_the_group_its_fraction_of_the_time(group):
    d = driver_for(group, duty_period_s=0.4)
    d.apply(act(0.25))
    samples = []
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        samples.append("T" in states(group))
        time.sleep(0.01)
    stopped = float(np.mean(samples))
    assert 0.55 < stopped < 0.95, stopped  # about 75 % stopped
    d.restore()
    assert "T" not in settled(group, stopped=False)


def test_fractions_need_duty_cycling(group):
    with pytest.raises(DriverError, match="active 0.5 needs duty-cycling"):
        driver_for(group).apply(act(0.5))


def test_crash_recovery_continues_groups_left_stopped(group, tmp_path):
    driver_for(group, state_file=str(tmp_path / "p.json")).apply(act(0.0))  # then gridflex dies
    assert settled(group, stopped=True) == {"T"}
    driver_for(group, state_file=str(tmp_path / "p.json")).restore()
    assert "T" not in settled(group, stopped=False)


def test_ended_jobs_drop_out_of_discovery(group):
    d = driver_for(group)
    os.killpg(group, signal.SIGKILL)
    os.waitpid(group, 0)
    deadline = time.monotonic() + 30
    while d.discover() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.discover() == [] and not d.read().job_ids
