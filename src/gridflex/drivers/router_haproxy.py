"""HAProxy through its runtime API: the admin UNIX socket (`stats socket PATH level admin`).

One connection per command (the socket's non-interactive mode). Reads `show servers state`
(user weight, admin and operational state) and `show stat` (CSV counters); writes
`set server B/S weight N` and `set server B/S state ready|drain|maint`. HAProxy itself keeps
requests in flight when a weight changes or a server drains; this driver adds the ledger
and the guards of `RouterDriver`. Changes made here live until HAProxy restarts (no
server-state file is written), and `restore()` puts them back sooner.
"""

from __future__ import annotations

import csv
import io
import re
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gridflex.drivers.router_base import BackendStats, RouterDriver
from gridflex.errors import DriverError, InputError

_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
# srv_admin_state bits (HAProxy's enum srv_admin): forced/inherited/config/resolver/health maintenance; drain
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
_OP_UP = (1, 2)  # srv_op_state: starting, running


class HAProxyDriver(RouterDriver):
    name = "haproxy"
    max_weight = 256

    def __init__(self, socket_path: Path | str, state_file: Path | str | None = None, timeout_s: float = 5.0):
        super().__init__(state_file)
        self.socket_path = Path(socket_path)
        self.timeout_s = timeout_s

    def command(self, cmd: str) -> str:
        """Send one runtime-API command and return HAProxy's answer."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout_s)
                s.connect(str(self.socket_path))
                s.sendall(cmd.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except (OSError, TimeoutError) as e:
            raise DriverError(f"HAProxy admin socket {self.socket_path}: {e.strerror or e}; is haproxy running "
                              "with 'stats socket <path> level admin' in its global section?") from None
        out = b"".join(chunks).decode(errors="replace")
        if out.strip().startswith("Permission denied"):
            raise DriverError(f"HAProxy admin socket {self.socket_path}: permission denied for {cmd.split()[0]!r}; "
                              "the socket needs 'level admin'")
        return out

    # --- reading ---------------------------------------------------------------------------
    def backends(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for row in self._servers_state(""):
            out.setdefault(row["be_name"], []).append(row["srv_name"])
        return {b: tuple(s) for b, s in out.items()}

    def read(self, backend: str) -> BackendStats:
        _check_name("backend", backend)
        state = self._servers_state(backend)
        if not state:
            raise InputError(f"backend {backend!r} has no servers in HAProxy; backends: {sorted(self.backends())}")
        stat = {r["svname"]: r for r in self._stat() if r["# pxname"] == backend}
        servers = tuple(r["srv_name"] for r in state)
        admin_bits = [int(r["srv_admin_state"]) for r in state]

        def counter(field: str) -> np.ndarray:
            return np.array([_num(stat.get(s, {}).get(field)) for s in servers])

        return BackendStats(
            t_s=time.time(), backend=backend, servers=servers,
            weight=np.array([int(r["srv_uweight"]) for r in state]),
            admin=tuple("maint" if b & _MAINT_BITS else "drain" if b & _DRAIN_BITS else "ready" for b in admin_bits),
            up=np.array([int(r["srv_op_state"]) in _OP_UP for r in state]),
            sessions_now=counter("scur"), sessions_total=counter("stot"), responses_2xx=counter("hrsp_2xx"),
            failed_total=counter("econ") + counter("eresp") + counter("hrsp_5xx"),
            response_ms=np.array([_num(stat.get(s, {}).get("rtime"), np.nan) for s in servers]),
        )

    def _servers_state(self, backend: str) -> list[dict[str, str]]:
        """Rows of `show servers state [backend]`: a version line "1", a "# ..." header, rows."""
        lines = [ln for ln in self.command(f"show servers state {backend}".strip()).splitlines() if ln.strip()]
        if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("#"):
            said = lines[0].strip() if lines else "nothing"
            if backend:
                raise InputError(f"backend {backend!r}: HAProxy says {said!r}; backends: {sorted(self.backends())}")
            raise DriverError(f"HAProxy 'show servers state': unexpected answer {said!r}")
        header = lines[1][1:].split()
        return [dict(zip(header, ln.split())) for ln in lines[2:]]

    def _stat(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.command("show stat"))))

    # --- writing ---------------------------------------------------------------------------
    def _write_weights(self, backend: str, weights: Mapping[str, int]) -> None:
        """All in one connection, commands separated by ';': HAProxy runs them back to back."""
        self._set(backend, {server: f"weight {int(w)}" for server, w in weights.items()})

    def _write_admin(self, backend: str, server: str, state: str) -> None:
        self._set(backend, {server: f"state {state}"})

    def _set(self, backend: str, what: Mapping[str, str]) -> None:
        _check_name("backend", backend)
        for server in what:
            _check_name("server", server)
        cmd = "; ".join(f"set server {backend}/{server} {w}" for server, w in what.items())
        out = self.command(cmd).strip()
        if out:
            raise DriverError(f"HAProxy refused '{cmd}': {out}")


def _check_name(field: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InputError(f"{field} {value!r}: allowed characters are letters, digits and _ . : -")


def _num(value: str | None, empty: float = 0.0) -> float:
    try:
        return float(value) if value not in (None, "") else empty
    except ValueError:
        return empty
