"""A protocol-level miner emulator: the CGMiner JSON API on TCP port 4028 of loopback addresses,
answering with replies recorded from a real AvalonMiner 1566, so pyasic's own discovery and
commands run unmodified against it.

What is recorded and what is emulated:
- `version`, `devs`, `pools`, `estats`/`stats`: the recorded replies, with the fields that
  depend on the state rewritten: WALLPOWER, GHSspd/GHSavg/MGHS, GHSmm (nominal, by level), MPO,
  WORKMODE, SoftOFF, SYSTEMSTATU in estats' `MM ID0`, and the `MHS ...` rates in devs.
- `ascset|0,softoff,...` / `softon` / `worklevel,set,N`: no real reply was recorded; the emulator
  answers in the cgminer format with the messages pyasic checks ("success", "ASC 0 set OK").
- Power model (an assumption, not a measurement): work level 1 is the recorded state (3731 W);
  level 0 draws `LEVEL_FRACTION[0]` of it and level 2 `LEVEL_FRACTION[2]`; hashrate (and the
  per-board MGHS) scales with power; a soft-off unit draws `SLEEP_W` and hashes nothing. An
  `ascset` without a value (what pyasic 0.79 sends for `set_power_limit(0)`) is refused.
- Multicommands (`a+b+c`) are answered as cgminer does: {"a": [reply], "b": [reply], ...}.
- `silent = True` makes the unit accept connections and never answer (a hung controller).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Self

FIXTURE = Path(__file__).parent / "fixtures" / "miner_api" / "avalon1566_fw24102401.json"
PORT = 4028
LEVEL_FRACTION = {0: 0.8, 1: 1.0, 2: 1.1}
SLEEP_W = 25


class EmulatedAvalon:
    def __init__(self, host: str, recorded: dict, level: int | None = None):
        self.host, self.recorded = host, recorded
        mm = recorded["rpc_estats"]["STATS"][0]["MM ID0"]
        self.recorded_level = int(_field(mm, "WORKMODE"))
        self.level = self.recorded_level if level is None else level
        self.base_w = float(_field(mm, "WALLPOWER"))
        self.base_ghs = float(_field(mm, "GHSspd"))
        self.mining = True
        self.silent = False
        self.commands: list[str] = []  # every command received, in order
        self.times: list[float] = []  # when each was received (time.monotonic)

    @property
    def level_scale(self) -> float:
        """Power and hashrate at the current work level relative to the recorded one."""
        return LEVEL_FRACTION[self.level] / LEVEL_FRACTION[self.recorded_level]

    @property
    def scale(self) -> float:
        """Power and hashrate relative to the recorded state (0 when soft-off)."""
        return self.level_scale if self.mining else 0.0

    @property
    def power_w(self) -> float:
        return self.base_w * self.scale if self.mining else SLEEP_W

    @property
    def hashrate_ghs(self) -> float:
        return self.base_ghs * self.scale

    def answer(self, request: dict) -> dict:
        command = str(request.get("command", ""))
        self.times.append(time.monotonic())
        self.commands.append(command if "parameter" not in request else f"{command}|{request['parameter']}")
        if "+" in command:
            return {c: [self._one(c, None)] for c in command.split("+")} | {"id": 1}
        return self._one(command, request.get("parameter"))

    def _one(self, command: str, parameter) -> dict:
        if command == "version":
            return copy.deepcopy(self.recorded["rpc_version"])
        if command == "pools":
            return copy.deepcopy(self.recorded["rpc_pools"])
        if command == "devs":
            return self._devs()
        if command in ("estats", "stats"):
            return self._estats()
        if command == "ascset":
            return self._ascset(str(parameter or ""))
        return _status("E", 14, "Invalid command")

    def _devs(self) -> dict:
        out = copy.deepcopy(self.recorded["rpc_devs"])
        for key in ("MHS av", "MHS 30s", "MHS 1m", "MHS 5m", "MHS 15m"):
            out["DEVS"][0][key] = round(self.hashrate_ghs * 1000, 2)
        return out

    def _estats(self) -> dict:
        out = copy.deepcopy(self.recorded["rpc_estats"])
        mm = out["STATS"][0]["MM ID0"]
        boards = " ".join(f"{float(x) * self.scale:.2f}" for x in _field(mm, "MGHS").split())
        for name, value in (
            ("MGHS", boards),
            ("WALLPOWER", f"{self.power_w:.0f}"),
            ("GHSspd", f"{self.hashrate_ghs:.2f}"),
            ("GHSmm", f"{float(_field(mm, 'GHSmm')) * self.level_scale:.2f}"),  # nominal: kept while off
            ("GHSavg", f"{self.hashrate_ghs:.2f}"),
            ("MPO", f"{float(_field(mm, 'MPO')) * self.level_scale:.0f}"),
            ("WORKMODE", str(self.level)),
            ("SoftOFF", "0" if self.mining else "1"),
            ("SYSTEMSTATU", f"Work: {'In Work' if self.mining else 'In Idle'}, Hash Board: 3 "),
        ):
            mm = re.sub(rf"\b{name}\[[^\]]*\]", f"{name}[{value}]", mm, count=1)
        out["STATS"][0]["MM ID0"] = mm
        return out

    def _ascset(self, parameter: str) -> dict:
        parts = parameter.split(",")
        if len(parts) >= 3 and parts[1] in ("softoff", "softon"):
            self.mining = parts[1] == "softon"
            return _status("I", 119, f"ASC 0 set info: success {parts[1]}:{parts[2]}")
        if len(parts) == 4 and parts[1:3] == ["worklevel", "set"] and parts[3] in ("0", "1", "2"):
            self.level = int(parts[3])
            return _status("S", 119, "ASC 0 set OK")
        return _status("E", 120, f"ASC 0 set failed: {parameter}")


class MinerEmulator:
    """Emulated miners on 127.0.0.2, 127.0.0.3, ... port 4028 (pyasic's fixed port), served from a
    background thread. Under pytest-xdist each worker takes its own block of loopback addresses."""

    def __init__(self, count: int, first_host: int | None = None, level: int | None = None):
        if first_host is None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
            first_host = 2 + 40 * int(worker.removeprefix("gw") or 0)
        recorded = json.loads(FIXTURE.read_text())
        self.miners = [EmulatedAvalon(f"127.0.0.{first_host + i}", recorded, level) for i in range(count)]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.base_events.Server] = []

    @property
    def hosts(self) -> list[str]:
        return [m.host for m in self.miners]

    def __getitem__(self, host: str) -> EmulatedAvalon:
        return next(m for m in self.miners if m.host == host)

    def __enter__(self) -> Self:
        self._thread.start()
        for m in self.miners:
            server = asyncio.run_coroutine_threadsafe(self._serve(m), self._loop).result(5)
            self._servers.append(server)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        for s in self._servers:
            s.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, miner: EmulatedAvalon):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                data = await asyncio.wait_for(reader.read(65536), 5)
                if miner.silent:
                    await asyncio.sleep(3600)
                    return
                reply = miner.answer(json.loads(data.decode()))
                writer.write(json.dumps(reply).encode() + b"\x00")  # cgminer ends replies with a NUL
                await writer.drain()
            except (TimeoutError, json.JSONDecodeError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(handle, miner.host, PORT, reuse_address=True)


def _field(mm: str, name: str) -> str:
    return re.search(rf"\b{name}\[([^\]]*)\]", mm).group(1)


def _status(status: str, code: int, msg: str) -> dict:
    return {
        "STATUS": [{"STATUS": status, "When": int(time.time()), "Code": code, "Msg": msg,
                    "Description": "cgminer 4.11.1"}],
        "id": 1,
    }
