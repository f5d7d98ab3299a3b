"""Bitcoin miner fleets: ASIC models, per-unit power modes, restart latency, a fleet ramp limit.

A unit gridflex controls is in one of three modes: full (its nameplate power), reduced (a power
target between `min_power_fraction` of nameplate and nameplate, only where the firmware supports
one) or sleep (hashing stopped, control board and fans on: `sleep_w`). A unit that is off (0 W,
breaker open) is outside gridflex's control: leave it out of the fleet. Hashrate is taken
proportional to power at reduced targets, a slightly pessimistic reading of what underclocking
firmware delivers (it usually gains efficiency).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class MinerMode(str, Enum):
    full = "full"
    reduced = "reduced"
    sleep = "sleep"


class AsicModel(BaseModel):
    """Nameplate figures of one SHA-256 ASIC model and how fast it reacts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hashrate_th_s: float = Field(gt=0)
    power_w: float = Field(gt=0, description="wall power at nameplate hashrate")
    sleep_w: float = Field(15.0, ge=0, description="wall power asleep (control board, fans)")
    sleep_s: float = Field(5.0, ge=0, description="seconds from a stop command to sleeping")
    restart_s: float = Field(60.0, ge=0, description="seconds from a resume command to hashing")
    power_target_s: float = Field(5.0, ge=0, description="seconds for a new power target to take effect")

    @property
    def efficiency_j_per_th(self) -> float:
        return self.power_w / self.hashrate_th_s


class MinerGroup(BaseModel):
    """`count` identical units of one model behind the site meter; live, the units are `hosts`
    (addresses pyasic reaches them at), and their ids are the hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="prefix of the unit ids")
    model: str = Field(min_length=1, description="a built-in model name or one defined under 'models'")
    count: int | None = Field(None, gt=0, description="how many units (default: one per host)")
    hosts: tuple[str, ...] = Field((), description="the units' addresses, for `gridflex serve` (pyasic)")
    min_power_fraction: float | None = Field(
        None, gt=0, lt=1, description="lowest power target the firmware accepts (None: on/off only)"
    )

    @model_validator(mode="after")
    def _count(self) -> MinerGroup:
        if self.count is None and not self.hosts:
            raise ValueError(f"group {self.id!r}: give count (simulation) or hosts (live miners)")
        if self.count is not None and self.hosts and self.count != len(self.hosts):
            raise ValueError(f"group {self.id!r}: count {self.count} but {len(self.hosts)} hosts")
        return self

    @property
    def units(self) -> int:
        return self.count if self.count is not None else len(self.hosts)

    @property
    def unit_ids(self) -> tuple[str, ...]:
        return self.hosts or tuple(f"{self.id}-{k:04d}" for k in range(self.units))


@cache
def builtin_asic_models() -> Mapping[str, AsicModel]:
    """Nameplate table bundled from the asics-tools list (first, top-bin row of each model)."""
    text = resources.files("gridflex.data").joinpath("asic_miners.csv").read_text()
    return {
        r["model"]: AsicModel(hashrate_th_s=float(r["hashrate_th_s"]), power_w=float(r["power_w"]))
        for r in csv.DictReader(text.splitlines())
    }


def resolve_models(extra: Mapping[str, AsicModel], groups: Sequence[MinerGroup]) -> dict[str, AsicModel]:
    """The models the groups use: the site's own definitions first, then the built-in table."""
    table = {**builtin_asic_models(), **extra}
    out = {}
    for i, g in enumerate(groups):
        if g.model not in table:
            raise ValueError(
                f"groups.{i}.model: unknown ASIC model {g.model!r}; define it under 'models' or use one of:"
                f" {', '.join(sorted(table))}"
            )
        out[g.model] = table[g.model]
    return out


@dataclass(frozen=True, eq=False)
class MinerFleet:
    """Per-unit arrays of a fleet, one row per miner, so dispatch works on the whole fleet at once."""

    ids: tuple[str, ...]
    group: np.ndarray  # [N] index into `groups`
    groups: tuple[MinerGroup, ...]
    models: tuple[AsicModel, ...]  # per group
    hashrate_th_s: np.ndarray  # [N] nameplate
    power_w: np.ndarray  # [N] nameplate
    min_power_w: np.ndarray  # [N] lowest power target (= power_w where the firmware has none)
    sleep_w: np.ndarray  # [N]
    sleep_s: np.ndarray
    restart_s: np.ndarray
    power_target_s: np.ndarray

    @classmethod
    def build(cls, groups: Sequence[MinerGroup], models: Mapping[str, AsicModel]) -> MinerFleet:
        per_group = [models[g.model] for g in groups]
        idx = np.repeat(np.arange(len(groups)), [g.units for g in groups])

        def col(values: Sequence[float]) -> np.ndarray:
            return np.asarray(values, float)[idx]

        power = col([m.power_w for m in per_group])
        frac = col([g.min_power_fraction or 1.0 for g in groups])
        return cls(
            ids=tuple(i for g in groups for i in g.unit_ids),
            group=idx,
            groups=tuple(groups),
            models=tuple(per_group),
            hashrate_th_s=col([m.hashrate_th_s for m in per_group]),
            power_w=power,
            min_power_w=power * frac,
            sleep_w=col([m.sleep_w for m in per_group]),
            sleep_s=col([m.sleep_s for m in per_group]),
            restart_s=col([m.restart_s for m in per_group]),
            power_target_s=col([m.power_target_s for m in per_group]),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def efficiency_j_per_th(self) -> np.ndarray:
        return self.power_w / self.hashrate_th_s

    @property
    def has_power_target(self) -> np.ndarray:
        return self.min_power_w < self.power_w

    def hashrate_at(self, target_w: np.ndarray) -> np.ndarray:
        """Hashrate [TH/s] of each unit hashing at power target `target_w` (0: asleep)."""
        return np.where(target_w > 0, self.hashrate_th_s * np.minimum(target_w / self.power_w, 1.0), 0.0)

    def draw_w(self, target_w: np.ndarray) -> np.ndarray:
        """Wall power of each unit at a target (0 means asleep, drawing `sleep_w`)."""
        return np.where(target_w > 0, target_w, self.sleep_w)

    def mode(self, target_w: np.ndarray) -> list[MinerMode]:
        return [
            MinerMode.sleep if t <= 0 else MinerMode.full if t >= p - 1e-6 else MinerMode.reduced
            for t, p in zip(np.asarray(target_w).tolist(), self.power_w.tolist())
        ]

    def check_targets(self, target_w: np.ndarray) -> None:
        """Raise ValueError naming the first unit whose target its firmware cannot take."""
        t = np.asarray(target_w, float)
        if t.shape != (len(self),):
            raise ValueError(f"miner targets: expected {len(self)} values, got shape {t.shape}")
        bad = ~np.isfinite(t) | (t < 0) | (t > self.power_w + 1e-6) | ((t > 0) & (t < self.min_power_w - 1e-6))
        for i in np.flatnonzero(bad)[:1]:
            raise ValueError(
                f"miner {self.ids[i]!r}: target_w {t[i]} not allowed; allowed: 0 (sleep) or"
                f" {self.min_power_w[i]:.0f}..{self.power_w[i]:.0f} W"
            )


class DispatchSettings(BaseModel):
    """How the miners are run: what they fill, and what slowing a GPU job is stated to cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = Field(
        "steady",
        pattern="^(steady|economic)$",
        description="steady: hold the site near setpoint_w with miners; economic: mine whenever profitable",
    )
    setpoint_w: float | None = Field(None, gt=0, description="site draw to hold in steady mode")
    sponge_price_usd_per_mwh: float | None = Field(
        None, description="at or below this price, absorb up to sponge_limit_w (None: no sponge)"
    )
    sponge_limit_w: float | None = Field(None, gt=0)
    qos_usd_per_gpu_hour: dict[int, float] = Field(
        default_factory=lambda: {1: 4.0, 2: 2.0, 3: 1.0},
        description="stated cost of one GPU-hour of lost throughput, by flex tier 1-3 (tier 0 is never slowed)",
    )

    @model_validator(mode="after")
    def _check(self) -> DispatchSettings:
        if self.mode == "steady" and self.setpoint_w is None:
            raise ValueError("dispatch.setpoint_w: required in steady mode (site watts to hold)")
        if (self.sponge_price_usd_per_mwh is None) != (self.sponge_limit_w is None):
            raise ValueError("dispatch: give both sponge_price_usd_per_mwh and sponge_limit_w, or neither")
        bad = {t: c for t, c in self.qos_usd_per_gpu_hour.items() if t not in (1, 2, 3) or c < 0}
        if bad:
            raise ValueError(
                f"dispatch.qos_usd_per_gpu_hour: {bad} not allowed; allowed: tiers 1, 2, 3 with costs >= 0"
            )
        return self

    def qos_for_tier(self, tier: int) -> float:
        return self.qos_usd_per_gpu_hour.get(tier, 0.0)


class MinerSettings(BaseModel):
    """The miner fleet of a site and its economics (the scenario's `miners` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, AsicModel] = Field(default_factory=dict, description="models beyond the built-in table")
    groups: tuple[MinerGroup, ...] = Field(min_length=1)
    ramp_w_per_s: float = Field(50_000.0, gt=0, description="fleet ramp limit: most watts added per second")
    hashprice_usd_per_th_day: float | None = Field(None, gt=0, description="constant hashprice")
    hashprice_series: str | None = Field(
        None, description="CSV of daily hashprice (Date, hashprice_usd_per_th_day), e.g. btc-network-daily"
    )
    pool_fee: float = Field(0.0, ge=0, lt=1)
    prices: str = Field(description="built-in price series or CSV path (interval_start_utc, <price_column>)")
    price_column: str = "rt_usd_per_mwh"
    dispatch: DispatchSettings

    @model_validator(mode="after")
    def _check(self) -> MinerSettings:
        resolve_models(self.models, self.groups)
        if (self.hashprice_usd_per_th_day is None) == (self.hashprice_series is None):
            raise ValueError("give exactly one of hashprice_usd_per_th_day (a number) or hashprice_series (a CSV path)")
        ids = [g.id for g in self.groups]
        if len(set(ids)) != len(ids):
            raise ValueError(f"groups: ids must be unique, got {ids}")
        return self

    def build_fleet(self) -> MinerFleet:
        return MinerFleet.build(self.groups, resolve_models(self.models, self.groups))
