"""The horizon LP on hand-made cases: cheap slots chosen, deadlines, ceilings, tiers, miners."""

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.model.curves import PowerCurve
from gridflex.plan.horizon import HorizonInput, JobClass, MinerBlock, Weights, running_class, solve

SLOT = 900.0  # 15 min
DT_H = SLOT / 3600
CURVE = PowerCurve(workload="train", cap_w=(200.0, 300.0, 400.0), power_w=(200.0, 300.0, 400.0),
                   throughput=(0.62, 0.87, 1.0), paused_w=60.0, idle_w=50.0)


def job(work_slots, gpus=10, release=0.0, deadline=None, tier=2, name="batch"):
    return JobClass(name, CURVE, gpus, work_slots * gpus * DT_H, release, deadline, tier)


def inp(classes, carbon, **kw):
    carbon = np.asarray(carbon, float)
    kw.setdefault("price_usd_per_mwh", np.zeros(len(carbon)))
    kw.setdefault("pool_gpus", 10)
    return HorizonInput(0.0, SLOT, classes, carbon_g_per_kwh=carbon, **kw)


def test_two_slots_the_cheap_one_is_chosen():
    plan = solve(inp([job(1)], [300, 100], power_shaping=False))
    assert plan.work_gpu_h[0] == pytest.approx([0, 10 * DT_H], abs=1e-6)
    assert plan.site_power_w == pytest.approx([10 * 50, 10 * 400], abs=1e-3)  # idle, then full
    assert plan.shortfall_gpu_h[0] == pytest.approx(0)


def test_a_deadline_forces_the_expensive_slots():
    plan = solve(inp([job(2, deadline=2 * SLOT)], [300, 200, 50], power_shaping=False))
    assert plan.work_gpu_h[0] == pytest.approx([10 * DT_H, 10 * DT_H, 0], abs=1e-6)
    loose = solve(inp([job(2, deadline=3 * SLOT)], [300, 200, 50], power_shaping=False))
    assert loose.work_gpu_h[0] == pytest.approx([0, 10 * DT_H, 10 * DT_H], abs=1e-6)


def test_a_ceiling_binds_and_work_spills_into_dearer_slots():
    ceiling = np.array([10 * 50 + 5 * 350, np.inf])  # room for 5 GPUs at full power in slot 0
    plan = solve(inp([job(1)], [100, 300], ceiling_w=ceiling, power_shaping=False))
    assert plan.site_power_w[0] <= ceiling[0] + 1e-6
    assert plan.gpus_running[0] == pytest.approx([5, 5], abs=1e-6)
    assert plan.over_ceiling_w.max() == pytest.approx(0)
    # due after slot 0 under the same limit: half the work cannot be done, and it says so
    tight = solve(inp([job(1, deadline=SLOT)], [100, 300], interconnection_w=ceiling[0], power_shaping=False))
    assert tight.shortfall_gpu_h[0] == pytest.approx(5 * DT_H, abs=1e-6)
    assert tight.site_power_w.max() <= ceiling[0] + 1e-6


def test_flex_zero_runs_at_once_and_full_power():
    plan = solve(inp([job(2, tier=0)], [500, 500, 10, 10]))
    assert plan.gpus_running[0] == pytest.approx([10, 10, 0, 0])
    assert plan.power_w[0, 0] == pytest.approx(4000)


def test_running_flexible_work_is_slowed_only_to_its_tier():
    cls = running_class("run", CURVE, 10, 1, 0.0, 4 * SLOT)  # tier 1: keeps 90 %
    plan = solve(inp([cls], [100, 400, 400, 100]))
    assert plan.work_gpu_h.sum() == pytest.approx(0.9 * 10 * 4 * DT_H, rel=1e-6)
    assert plan.power_w[0, 0] > plan.power_w[0, 1]  # dear slots get less power


def test_power_shaping_saves_energy_against_shift_only():
    carbon = np.full(8, 200.0)
    shaped = solve(inp([job(2, deadline=8 * SLOT)], carbon))
    shifted = solve(inp([job(2, deadline=8 * SLOT)], carbon, power_shaping=False))
    for p in (shaped, shifted):
        assert p.work_gpu_h.sum() == pytest.approx(2 * 10 * DT_H, rel=1e-6)
    assert shaped.site_power_w.sum() < shifted.site_power_w.sum()  # capped GPUs do more work per watt


def test_miners_run_where_power_is_cheaper_than_what_they_earn():
    price = np.array([20.0, 100.0])
    plan = solve(inp([], [0, 0], price_usd_per_mwh=price, pool_gpus=0,
                     miners=[MinerBlock("s19", 1e6, 50.0)], weights=Weights(kg_co2=0, usd=1)))
    assert plan.miner_w[0] == pytest.approx([1e6, 0])


def test_classes_outside_the_horizon_and_bad_input():
    late = job(1, release=10 * SLOT)  # released after the horizon: nothing to plan
    plan = solve(inp([late], [100, 100]))
    assert plan.work_gpu_h.sum() == 0 and plan.shortfall_gpu_h[0] == pytest.approx(10 * DT_H)
    with pytest.raises(InputError, match="one value per slot"):
        solve(inp([job(1)], [1, 2], price_usd_per_mwh=np.zeros(3)))
    with pytest.raises(InputError, match="gpus must be"):
        solve(inp([job(1, gpus=0)], [1, 2]))


def test_slot_inputs_from_a_timeline_and_a_forecast():
    from datetime import UTC, datetime, timedelta

    from gridflex.model.events import GridEvent, Target
    from gridflex.model.scenario import ControlSettings
    from gridflex.plan.horizon import slot_ceilings_w, slot_means
    from gridflex.plan.targets import ResolvedEvent, TargetTimeline
    from gridflex.signals.prices import StepSignal

    start = datetime(2025, 6, 2, 12, tzinfo=UTC)
    ev = GridEvent(id="cut", start=start, end=start + timedelta(hours=1), target=Target(reduction=0.5))
    tl = TargetTimeline.build([ResolvedEvent(ev, 1000.0)], 2000.0, ControlSettings())
    t0 = start.timestamp() - 2 * SLOT
    ceil = slot_ceilings_w(tl, t0, SLOT, 8)
    assert ceil[0] == 2000.0 and ceil[2:6].max() <= 1000.0 and ceil.min() == pytest.approx(500.0)
    sig = StepSignal(np.array([0.0, 1800.0]), np.array([100.0, 300.0]))  # half-hourly values
    assert slot_means(sig, 0.0, SLOT, 3) == pytest.approx([100, 100, 300])
    assert slot_means(sig, 900.0, 1800.0, 1) == pytest.approx([200])  # straddles the step
