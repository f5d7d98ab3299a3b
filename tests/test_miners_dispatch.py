"""Merit-order dispatch: miners and GPU jobs ranked by the cost of a MW shed; steady draw; sponge."""

import numpy as np
import pytest

from gridflex.control.miner_side import MinerSide
from gridflex.drivers.base import Telemetry
from gridflex.drivers.miners_twin import MinerTwinDriver
from gridflex.model.fleet import JobFleet
from gridflex.model.miners import MinerSettings
from gridflex.model.site import Job, Site
from gridflex.plan.base import MinerInput, PlanInput
from gridflex.plan.merit import MeritPlanner
from gridflex.plan.optimal import hull_segments
from gridflex.plan.targets import TargetTimeline
from gridflex.signals.prices import ConstantSignal
from gridflex.sim.curve_csv import builtin_curves

SITE = Site(pue=1.0)


def jobs_fleet() -> JobFleet:
    jobs = [Job(id="train", workload="pt_mpt_7b_fast", gpus=100, flex_tier=3),
            Job(id="chat", workload="infer_llama_8b_48g", gpus=100, flex_tier=1)]
    return JobFleet.build(jobs, builtin_curves())


def miner_settings(**dispatch) -> MinerSettings:
    return MinerSettings.model_validate({
        "groups": [{"id": "xp", "model": "bitmain antminer s19 xp", "count": 10, "min_power_fraction": 0.5},
                   {"id": "s9", "model": "bitmain antminer s9", "count": 10}],
        "hashprice_usd_per_th_day": 0.05,
        "prices": "ercot-hb-south-2024-08-20",
        "dispatch": {"mode": "economic"} | dispatch,
    })


def plan(jobs, settings, grid_ceiling_w, setpoint_w=np.inf, price=20.0, running_w=None):
    f = settings.build_fleet()
    side = MinerSide(f, MinerTwinDriver(f, 0.0), settings, ConstantSignal(price), ConstantSignal(0.05))
    value = side.value_usd_per_mwh(0.0)
    m = MinerInput(
        f, np.where(value >= price, f.power_w, 0.0), value, f.power_w if running_w is None else running_w,
        grid_ceiling_w, setpoint_w, 1.0, side.qos_usd_per_gpu_hour(jobs),
    )
    inp = PlanInput(0.0, jobs, SITE, TargetTimeline(), np.inf,
                    np.zeros(len(jobs)), np.full(len(jobs), 86400.0), m)
    return MeritPlanner().plan(inp), f


def gpu_full_w(jobs):
    return float((jobs.gpus * jobs.full_w).sum())


def test_miners_shed_first_least_efficient_first():
    jobs, s = jobs_fleet(), miner_settings()
    miners_w = 10 * 3010 + 10 * 1323
    p, f = plan(jobs, s, gpu_full_w(jobs) + miners_w - 10_000)
    np.testing.assert_allclose(p.cap_w, jobs.max_cap_w)  # no GPU slowed
    assert p.miner_w[f.group == 0].sum() == pytest.approx(30_100)  # S19 XP (83 USD/MWh) untouched
    assert p.miner_w[f.group == 1].sum() == pytest.approx(1323 * 2)  # S9 (18 USD/MWh) shed, whole units


def test_gpus_follow_only_when_miners_are_not_enough():
    jobs, s = jobs_fleet(), miner_settings()
    p, _ = plan(jobs, s, gpu_full_w(jobs) - 5_000)
    assert p.miner_w.sum() == 0
    assert p.it_power_w <= gpu_full_w(jobs) - 5_000 + 1
    assert p.cap_w[0] < jobs.max_cap_w[0] and p.cap_w[1] == jobs.max_cap_w[1]  # tier 3 ($1/GPU-h) before tier 1 ($4)


def test_a_gpu_tier_cheaper_than_mining_is_slowed_first():
    jobs = jobs_fleet()
    s = miner_settings(qos_usd_per_gpu_hour={1: 4.0, 2: 2.0, 3: 0.00001})
    p, _ = plan(jobs, s, gpu_full_w(jobs) + 43_330 - 5_000)
    assert p.cap_w[0] < jobs.max_cap_w[0]
    assert p.miner_w.sum() == pytest.approx(43_330)


def test_cost_figures_make_every_miner_cheaper_than_any_gpu_segment():
    jobs, s = jobs_fleet(), miner_settings()
    usd = np.array([1.0, 4.0]) * jobs.gpus
    cost, width = hull_segments(jobs, usd, jobs.hull_w[:, 0], jobs.full_w)
    gpu_usd_per_mwh = cost[width > 0] * 1e6
    side = MinerSide(s.build_fleet(), None, s, ConstantSignal(0), ConstantSignal(0.05))
    miner_usd_per_mwh = side.value_usd_per_mwh(0)
    assert gpu_usd_per_mwh.min() > 10 * miner_usd_per_mwh.max()  # ~1,000+ vs ~80 USD/MWh


def test_steady_draw_fills_the_headroom_and_never_slows_gpus():
    jobs, s = jobs_fleet(), miner_settings(mode="steady", setpoint_w=80_000.0)
    p, f = plan(jobs, s, 1e9, setpoint_w=80_000.0)
    gpu = gpu_full_w(jobs)
    assert p.it_power_w == pytest.approx(gpu)
    assert gpu + p.miner_w.sum() == pytest.approx(80_000, abs=1323)
    # With the on/off S9s running, the power-target S19 XPs take the remainder (all at one reduced power).
    xp = p.miner_w[f.group == 0]
    assert np.ptp(xp[xp > 0]) == 0
    # The setpoint below the AI load alone: miners all off, GPUs still untouched.
    p2, _ = plan(jobs, s, 1e9, setpoint_w=gpu - 1000)
    assert p2.miner_w.sum() == 0 and p2.it_power_w == pytest.approx(gpu)


def test_on_off_units_keep_their_number_while_the_flexible_ones_can_absorb():
    jobs, s = jobs_fleet(), miner_settings(mode="steady", setpoint_w=80_000.0)
    gpu = gpu_full_w(jobs)
    running = np.array([3010.0] * 10 + [1323.0] * 4 + [0.0] * 6)  # four S9s hashing
    for room in (25_000.0, 28_000.0, 31_000.0):
        p, f = plan(jobs, s, 1e9, setpoint_w=gpu + room, running_w=running)
        assert (p.miner_w[f.group == 1] > 0).sum() == 4
        assert p.miner_w.sum() == pytest.approx(room, abs=1)


def test_uneconomic_miners_sleep_and_sponge_raises_the_setpoint():
    jobs = jobs_fleet()
    s = miner_settings(mode="steady", setpoint_w=80_000.0, sponge_price_usd_per_mwh=0.0, sponge_limit_w=120_000.0)
    f = s.build_fleet()
    tel = Telemetry(0.0, 0.0, 0.0, jobs.ids, jobs.gpus * jobs.full_w, np.ones(2), jobs.max_cap_w, np.ones(2))
    for price, want, setpoint in ((50.0, 30_100, 80_000), (300.0, 0, 80_000), (-5.0, 43_330, 120_000)):
        side = MinerSide(f, None, s, ConstantSignal(price), ConstantSignal(0.05))
        m = side.input(0.0, 1e9, SITE, jobs, tel)
        assert m.want_w.sum() == pytest.approx(want)
        assert m.setpoint_w == pytest.approx(setpoint - f.sleep_w.sum())


def test_hashprice_from_the_real_daily_series(tmp_path):
    from pathlib import Path

    from gridflex.sim.hybrid import hashprice_signal

    series = Path("../shared/data/btc-network-daily/btc_daily_merged.csv")
    if not series.exists():
        pytest.skip("shared data not present")
    s = miner_settings().model_copy(
        update={"hashprice_usd_per_th_day": None, "hashprice_series": str(series.resolve())}
    )
    assert float(hashprice_signal(s, None).at(1639396800.0)) == pytest.approx(0.25)  # 2021-12-13
    with pytest.raises(ValueError, match="exactly one of hashprice"):
        MinerSettings.model_validate(miner_settings().model_dump() | {"hashprice_series": "x.csv"})
