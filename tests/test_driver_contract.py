"""One contract every driver passes: the twin, process groups, Slurm, NVML (fake library) and a
composite of process + NVML. Each driver class gives a `plant` fixture; the tests are shared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gridflex.drivers.base import Driver, DriverHealth, JobActions, Telemetry
from gridflex.drivers.factory import make_driver
from gridflex.drivers.twin import TwinDriver
from gridflex.errors import DriverError
from gridflex.model.site import Action, Job, Site
from gridflex.sim.curve_csv import builtin_curves
from gridflex.sim.scenarios import load_scenario
from tests.fake_nvml import FakeNvml

WORKER = Path(__file__).parent / "fixtures" / "worker.py"
CURVES = builtin_curves()
SITE = Site(pue=1.3, overhead_w=1000.0)


@dataclass
class Plant:
    driver: Driver
    settle: Callable[[], None] = lambda: None  # let applied actions take effect
    low_cap_w: float = 200.0  # a cap the plant accepts, for drivers that cap rather than pause


def top_caps(jobs: list[Job]) -> np.ndarray:
    return np.array([CURVES[j.workload].max_cap_w if j.workload in CURVES else np.inf for j in jobs])


def reduction(plant: Plant, jobs: list[Job]) -> tuple[int, JobActions]:
    """Slow the first flexible job: pause it if allowed, else cap it."""
    k = next(i for i, j in enumerate(jobs) if j.flex_tier > 0 and j.actions & {Action.pause, Action.power_cap})
    cap, active = top_caps_of(plant, jobs), np.ones(len(jobs))
    if Action.pause in jobs[k].actions:
        active[k] = 0.0
    else:
        cap[k] = plant.low_cap_w
    return k, JobActions(tuple(j.id for j in jobs), cap, active)


def top_caps_of(plant: Plant, jobs: list[Job]) -> np.ndarray:
    if isinstance(plant.driver, TwinDriver):
        return plant.driver.fleet.max_cap_w.copy()
    return top_caps(jobs)


def state(plant: Plant) -> tuple[list[float], list[float]]:
    plant.settle()
    tel = plant.driver.read()
    return tel.cap_w.round(1).tolist(), tel.active.tolist()


class DriverContract:
    """The verbs of `gridflex.drivers.base.Driver`, checked on a live plant."""

    def test_discover_gives_unique_valid_jobs(self, plant):
        jobs = plant.driver.discover()
        assert jobs and all(isinstance(j, Job) for j in jobs)
        assert len({j.id for j in jobs}) == len(jobs)
        assert any(j.flex_tier == 0 for j in jobs) and any(j.flex_tier > 0 for j in jobs)

    def test_read_matches_discovered_jobs(self, plant):
        jobs = plant.driver.discover()
        plant.settle()
        tel = plant.driver.read()
        assert isinstance(tel, Telemetry) and tel.job_ids == tuple(j.id for j in jobs)
        for arr in (tel.job_power_w, tel.throughput, tel.cap_w, tel.active):
            assert arr.shape == (len(jobs),)
        assert np.all(tel.job_power_w >= 0) and tel.it_power_w >= 0 and tel.site_power_w >= tel.it_power_w
        assert np.all((tel.active >= 0) & (tel.active <= 1))
        assert isinstance(tel.estimated, bool)

    def test_health_is_reported(self, plant):
        h = plant.driver.health()
        assert isinstance(h, DriverHealth) and h.ok and h.detail

    def test_reduction_takes_effect_and_restore_undoes_it(self, plant):
        jobs = plant.driver.discover()
        before = state(plant)
        k, actions = reduction(plant, jobs)
        plant.driver.apply(actions)
        cap, active = state(plant)
        assert (active[k], cap[k]) == (actions.active[k], pytest.approx(actions.cap_w[k], abs=1))
        assert active[:k] + active[k + 1:] == before[1][:k] + before[1][k + 1:]
        plant.driver.restore()
        assert state(plant) == before

    def test_bad_actions_are_refused_and_change_nothing(self, plant):
        jobs = plant.driver.discover()
        before = state(plant)
        ids, top = tuple(j.id for j in jobs), top_caps_of(plant, jobs)
        k, good = reduction(plant, jobs)
        bad = [
            JobActions(ids, top, np.where(np.arange(len(ids)) == k, 2.0, 1.0)),  # active above 1
            JobActions(ids, top, np.where(np.arange(len(ids)) == k, np.nan, 1.0)),
            JobActions(ids, np.where(np.arange(len(ids)) == k, -5.0, top), np.ones(len(ids))),
            JobActions((*ids[:-1], "no-such-job"), top, np.ones(len(ids))),
        ]
        for actions in bad:
            with pytest.raises(DriverError):
                plant.driver.apply(actions)
        # a valid reduction next to a forbidden one: nothing of it is applied
        flex0 = next(i for i, j in enumerate(jobs) if j.flex_tier == 0)
        mixed_active = good.active.copy()
        mixed_active[flex0] = 0.0
        with pytest.raises(DriverError, match=jobs[flex0].id):
            plant.driver.apply(JobActions(ids, good.cap_w, mixed_active))
        assert state(plant) == before

    def test_flex0_jobs_cannot_be_slowed(self, plant):
        jobs = plant.driver.discover()
        ids, top = tuple(j.id for j in jobs), top_caps_of(plant, jobs)
        for i, j in enumerate(jobs):
            if j.flex_tier == 0:
                with pytest.raises(DriverError, match=j.id):
                    plant.driver.apply(JobActions(ids, top, np.where(np.arange(len(ids)) == i, 0.0, 1.0)))

    def test_restore_twice_and_repeated_actions_are_harmless(self, plant):
        jobs = plant.driver.discover()
        before = state(plant)
        _, actions = reduction(plant, jobs)
        plant.driver.apply(actions)
        plant.driver.apply(actions)
        plant.driver.restore()
        plant.driver.restore()
        assert state(plant) == before


# --- the plants ----------------------------------------------------------------------------------
@pytest.fixture
def process_groups():
    """Two worker processes, each in its own session (pgid = pid)."""
    procs = [subprocess.Popen([sys.executable, str(WORKER), os.devnull], start_new_session=True) for _ in range(2)]
    yield [p.pid for p in procs]
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def process_spec(pgids: list[int]) -> dict:
    return {"kind": "process", "jobs": [
        {"id": "train", "pgid": pgids[0], "workload": "pt_mpt_7b_fast", "gpus": 2, "flex_tier": 2},
        {"id": "serve", "pgid": pgids[1], "workload": "infer_llama_8b", "gpus": 1, "flex_tier": 0},
    ]}


class TestTwin(DriverContract):
    @pytest.fixture
    def plant(self):
        loaded = load_scenario("phoenix-srp")
        sc = loaded.scenario
        jobs = [*sc.jobs, sc.jobs[0].model_copy(update={"id": "firm", "flex_tier": 0})]  # phoenix has no Flex 0
        twin = TwinDriver(jobs, loaded.curves, sc.site, sc.start.timestamp() + 60, 10.0, sc.twin)
        return Plant(twin, settle=lambda: twin.advance_to(twin.t_s + 600))


class TestProcess(DriverContract):
    @pytest.fixture
    def plant(self, process_groups):
        driver = make_driver(process_spec(process_groups), SITE, CURVES)
        yield Plant(driver)
        driver.restore()


class TestNvmlFake(DriverContract):
    @pytest.fixture
    def plant(self):
        spec = {"kind": "nvml", "jobs": [
            {"id": "train", "gpu_indices": [0, 1], "workload": "pt_mpt_7b_fast", "flex_tier": 2},
            {"id": "serve", "gpu_indices": [2], "workload": "infer_llama_8b", "flex_tier": 0},
        ]}
        driver = make_driver(spec, SITE, CURVES, nvml_lib=FakeNvml())
        yield Plant(driver)
        driver.restore()


class TestCompositeProcessNvml(DriverContract):
    @pytest.fixture
    def plant(self, process_groups):
        fake = FakeNvml()
        fake.gpus[0].pids, fake.gpus[1].pids, fake.gpus[2].pids = [process_groups[0]], [process_groups[0]], [
            process_groups[1]]
        spec = {"kind": "composite", "jobs": process_spec(process_groups), "power": {"kind": "nvml", "map": "process"}}
        driver = make_driver(spec, SITE, CURVES, nvml_lib=fake)
        yield Plant(driver)
        driver.restore()


@pytest.mark.slurm
class TestSlurm(DriverContract):
    @pytest.fixture
    def plant(self, slurm_cluster, tmp_path):
        ids = [slurm_cluster.submit(WORKER, str(tmp_path / f"{n}.log"), comment=f"gridflex:flex={n}") for n in (2, 0)]
        for i in ids:
            slurm_cluster.wait_state(i, ("RUNNING",))
        driver = make_driver({"kind": "slurm"}, SITE, CURVES, state_dir=tmp_path)
        yield Plant(driver)
        driver.restore()
        slurm_cluster.cancel_all()
