"""The NVML driver against the fake NVML (recorded A40 power at each limit)."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

import gridflex.drivers.nvml as nvml_mod
from gridflex.drivers.base import JobActions
from gridflex.drivers.nvml import Nvml, NvmlDriver, cuda_visible_map, process_map, slurm_job_of_pid, static_map
from gridflex.errors import DriverError
from gridflex.model.site import Action, Job, Site
from gridflex.sim.curve_csv import builtin_curves
from tests.fake_nvml import FakeNvml

CURVES = builtin_curves()
JOBS = [Job(id="train", workload="pt_mpt_7b_fast", gpus=2, flex_tier=2, actions={Action.power_cap}),
        Job(id="serve", workload="infer_llama_8b", gpus=1, flex_tier=0)]


def make(fake: FakeNvml, state_file=None) -> NvmlDriver:
    driver = NvmlDriver(Site(), CURVES, Nvml(fake), static_map({"train": [0, 1], "serve": [2]}), JOBS, state_file)
    driver.discover()
    return driver


def actions(train_cap_w: float) -> JobActions:
    return JobActions(("train", "serve"), np.array([train_cap_w, 400.0]), np.ones(2))


def test_reads_measured_power_energy_and_limits():
    fake = FakeNvml()
    driver = make(fake)
    tel = driver.read()
    assert not tel.estimated  # every job's GPUs are measured
    assert tel.job_power_w == pytest.approx([2 * 244.26, 244.26], abs=0.01)  # A40 ResNet-50 at 300 W
    readings = driver.gpu_readings()
    assert [r["limit_w"] for r in readings] == [300.0] * 4
    assert (readings[0]["min_limit_w"], readings[0]["max_limit_w"]) == (100.0, 300.0)
    assert readings[0]["energy_j"] >= 0


def test_caps_within_device_range_and_power_follows():
    fake = FakeNvml()
    driver = make(fake)
    driver.apply(actions(150.0))
    assert [g.limit_mw for g in fake.gpus] == [150_000, 150_000, 300_000, 300_000]
    tel = driver.read()
    assert tel.cap_w.tolist() == [150.0, CURVES["infer_llama_8b"].max_cap_w]
    assert tel.job_power_w[0] == pytest.approx(2 * 144.26, abs=0.01)


def test_cap_outside_device_range_is_refused_naming_the_range():
    fake = FakeNvml()
    driver = make(fake)
    with pytest.raises(DriverError, match=r"cap_w 50 outside GPU 0 \(NVIDIA A40\) allowed 100..300 W"):
        driver.apply(actions(50.0))
    assert fake.set_calls == [] and len(driver.ledger) == 0


def test_restore_puts_back_the_original_limits_not_the_default():
    fake = FakeNvml()
    fake.gpus[0].limit_mw = 280_000  # an operator's own setting
    driver = make(fake)
    driver.apply(actions(120.0))
    driver.apply(actions(180.0))
    driver.restore()
    assert [g.limit_mw for g in fake.gpus] == [280_000, 300_000, 300_000, 300_000]
    assert len(driver.ledger) == 0


def test_uncapping_restores_originals(tmp_path):
    fake = FakeNvml()
    driver = make(fake, tmp_path / "nvml.json")
    driver.apply(actions(150.0))
    driver.apply(actions(400.0))
    assert [g.limit_mw for g in fake.gpus[:2]] == [300_000, 300_000] and len(driver.ledger) == 0


def test_crash_recovery_restores_limits_from_the_state_file(tmp_path):
    fake = FakeNvml()
    make(fake, tmp_path / "nvml.json").apply(actions(150.0))  # then the process dies
    assert fake.gpus[0].limit_mw == 150_000
    make(fake, tmp_path / "nvml.json").restore()
    assert [g.limit_mw for g in fake.gpus] == [300_000] * 4


def test_no_permission_gives_a_clear_error_and_leaves_no_record():
    fake = FakeNvml(writable=False)
    driver = make(fake)
    with pytest.raises(DriverError, match="set GPU 0 power limit to 150 W \\(needs root\\).*Insufficient Permissions"):
        driver.apply(actions(150.0))
    assert len(driver.ledger) == 0


def test_nvml_cannot_pause():
    driver = make(FakeNvml())
    with pytest.raises(DriverError, match="NVML cannot pause"):
        driver.apply(JobActions(("train", "serve"), np.array([400.0, 400.0]), np.array([0.0, 1.0])))


def test_gpus_map_to_slurm_jobs_through_their_processes(tmp_path):
    fake = FakeNvml()
    fake.gpus[0].pids, fake.gpus[1].pids, fake.gpus[3].pids = [101], [101, 102], [103]
    for pid, env in ((101, b"SLURM_JOB_ID=41\0PATH=/bin\0"), (102, b"HOME=/root\0"), (103, b"")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(env)
        (tmp_path / str(pid) / "cgroup").write_text("0::/system.slice/slurmstepd.scope/job_42/step_0\n"
                                                   if pid == 102 else "0::/\n")
    gpu_map = process_map(Nvml(fake), lambda pid: slurm_job_of_pid(pid, proc=tmp_path))
    assert gpu_map() == {"41": [0, 1], "42": [1]}


def test_the_fake_offers_only_functions_real_pynvml_has():
    pynvml = pytest.importorskip("pynvml")
    used = {n.attr for n in ast.walk(ast.parse(inspect.getsource(nvml_mod))) if isinstance(n, ast.Attribute)
            and n.attr.startswith("nvml") and n.attr != "nvml"}
    assert used and all(hasattr(pynvml, name) and hasattr(FakeNvml, name) for name in used)
    assert issubclass(pynvml.NVMLError, Exception)


def test_gpus_map_to_process_jobs_through_cuda_visible_devices(tmp_path):
    fake = FakeNvml()
    for pid, env in ((201, b"CUDA_VISIBLE_DEVICES=2,3\0"), (202, b"CUDA_VISIBLE_DEVICES=GPU-fake-0001\0"),
                     (203, b"PATH=/bin\0")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(env)
    gpu_map = cuda_visible_map(Nvml(fake), {"a": 201, "b": 202, "c": 203, "gone": 999}, proc=tmp_path)
    assert gpu_map() == {"a": [2, 3], "b": [1], "c": []}
