"""The contract every miner driver passes (the miner twin, the pyasic driver against the emulator).

A test class inherits `MinerDriverContract` and provides the fixture `driver` (a fresh driver)
and `settle(driver)`, which lets the plant reach the targets last applied."""

from __future__ import annotations

import numpy as np
import pytest

from gridflex.drivers.miner_base import MinerActions
from gridflex.errors import DriverError


class MinerDriverContract:
    def settle(self, driver) -> None:
        raise NotImplementedError

    def test_discover_lists_units_with_nameplate(self, driver):
        units = driver.discover()
        assert units and len({u.id for u in units}) == len(units)
        for u in units:
            assert 0 < u.min_power_w <= u.power_w and u.hashrate_th_s > 0

    def test_read_follows_the_units(self, driver):
        units = driver.discover()
        tel = driver.read()
        assert tel.unit_ids == tuple(u.id for u in units)
        assert np.all(np.isfinite(tel.power_w)) and tel.responding.all()
        assert np.all(tel.hashrate_th_s > 0)

    def test_sleep_and_resume(self, driver):
        units = driver.discover()
        ids = tuple(u.id for u in units)
        driver.apply(MinerActions(ids, np.zeros(len(ids))))
        self.settle(driver)
        asleep = driver.read()
        assert np.all(asleep.hashrate_th_s == 0) and np.all(asleep.target_w == 0)
        assert np.all(asleep.power_w < 0.05 * np.array([u.power_w for u in units]))
        driver.apply(MinerActions(ids, np.array([u.power_w for u in units])))
        self.settle(driver)
        assert np.all(driver.read().hashrate_th_s > 0)

    def test_reduced_power_target_where_the_firmware_has_one(self, driver):
        units = driver.discover()
        flexible = [i for i, u in enumerate(units) if u.min_power_w < u.power_w]
        if not flexible:
            pytest.skip("no unit takes a power target")
        target = np.array([u.power_w for u in units])
        target[flexible] = [units[i].min_power_w for i in flexible]
        driver.apply(MinerActions(tuple(u.id for u in units), target))
        self.settle(driver)
        tel = driver.read()
        for i in flexible:
            assert 0.5 * units[i].power_w <= tel.power_w[i] < units[i].power_w

    def test_bad_actions_are_refused_whole(self, driver):
        units = driver.discover()
        ids = tuple(u.id for u in units)
        before = driver.read().target_w
        bad = np.array([u.power_w for u in units])
        bad[-1] = units[-1].power_w * 2
        with pytest.raises(DriverError, match=units[-1].id):
            driver.apply(MinerActions(ids, np.where(np.arange(len(ids)) == 0, 0.0, bad)))
        with pytest.raises(DriverError):
            driver.apply(MinerActions(ids[:-1], np.zeros(len(ids) - 1)))
        self.settle(driver)
        np.testing.assert_allclose(driver.read().target_w, before)

    def test_restore_returns_every_unit(self, driver):
        units = driver.discover()
        found = driver.read()
        driver.apply(MinerActions(tuple(u.id for u in units), np.zeros(len(units))))
        self.settle(driver)
        driver.restore()
        self.settle(driver)
        back = driver.read()
        np.testing.assert_allclose(back.power_w, found.power_w, rtol=0.02)
