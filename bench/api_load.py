"""Load check: status reads per second the API answers while the control loop keeps its tick.

Starts `gridflex serve` (the twin, 1-s ticks, an active event), reads GET /api/v1/status from
`--clients` threads for `--seconds`, then reports requests per second, latency percentiles and
how regularly the control loop ticked meanwhile (from the decision log).

    .venv/bin/python bench/api_load.py --seconds 20 --clients 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import yaml

TOKEN = "bench-token-0123456789abcdef"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--port", type=int, default=18480)
    ap.add_argument("--interval-s", type=float, default=1.0, help="control tick")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "site.yaml"
        cfg.write_text(
            yaml.safe_dump({"store": {"url": f"sqlite:///{tmp}/gf.db"}, "control": {"interval_s": args.interval_s}})
        )
        cmd = [
            sys.executable,
            "-m",
            "gridflex.cli",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(args.port),
            "--log-level",
            "warning",
        ]
        proc = subprocess.Popen(cmd, env={**os.environ, "GRIDFLEX_API_TOKEN": TOKEN})
        base = f"http://127.0.0.1:{args.port}"
        try:
            _wait_ready(base)
            now = datetime.now(UTC)
            event = {
                "id": "bench",
                "start": now.isoformat(),
                "end": (now + timedelta(hours=1)).isoformat(),
                "target": {"reduction": 0.2},
            }
            httpx.post(f"{base}/api/v1/events", json=event, headers={"Authorization": f"Bearer {TOKEN}"})
            result = _hammer(base, args.clients, args.seconds)
            since = result.pop("started_s")
            ticks = np.array(
                [
                    d["t_s"]
                    for d in httpx.get(f"{base}/api/v1/decisions", params={"since_s": since, "limit": 10000}).json()
                ]
            )
            gaps = np.diff(ticks)
            result.update(
                control_interval_s=args.interval_s,
                ticks=int(len(ticks)),
                expected_ticks=int(args.seconds / args.interval_s),
                tick_gap_mean_s=round(float(gaps.mean()), 3),
                tick_gap_max_s=round(float(gaps.max()), 3),
                cpu_count=os.cpu_count(),
            )
            print(json.dumps(result, indent=2))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/status", timeout=2).json()["t_s"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("service did not start")


def _hammer(base: str, clients: int, seconds: float) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    started_s, stop_at = time.time(), time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                ok = client.get("/api/v1/status").status_code == 200
                latencies[i].append(time.perf_counter() - t0)
                errors[i] += not ok

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.concatenate([np.array(x) for x in latencies]) * 1e3
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": int(len(lat)),
        "errors": int(sum(errors)),
        "requests_per_s": round(len(lat) / seconds, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
        "started_s": started_s,
    }


if __name__ == "__main__":
    main()
