"""Economic curtailment as an explicit rule: shed a unit of work while the energy price is above
what that work is worth per MWh, and shed everything a price-curtailment program covers while the
price is above its strike.

Value of the work, per MWh drawn at the meter:
- a miner: its breakeven (hashprice over efficiency, `model.economics.breakeven_usd_per_mwh`);
- GPU work of a flex tier: the operator's stated USD per GPU-hour over the site power of one GPU,
  `usd_per_gpu_hour / (gpu_power_w · pue / 1e6)`; Flex 0 is never shed (infinite value).
The planner's merit order (`plan/merit.py`) sheds in the same order; this module makes the rule
and its threshold visible, per unit and per price interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflex.errors import InputError


@dataclass(frozen=True)
class Unit:
    name: str
    value_usd_per_mwh: float  # inf: never shed for price
    basis: str  # how the value was set, in words


def gpu_tier_units(usd_per_gpu_hour: dict[int, float], gpu_power_w: float, pue: float = 1.0) -> list[Unit]:
    """One unit per flex tier: Flex 0 never shed, tiers 1-3 at the stated USD per GPU-hour."""
    if gpu_power_w <= 0 or pue < 1:
        raise InputError(f"gpu_power_w ({gpu_power_w}) must be > 0 and pue ({pue}) >= 1")
    mw = gpu_power_w * pue / 1e6
    units = [Unit("gpu flex 0", float("inf"), "Flex 0 is never slowed")]
    for tier in sorted(usd_per_gpu_hour):
        if tier not in (1, 2, 3) or usd_per_gpu_hour[tier] < 0:
            raise InputError(f"usd_per_gpu_hour: tier {tier} -> {usd_per_gpu_hour[tier]}; allowed: tiers 1..3, >= 0")
        v = usd_per_gpu_hour[tier]
        units.append(Unit(f"gpu flex {tier}", v / mw,
                          f"{v:g} USD/GPU-h over {gpu_power_w:g} W × PUE {pue:g} = {v / mw:,.0f} USD/MWh"))
    return units


def miner_unit(name: str, breakeven_usd_per_mwh: float) -> Unit:
    return Unit(name, float(breakeven_usd_per_mwh), f"mining breakeven {breakeven_usd_per_mwh:,.1f} USD/MWh")


def curtail_mask(price_usd_per_mwh: np.ndarray, units: list[Unit], strike_usd_per_mwh: float | None = None,
                 program_covers: frozenset[str] = frozenset()) -> np.ndarray:
    """[T, U] True where unit u is shed in price interval t: the price is above its value, or above
    the strike of a price-curtailment program covering it (`program_covers`: unit names)."""
    price = np.asarray(price_usd_per_mwh, float)[:, None]
    value = np.array([u.value_usd_per_mwh for u in units])[None, :]
    shed = price > value
    if strike_usd_per_mwh is not None:
        covered = np.array([u.name in program_covers for u in units])[None, :]
        shed |= covered & (price > strike_usd_per_mwh)
    return shed


def rule_table(price_usd_per_mwh: np.ndarray, units: list[Unit], interval_s: float,
               strike_usd_per_mwh: float | None = None, program_covers: frozenset[str] = frozenset()) -> list[dict]:
    """The rule as shown to the operator: per unit, its value and basis, and the hours it would be shed."""
    shed = curtail_mask(price_usd_per_mwh, units, strike_usd_per_mwh, program_covers)
    return [{"unit": u.name, "value_usd_per_mwh": u.value_usd_per_mwh, "basis": u.basis,
             "shed_hours": float(shed[:, i].sum() * interval_s / 3600),
             "rule": (f"shed while price > {u.value_usd_per_mwh:,.0f} USD/MWh" if np.isfinite(u.value_usd_per_mwh)
                      else "never shed for price")
                     + (f" or > strike {strike_usd_per_mwh:,.0f}" if u.name in program_covers else "")}
            for i, u in enumerate(units)]
