"""The hybrid site's part of a run's summary: mining account and how steady the site draw was.

- site_draw_steadiness: fraction of whole minutes, outside grid events and outside minutes in
  which any miner model is uneconomic at the power price, whose mean site draw is within
  `STEADY_BAND` of the steady-draw setpoint (None when the fleet is not in steady mode);
- ai_load_swing: (max − min) / max of the AI load's (GPU site power's) minute means over the same
  minutes: how much the miners had to absorb;
- miners: energy, revenue (hashrate × hashprice), energy cost at the real-time price, hashrate
  hours delivered and lost (against every economic unit hashing at nameplate), the part lost
  during events, and the seconds a GPU job was slowed while a miner was still planned to mine.
"""

from __future__ import annotations

import numpy as np

from gridflex.model.economics import energy_cost_usd, revenue_usd
from gridflex.sim.run import RunResult

STEADY_BAND = 0.02
MINUTE_S = 60.0


def hybrid_summary(result: RunResult) -> dict:
    m = result.miners
    if m is None:
        return {}
    step = result.scenario.step_s
    t = result.step_times_s
    price = m.side.prices.at(t - step)  # the price in force during each step
    value = np.array([m.side.value_usd_per_mwh(float(x)) for x in _minute_starts(t, step)])  # [minutes, N]
    hashprice = m.side.hashprice.at(t - step)
    in_event = np.zeros(len(t), bool)
    for ev in result.timeline.events:
        in_event |= (t > ev.start_s) & (t <= ev.end_s)
    per = int(round(MINUTE_S / step))
    n_min = len(t) // per
    economic_units = value[:n_min] >= _minute(price, per)[:, None]  # [minutes, N]
    potential_th = (economic_units * m.fleet.hashrate_th_s).sum(axis=1)  # per minute
    lost_th = np.clip(potential_th - _minute(m.hashrate_th_s, per), 0, None)
    event_min = _minute(in_event.astype(float), per) > 0
    return {
        "site_draw_steadiness": _steadiness(result, price, economic_units.all(axis=1), event_min, per),
        "ai_load_swing": _swing(m.gpu_site_w, economic_units.all(axis=1) & ~event_min, per),
        "miners": {
            "units": len(m.fleet),
            "nameplate_w": _r(m.fleet.power_w.sum()),
            "energy_mwh": _r(m.power_w.sum() * step / 3.6e9),
            "revenue_usd": _r(revenue_usd(m.hashrate_th_s, step, hashprice, m.settings.pool_fee).sum()),
            "energy_cost_usd": _r(energy_cost_usd(m.power_w, step, price).sum()),
            "site_energy_cost_usd": _r(energy_cost_usd(result.site_power_w, step, price).sum()),
            "hashrate_th_hours": _r(m.hashrate_th_s.sum() * step / 3600),
            "hashrate_th_hours_lost": _r(lost_th.sum() * MINUTE_S / 3600),
            "hashrate_th_hours_lost_in_events": _r(lost_th[event_min].sum() * MINUTE_S / 3600),
            "breakeven_usd_per_mwh": {
                g.model: _r(m.side.value_usd_per_mwh(float(t[0]))[np.flatnonzero(m.fleet.group == i)[0]])
                for i, g in enumerate(m.fleet.groups)
            },
            "gpu_slowed_with_miners_on_s": _r(_gpu_slowed_with_miners_on_s(result)),
        },
    }


def _steadiness(result: RunResult, price, all_economic, event_min, per) -> float | None:
    m = result.miners
    if m.settings.dispatch.mode != "steady":
        return None
    starts = _minute_starts(result.step_times_s, result.scenario.step_s)[: len(all_economic)]
    setpoint = np.array([m.side.setpoint_w(float(s), float(p)) for s, p in zip(starts, _minute(price, per))])
    site = _minute(result.site_power_w, per)
    counted = all_economic & ~event_min
    if not counted.any():
        return None
    return _r(np.mean(np.abs(site[counted] - setpoint[counted]) <= STEADY_BAND * setpoint[counted]))


def _swing(power_w: np.ndarray, counted: np.ndarray, per: int) -> float | None:
    p = _minute(power_w, per)[counted]
    return _r((p.max() - p.min()) / p.max()) if len(p) else None


def _gpu_slowed_with_miners_on_s(result: RunResult) -> float:
    """Seconds in which the plan slowed some GPU job while the miners drew power."""
    tr = result.trace
    miner_w = tr.series("miner_w")
    slowed = (tr.series("jobs_slowed") > 0) & (np.nan_to_num(miner_w) > 0)
    return float(slowed.sum() * result.scenario.control.interval_s)


def _minute(x: np.ndarray, per: int) -> np.ndarray:
    n = len(x) // per
    return np.asarray(x, float)[: n * per].reshape(n, per).mean(axis=1)


def _minute_starts(t: np.ndarray, step_s: float) -> np.ndarray:
    per = int(round(MINUTE_S / step_s))
    return t[::per] - step_s


def _r(v) -> float | None:
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None
