"""The miner half of a hybrid-site run: the simulated fleet, its controller side and its record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridflex.control.miner_side import MinerSide
from gridflex.drivers.miners_twin import MinerTwinDriver
from gridflex.model.miners import MinerFleet, MinerSettings
from gridflex.signals.prices import ConstantSignal, Signal, load_hashprice, load_prices


@dataclass
class MinerRun:
    """What the miners did, step by step (same steps as the site trace)."""

    fleet: MinerFleet
    settings: MinerSettings
    side: MinerSide
    power_w: np.ndarray  # fleet power per step
    hashrate_th_s: np.ndarray  # fleet hashrate per step
    gpu_site_w: np.ndarray  # the AI load alone (GPU site power) per step


@dataclass
class HybridPlant:
    side: MinerSide
    twin: MinerTwinDriver

    def result(self, gpu_site_w: np.ndarray) -> MinerRun:
        return MinerRun(
            self.side.fleet, self.side.settings, self.side, self.twin.power_trace(), self.twin.hashrate_trace(),
            gpu_site_w,
        )


def build_hybrid(
    settings: MinerSettings, start_s: float, step_s: float, base_dir: Path | None,
    prices: Signal | None = None,
) -> HybridPlant:
    """The miner twin (all units mining at nameplate at the start) and its controller side."""
    fleet = settings.build_fleet()
    twin = MinerTwinDriver(fleet, start_s, step_s, settings.ramp_w_per_s)
    prices = prices or load_prices(settings.prices, settings.price_column, base_dir)
    return HybridPlant(MinerSide(fleet, twin, settings, prices, hashprice_signal(settings, base_dir)), twin)


def hashprice_signal(settings: MinerSettings, base_dir: Path | None) -> Signal:
    if settings.hashprice_series is None:
        return ConstantSignal(settings.hashprice_usd_per_th_day)
    return load_hashprice(Path(settings.hashprice_series) if base_dir is None else base_dir / settings.hashprice_series)
