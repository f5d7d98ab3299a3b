"""`gridflex serve` with a real Slurm and a pyasic miner fleet (the protocol-level emulator):
the miners are in the same loop as the jobs, shed first where cheaper, and restored on exit."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from gridflex.model.events import GridEvent, Target
from tests.miner_emulator import MinerEmulator
from tests.service_support import make_service
from tests.test_slurm import RULES, start_jobs

pytestmark = pytest.mark.slurm
AVALON_W = 3731 * 1.1  # the emulated units, found at work level 2


def miners_config(hosts: list[str]) -> dict:
    return {
        "models": {"avalon 1566": {"hashrate_th_s": 222.1, "power_w": AVALON_W}},
        "groups": [{"id": "avalon", "model": "avalon 1566", "hosts": hosts}],
        "hashprice_usd_per_th_day": 0.043,
        "prices": "ercot-hb-south-2024-08-20",
        "dispatch": {"mode": "economic"},
    }


@pytest.fixture
def cluster(slurm_cluster):
    yield slurm_cluster
    slurm_cluster.cancel_all()


def test_serve_sheds_miners_before_jobs_and_restores_both(cluster, tmp_path):
    (flex2, _), (firm, _) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2", gpus=2),
                                        b=dict(comment="gridflex:flex=0")).values()
    with MinerEmulator(3, level=2) as emu:
        svc = make_service(
            f"sqlite:///{tmp_path}/gridflex.db", time.time,
            driver={"kind": "slurm", "state_dir": str(tmp_path), "settings": {"rules": RULES.model_dump()}},
            miners=miners_config(emu.hosts), miner_driver={"timeout_s": 30.0, "restart_stagger_s": 0.1},
        )
        try:
            svc.tick(time.time())
            status = svc.status
            assert [m["id"] for m in status.miners] == emu.hosts and all(m["mode"] == "full" for m in status.miners), status.miners
            assert status.site_power_w > 3 * AVALON_W  # the meter sees jobs and miners together
            now = datetime.now(UTC)
            # shedding two of three miners meets it: a mined MWh is worth far less than a GPU-hour of work
            svc.add_event(GridEvent(id="cut", start=now, end=now + timedelta(minutes=10),
                                    target=Target(power_w=status.site_power_w - 1.5 * AVALON_W)))
            for _ in range(2):
                svc.tick(time.time())
            asleep = [h for h in emu.hosts if not emu[h].mining]
            assert len(asleep) >= 2
            assert cluster.state(flex2) == "RUNNING" and cluster.state(firm) == "RUNNING"  # no job slowed
            assert {m["id"] for m in svc.status.miners if m["mode"] == "sleep"} == set(asleep)
            metrics = svc.metrics.miners_mining._value.get()
            assert metrics == 3 - len(asleep)
        finally:
            svc.stop()  # what SIGTERM does: every miner and job back as found
        assert all(emu[h].mining for h in emu.hosts)
        assert cluster.state(flex2) == "RUNNING"
