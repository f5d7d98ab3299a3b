"""scripts/gpu_check.py end to end on a fake NVML whose power follows the real workload
process (running: the A40's recorded draw; stopped: idle), so the closed loop is exercised
here; on a real GPU the lead runs the script itself."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from gridflex.drivers.nvml import Nvml
from tests.fake_nvml import FakeNvml

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ProcessFollowingNvml(FakeNvml):
    """GPU 0 draws power while the workload this test process started runs (not stopped)."""

    def _power_w(self, h):
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                is_workload = b"gridflex-test-workload" in (d / "cmdline").read_bytes()
            except OSError:
                continue
            if is_workload and int(fields[1]) == os.getpid() and fields[0] not in ("T", "Z"):
                return super()._power_w(h)
        return 40.0


def test_closed_loop_holds_power_under_target_by_pausing_and_resumes_after():
    gpu_check = load_script()
    gpu_check.WORKLOAD = "# gridflex-test-workload\nimport time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.01)\n"
    fake = ProcessFollowingNvml()
    nvml = Nvml(gpu_check.ReadOnlyNvml(fake))
    out = gpu_check.closed_loop(nvml, 0, None, seconds=12.0)
    assert out["mean_w_before"] > out["target_w"] > out["mean_w_during"], out
    assert out["share_during_at_or_under_target"] == 1.0, out
    assert out["mean_w_after"] > out["target_w"] and out["resumed_after"], out
    assert out["pause_to_power_drop_s"] is not None and out["pause_to_power_drop_s"] < 1.0
    assert fake.set_calls == []


def test_the_script_refuses_any_nvml_setter():
    gpu_check = load_script()
    guarded = gpu_check.ReadOnlyNvml(FakeNvml())
    with pytest.raises(RuntimeError, match="read-only"):
        _ = guarded.nvmlDeviceSetPowerManagementLimit
    assert guarded.nvmlDeviceGetPowerUsage(guarded.nvmlDeviceGetHandleByIndex(0)) > 0
