"""The Modbus TCP site meter against pymodbus's own server on loopback serving a meter's registers."""

import asyncio
import struct
import threading

import pytest

from gridflex.drivers.meter import MeterSettings, ModbusMeter, decode
from gridflex.errors import DriverError
from tests.service_support import free_port

pytest.importorskip("pymodbus")


def _words(fmt: str, value, byte_order="big", word_order="big") -> list[int]:
    raw = struct.pack(">" + fmt, value)
    words = [int.from_bytes(raw[i:i + 2], "little" if byte_order == "little" else "big") for i in range(0, len(raw), 2)]
    return list(reversed(words)) if word_order == "little" else words


class MeterServer:
    """pymodbus's TCP server on loopback in its own thread: holding registers 3000.. and input 100.."""

    def __init__(self, holding: dict[int, int], inputs: dict[int, int]):
        from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
        from pymodbus.server import ModbusTcpServer

        self.port = free_port()
        device = ModbusDeviceContext(hr=ModbusSparseDataBlock(holding), ir=ModbusSparseDataBlock(inputs))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            server = ModbusTcpServer(ModbusServerContext(devices=device, single=True), address=("127.0.0.1", self.port))
            self.task = asyncio.create_task(server.serve_forever())
            while not server.is_active():
                await asyncio.sleep(0.05)
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=30)

    def close(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)


# A meter keeping total active power as float32 in kW at 3054 (big-endian words) and as int32 in W
# with little-endian word order at 3060; input register 100 holds it as uint16 in units of 10 W.
POWER_W = 87_650.0


@pytest.fixture
def server():
    holding = {}
    for i, w in enumerate(_words("f", POWER_W / 1000)):
        holding[3054 + i] = w
    for i, w in enumerate(_words("i", int(POWER_W), word_order="little")):
        holding[3060 + i] = w
    srv = MeterServer(holding, {100: int(POWER_W / 10)})
    yield srv
    srv.close()


def _meter(port, **kw) -> ModbusMeter:
    return ModbusMeter(MeterSettings(host="127.0.0.1", port=port, timeout_s=10, **kw))


def test_reads_site_power_as_real_meters_keep_it(server):
    layouts = [
        dict(address=3054, data_type="float32", scale=1000.0),
        dict(address=3060, data_type="int32", word_order="little"),
        dict(address=100, function="input", data_type="uint16", scale=10.0),
    ]
    for layout in layouts:
        meter = _meter(server.port, **layout)
        try:
            power_w, read_at_s = meter.read()
            assert power_w == pytest.approx(POWER_W, rel=1e-6), layout
            assert meter.age_s() < 30 and read_at_s > 0
        finally:
            meter.close()


def test_wrong_register_is_a_clear_error(server):
    meter = _meter(server.port, address=5000)
    try:
        with pytest.raises(DriverError, match=r"meter 127\.0\.0\.1:\d+: registers 5000\.\.5001 .*check address"):
            meter.read()
    finally:
        meter.close()


def test_silent_meter_is_an_error_and_its_reading_goes_stale(server):
    meter = _meter(server.port, address=3054, scale=1000.0)
    meter.read()
    server.close()
    meter.clock = lambda: meter.last[1] + 120  # two minutes on: the meter has been silent since
    try:
        with pytest.raises(DriverError, match=r"meter 127\.0\.0\.1"):
            meter.read()
        assert meter.age_s() == pytest.approx(120)
    finally:
        meter.close()


@pytest.mark.parametrize("byte_order", ["big", "little"])
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("data_type, fmt, value", [("float64", "d", 1.25e6), ("int16", "h", -1234),
                                                    ("uint64", "Q", 2**40 + 7)])
def test_decode_every_order(byte_order, word_order, data_type, fmt, value):
    s = MeterSettings(host="x", address=0, data_type=data_type, byte_order=byte_order, word_order=word_order)
    assert decode(_words(fmt, value, byte_order, word_order), s) == value


def test_the_service_config_has_a_meter_section():
    from gridflex.service.config import ServiceConfig

    cfg = ServiceConfig.model_validate({"meter": {"host": "10.0.0.5", "address": 3054, "scale": 1000}})
    assert cfg.meter.function == "holding" and cfg.meter.data_type == "float32"
    with pytest.raises(Exception, match=r"meter\.modbus\.scale"):
        ServiceConfig.model_validate({"meter": {"host": "m", "address": 1, "scale": "nan"}})


def test_the_meter_section_takes_a_prometheus_query_by_kind():
    from gridflex.service.config import ServiceConfig

    cfg = ServiceConfig.model_validate({"meter": {"kind": "prometheus", "url": "http://127.0.0.1:9090",
                                                  "query": "sum(facility_power_w)", "series": ["facility_power_w"]}})
    assert cfg.meter.kind == "prometheus" and cfg.meter.max_age_s == 60
    with pytest.raises(Exception, match=r"meter\.prometheus\.series"):
        ServiceConfig.model_validate({"meter": {"kind": "prometheus", "url": "http://p:9090", "query": "x"}})
    with pytest.raises(Exception, match="does not match any of the expected tags: 'modbus', 'prometheus'"):
        ServiceConfig.model_validate({"meter": {"kind": "snmp", "host": "m"}})
