"""A router in memory, behind the same contract as HAProxy: the twin of a fleet's load balancer.

It keeps each backend's servers with their weights and admin states, and counts the requests
the simulation says each server answered or failed, so the coordinator reads it back as it
reads HAProxy's stats. All servers are up (a site the simulation takes away is unreachable to
the coordinator, not down in the router).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gridflex.drivers.router_base import BackendStats, RouterDriver
from gridflex.errors import InputError


class TwinRouter(RouterDriver):
    name = "twin-router"

    def __init__(self, backends: Mapping[str, Mapping[str, int]]):
        """`backends`: backend -> {server: starting weight}."""
        super().__init__(None)
        self._servers = {b: tuple(s) for b, s in backends.items()}
        self._weight = {b: np.array([int(w) for w in s.values()]) for b, s in backends.items()}
        self._admin = {b: ["ready"] * len(s) for b, s in backends.items()}
        self._answered = {b: np.zeros(len(s)) for b, s in backends.items()}
        self._failed = {b: np.zeros(len(s)) for b, s in backends.items()}
        self.t_s = 0.0

    def count(self, backend: str, answered: np.ndarray, failed: np.ndarray) -> None:
        """Add requests each server answered and failed (arrays follow the backend's servers)."""
        self._known(backend)
        self._answered[backend] += answered
        self._failed[backend] += failed

    def backends(self) -> dict[str, tuple[str, ...]]:
        return dict(self._servers)

    def read(self, backend: str) -> BackendStats:
        self._known(backend)
        n = len(self._servers[backend])
        total = self._answered[backend] + self._failed[backend]
        return BackendStats(
            t_s=self.t_s, backend=backend, servers=self._servers[backend], weight=self._weight[backend].copy(),
            admin=tuple(self._admin[backend]), up=np.ones(n, dtype=bool), sessions_now=np.zeros(n),
            sessions_total=total.copy(), responses_2xx=self._answered[backend].copy(),
            failed_total=self._failed[backend].copy(), response_ms=np.full(n, np.nan))

    def _write_weights(self, backend: str, weights: Mapping[str, int]) -> None:
        for server, w in weights.items():
            self._weight[backend][self._servers[backend].index(server)] = int(w)

    def _write_admin(self, backend: str, server: str, state: str) -> None:
        self._admin[backend][self._servers[backend].index(server)] = state

    def _known(self, backend: str) -> None:
        if backend not in self._servers:
            raise InputError(f"backend {backend!r} unknown; backends: {list(self._servers)}")
