"""The driver contract for load balancers in front of inference backends (sites).

A router driver sets the weight of a backend's server, drains it or makes it ready again,
and reads per-server stats. Every change is written to a `Ledger` (the original weight or
admin state) before it is made, so `restore()` puts back everything this driver or an
earlier, crashed run changed. Two guards hold for every verb: a name the balancer does not
know is an error naming it and the known ones, and no change may leave a backend with no
server that takes traffic (never drain or zero the only one up).

`shift_traffic` moves a backend's traffic split to target shares in bounded steps through
any driver that follows this contract (HAProxy today; Envoy, nginx or a Gateway can follow).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridflex.drivers.base import DriverHealth
from gridflex.drivers.ledger import Ledger
from gridflex.errors import DriverError, InputError

ADMIN_STATES = ("ready", "drain", "maint")
MIN_STEP = 0.01  # smallest share step: weights of 0..256 must be able to express it


@dataclass(frozen=True, eq=False)
class BackendStats:
    """One reading of a backend's servers; arrays follow `servers`. Counters are cumulative
    since the balancer started; `response_ms` is the balancer's recent average (NaN: none)."""

    t_s: float
    backend: str
    servers: tuple[str, ...]
    weight: np.ndarray  # int, user weight in effect
    admin: tuple[str, ...]  # "ready" | "drain" | "maint"
    up: np.ndarray  # bool: health checks (if any) pass
    sessions_now: np.ndarray
    sessions_total: np.ndarray
    responses_2xx: np.ndarray
    failed_total: np.ndarray  # connection errors + response errors + 5xx
    response_ms: np.ndarray

    @property
    def serving(self) -> np.ndarray:
        """Servers that take new traffic: up, ready and with a positive weight."""
        return self.up & (np.array(self.admin) == "ready") & (self.weight > 0)

    @property
    def shares(self) -> np.ndarray:
        """Each server's share of new traffic (weights of serving servers, normalised)."""
        w = np.where(self.serving, self.weight, 0).astype(float)
        total = w.sum()
        return w / total if total > 0 else w

    def index(self, server: str) -> int:
        try:
            return self.servers.index(server)
        except ValueError:
            raise InputError(f"server {server!r} is not in backend {self.backend!r}; "
                             f"its servers: {list(self.servers)}") from None


class RouterDriver(ABC):
    """Verbs of a load balancer, with the ledger and the guards kept here; a balancer
    implements the four primitives (`backends`, `read`, `_write_weights`, `_write_admin`).

    `_write_weights` gets all of one change at once, raises before cuts, and should hand
    them to the balancer as one batch: with single writes a change of scale (config weights
    summing to 5 becoming weights summing to 256) briefly sends one server nearly everything."""

    name = "router"
    max_weight = 256

    def __init__(self, state_file: Path | str | None = None):
        self.ledger = Ledger(state_file)

    # --- primitives a balancer implements ------------------------------------------------
    @abstractmethod
    def backends(self) -> dict[str, tuple[str, ...]]:
        """Every backend and its servers."""

    @abstractmethod
    def read(self, backend: str) -> BackendStats:
        """Stats of one backend (`InputError` naming it when unknown)."""

    @abstractmethod
    def _write_weights(self, backend: str, weights: Mapping[str, int]) -> None: ...

    @abstractmethod
    def _write_admin(self, backend: str, server: str, state: str) -> None: ...

    # --- verbs ---------------------------------------------------------------------------
    def set_weights(self, backend: str, weights: Mapping[str, int]) -> None:
        """Set several servers' weights, all checked first, in one batch, raises before cuts
        (the backend's total weight never passes through zero)."""
        stats = self.read(backend)
        new = stats.weight.copy()
        for server, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or not 0 <= w <= self.max_weight:
                raise InputError(f"weight of {backend}/{server}: {w!r}; allowed: an integer 0..{self.max_weight}")
            new[stats.index(server)] = int(w)
        self._check_keeps_serving(stats, new, np.array(stats.admin))
        changed = {s: int(new[i]) for i, s in enumerate(stats.servers) if new[i] != stats.weight[i]}
        for server in changed:
            self.ledger.remember(f"weight:{backend}/{server}", int(stats.weight[stats.index(server)]))
        if changed:
            self._write_weights(backend, _raises_first(changed, stats))

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        self.set_weights(backend, {server: weight})

    def drain(self, backend: str, server: str) -> None:
        """Stop sending new requests to `server`; requests in flight finish."""
        self._set_admin(backend, server, "drain")

    def ready(self, backend: str, server: str) -> None:
        self._set_admin(backend, server, "ready")

    def restore(self) -> None:
        """Put back every admin state and weight in the ledger: servers made ready first,
        then each backend's weights in one batch (raises first), then drains, so no backend
        passes through having no server. What fails stays in the ledger for the next try."""
        entries = [(k, *k.partition(":")[2].partition("/")[::2], v) for k, v in self.ledger.items()]
        readies = [e for e in entries if e[0].startswith("admin:") and e[3] == "ready"]
        cuts = [e for e in entries if e[0].startswith("admin:") and e[3] != "ready"]
        weights: dict[str, dict[str, int]] = {}
        for key, backend, server, original in entries:
            if key.startswith("weight:"):
                weights.setdefault(backend, {})[server] = int(original)
        failed = []

        def attempt(keys: list[str], what: str, write: Callable[[], None]) -> None:
            try:
                write()
            except (DriverError, InputError) as e:
                failed.append(f"{what}: {e}")
                return
            for k in keys:
                self.ledger.forget(k)

        for key, backend, server, original in readies:
            attempt([key], f"{backend}/{server}", lambda b=backend, s=server: self._write_admin(b, s, "ready"))
        for backend, originals in weights.items():
            def write(b=backend, w=originals):
                self._write_weights(b, _raises_first(w, self.read(b)))
            attempt([f"weight:{backend}/{s}" for s in originals], backend, write)
        for key, backend, server, original in cuts:
            attempt([key], f"{backend}/{server}", lambda b=backend, s=server, o=original: self._write_admin(b, s, o))
        if failed:
            raise DriverError("restore incomplete (kept in the ledger; retry restore): " + "; ".join(failed))

    def health(self) -> DriverHealth:
        try:
            n = sum(len(s) for s in self.backends().values())
        except DriverError as e:
            return DriverHealth(False, str(e))
        return DriverHealth(True, f"{n} server(s); {len(self.ledger)} change(s) in effect")

    # --- internals -------------------------------------------------------------------------
    def _set_admin(self, backend: str, server: str, state: str) -> None:
        if state not in ADMIN_STATES:
            raise InputError(f"state of {backend}/{server}: {state!r}; allowed: {', '.join(ADMIN_STATES)}")
        stats = self.read(backend)
        i = stats.index(server)
        if stats.admin[i] == state:
            return
        admin = np.array(stats.admin, dtype=object)
        admin[i] = state
        self._check_keeps_serving(stats, stats.weight, admin)
        self.ledger.remember(f"admin:{backend}/{server}", stats.admin[i])
        self._write_admin(backend, server, state)

    @staticmethod
    def _check_keeps_serving(stats: BackendStats, weight: np.ndarray, admin: np.ndarray) -> None:
        """Refuse a change that leaves no server taking traffic where one did before."""
        before = stats.serving.any()
        after = (stats.up & (admin == "ready") & (weight > 0)).any()
        if before and not after:
            only = [s for s, ok in zip(stats.servers, stats.serving) if ok]
            raise DriverError(f"backend {stats.backend!r}: refusing to stop {only}, the only server(s) up and "
                              "taking traffic; send traffic elsewhere first")


def _raises_first(weights: Mapping[str, int], stats: BackendStats) -> dict[str, int]:
    now = dict(zip(stats.servers, stats.weight.tolist()))
    return dict(sorted(weights.items(), key=lambda kv: kv[1] <= now.get(kv[0], 0)))


@dataclass(frozen=True)
class ShiftStep:
    t_s: float
    shares: dict[str, float]


def shift_traffic(router: RouterDriver, backend: str, target_shares: Mapping[str, float], max_step: float = 0.1,
                  step_interval_s: float = 1.0, *, max_steps: int | None = None,
                  sleep: Callable[[float], None] = time.sleep,
                  on_step: Callable[[ShiftStep], None] | None = None) -> list[ShiftStep]:
    """Move `backend`'s split to `target_shares` (server -> share, summing to 1; servers not
    named get 0) in steps, waiting `step_interval_s` between them. Each step goes along the
    straight line from the current split towards the target, so every split is valid; no step
    changes a server's share (as applied, in integer weights) by more than `max_step`, and
    while a step is applied (raises before cuts) no server gets more than the larger of its old
    and new share. Stops with `DriverError`, weights left at the last step, if a receiving
    server is down or not ready. `max_steps` stops early (a caller that steps once per tick)."""
    if not (isinstance(max_step, (int, float)) and MIN_STEP <= max_step <= 1):
        raise InputError(f"max_step: {max_step!r}; allowed: a share in [{MIN_STEP}, 1]")
    if not (isinstance(step_interval_s, (int, float)) and 0 <= step_interval_s < math.inf):
        raise InputError(f"step_interval_s: {step_interval_s!r}; allowed: seconds >= 0")
    reach = max_step - 1.0 / router.max_weight  # rounding a share to a weight moves it by < 1/max_weight
    stats = router.read(backend)
    target_w = _weights(_target_vector(stats, target_shares), router.max_weight)
    target = target_w / router.max_weight  # as weights can express it
    steps: list[ShiftStep] = []
    while True:
        cannot = [s for s, t, ok in zip(stats.servers, target, stats.up & (np.array(stats.admin) == "ready"))
                  if t > 0 and not ok]
        if cannot:
            raise DriverError(f"backend {backend!r}: {cannot} down or not ready; cannot send traffic there")
        serving = bool(stats.serving.any())
        gap = float(np.max(np.abs(target - stats.shares)))
        if serving and gap < 1e-9:
            return steps
        last = gap <= max_step + 1e-9 or not serving  # nothing serving yet: nothing to drop, go at once
        weights = target_w if last else _weights(stats.shares + (target - stats.shares) * reach / gap,
                                                 router.max_weight)
        router.set_weights(backend, {s: int(w) for s, w in zip(stats.servers, weights)})
        step = ShiftStep(time.time(), {s: float(w) / weights.sum() for s, w in zip(stats.servers, weights)})
        steps.append(step)
        if on_step is not None:
            on_step(step)
        if last or len(steps) == max_steps:
            return steps
        sleep(step_interval_s)
        stats = router.read(backend)


def _weights(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer weights summing to `total` in proportion to `shares` (largest remainder), so
    each applied share is within 1/total of the one asked for."""
    raw = shares * total
    w = np.floor(raw).astype(int)
    w[np.argsort(w - raw, kind="stable")[: total - int(w.sum())]] += 1
    return w


def _target_vector(stats: BackendStats, target_shares: Mapping[str, float]) -> np.ndarray:
    target = np.zeros(len(stats.servers))
    for server, share in target_shares.items():
        if not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise InputError(f"share of {stats.backend}/{server}: {share!r}; allowed: a number in [0, 1]")
        target[stats.index(server)] = share
    if abs(target.sum() - 1) > 1e-6:
        raise InputError(f"target shares of {stats.backend!r} sum to {target.sum():.4f}; they must sum to 1")
    return target
