"""Merit-order dispatch of a hybrid site: miners and GPU jobs ranked by the cost of each MW shed.

Every source of flexibility gets a cost in USD per MWh it does not draw:
- a miner: the mining value of the energy, hashprice / efficiency (USD/MWh), so the least
  efficient units go first;
- a GPU job: its tier's stated QoS cost (USD per GPU-hour of lost throughput) times the
  GPU-hours lost per MWh on each segment of its power-throughput hull.
The planner asks for the site's demand (GPUs uncapped, every economic miner on) and, to meet
the grid's ceiling, sheds the cheapest MWh first; then, in steady-draw mode, miners alone leave
the room between the AI load and the setpoint (GPU jobs are never slowed for the setpoint).
With realistic figures miners cost tens of USD/MWh and GPU jobs thousands, so miners shed first
and fill the AI load's headroom in steady-draw mode; GPU jobs are slowed
only when the miners are not enough or a tier's stated cost is lower. GPU floors (flex budgets)
hold as in the optimizing planner; when even they cannot meet a grid target, the GPU jobs are
cut below their floors exactly as `OptimalPlanner` does.
"""

from __future__ import annotations

import numpy as np

from gridflex.plan.base import MinerInput, Plan, PlanInput, level_to_actions
from gridflex.plan.optimal import OptimalPlanner, hull_segments, job_value, shed_greedy, take_cheapest

W_PER_MW = 1e6


class MeritPlanner:
    """The `optimal` planner: least cost per MW shed across miners and GPU jobs; on a site
    without miners, exactly `OptimalPlanner` (the flex-weighted optimum)."""

    name = "optimal"

    def __init__(self) -> None:
        self._jobs_only = OptimalPlanner()

    def plan(self, inp: PlanInput) -> Plan:
        m = inp.miners
        if m is None:
            return self._jobs_only.plan(inp)
        fleet, scale = inp.fleet, m.gpu_site_w_per_it_w
        want_g = group_totals(m, m.want_w)
        value_g = group_totals(m, m.value_usd_per_mwh) / np.maximum(np.bincount(m.fleet.group), 1)
        level, kept_g, short_w = fleet.full_w.copy(), want_g, 0.0
        gpu_full_w = inp.site.overhead_w + Plan.unconstrained(inp).it_power_w * scale
        need_w = gpu_full_w + float(want_g.sum()) - m.grid_ceiling_w
        broken: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        if need_w > 0:
            # Grid target: GPU hull segments within the floors and miner groups, cheapest MWh first,
            # in site watts and USD/h per site watt.
            usd_value = m.qos_usd_per_gpu_hour * fleet.gpus  # USD/h of a whole job's full throughput
            floor_w = fleet.level_at_throughput(inp.floor_throughput)
            gpu_cost, gpu_width = hull_segments(fleet, usd_value, floor_w, fleet.full_w)
            cost = np.concatenate([gpu_cost.ravel() / scale, value_g / W_PER_MW])
            width = np.concatenate([gpu_width.ravel() * scale, want_g])
            taken, short_w = take_cheapest(cost, width, need_w)
            level -= taken[: gpu_width.size].reshape(gpu_width.shape).sum(axis=1) / scale / fleet.gpus
            kept_g = want_g - taken[gpu_width.size :]
            if short_w > 0 and inp.site.priority == "grid":
                value = job_value(fleet, inp.window_s)
                level, left_it_w = shed_greedy(fleet, value, fleet.hull_w[:, 0], level, short_w / scale)
                short_w = left_it_w * scale
                broken = tuple(np.asarray(fleet.ids)[level < floor_w - 1e-6])
                if broken:
                    notes = (f"miners and flex tiers cannot meet the target: slowing {', '.join(broken)} below tier",)
        cap, active = level_to_actions(fleet, level)
        it_w = float(fleet.job_power_w(cap, active).sum())
        # Steady draw: only miners fill the room between the GPUs and the setpoint.
        room_w = m.setpoint_w - inp.site.overhead_w - it_w * scale
        if room_w < kept_g.sum():
            kept_g = hold_setpoint(m, kept_g, value_g, max(room_w, 0.0))
        return Plan(cap, active, it_w, max(0.0, short_w / scale), broken, notes, allocate(m, kept_g))


def hold_setpoint(m: MinerInput, kept_g: np.ndarray, value_g: np.ndarray, room_w: float) -> np.ndarray:
    """Group totals within `kept_g` adding up to about `room_w`. Units with a power target follow
    the AI load (seconds, no restarts); on/off units keep their number and change only when the
    power-target units would leave their range, the cheapest shed first and the most valuable
    restarted first."""
    f = m.fleet
    unit_w = np.array([mod.power_w for mod in f.models])
    flexible = np.array([g.min_power_fraction is not None for g in f.groups])
    on_now = np.bincount(f.group, weights=(m.running_w > 0) & (m.want_w > 0), minlength=len(f.groups))
    whole = np.where(flexible, 0.0, np.minimum(on_now, np.floor(kept_g / unit_w + 1e-9)) * unit_w)
    flex_max = float(kept_g[flexible].sum())
    min_w = np.array([mod.power_w * (g.min_power_fraction or 1.0) for mod, g in zip(f.models, f.groups)])
    flex_low = float(np.sum((np.floor(kept_g / unit_w + 1e-9) * min_w)[flexible]))  # all flexible units at minimum
    x = room_w - whole.sum()  # what the power-target units must give
    for g in np.argsort(-value_g):  # restart on/off units, most valuable first, if the rest cannot fill
        if not flexible[g] and x > flex_max:
            add = min(np.ceil((x - flex_max) / unit_w[g]), np.floor((kept_g[g] - whole[g]) / unit_w[g] + 1e-9))
            whole[g] += add * unit_w[g]
            x -= add * unit_w[g]
    for g in np.argsort(value_g):  # shed on/off units, cheapest first, if the rest would run too low
        if not flexible[g] and x < flex_low:
            cut = min(np.ceil((flex_low - x) / unit_w[g]), whole[g] / unit_w[g])
            whole[g] -= cut * unit_w[g]
            x += cut * unit_w[g]
    flex_kept = np.where(flexible, kept_g, 0.0)
    shed = take_cheapest(value_g, flex_kept, flex_kept.sum() - np.clip(x, 0.0, flex_max))[0]
    return np.where(flexible, flex_kept - shed, whole)


def group_totals(m: MinerInput, per_unit: np.ndarray) -> np.ndarray:
    return np.bincount(m.fleet.group, weights=per_unit, minlength=len(m.fleet.groups))


def allocate(m: MinerInput, kept_w: np.ndarray) -> np.ndarray:
    """Per-unit targets that give each group about `kept_w` watts (never more) from its units that
    want to run. Units with a power target all hash at one reduced power, as many as can stay at
    or above their minimum, so the fleet can follow the AI load up and down without restarts;
    on/off units run at nameplate. Units already running are chosen first."""
    f = m.fleet
    out = np.zeros(len(f))
    for g in range(len(f.groups)):
        units = np.flatnonzero((f.group == g) & (m.want_w > 0))
        if len(units) == 0 or kept_w[g] <= 0:
            continue
        units = units[np.argsort(m.running_w[units] <= 0, kind="stable")]
        full_w, min_w = f.power_w[units[0]], f.min_power_w[units[0]]
        n = min(len(units), int(kept_w[g] // min_w + 1e-9))
        if n:
            out[units[:n]] = min(full_w, kept_w[g] / n) if min_w < full_w else full_w
    return out
