"""Real miners through pyasic: stop and resume hashing, set power targets where the firmware
takes one, read hashrate and power, and put every unit back as it was found.

pyasic is asynchronous; the driver runs its own event loop on a private thread so the controller
calls it like any other driver. Every pyasic call has a deadline (`timeout_s`): a miner that does
not answer in time is a `DriverError`, never a hang.

Safety:
- `apply` validates every target, then checks that every unit it must change answers, before
  it changes anything; if a command still fails half way, the units already changed in that call
  are put back and `DriverError` names the unit that failed;
- the state each unit was found in is written to `state_path` (when given) before the first
  change, so `restore` works after a crash too (`PyasicDriver(..., state_path=same)` then
  `restore()`);
- restarts are staggered `restart_stagger_s` apart (no synchronised inrush);
- `dry_run` logs what would be done and touches nothing.

Power targets: pyasic's `set_power_limit(watts)` is used as is, except on Avalon firmware where
pyasic maps the argument to a work level (0/1/2, and 0 is dropped by pyasic 0.79); there a target
below the unit's found power selects the work level below the found one (units found at level 1
or lower are on/off only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from gridflex.drivers.base import DriverHealth
from gridflex.drivers.miner_base import MinerActions, MinerTelemetry, MinerUnit
from gridflex.errors import DriverError

log = logging.getLogger(__name__)

#: Power of an Avalon one work level down, as a fraction of the level it was found at (stated
#: assumption: the firmware does not report it; telemetry shows the real draw).
AVALON_STEP_DOWN = 0.9


@dataclass
class FoundState:
    """How a unit was before gridflex touched it."""

    mining: bool
    power_w: float  # drawn when found (its nameplate for gridflex)
    power_limit_w: float | None  # the firmware's power limit when found, if it reports one
    level: int | None  # Avalon work level, else None


class PyasicDriver:
    name = "pyasic"

    def __init__(
        self,
        hosts: Sequence[str],
        timeout_s: float = 5.0,
        restart_stagger_s: float = 2.0,
        min_power_fraction: float | None = None,
        state_path: Path | None = None,
        dry_run: bool = False,
    ):
        if not hosts:
            raise DriverError("pyasic driver: no miner hosts given")
        self.hosts = tuple(hosts)
        self.timeout_s, self.restart_stagger_s = timeout_s, restart_stagger_s
        self.min_power_fraction = min_power_fraction
        self.state_path, self.dry_run = state_path, dry_run
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pyasic-driver", daemon=True)
        self._thread.start()
        self._miners: dict[str, Any] = {}
        self._units: list[MinerUnit] = []
        self._found: dict[str, FoundState] = self._load_state()
        self._target: dict[str, float] = {}  # last target applied per unit (0: asleep)

    # --- driver verbs -------------------------------------------------------------------
    def discover(self) -> list[MinerUnit]:
        """Identify every host with pyasic's own probes and record how each was found."""
        from pyasic import get_miner

        found = self._run(_gather(*(self._call(h, get_miner(h)) for h in self.hosts)))
        units = []
        for host, miner in zip(self.hosts, found):
            if miner is None:
                raise DriverError(f"miner {host}: pyasic found no supported miner there")
            self._miners[host] = miner
        states = self._run(_gather(*(self._read_state(h) for h in self.hosts)))
        for host, (state, hashrate_th_s) in zip(self.hosts, states):
            self._found.setdefault(host, state)
            nameplate = self._found[host].power_w
            units.append(MinerUnit(host, str(self._miners[host].model), nameplate, hashrate_th_s,
                                   self._min_power_w(host, nameplate)))
            self._target[host] = nameplate if state.mining else 0.0
        self._units = units
        return list(units)

    def read(self) -> MinerTelemetry:
        self._need_discovered()
        readings = self._run(_gather(*(self._read(h) for h in self.hosts), return_exceptions=True))
        power, hashrate, ok = [], [], []
        for unit, r in zip(self._units, readings):
            if isinstance(r, BaseException):
                if not isinstance(r, DriverError):
                    raise r
                # Not answering: counted at nameplate, so the site is never under-counted.
                p, h = unit.power_w, np.nan
                ok.append(False)
            else:
                p, h = r
                ok.append(True)
            power.append(p)
            hashrate.append(h)
        return MinerTelemetry(
            time.time(), self.hosts, np.array(power), np.array(hashrate),
            np.array([self._target[h] for h in self.hosts]), np.array(ok),
        )

    def apply(self, actions: MinerActions) -> None:
        self._need_discovered()
        targets = self._validated(actions)
        changes = {h: t for h, t in targets.items() if abs(t - self._target[h]) > 0.5}
        if not changes:
            return
        if self.dry_run:
            for h, t in changes.items():
                log.info("dry run: miner %s -> %s", h, "sleep" if t <= 0 else f"{t:.0f} W")
            return
        # Every unit to change must answer before any is changed.
        self._run(_gather(*(self._call(h, self._miners[h].rpc.version()) for h in changes)))
        self._save_state()
        before = dict(self._target)
        done: list[str] = []
        try:
            self._run(self._apply_all(changes, done))
        except DriverError:
            self._run(self._apply_all({h: before[h] for h in done}, [], quiet=True))
            for h in done:
                self._target[h] = before[h]
            raise

    def restore(self) -> None:
        """Put every unit back as it was found (also after a crash, from `state_path`)."""
        if not self._miners and self._found:
            self.discover()
        back = {h: (s.power_w if s.mining else 0.0) for h, s in self._found.items() if h in self._miners}
        if self.dry_run:
            return
        self._run(self._apply_all(back, [], restoring=True))
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)
        self._found = {}

    def health(self) -> DriverHealth:
        if not self._miners:
            return DriverHealth(False, "not discovered yet")
        tel = self.read()
        silent = [h for h, ok in zip(tel.unit_ids, tel.responding) if not ok]
        detail = f"not answering: {', '.join(silent)}" if silent else f"{len(self.hosts)} miners answering"
        return DriverHealth(not silent, detail)

    def close(self) -> None:
        """Stop the driver's event loop (after cancelling calls still waiting on silent miners)."""
        if self._loop.is_running():
            self._run(_cancel_others())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._found and self._miners:
                self.restore()
        finally:
            self.close()

    # --- internals ------------------------------------------------------------------------
    def _run(self, coro: Coroutine):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _call(self, host: str, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.timeout_s)
        except TimeoutError:
            raise DriverError(f"miner {host}: no answer within {self.timeout_s:g} s") from None
        except DriverError:
            raise
        except Exception as e:  # noqa: BLE001 - pyasic raises APIError, OSError, KeyError, ...
            raise DriverError(f"miner {host}: {type(e).__name__}: {e}") from None

    async def _read(self, host: str) -> tuple[float, float]:
        data = await self._call(host, self._miners[host].get_data(include=["wattage", "hashrate"]))
        if data.wattage is None or data.hashrate is None:
            raise DriverError(f"miner {host}: no power/hashrate in its reply")
        return float(data.wattage), float(data.hashrate.into(data.hashrate.unit.TH).rate)

    async def _read_state(self, host: str) -> tuple[FoundState, float]:
        miner = self._miners[host]
        power_w, hashrate = await self._read(host)
        data = await self._call(host, miner.get_data(include=["expected_hashrate", "wattage_limit"]))
        expected = data.expected_hashrate
        nameplate_th = float(expected.into(expected.unit.TH).rate) if expected else hashrate
        level = await self._avalon_level(host) if _is_avalon(miner) else None
        limit = float(data.wattage_limit) if data.wattage_limit else None
        return FoundState(hashrate > 0, power_w, limit, level), nameplate_th

    async def _avalon_level(self, host: str) -> int | None:
        miner = self._miners[host]
        raw = await self._call(host, miner.rpc.estats())
        try:
            return int(miner.parse_estats(raw)["STATS"][0]["MM ID0"]["WORKMODE"])
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    def _min_power_w(self, host: str, nameplate_w: float) -> float:
        if _is_avalon(self._miners[host]):
            level = self._found[host].level
            return nameplate_w * AVALON_STEP_DOWN if level is not None and level >= 2 else nameplate_w
        if self.min_power_fraction is None:
            return nameplate_w
        return nameplate_w * self.min_power_fraction

    async def _apply_all(self, targets: dict[str, float], done: list[str], quiet: bool = False,
                         restoring: bool = False) -> None:
        """Sleep first (sheds power at once), then power targets, then staggered restarts."""
        order = sorted(targets, key=lambda h: (targets[h] > 0 and self._target.get(h, 0) <= 0, h))
        restarted = 0
        for h in order:
            waking = targets[h] > 0 and self._target.get(h, 0) <= 0
            if waking and restarted:
                await asyncio.sleep(self.restart_stagger_s)
            try:
                await self._set(h, targets[h], restoring)
            except DriverError:
                if quiet:
                    continue
                raise
            restarted += waking
            self._target[h] = targets[h]
            done.append(h)

    async def _set(self, host: str, target_w: float, restoring: bool) -> None:
        miner, found = self._miners[host], self._found.get(host)
        if target_w <= 0:
            await self._ok(host, "stop mining", miner.stop_mining())
            return
        if self._target.get(host, 0) <= 0:
            await self._ok(host, "resume mining", miner.resume_mining())
        if _is_avalon(miner):
            if found is None or found.level is None:
                return
            level = found.level if restoring or target_w >= found.power_w - 0.5 else found.level - 1
            await self._ok(host, f"work level {level}", miner.set_power_limit(level))
        elif restoring and found is not None and found.power_limit_w is not None:
            await self._ok(host, "power limit as found", miner.set_power_limit(int(found.power_limit_w)))
        elif found is not None and target_w < found.power_w - 0.5:
            await self._ok(host, f"power limit {target_w:.0f} W", miner.set_power_limit(int(target_w)))

    async def _ok(self, host: str, what: str, awaitable) -> None:
        if not await self._call(host, awaitable):
            raise DriverError(f"miner {host}: {what} refused by the firmware")

    def _validated(self, actions: MinerActions) -> dict[str, float]:
        if tuple(actions.unit_ids) != self.hosts:
            raise DriverError(f"miner actions must list every unit in order: {', '.join(self.hosts)}")
        out = {}
        for unit, t in zip(self._units, np.asarray(actions.target_w, float).tolist()):
            if not np.isfinite(t) or t < 0 or t > unit.power_w + 0.5 or 0 < t < unit.min_power_w - 0.5:
                raise DriverError(
                    f"miner {unit.id}: target_w {t} not allowed; allowed: 0 (sleep) or"
                    f" {unit.min_power_w:.0f}..{unit.power_w:.0f} W"
                )
            out[unit.id] = t
        return out

    def _need_discovered(self) -> None:
        if not self._miners:
            raise DriverError("pyasic driver: call discover() first")

    def _save_state(self) -> None:
        if self.state_path is not None:
            self.state_path.write_text(json.dumps({h: asdict(s) for h, s in self._found.items()}))

    def _load_state(self) -> dict[str, FoundState]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            return {h: FoundState(**s) for h, s in json.loads(self.state_path.read_text()).items()}
        except (ValueError, TypeError) as e:
            raise DriverError(f"pyasic driver: cannot read saved state {self.state_path}: {e}") from None


async def _cancel_others() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _gather(*aws, return_exceptions: bool = False) -> list:
    return await asyncio.gather(*aws, return_exceptions=return_exceptions)


def _is_avalon(miner) -> bool:
    from pyasic.miners.backends.avalonminer import AvalonMiner

    return isinstance(miner, AvalonMiner)
