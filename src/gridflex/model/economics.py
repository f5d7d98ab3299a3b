"""Mining economics: what a megawatt-hour is worth to a miner, and its breakeven power price.

Hashprice is the revenue of one TH/s for one day (USD/TH/s/day). A unit of efficiency
e J/TH turns one MWh (3.6e9 J) into 3.6e9 / e TH, i.e. 3.6e9 / (e · 86400) TH/s-days, so

    value [USD/MWh] = hashprice · 3.6e9 / (86400 · e) ≈ 41,667 · hashprice / e

and the unit mines at a profit while the power price is below that value (its breakeven).
An S19 Pro at 29.5 J/TH with hashprice 0.10 breaks even at 141.2 USD/MWh.
"""

from __future__ import annotations

import numpy as np

J_PER_MWH = 3.6e9
S_PER_DAY = 86400.0


def value_usd_per_mwh(hashprice_usd_per_th_day, efficiency_j_per_th, pool_fee: float = 0.0):
    """Mining revenue per MWh consumed, after the pool's fee (a fraction)."""
    if not 0 <= pool_fee < 1:
        raise ValueError(f"pool_fee: {pool_fee} not allowed; allowed: 0 <= pool_fee < 1")
    eff = np.asarray(efficiency_j_per_th, float)
    if np.any(eff <= 0):
        raise ValueError("efficiency_j_per_th must be positive")
    return np.asarray(hashprice_usd_per_th_day, float) * (1 - pool_fee) * J_PER_MWH / (S_PER_DAY * eff)


#: A unit breaks even when the power price equals the value of the energy it mines with.
breakeven_usd_per_mwh = value_usd_per_mwh


def revenue_usd(hashrate_th_s, duration_s, hashprice_usd_per_th_day, pool_fee: float = 0.0):
    """Revenue of hashing at `hashrate_th_s` for `duration_s` seconds."""
    return np.asarray(hashrate_th_s, float) * duration_s / S_PER_DAY * hashprice_usd_per_th_day * (1 - pool_fee)


def energy_cost_usd(power_w, duration_s, price_usd_per_mwh):
    return np.asarray(power_w, float) * duration_s / J_PER_MWH * price_usd_per_mwh

