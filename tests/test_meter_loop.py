"""The controller closes the loop on the site meter (a real Modbus TCP server on loopback serving a
meter's registers), and falls back to its fail-safe when the meter goes silent."""

from __future__ import annotations

import asyncio
import struct
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from gridflex.model.events import GridEvent, Target
from tests.service_support import FakeClock, free_port, make_service

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
REGISTER = 3054  # total active power, float32 in kW, big-endian words
OTHER_LOAD = 1.06  # what the meter sees beyond the drivers' readings (lights, storage, losses)


class LiveMeter:
    """pymodbus's TCP server whose power register answers `power_w()` at every read."""

    def __init__(self, power_w, port: int | None = None):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def on_read(fc, start, address, count, registers, set_values):
            raw = struct.pack(">f", power_w() / 1000.0)
            words = [int.from_bytes(raw[i:i + 2], "big") for i in (0, 2)]
            for k in range(len(registers)):
                if REGISTER <= start + k < REGISTER + 2:
                    registers[k] = words[start + k - REGISTER]

        device = SimDevice(id=1, simdata=[SimData(REGISTER, count=2, values=0, datatype=DataType.REGISTERS)],
                           action=on_read)
        self.power_w = power_w
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            asyncio.create_task(server.serve_forever())
            while not server.is_active():
                await asyncio.sleep(0.05)
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=30)

    def silence(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(timeout=30)

    def close(self) -> None:
        if self.loop.is_running():
            if self.server.is_active():
                self.silence()  # ends serve_forever's task, so that no task is left pending
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
        if not self.loop.is_running():
            self.loop.close()


@pytest.fixture
def site(tmp_path):
    holder = {}
    meter = LiveMeter(lambda: holder["svc"].driver.site_power_w * OTHER_LOAD)
    clock = FakeClock(T0.timestamp())
    svc = make_service(
        f"sqlite:///{tmp_path}/gridflex.db", clock,
        meter={"host": "127.0.0.1", "port": meter.port, "address": REGISTER, "scale": 1000, "timeout_s": 5},
        control={"interval_s": 2.0, "snapback_guard_s": 0.0, "fail_safe": "hold", "failed_ticks": 2},
    )
    holder["svc"] = svc
    yield svc, clock, meter
    meter.close()


def test_an_event_is_met_on_the_meter_and_a_silent_meter_holds_the_plan(site):
    svc, clock, meter = site
    for _ in range(5):
        clock.t_s += 2
        svc.tick(clock.t_s)
    assert svc.status.site_power_source.startswith("meter 127.0.0.1")
    baseline_w = svc.status.site_power_w
    assert baseline_w == pytest.approx(svc.driver.site_power_w * OTHER_LOAD, rel=0.02)
    start = datetime.fromtimestamp(clock.t_s, timezone.utc)
    target_w = 0.75 * baseline_w
    svc.add_event(GridEvent(id="cut", start=start, end=start + timedelta(hours=1), target=Target(power_w=target_w)))
    metered = []
    for _ in range(150):
        clock.t_s += 2
        svc.tick(clock.t_s)
        metered.append(svc.status.site_power_w)
    steady = np.mean(metered[-60:])
    assert target_w * 0.96 <= steady <= target_w  # met on the meter's reading, within 2 % (the margin)
    twin = svc.driver
    caps = np.array([j["cap_w"] for j in svc.status.jobs])  # the last plan
    active = np.array([j["active"] for j in svc.status.jobs])
    assert (caps < twin.fleet.max_cap_w - 1).any() or (active < 1).any()
    meter.silence()
    for _ in range(2):
        clock.t_s += 2
        assert svc.tick(clock.t_s) is None  # the meter does not answer: nothing is decided blind
    assert svc.status.driver_ok is False and "meter" in svc.status.error
    np.testing.assert_allclose(twin.cap_w, caps)  # fail-safe 'hold': the last plan stays,
    np.testing.assert_allclose(twin.active, active)  # nothing paused is resumed blind
