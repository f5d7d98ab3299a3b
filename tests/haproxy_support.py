"""A real HAProxy in front of local inference backends standing for sites, all on loopback.

`SiteBackend` processes (one per site, each its own process and port) answer
`GET /v1/infer` after a delay standing for the inference time plus the round trip from the
clients' region to that site (measured inter-region RTTs, ../shared/data/cloud-interregion-latency).
`HAProxyRig` writes an HAProxy config (one frontend, one backend `llm` with a server per site,
HTTP health checks, an admin socket) into a temporary directory, starts `haproxy -db` as a child
process and stops everything at the end. `LoadClient` sends a paced, bounded request load
(count and time) from threads and records which site answered each request and how fast.
When HAProxy is missing the tests fail under CI (CI=true or GRIDFLEX_REQUIRE_HAPROXY=1) and
are skipped elsewhere. Run as a script, this module is a site backend or a shifting coordinator
(`python -m tests.haproxy_support serve NAME PORT DELAY_MS` or
`... shift SOCKET LEDGER BACKEND MAX_STEP INTERVAL_S SERVER=SHARE...`, from the project's root).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.slurm_cluster import _free_ports as free_ports
from tests.slurm_cluster import _which, wait_for

ROOT = Path(__file__).resolve().parents[1]
#: how to start this module as a process (a site backend or a coordinator), with `cwd=ROOT`
SCRIPT = [sys.executable, "-m", "tests.haproxy_support"]
LATENCY_CSV = ROOT.parent / "shared" / "data" / "cloud-interregion-latency" / "ibm_vpc_interregion_latency_matrix_latest.csv"


def require_haproxy() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("GRIDFLEX_REQUIRE_HAPROXY") == "1"


def haproxy_binary() -> str | None:
    return _which("haproxy")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Site:
    name: str
    region: str
    weight: int  # HAProxy config weight: the split before any shift


class HAProxyRig:
    """Backends for `sites` and an HAProxy balancing backend `llm` over them."""

    def __init__(self, root: Path, sites: list[Site], client_region: str, service_ms: float = 10.0):
        self.root, self.sites = root, sites
        self.socket = root / "admin.sock"
        self.procs: dict[str, subprocess.Popen] = {}
        ports = free_ports(len(sites) + 1)
        self.port, self.site_ports = ports[0], dict(zip((s.name for s in sites), ports[1:]))
        rtt = rtt_ms(client_region)
        self.delay_ms = {s.name: service_ms + rtt.get(s.region, 0.0) for s in sites}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/infer"

    def start(self) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("HAProxy is not installed; run scripts/ci/haproxy.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        for s in self.sites:
            log = open(self.root / f"{s.name}.log", "ab")
            self.procs[s.name] = subprocess.Popen(
                [*SCRIPT, "serve", s.name, str(self.site_ports[s.name]), str(self.delay_ms[s.name])],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        for s in self.sites:
            wait_for(lambda p=self.site_ports[s.name]: _accepts(p), 30, f"backend {s.name} listening", self.procs)
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(self.config())
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c: {check.stdout}{check.stderr}")
        log = open(self.root / "haproxy.log", "ab")
        self.procs["haproxy"] = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.socket.exists() and _accepts(self.port), 30, "haproxy listening", self.procs)

    def config(self) -> str:
        servers = "\n".join(
            f"    server {s.name} 127.0.0.1:{self.site_ports[s.name]} weight {s.weight} check inter 1s"
            for s in self.sites)
        return f"""\
global
    stats socket {self.socket} mode 600 level admin
    nbthread 1
    maxconn 512
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend llm
backend llm
    balance roundrobin
    option httpchk GET /health
{servers}
"""

    def kill_site(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def stop(self) -> None:
        for name in ["haproxy", *(s.name for s in self.sites)]:
            p = self.procs.pop(name, None)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def rtt_ms(client_region: str) -> dict[str, float]:
    """Measured round-trip time from `client_region` to every other region (0 to itself)."""
    import csv

    with open(LATENCY_CSV) as f:
        for row in csv.DictReader(f):
            if row["src_region"] == client_region:
                return {k: float(v) if v else 0.0 for k, v in row.items() if k != "src_region"}
    raise KeyError(f"region {client_region!r} not in {LATENCY_CSV.name}")


@dataclass
class LoadClient:
    """Paced requests at `rate_per_s` from `workers` threads, at most `max_requests` and
    `max_s` seconds; `records` holds (t_sent, latency_s, site or "", ok) per request."""

    url: str
    rate_per_s: float = 50.0
    max_requests: int = 5000
    max_s: float = 120.0
    workers: int = 8
    records: list[tuple[float, float, str, bool]] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoadClient:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def __enter__(self) -> LoadClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        import httpx

        t0 = time.monotonic()
        with httpx.Client(timeout=30.0) as client, ThreadPoolExecutor(self.workers) as pool:
            for i in range(self.max_requests):
                due = t0 + i / self.rate_per_s
                if self._stop.is_set() or due - t0 > self.max_s:
                    break
                self._stop.wait(max(0.0, due - time.monotonic()))
                pool.submit(self._one, client)

    def _one(self, client) -> None:
        t = time.time()
        t0 = time.perf_counter()
        try:
            r = client.get(self.url)
            self.records.append((t, time.perf_counter() - t0, r.headers.get("x-site", ""), r.status_code == 200))
        except Exception:  # noqa: BLE001 - any failure of a request counts as failed
            self.records.append((t, time.perf_counter() - t0, "", False))

    def since(self, t: float) -> list[tuple[float, float, str, bool]]:
        return [r for r in list(self.records) if r[0] >= t]

    def failed(self) -> int:
        return sum(1 for r in list(self.records) if not r[3])


def answered_shares(records, sites: list[str]) -> np.ndarray:
    names = [r[2] for r in records]
    return np.array([names.count(s) for s in sites], float) / max(len(names), 1)


def wait_split(client: LoadClient, sites: list[str], target: np.ndarray, t_from: float, window: int = 60,
               tolerance: float = 0.05, timeout_s: float = 60.0) -> float:
    """Seconds from `t_from` to the first request of the first `window` consecutive requests
    (sent after `t_from`) that the sites answered in shares within `tolerance` of `target`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        recs = sorted(client.since(t_from))
        for end in range(window, len(recs) + 1):
            if np.max(np.abs(answered_shares(recs[end - window:end], sites) - target)) <= tolerance:
                return recs[end - window][0] - t_from
        time.sleep(0.2)
    raise RuntimeError(f"split {target} not reached within {timeout_s:.0f} s")


# --- run as a script: a site backend, or a coordinator that shifts traffic -----------------------
def _serve(name: str, port: int, delay_ms: float) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/v1/infer"):
                time.sleep(delay_ms / 1000)
            body = f'{{"site": "{name}"}}'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Site", name)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _shift(sock: str, ledger: str, backend: str, max_step: str, interval_s: str, *shares: str) -> None:
    from gridflex.drivers.router_base import shift_traffic
    from gridflex.drivers.router_haproxy import HAProxyDriver

    target = {k: float(v) for k, v in (s.split("=") for s in shares)}
    shift_traffic(HAProxyDriver(sock, ledger), backend, target, float(max_step), float(interval_s),
                  on_step=lambda st: print("step", st.shares, flush=True))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        _serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "shift":
        _shift(*sys.argv[2:])
