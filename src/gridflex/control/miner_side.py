"""The miner fleet as the controller sees it: its driver, the price and hashprice that decide
which units are worth running, and the setpoint policy (steady draw, sponge)."""

from __future__ import annotations

import numpy as np

from gridflex.drivers.base import Telemetry
from gridflex.drivers.miner_base import MinerActions, MinerDriver, MinerTelemetry
from gridflex.model.economics import value_usd_per_mwh
from gridflex.model.fleet import JobFleet
from gridflex.model.miners import MinerFleet, MinerSettings
from gridflex.model.site import Site
from gridflex.plan.base import MinerInput, Plan
from gridflex.signals.prices import Signal


class MinerSide:
    def __init__(
        self,
        fleet: MinerFleet,
        driver: MinerDriver,
        settings: MinerSettings,
        prices: Signal,
        hashprice: Signal,
    ):
        self.fleet, self.driver, self.settings, self.prices = fleet, driver, settings, prices
        self.hashprice = hashprice
        self._qos_by_tier = np.array([settings.dispatch.qos_for_tier(t) for t in range(4)])  # USD per GPU-hour
        self._last: MinerTelemetry | None = None

    def qos_usd_per_gpu_hour(self, jobs: JobFleet) -> np.ndarray:
        """The operator's stated cost of a lost GPU-hour of each job, by its tier."""
        return self._qos_by_tier[jobs.flex_tier]

    def value_usd_per_mwh(self, t_s: float) -> np.ndarray:
        """Mining value of each unit's energy at `t_s` (USD/MWh): its breakeven power price."""
        hp = float(self.hashprice.at(t_s))
        return value_usd_per_mwh(hp, self.fleet.efficiency_j_per_th, self.settings.pool_fee)

    def setpoint_w(self, t_s: float, price_usd_per_mwh: float) -> float:
        d = self.settings.dispatch
        if d.sponge_price_usd_per_mwh is not None and price_usd_per_mwh <= d.sponge_price_usd_per_mwh:
            return float(d.sponge_limit_w)
        return float(d.setpoint_w) if d.mode == "steady" else np.inf

    @property
    def last(self) -> MinerTelemetry | None:
        """The latest reading of the fleet (None before the first)."""
        return self._last

    def read(self) -> MinerTelemetry:
        self._last = self.driver.read()
        return self._last

    def input(self, t_s: float, grid_ceiling_w: float, site: Site, jobs: JobFleet, tel: Telemetry) -> MinerInput:
        """What the planner needs at `t_s`: which units are worth running at the price now, the
        ceilings, and how many site watts a modelled GPU watt is right now."""
        price = float(self.prices.at(t_s))
        value = self.value_usd_per_mwh(t_s)
        want = np.where(value >= price, self.fleet.power_w, 0.0)
        modelled = float(jobs.job_power_w(tel.cap_w, tel.active).sum())
        measured = float(np.sum(tel.job_power_w))
        ratio = measured / modelled if modelled > 0 and measured > 0 else 1.0
        running_w = self._last.target_w if self._last is not None else self.fleet.power_w
        asleep_w = float(self.fleet.sleep_w.sum())  # what the fleet draws even with every unit asleep
        return MinerInput(
            self.fleet, want, value, running_w, grid_ceiling_w - asleep_w, self.setpoint_w(t_s, price) - asleep_w,
            site.pue * ratio, self.qos_usd_per_gpu_hour(jobs),
        )

    def apply(self, plan: Plan) -> None:
        if plan.miner_w is not None:
            self.driver.apply(MinerActions(self.fleet.ids, plan.miner_w))

    def restore(self) -> None:
        self.driver.restore()
