"""The pyasic driver against the protocol-level emulator: pyasic's own discovery and commands,
unmodified, over TCP on loopback, answered with replies recorded from a real AvalonMiner 1566."""

from __future__ import annotations

import numpy as np
import pytest

from gridflex.drivers.miner_base import MinerActions
from gridflex.drivers.pyasic_driver import PyasicDriver
from gridflex.errors import DriverError
from tests.miner_driver_contract import MinerDriverContract
from tests.miner_emulator import MinerEmulator

pytest.importorskip("pyasic")


#: Answering miners get a deadline that a busy CI machine cannot miss (the emulator answers at once
#: when idle); only the silent-miner test waits out a shorter one, since its miner never answers.
TIMEOUT_S = 30.0
SILENT_TIMEOUT_S = 5.0


@pytest.fixture
def emu():
    with MinerEmulator(3, level=2) as e:
        yield e


@pytest.fixture
def driver(emu):
    d = PyasicDriver(emu.hosts, timeout_s=TIMEOUT_S, restart_stagger_s=0.2)
    yield d
    d.close()


def targets(driver, values):
    return MinerActions(driver.hosts, np.asarray(values, float))


def test_discovers_through_pyasic_and_reads(driver, emu):
    units = driver.discover()
    assert [u.id for u in units] == emu.hosts
    assert {u.model for u in units} == {"Avalon 1566 (Stock)"}
    # Found at work level 2: 1.1 x the recorded 3731 W; nominal hashrate from estats (GHSmm).
    assert units[0].power_w == pytest.approx(3731 * 1.1, abs=1)
    assert units[0].hashrate_th_s == pytest.approx(201.920 * 1.1, rel=1e-3)
    assert units[0].min_power_w < units[0].power_w
    tel = driver.read()
    assert tel.responding.all()
    assert tel.power_w == pytest.approx([3731 * 1.1] * 3, abs=1)
    assert tel.hashrate_th_s[0] == pytest.approx(199.241 * 1.1, rel=1e-3)  # devs "MHS 1m"


def test_stop_resume_and_power_target(driver, emu):
    units = driver.discover()
    full, low = units[0].power_w, units[0].min_power_w
    driver.apply(targets(driver, [0, low, full]))
    a, b, c = (emu[h] for h in emu.hosts)
    assert (a.mining, b.mining, c.mining) == (False, True, True)
    assert (b.level, c.level) == (1, 2)
    tel = driver.read()
    assert tel.hashrate_th_s[0] == 0 and tel.power_w[0] < 100
    assert tel.power_w[1] == pytest.approx(3731, abs=1)
    driver.apply(targets(driver, [full, full, full]))
    assert a.mining and (a.level, b.level) == (2, 2)


def test_restarts_are_staggered(driver, emu):
    driver.discover()
    driver.apply(targets(driver, [0, 0, 0]))
    full = driver.discover()[0].power_w
    driver.apply(targets(driver, [full] * 3))
    starts = sorted(
        t for m in emu.miners for cmd, t in zip(m.commands, m.times) if "softon" in cmd
    )
    assert len(starts) == 3
    assert np.diff(starts).min() >= 0.2 - 0.02


def test_restores_on_exit(emu):
    with PyasicDriver(emu.hosts, timeout_s=TIMEOUT_S, restart_stagger_s=0.0) as d:
        units = d.discover()
        d.apply(MinerActions(d.hosts, np.array([0.0, units[1].min_power_w, 0.0])))
        assert not emu[emu.hosts[0]].mining
    assert all(m.mining and m.level == 2 for m in emu.miners)


def test_restores_after_a_crash_from_saved_state(emu, tmp_path):
    state = tmp_path / "miners.json"
    d1 = PyasicDriver(emu.hosts, timeout_s=TIMEOUT_S, restart_stagger_s=0.0, state_path=state)
    d1.discover()
    d1.apply(targets(d1, [0, 0, 0]))
    d1.close()  # crashed: nothing restored
    assert state.exists() and not any(m.mining for m in emu.miners)
    d2 = PyasicDriver(emu.hosts, timeout_s=TIMEOUT_S, restart_stagger_s=0.0, state_path=state)
    d2.restore()
    d2.close()
    assert all(m.mining and m.level == 2 for m in emu.miners)
    assert not state.exists()


def test_silent_miner_is_an_error_and_nothing_is_half_applied(emu):
    driver = PyasicDriver(emu.hosts, timeout_s=SILENT_TIMEOUT_S, restart_stagger_s=0.2)
    driver.discover()
    silent = emu.miners[1]
    silent.silent = True
    before = [len(m.commands) for m in emu.miners]
    with pytest.raises(DriverError, match=silent.host):
        driver.apply(targets(driver, [0, 0, 0]))
    assert all(m.mining for m in emu.miners)
    assert all("softoff" not in c for m, n in zip(emu.miners, before) for c in m.commands[n:])
    tel = driver.read()
    assert tel.responding.tolist() == [True, False, True]
    assert tel.power_w[1] == pytest.approx(3731 * 1.1, abs=1) and np.isnan(tel.hashrate_th_s[1])  # nameplate
    assert not driver.health().ok
    driver.close()


def test_firmware_refusal_mid_apply_rolls_back(driver, emu):
    driver.discover()
    orig = emu.miners[2]._ascset
    emu.miners[2]._ascset = lambda p: {"STATUS": [{"STATUS": "E", "Code": 45, "Msg": "Access denied"}], "id": 1}
    with pytest.raises(DriverError, match=emu.hosts[2]):
        driver.apply(targets(driver, [0, 0, 0]))
    emu.miners[2]._ascset = orig
    assert all(m.mining for m in emu.miners[:2])


def test_bad_target_names_the_unit_and_sends_nothing(driver, emu):
    units = driver.discover()
    before = [len(m.commands) for m in emu.miners]
    with pytest.raises(DriverError, match=f"{units[1].id}.*allowed"):
        driver.apply(targets(driver, [units[0].power_w, 10.0, 0]))
    assert [len(m.commands) for m in emu.miners] == before


def test_dry_run_touches_nothing(emu):
    d = PyasicDriver(emu.hosts, timeout_s=TIMEOUT_S, dry_run=True)
    try:
        d.discover()
        d.apply(MinerActions(d.hosts, np.zeros(3)))
        assert all(m.mining for m in emu.miners)
    finally:
        d.close()


class TestPyasicContract(MinerDriverContract):
    @pytest.fixture
    def driver(self, emu):
        d = PyasicDriver(emu.hosts, timeout_s=TIMEOUT_S, restart_stagger_s=0.0)
        yield d
        d.close()

    def settle(self, driver) -> None:
        """The emulated firmware acts at once."""
