"""Fault injection: each fault with its expected outcome, nothing half-applied, nothing lost.

Faults already covered elsewhere (docs/reliability.md lists them all) are not repeated here:
slurmctld down and back (test_slurm.py::test_survives_slurmctld_restart_and_restores_after_crash,
test_service_health.py::test_api_answers_from_the_last_state_while_a_tick_is_stuck), a silent miner
(test_pyasic_driver.py::test_silent_miner_is_an_error_and_nothing_is_half_applied), the VTN down
and back (test_openadr.py::test_ven_registers_again_after_the_vtn_restarts), the fail-safe rules
(test_service_runtime.py::test_the_fail_safe_rule_acts_after_failed_ticks), a stale Prometheus
meter (test_meter_prometheus.py) and a killed run after the command (test_restore.py).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import yaml
from sqlalchemy import create_engine, text

from gridflex.drivers.nvml import Nvml, NvmlDriver, static_map
from gridflex.errors import DriverError
from gridflex.model.events import GridEvent, Target
from gridflex.model.site import Site
from gridflex.store.models import DecisionRow
from tests.fake_nvml import FakeNvml, NVMLError
from tests.service_support import PG_ENV, FakeClock, make_service, run_ticks
from tests.test_meter_loop import LiveMeter, site  # noqa: F401  (fixture)
from tests.test_nvml import CURVES, JOBS, actions
from tests.test_process_driver import WORKER, settled, states

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
NVML_ERROR_GPU_IS_LOST = 15
DEADLINE_S = 60.0


def _event(clock: FakeClock, power_w: float, minutes: float = 60, ev_id: str = "cut") -> GridEvent:
    start = datetime.fromtimestamp(clock.t_s, timezone.utc)
    return GridEvent(id=ev_id, start=start, end=start + timedelta(minutes=minutes), target=Target(power_w=power_w))


def _decisions(svc) -> int:
    with svc.store.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {DecisionRow.__tablename__}")).scalar_one()


def _plan(svc) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([j["cap_w"] for j in svc.status.jobs]), np.array([j["active"] for j in svc.status.jobs]))


# --- the site meter --------------------------------------------------------------------------
def test_meter_silent_mid_event_degrades_holds_and_reconciles_when_it_answers_again(site):  # noqa: F811
    """The Modbus meter stops answering mid-event: no decision is taken or recorded blind, the
    plan holds, /status is degraded; the meter back on the same port, the cut is met on it again."""
    svc, clock, meter = site
    try:
        run_ticks(svc, clock, 3)
        target_w = 0.8 * svc.status.site_power_w
        svc.add_event(_event(clock, target_w))
        run_ticks(svc, clock, 60)
        assert svc.status.site_power_w <= target_w
        caps, active = _plan(svc)
        recorded = _decisions(svc)

        meter.silence()
        for _ in range(3):
            clock.t_s += 2
            assert svc.tick(clock.t_s) is None
        assert _decisions(svc) == recorded  # nothing decided, nothing recorded blind
        assert svc.status.driver_ok is False and "meter 127.0.0.1" in svc.status.error
        np.testing.assert_allclose(svc.driver.cap_w, caps)  # held: nothing resumed blind
        np.testing.assert_allclose(svc.driver.active, active)
        assert svc.store.events(status="active")[0].event.id == "cut"  # the event is not lost

        meter.close()
        meter = LiveMeter(meter.power_w, port=meter.port)  # the meter answers again
        run_ticks(svc, clock, 30)
        assert svc.status.driver_ok is True and _decisions(svc) == recorded + 30
        assert svc.status.site_power_w <= target_w
    finally:
        meter.close()


# --- NVML ------------------------------------------------------------------------------------
class LosingNvml(FakeNvml):
    """FakeNvml whose GPU `lost` answers NVML_ERROR_GPU_IS_LOST to every call, and GPU `refuses`
    to setting its limit only (lost between the driver's check and its write)."""

    lost: int | None = None
    refuses: int | None = None

    def _check(self, h, writing: bool = False) -> None:
        if h.index == self.lost or (writing and h.index == self.refuses):
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)

    def nvmlDeviceGetPowerUsage(self, h):
        self._check(h)
        return super().nvmlDeviceGetPowerUsage(h)

    def nvmlDeviceGetPowerManagementLimit(self, h):
        self._check(h)
        return super().nvmlDeviceGetPowerManagementLimit(h)

    def nvmlDeviceSetPowerManagementLimit(self, h, limit_mw):
        self._check(h, writing=True)
        return super().nvmlDeviceSetPowerManagementLimit(h, limit_mw)


def test_nvml_gpu_lost_mid_apply_leaves_only_what_was_changed_and_restore_puts_it_back(tmp_path):
    """GPU 1 is lost between capping GPU 0 and GPU 1 of one job: the driver raises DriverError, the
    ledger (on disk) holds exactly GPU 0's original limit, reads fail as DriverError (not an NVML
    exception), and a new driver's restore() puts GPU 0 back once GPU 1 is back."""
    fake = LosingNvml()
    state = tmp_path / "nvml.json"
    driver = NvmlDriver(Site(), CURVES, Nvml(fake), static_map({"train": [0, 1], "serve": [2]}), JOBS, state)
    driver.discover()
    fake.refuses = 1
    with pytest.raises(DriverError, match="NVML: .*error 15"):
        driver.apply(actions(150.0))
    assert [g.limit_mw for g in fake.gpus] == [150_000, 300_000, 300_000, 300_000]
    saved = json.loads(state.read_text())
    assert [v["index"] for v in saved.values()] == [0] and [v["limit_w"] for v in saved.values()] == [300.0]
    fake.lost = 1
    with pytest.raises(DriverError, match="NVML: .*error 15"):
        driver.read()
    assert driver.health().ok is False

    fake.lost = fake.refuses = None
    fresh = NvmlDriver(Site(), CURVES, Nvml(fake), static_map({"train": [0, 1], "serve": [2]}), JOBS, state)
    fresh.restore()
    assert [g.limit_mw for g in fake.gpus] == [300_000] * 4
    assert json.loads(state.read_text()) == {}


# --- the store -------------------------------------------------------------------------------
def test_sqlite_locked_briefly_waits_and_nothing_is_lost(tmp_path):
    """Another writer holds the SQLite database while a tick starts: the tick waits for it (busy
    timeout) and then records and acts, once."""
    clock = FakeClock(T0.timestamp())
    db = tmp_path / "gridflex.db"
    svc = make_service(f"sqlite:///{db}", clock)
    run_ticks(svc, clock, 2)
    svc.add_event(_event(clock, 60e3))
    recorded = _decisions(svc)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    real_apply, applied = svc.driver.apply, []
    svc.driver.apply = lambda a: (applied.append(a), real_apply(a))
    writing, real_telemetry = threading.Event(), svc.journal.telemetry
    svc.journal.telemetry = lambda tel: (writing.set(), real_telemetry(tel))  # the tick's first write
    t = threading.Thread(target=run_ticks, args=(svc, clock, 1))
    t.start()
    assert writing.wait(DEADLINE_S)  # the tick is at the store, which is locked
    assert applied == []  # nothing acted while the decision could not be recorded
    other.execute("COMMIT")
    t.join(DEADLINE_S)
    assert not t.is_alive()
    assert _decisions(svc) == recorded + 1 and len(applied) == 1


def test_sqlite_locked_past_the_timeout_fails_the_tick_before_acting(tmp_path):
    """The database stays locked longer than the busy timeout: the tick fails before anything is
    acted on (the decision is recorded before the command); released, the next tick records and acts."""
    clock = FakeClock(T0.timestamp())
    db = tmp_path / "gridflex.db"
    svc = make_service(f"sqlite:///{db}", clock)
    run_ticks(svc, clock, 2)
    svc.store.engine.dispose()
    svc.store.engine.pool._creator = lambda: sqlite3.connect(db, timeout=0.2, check_same_thread=False)
    svc.add_event(_event(clock, 60e3))
    recorded = _decisions(svc)
    real_apply, applied = svc.driver.apply, []
    svc.driver.apply = lambda a: (applied.append(a), real_apply(a))
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    clock.t_s += 2
    with pytest.raises(Exception, match="locked"):
        svc.tick(clock.t_s)
    assert applied == []  # nothing acted on what could not be recorded
    other.execute("COMMIT")
    run_ticks(svc, clock, 10)
    assert _decisions(svc) == recorded + 10 and len(applied) >= 1
    assert svc.status.site_power_w <= 60e3 and svc.store.events(status="active")[0].event.id == "cut"


def test_postgresql_connection_dropped_is_reconnected_and_nothing_is_lost(tmp_path):
    """The server ends the service's connections (as on a PostgreSQL restart): the next tick
    reconnects (pool pre-ping) and records; the events and decisions before it are all there."""
    if not os.environ.get(PG_ENV):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{PG_ENV} is not set; CI requires PostgreSQL (scripts/ci/service.sh)")
        pytest.skip(f"{PG_ENV} is not set")
    from tests.service_support import store_url

    with store_url("postgresql", tmp_path) as url:
        clock = FakeClock(T0.timestamp())
        svc = make_service(url, clock)
        run_ticks(svc, clock, 2)
        svc.add_event(_event(clock, 60e3))
        run_ticks(svc, clock, 3)
        recorded = _decisions(svc)
        pooled = [svc.store.engine.connect() for _ in range(max(1, svc.store.engine.pool.checkedin()))]
        pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in pooled]
        for c in pooled:
            c.close()
        admin = create_engine(os.environ[PG_ENV], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # the service's connections only
            ended = sum(conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": p}).scalar_one() for p in pids)
        admin.dispose()
        assert ended >= 1
        run_ticks(svc, clock, 3)
        assert _decisions(svc) == recorded + 3
        assert [r.event.id for r in svc.store.events(status="active")] == ["cut"]
        svc.store.engine.dispose()


# --- the clock -------------------------------------------------------------------------------
@pytest.mark.parametrize("jump_s", [3600.0, -3600.0])
def test_clock_jump_keeps_the_cut_and_loses_no_event(tmp_path, jump_s):
    """The wall clock jumps an hour forward (the event has ended: the site returns) or back (before
    the event: the event is still known, nothing crashes, and the cut holds once it starts again)."""
    clock = FakeClock(T0.timestamp())
    svc = make_service(f"sqlite:///{tmp_path}/gridflex.db", clock, control={"snapback_guard_s": 0.0})
    run_ticks(svc, clock, 2)
    svc.add_event(_event(clock, 60e3, minutes=30))
    run_ticks(svc, clock, 10)
    assert svc.status.site_power_w <= 60e3
    clock.t_s += jump_s
    run_ticks(svc, clock, 10)
    assert svc.status.driver_ok is True
    if jump_s > 0:  # past the end: the event is over and the site is back
        assert svc.store.events(status="active") == [] and svc.status.active_events == ()
        assert svc.status.site_power_w > 60e3
    else:  # before the start: the event waits, then governs again
        assert [r.event.id for r in svc.store.events(status="active")] == ["cut"]
        clock.t_s -= jump_s
        run_ticks(svc, clock, 10)
        assert svc.status.active_events == ("cut",) and svc.status.site_power_w <= 60e3


# --- SIGKILL mid-command ---------------------------------------------------------------------
KILLED = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from gridflex.drivers.base import JobActions
    from gridflex.drivers.factory import make_driver
    from gridflex.drivers.ledger import Ledger
    from gridflex.model.site import Site
    from gridflex.sim.curve_csv import builtin_curves
    import gridflex.drivers.process as process

    from pathlib import Path
    where, settings, state_dir = sys.argv[1], eval(sys.argv[2]), Path(sys.argv[3])
    if where == "after-ledger":  # the ledger is written, the command is never sent
        real = Ledger.remember
        def remember(self, *a):
            real(self, *a)
            os.kill(os.getpid(), signal.SIGKILL)
        Ledger.remember = remember
    else:  # the command is sent, nothing after it (journal, ledger clean-up) runs
        real = process.ProcessDriver._signal
        def sent(self, *a):
            real(self, *a)
            os.kill(os.getpid(), signal.SIGKILL)
        process.ProcessDriver._signal = sent
    driver = make_driver({"kind": "process", **settings}, Site(), builtin_curves(), state_dir)
    driver.discover()
    driver.apply(JobActions(("train",), np.array([400.0]), np.array([0.0])))
    print("not killed")
""")


@pytest.fixture
def group():
    p = subprocess.Popen([sys.executable, str(WORKER), os.devnull], start_new_session=True)
    deadline = time.monotonic() + DEADLINE_S
    while not states(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield p.pid
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


@pytest.mark.parametrize("where", ["after-ledger", "after-command"])
def test_sigkill_mid_command_is_put_back_by_gridflex_restore(group, tmp_path, where):
    """gridflex dies by SIGKILL right after writing the ledger (the job never stopped) or right after
    the SIGSTOP (the job stopped, nothing else ran): either way the ledger on disk names the job, and
    `gridflex restore --config` leaves it running and the ledger empty."""
    settings = {"jobs": [{"id": "train", "pgid": group, "workload": "pt_mpt_7b_fast", "gpus": 2, "flex_tier": 2,
                          "actions": ["pause"]}]}
    state = tmp_path / "state"
    out = subprocess.run([sys.executable, "-c", KILLED, where, repr(settings), str(state)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL and "not killed" not in out.stdout, out.stderr
    ledger = state / "process-ledger.json"
    assert json.loads(ledger.read_text()) == {"stop:train": group}
    if where == "after-command":
        assert settled(group, stopped=True, timeout_s=DEADLINE_S) == {"T"}
    else:
        assert "T" not in states(group)  # the command never reached the job
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"driver": {"kind": "process", "settings": settings, "state_dir": "state"}}))
    out = subprocess.run([sys.executable, "-m", "gridflex.cli", "restore", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "T" not in settled(group, stopped=False, timeout_s=DEADLINE_S)
    assert json.loads(ledger.read_text()) == {}
