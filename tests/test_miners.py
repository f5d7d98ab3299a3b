"""Miner fleet model and the simulated fleet (latency, staggered restarts, ramp limit)."""

import numpy as np
import pytest
from pydantic import ValidationError

from gridflex.drivers.miner_base import MinerActions
from gridflex.drivers.miners_twin import MinerTwinDriver
from gridflex.errors import DriverError
from gridflex.model.miners import AsicModel, MinerGroup, MinerMode, MinerSettings, resolve_models
from tests.miner_driver_contract import MinerDriverContract

XP = "bitmain antminer s19 xp"


def settings(**kw) -> MinerSettings:
    base = {
        "groups": [{"id": "xp", "model": XP, "count": 4, "min_power_fraction": 0.5},
                   {"id": "old", "model": "bitmain antminer s9", "count": 2}],
        "hashprice_usd_per_th_day": 0.05,
        "prices": "ercot-hb-south-2024-08-20",
        "dispatch": {"setpoint_w": 1e5},
    }
    return MinerSettings.model_validate(base | kw)


def test_fleet_arrays_and_modes():
    f = settings().build_fleet()
    assert f.ids[:2] == ("xp-0000", "xp-0001") and len(f) == 6
    np.testing.assert_allclose(f.power_w, [3010] * 4 + [1323] * 2)
    np.testing.assert_allclose(f.min_power_w, [1505] * 4 + [1323] * 2)
    assert f.has_power_target.tolist() == [True] * 4 + [False] * 2
    target = np.array([3010, 2000, 0, 3010, 1323, 0.0])
    assert f.mode(target)[:3] == [MinerMode.full, MinerMode.reduced, MinerMode.sleep]
    np.testing.assert_allclose(f.hashrate_at(target)[:3], [140, 140 * 2000 / 3010, 0])
    np.testing.assert_allclose(f.draw_w(target)[2], 15.0)


def test_targets_the_firmware_cannot_take_are_refused():
    f = settings().build_fleet()
    with pytest.raises(ValueError, match="old-0000.*0 \\(sleep\\) or 1323..1323"):
        f.check_targets(np.array([3010, 3010, 3010, 3010, 1000, 0]))
    with pytest.raises(ValueError, match="xp-0000"):
        f.check_targets(np.array([1000, 3010, 3010, 3010, 0, 0]))


def test_site_models_extend_the_table_and_unknown_models_are_named():
    custom = {"my s21": AsicModel(hashrate_th_s=200, power_w=3500)}
    assert resolve_models(custom, [MinerGroup(id="a", model="my s21", count=1)])["my s21"].efficiency_j_per_th == 17.5
    with pytest.raises(ValidationError, match="unknown ASIC model 'nope'"):
        settings(groups=[{"id": "a", "model": "nope", "count": 1}])
    with pytest.raises(ValidationError, match="setpoint_w: required"):
        settings(dispatch={"mode": "steady"})
    with pytest.raises(ValidationError, match="qos_usd_per_gpu_hour"):
        settings(dispatch={"mode": "economic", "qos_usd_per_gpu_hour": {0: 1.0}})


def twin(ramp_w_per_s=np.inf):
    f = settings().build_fleet()
    return f, MinerTwinDriver(f, start_s=0.0, step_s=1.0, ramp_w_per_s=ramp_w_per_s)


def test_twin_follows_targets_after_their_latency():
    f, t = twin()
    t.apply(MinerActions(f.ids, np.array([0, 2000, 3010, 3010, 0, 1323.0])))
    t.advance_to(4)
    assert t.read().target_w[0] == 3010  # sleeping takes 5 s
    t.advance_to(6)
    tel = t.read()
    np.testing.assert_allclose(tel.target_w, [0, 2000, 3010, 3010, 0, 1323])
    assert tel.hashrate_th_s[0] == 0 and tel.power_w[4] == 15.0


def test_restarts_are_staggered_by_the_fleet_ramp_limit():
    f, t = twin(ramp_w_per_s=1000.0)
    t.apply(MinerActions(f.ids, np.zeros(6)))
    t.advance_to(10)
    t.apply(MinerActions(f.ids, f.power_w.copy()))  # everything back on at once
    t.advance_to(400)
    power = t.power_trace()  # step k ends at k + 1 s
    rise = np.diff(power)
    assert rise.max() <= 3010 - 15 + 1e-6  # one unit at a time, never a synchronised inrush
    on_at = np.arange(2, len(power) + 1)[rise > 0]
    # First unit after its 60 s restart, the next ones each (its rise / 1000 W/s) later.
    assert on_at[0] == 70 and on_at[1] - on_at[0] >= 2.9
    assert power[-1] == pytest.approx(f.power_w.sum())


def test_twin_rejects_bad_actions_and_restores():
    f, t = twin()
    with pytest.raises(DriverError, match="every unit"):
        t.apply(MinerActions(f.ids[:2], np.zeros(2)))
    with pytest.raises(DriverError, match="xp-0001"):
        t.apply(MinerActions(f.ids, np.array([0, 100, 0, 0, 0, 0.0])))
    t.apply(MinerActions(f.ids, np.zeros(6)))
    t.advance_to(10)
    t.restore()
    t.advance_to(200)
    np.testing.assert_allclose(t.read().target_w, f.power_w)


def test_retargeting_during_a_restart_does_not_postpone_it():
    f, t = twin()
    t.apply(MinerActions(f.ids, np.zeros(6)))
    t.advance_to(10)
    for k in range(40):  # the planner nudges the target every 2 s while the units restart
        t.apply(MinerActions(f.ids, np.array([3000 - k, 3000, 3010, 3010, 1323, 1323.0])))
        t.advance_to(12 + 2 * k)
    power = t.power_trace()  # step k ends at k + 1 s
    assert power[68] < 1000 and power[69] > 14_000  # hashing from t = 70, 60 s after the first resume


class TestMinerTwinContract(MinerDriverContract):
    @pytest.fixture
    def driver(self):
        return MinerTwinDriver(settings().build_fleet(), start_s=0.0, ramp_w_per_s=5000.0)

    def settle(self, driver) -> None:
        driver.advance_to(driver.t_s + 300)
        driver.read()  # start a fresh averaging window
        driver.advance_to(driver.t_s + 2)
