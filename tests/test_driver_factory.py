"""Building drivers from config, the dry run, and estimated telemetry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridflex.drivers.base import JobActions
from gridflex.drivers.composite import CompositeDriver
from gridflex.drivers.dry_run import DryRunDriver
from gridflex.drivers.estimate import PowerEstimate
from gridflex.drivers.factory import make_driver
from gridflex.drivers.slurm import SlurmDriver
from gridflex.errors import InputError
from gridflex.model.site import Job, Site
from gridflex.sim.curve_csv import builtin_curves
from tests.fake_nvml import FakeNvml

CURVES = builtin_curves()
WORKER = Path(__file__).parent / "fixtures" / "worker.py"


@pytest.fixture
def pgid():
    p = subprocess.Popen([sys.executable, str(WORKER), os.devnull], start_new_session=True)
    yield p.pid
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


@pytest.mark.parametrize("spec, message", [
    ({"kind": "lsf"}, "driver.kind: 'lsf' is not a driver; allowed: slurm, process, nvml, composite"),
    ({"kind": "slurm", "rules": {"default_flex": 7}}, "driver.rules.default_flex: .*less than or equal to 3"),
    ({"kind": "slurm", "checkpoint_grace": 5}, "driver.checkpoint_grace: Extra inputs are not permitted"),
    ({"kind": "process", "jobs": [{"id": "a", "workload": "pt_mpt_7b_fast", "gpus": 1, "flex_tier": 1}]},
     "driver.jobs.0.pgid: Field required"),
    ({"kind": "composite", "jobs": {"kind": "nvml"}, "power": {"kind": "nvml"}}, "jobs.kind must be slurm or process"),
    ({"kind": "slurm", "dry_run": "yes"}, "driver.dry_run: 'yes' must be true or false"),
    ({"kind": "twin"}, "driver.kind: 'twin' is not a driver; allowed"),
    ({"kind": "nvml", "map": "slurm"}, "driver.map: 'slurm' not possible with no jobs driver; allowed: static"),
    ({"kind": "composite", "jobs": {"kind": "slurm"}, "power": {"map": "cuda_visible"}},
     "driver.power.map: 'cuda_visible' not possible with slurm; allowed: static, slurm, process"),
])
def test_bad_specs_name_the_field_and_what_is_allowed(spec, message):
    with pytest.raises(InputError, match=message):
        make_driver(spec, Site(), CURVES)


def test_builds_each_kind(tmp_path, pgid):
    assert isinstance(make_driver({"kind": "slurm"}, Site(), CURVES), SlurmDriver)
    spec = {"kind": "composite", "dry_run": True,
            "jobs": {"kind": "process", "jobs": [{"id": "a", "pgid": pgid, "workload": "pt_mpt_7b_fast",
                                                 "gpus": 1, "flex_tier": 1}]},
            "power": {"kind": "nvml", "map": "process"}}
    d = make_driver(spec, Site(), CURVES, state_dir=tmp_path, nvml_lib=FakeNvml())
    assert isinstance(d, DryRunDriver) and isinstance(d.inner, CompositeDriver)
    assert d.name == "dry-run:process+nvml"


def test_dry_run_logs_what_it_would_do_and_does_nothing(pgid):
    spec = {"kind": "process", "dry_run": True,
            "jobs": [{"id": "a", "pgid": pgid, "workload": "pt_mpt_7b_fast", "gpus": 1, "flex_tier": 1}]}
    d = make_driver(spec, Site(), CURVES)
    d.discover()
    d.apply(JobActions(("a",), np.array([400.0]), np.zeros(1)))
    d.restore()
    assert list(d.actions) == [f"would stop process group {pgid} (job a)", "would restore everything process changed"]
    stat = Path(f"/proc/{pgid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert stat != "T" and d.read().active[0] == 1.0
    assert "dry run" in d.health().detail


def test_estimated_power_follows_job_state_and_curve():
    jobs = [Job(id="a", workload="pt_mpt_7b_fast", gpus=4, flex_tier=2),
            Job(id="b", workload="infer_llama_8b", gpus=2, flex_tier=0)]
    est = PowerEstimate(jobs, CURVES, Site(pue=1.25, overhead_w=100.0))
    a, b = CURVES["pt_mpt_7b_fast"], CURVES["infer_llama_8b"]
    tel = est.telemetry(0.0, np.array([a.max_cap_w, b.max_cap_w]), np.array([0.0, 1.0]), np.array([True, True]))
    assert tel.estimated
    assert tel.job_power_w.tolist() == pytest.approx([4 * a.paused_w, 2 * b.full_power_w])
    assert tel.site_power_w == pytest.approx(1.25 * tel.it_power_w + 100.0)
    assert tel.throughput.tolist() == [0.0, 1.0]
    idle = est.telemetry(0.0, np.array([a.max_cap_w, b.max_cap_w]), np.ones(2), np.array([False, True]))
    assert idle.job_power_w[0] == pytest.approx(4 * a.idle_w)
    mixed = est.telemetry(0.0, np.array([a.max_cap_w, b.max_cap_w]), np.ones(2), np.array([True, True]),
                          measured_w=np.array([1234.0, np.nan]))
    assert mixed.job_power_w[0] == 1234.0 and mixed.estimated  # b is still modelled
