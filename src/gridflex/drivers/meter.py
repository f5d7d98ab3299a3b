"""The site's own meter over Modbus TCP (a revenue or PDU meter): what the utility settles on.

    meter = ModbusMeter(MeterSettings(host="10.0.0.5", address=3054, data_type="float32", scale=1000))
    power_w, read_at_s = meter.read()

Real meters differ in where and how they keep power: the register address, the function code
(holding or input registers), the data type, the scale to watts, and the byte order within a
register and the word order across registers are all settings. A meter that does not answer, or
answers with an exception, raises `DriverError` naming the meter; `age_s` says how old the last
good reading is, so the caller can tell a stale meter from a live one.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from gridflex.errors import DriverError

#: struct format and register count of each data type.
TYPES = {"int16": ("h", 1), "uint16": ("H", 1), "int32": ("i", 2), "uint32": ("I", 2), "float32": ("f", 2),
         "int64": ("q", 4), "uint64": ("Q", 4), "float64": ("d", 4)}


class MeterSettings(BaseModel):
    """Where the meter keeps site power and how to decode it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["modbus"] = Field("modbus", description="modbus (this) or prometheus (drivers/meter_prometheus.py)")
    host: str = Field(min_length=1, description="meter (or gateway) address")
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=247, description="Modbus unit id")
    function: Literal["holding", "input"] = Field("holding", description="function code 3 (holding) or 4 (input)")
    address: int = Field(ge=0, le=65535, description="first register, zero-based as sent on the wire")
    data_type: Literal[tuple(TYPES)] = "float32"  # type: ignore[valid-type]
    scale: float = Field(1.0, description="watts per raw unit (e.g. 1000 for a meter reporting kW)")
    byte_order: Literal["big", "little"] = Field("big", description="byte order within each 16-bit register")
    word_order: Literal["big", "little"] = Field("big", description="order of the registers of a 32/64-bit value")
    timeout_s: float = Field(3.0, gt=0, le=60, description="deadline of one read")


def decode(registers: list[int], s: MeterSettings) -> float:
    """Raw registers to watts, following the settings' type, byte and word order, and scale."""
    fmt, count = TYPES[s.data_type]
    if len(registers) != count:
        raise DriverError(f"meter: expected {count} register(s) for {s.data_type}, got {len(registers)}")
    words = list(reversed(registers)) if s.word_order == "little" else list(registers)
    raw = b"".join(w.to_bytes(2, "little" if s.byte_order == "little" else "big") for w in words)
    return struct.unpack(">" + fmt, raw)[0] * s.scale


class ModbusMeter:
    """Reads site power from a Modbus TCP meter (pymodbus client)."""

    def __init__(self, settings: MeterSettings, clock: Callable[[], float] = time.time):
        from pymodbus.client import ModbusTcpClient

        self.settings, self.clock = settings, clock
        self.name = f"meter {settings.host}:{settings.port}"
        self.client = ModbusTcpClient(settings.host, port=settings.port, timeout=settings.timeout_s, retries=0)
        self.last: tuple[float, float] | None = None  # (power_w, read_at_s) of the last good reading

    def read(self) -> tuple[float, float]:
        """(site power in W, epoch second it was read); DriverError if the meter does not answer."""
        from pymodbus.exceptions import ModbusException

        s = self.settings
        _, count = TYPES[s.data_type]
        call = self.client.read_holding_registers if s.function == "holding" else self.client.read_input_registers
        try:
            if not self.client.connected and not self.client.connect():
                raise DriverError(f"{self.name}: no connection within {s.timeout_s:g} s")
            answer = call(s.address, count=count, device_id=s.device_id)
        except ModbusException as e:
            self.client.close()
            raise DriverError(f"{self.name}: {e}") from None
        if answer.isError():
            raise DriverError(f"{self.name}: registers {s.address}..{s.address + count - 1} ({s.function}):"
                              f" the meter answered with an error ({answer}); check address, function and device_id")
        power_w = decode(list(answer.registers), s)
        if not math.isfinite(power_w):
            raise DriverError(f"{self.name}: the meter gave {power_w}; check data_type and byte/word order")
        self.last = (power_w, self.clock())
        return self.last

    def age_s(self) -> float:
        """Seconds since the last good reading (infinite before the first)."""
        return math.inf if self.last is None else self.clock() - self.last[1]

    def close(self) -> None:
        self.client.close()


def _kind(v) -> str:
    return (v.get("kind", "modbus") if isinstance(v, dict) else getattr(v, "kind", "modbus")) or "modbus"


def _meter_config():
    from gridflex.drivers.meter_prometheus import PrometheusMeterSettings

    return Annotated[Annotated[MeterSettings, Tag("modbus")] | Annotated[PrometheusMeterSettings, Tag("prometheus")],
                     Discriminator(_kind)]


#: The `meter:` config section: a Modbus TCP meter (`kind: modbus`, the default) or a Prometheus query.
MeterConfig = _meter_config()


def make_meter(settings, clock: Callable[[], float] = time.time):
    """The meter reader a `meter:` section describes."""
    if settings.kind == "prometheus":
        from gridflex.drivers.meter_prometheus import PrometheusMeter

        return PrometheusMeter(settings, clock)
    return ModbusMeter(settings, clock)
