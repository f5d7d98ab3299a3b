"""The return after a 30 % event on real Slurm with a site ramp limit of 20 % of the baseline per
minute: `gridflex serve` resumes the suspended jobs staggered, and the site power (what the Modbus
meter reads: the Slurm jobs' power plus a load no job draws) rises no faster than the limit in
1-minute means. The same in simulation: tests/test_ramp_limit.py."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from gridflex.drivers.slurm import SlurmRules
from tests.service_support import TOKEN
from tests.slurm_cluster import SlurmSitePower, wait_for
from tests.test_dashboard_browser import _serve
from tests.test_meter_loop import REGISTER, LiveMeter
from tests.test_slurm import cluster, start_jobs  # noqa: F401  (fixture)
from tests.test_slurm_meter import FLEX, SITE

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Load no job draws; with it the seven flexible one-GPU jobs can shed 30 % of the site, each a step
#: of about 5 % of it (a step bigger than a minute's ramp could not come back within the limit).
OTHER_W = 3500.0
EVENT_S = 75.0  # the cut is reached at the first tick (suspends); a minute of it before the end
DEADLINE_S = 600.0


def minute_means(history: list[tuple[float, float]], start_s: float, minutes: int) -> np.ndarray:
    """Time-weighted means of the readings over `minutes` minutes from `start_s` (each reading holds
    until the next), on a 0.1-s grid."""
    t, p = np.array(history).T
    grid = start_s + np.arange(0, minutes * 60, 0.1)
    held = p[np.clip(np.searchsorted(t, grid, side="right") - 1, 0, None)]
    return held.reshape(minutes, -1).mean(axis=1)


@pytest.mark.timeout(1200)
def test_the_return_after_an_event_on_slurm_rises_no_faster_than_the_ramp_limit(cluster, tmp_path):  # noqa: F811
    jobs = start_jobs(cluster, tmp_path, **FLEX, firm=dict(comment="gridflex:flex=0"))
    jobs.pop("firm")
    flexible = [job_id for job_id, _ in jobs.values()]
    plant = SlurmSitePower(SITE, SlurmRules(), OTHER_W)
    meter = LiveMeter(plant)
    full_w = plant()
    limit_w = 0.20 * full_w  # per minute: 20 % of the baseline (the site at full power, as before the event)
    base, proc = _serve(
        tmp_path,
        site=SITE.model_dump(),
        driver={"kind": "slurm", "state_dir": str(tmp_path / "state")},
        meter={"host": "127.0.0.1", "port": meter.port, "address": REGISTER, "scale": 1000, "timeout_s": 5},
        control={"interval_s": 2.0, "snapback_guard_s": 0.0, "baseline_window_s": 60.0, "ramp_up_w_per_min": limit_w},
    )
    log = tmp_path / "serve.log"
    status = lambda: httpx.get(f"{base}/api/v1/status", headers=AUTH, timeout=30).json()  # noqa: E731
    try:
        wait_for(lambda: (status()["t_s"] or 0) > 0, DEADLINE_S, "no status from serve", {"serve": proc}, log.read_text)
        now = datetime.now(UTC)
        end = now + timedelta(seconds=EVENT_S)
        event = {"id": "cut", "start": now.isoformat(), "end": end.isoformat(), "target": {"reduction": 0.3}}
        r = httpx.post(f"{base}/api/v1/events", json=event, headers=AUTH, timeout=30)
        assert r.status_code == 201, r.text
        wait_for(lambda: status()["active_events"] == ["cut"] and plant() <= 0.7 * full_w, DEADLINE_S,
                 "the cut was not reached", {"serve": proc}, log.read_text)
        # back: every job running and the site at full power, then a minute more of readings
        wait_for(lambda: all(cluster.state(j) == "RUNNING" for j in flexible), DEADLINE_S,
                 "the suspended jobs did not come back", {"serve": proc}, log.read_text)
        back_s = plant.history[-1][0]
        wait_for(lambda: plant.history[-1][0] > back_s + 60, DEADLINE_S, "no readings after the return")
        events = httpx.get(f"{base}/api/v1/events", headers=AUTH, timeout=30).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE_S)
        meter.close()
        plant.close()
    baseline_w = events[0]["baseline_w"]
    assert baseline_w == pytest.approx(full_w, rel=0.01)  # the controller's baseline: the site before the event
    end_s = end.timestamp()
    minutes = int((back_s + 60 - (end_s - 60)) // 60)
    means = minute_means(plant.history, end_s - 60, minutes)
    rise = np.diff(means)
    print(f"baseline {baseline_w:.0f} W, limit {limit_w:.0f} W/min; 1-minute means from a minute before the end:"
          f" {np.round(means / baseline_w, 3).tolist()}; rise / limit {np.round(rise / limit_w, 3).tolist()}")
    assert means[0] <= 0.7 * baseline_w  # the last minute of the event: the cut held
    assert rise.max() <= limit_w * 1.03  # no faster than the limit (1-minute means; whole-job steps)
    assert plant.history[-1][1] == pytest.approx(full_w)  # and it does come back, every job running
