"""The driver contract for miner fleets: the same verbs as `Driver`, with miner-shaped data.

A miner driver turns per-unit power targets into firmware commands (0 W: stop hashing and
sleep; a target between a unit's minimum and nameplate: hash at that power target, where the
firmware has one; nameplate: full). `apply` checks every target and that every unit it must
touch answers before changing anything, and raises `DriverError` naming the unit otherwise;
`restore` returns every unit to the state it was found in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gridflex.drivers.base import DriverHealth


@dataclass(frozen=True)
class MinerUnit:
    """One miner as discovered: its id and nameplate figures."""

    id: str
    model: str
    power_w: float
    hashrate_th_s: float
    min_power_w: float  # lowest power target the firmware accepts (= power_w: on/off only)


@dataclass(frozen=True, eq=False)
class MinerActions:
    unit_ids: tuple[str, ...]
    target_w: np.ndarray  # per unit; 0 = sleep


@dataclass(frozen=True, eq=False)
class MinerTelemetry:
    """One reading of the fleet; per-unit arrays follow `unit_ids`. Power and hashrate are means
    since the previous reading where the driver can tell, else the latest reading; a unit that
    does not answer is counted at its nameplate power (hashrate NaN, `responding` False)."""

    t_s: float
    unit_ids: tuple[str, ...]
    power_w: np.ndarray
    hashrate_th_s: np.ndarray
    target_w: np.ndarray  # targets in effect (0: asleep)
    responding: np.ndarray  # bool

    @property
    def total_w(self) -> float:
        return float(np.sum(self.power_w))


class MinerDriver(Protocol):
    name: str

    def discover(self) -> list[MinerUnit]: ...

    def read(self) -> MinerTelemetry: ...

    def apply(self, actions: MinerActions) -> None: ...

    def restore(self) -> None: ...

    def health(self) -> DriverHealth: ...
