"""A fake NVML at the library boundary: the pynvml functions gridflex calls, over simulated
A40 GPUs whose power draw at each power limit is the NVML-measured average of the Zeus
sweep (fixtures/zeus_a40_resnet50.csv). Limits are in mW and energy in mJ, as in NVML;
out-of-range limits raise NVMLError(NVML_ERROR_INVALID_ARGUMENT) as the real library does."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROWS = list(csv.DictReader((Path(__file__).parent / "fixtures" / "zeus_a40_resnet50.csv").open()))
LIMIT_W = np.array([float(r["power_limit"]) for r in ROWS])
POWER_W = np.array([float(r["average_power"]) for r in ROWS])
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NO_PERMISSION = 4


class NVMLError(Exception):
    def __init__(self, value: int):
        self.value = value
        super().__init__({2: "Invalid Argument", 4: "Insufficient Permissions"}.get(value, f"error {value}"))


@dataclass
class Proc:
    pid: int
    usedGpuMemory: int = 0


@dataclass
class Gpu:
    index: int
    limit_mw: int = 300_000
    busy: bool = True
    pids: list[int] = field(default_factory=list)
    energy_mj: float = 0.0
    t: float = field(default_factory=time.monotonic)


class FakeNvml:
    """Module-like: pass an instance where `pynvml` is expected."""

    NVMLError = NVMLError
    MIN_MW, MAX_MW, DEFAULT_MW = 100_000, 300_000, 300_000

    def __init__(self, n: int = 4, writable: bool = True):
        self.gpus = [Gpu(i) for i in range(n)]
        self.writable = writable
        self.set_calls: list[tuple[int, int]] = []
        self.initialised = False

    def nvmlInit(self):
        self.initialised = True

    def nvmlShutdown(self):
        self.initialised = False

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[i]

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-fake-{h.index:04d}"

    def nvmlDeviceGetName(self, h):
        return "NVIDIA A40"

    def nvmlDeviceGetPowerUsage(self, h):
        self._tick(h)
        return int(self._power_w(h) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._tick(h)
        return int(h.energy_mj)

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return h.limit_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return self.DEFAULT_MW

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        return [self.MIN_MW, self.MAX_MW]

    def nvmlDeviceSetPowerManagementLimit(self, h, limit_mw):
        if not self.writable:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        if not self.MIN_MW <= limit_mw <= self.MAX_MW:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self._tick(h)
        h.limit_mw = int(limit_mw)
        self.set_calls.append((h.index, int(limit_mw)))

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [Proc(p) for p in h.pids]

    def _power_w(self, h: Gpu) -> float:
        return float(np.interp(h.limit_mw / 1000, LIMIT_W, POWER_W)) if h.busy else 30.0

    def _tick(self, h: Gpu) -> None:
        now = time.monotonic()
        h.energy_mj += self._power_w(h) * (now - h.t) * 1000
        h.t = now
