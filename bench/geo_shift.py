"""Geo-shifting through a real HAProxy on loopback: time to a new split, failures, added latency.

    python bench/geo_shift.py [--rate 100] [--hold 300] [--max-step 0.1] [--interval 0.5] [--json out/geo.json]

The scenario of tests/test_router_haproxy.py: three sites' inference backends (each its own
process and port; answer time 10 ms plus the measured round trip from Washington DC, the
clients' region, to the site's region), HAProxy with weights 3:1:1 (60/20/20 %), a paced
request load. The shifts move 10 %, then 50 %, of all traffic from site A (Washington DC)
to site B (Dallas) and back, in steps of at most `--max-step`, `--interval` seconds apart.
Per phase: seconds the shift took, seconds until the backends answered in the new split
(first of `--window` consecutive requests within 5 points of it), the split HAProxy counted
over the next `--hold` requests, requests failed, and latency against the 60/20/20 baseline.
Then a coordinator process is killed (SIGKILL) two steps into a shift of 50 %: failures
during the next `--hold` requests, and whether `restore()` from its ledger puts weights back.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from gridflex.drivers.router_base import shift_traffic  # noqa: E402
from gridflex.drivers.router_haproxy import HAProxyDriver  # noqa: E402
from tests import haproxy_support as hs  # noqa: E402

SITES = [hs.Site("siteA", "Washington DC", 3), hs.Site("siteB", "Dallas", 1), hs.Site("siteC", "Toronto", 1)]
NAMES = [s.name for s in SITES]
PHASES = [("baseline", [0.6, 0.2, 0.2]), ("shift 10 %", [0.5, 0.3, 0.2]), ("shift 50 %", [0.1, 0.7, 0.2]),
          ("back", [0.6, 0.2, 0.2])]


def hold(client: hs.LoadClient, router: HAProxyDriver, t0: float, n: int) -> tuple[list, np.ndarray]:
    """The next `n` requests sent after `t0` (all answered), and HAProxy's count per server."""
    before = router.read("llm").sessions_total
    hs.wait_for(lambda: len([r for r in client.since(t0)]) >= n, 600, f"{n} requests answered")
    seen = router.read("llm").sessions_total - before
    return sorted(client.since(t0))[:n], seen / max(seen.sum(), 1)


def latency_ms(records) -> tuple[float, float]:
    lat = np.array([r[1] for r in records]) * 1000
    return float(lat.mean()), float(np.percentile(lat, 99))


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rig = hs.HAProxyRig(Path(tmp), SITES, client_region="Washington DC")
        rig.start()
        try:
            router = HAProxyDriver(rig.socket, Path(tmp) / "ledger.json")
            out = {"rate_per_s": args.rate, "max_step": args.max_step, "step_interval_s": args.interval,
                   "delay_ms": rig.delay_ms, "phases": []}
            with hs.LoadClient(rig.url, rate_per_s=args.rate, max_requests=100_000, max_s=1800,
                               workers=16) as client:
                base_lat = None
                for label, target in PHASES:
                    t0 = time.time()
                    steps = [] if label == "baseline" else shift_traffic(
                        router, "llm", dict(zip(NAMES, target)), args.max_step, args.interval)
                    shifted_s = time.time() - t0
                    reached_s = hs.wait_split(client, NAMES, np.array(target), t0, window=args.window,
                                              timeout_s=120)
                    recs, counted = hold(client, router, time.time(), args.hold)
                    mean, p99 = latency_ms(recs)
                    base_lat = base_lat or (mean, p99)
                    out["phases"].append({
                        "phase": label, "target": target, "steps": len(steps), "shift_s": round(shifted_s, 2),
                        "reached_s": round(reached_s, 2), "haproxy_split": np.round(counted, 3).tolist(),
                        "answered_split": np.round(hs.answered_shares(recs, NAMES), 3).tolist(),
                        "failed": sum(1 for r in recs if not r[3]), "mean_ms": round(mean, 1), "p99_ms": round(p99, 1),
                        "added_mean_ms": round(mean - base_lat[0], 1), "added_p99_ms": round(p99 - base_lat[1], 1)})
                router.restore()
                out["site_latency_ms"] = {s: round(float(np.mean([r[1] for r in client.records if r[2] == s])) * 1000,
                                                   1) for s in NAMES}
                out["kill"] = kill_case(args, rig, client, Path(tmp) / "coordinator.json")
                out["requests"], out["failed"] = len(client.records), client.failed()
            return out
        finally:
            rig.stop()


def kill_case(args, rig: hs.HAProxyRig, client: hs.LoadClient, ledger: Path) -> dict:
    coordinator = subprocess.Popen(
        [*hs.SCRIPT, "shift", str(rig.socket), str(ledger), "llm", str(args.max_step),
         str(max(args.interval, 1.0)), "siteA=0.1", "siteB=0.7", "siteC=0.2"], cwd=ROOT, stdout=subprocess.PIPE,
        text=True)
    for _ in range(2):
        coordinator.stdout.readline()
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    router = HAProxyDriver(rig.socket, ledger)
    left = router.read("llm")
    recs, _ = hold(client, router, time.time(), args.hold)
    router.restore()
    return {"split_left": np.round(left.shares, 3).tolist(), "valid": bool(left.serving.any()),
            "failed_after_kill": sum(1 for r in recs if not r[3]), "requests_after_kill": len(recs),
            "weights_after_restore": router.read("llm").weight.tolist(), "ledger_after_restore": len(router.ledger)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    p.add_argument("--hold", type=int, default=300, help="requests measured per phase (default 300)")
    p.add_argument("--window", type=int, default=60, help="requests that must show the new split (default 60)")
    p.add_argument("--max-step", type=float, default=0.1, help="largest change of a share per step (default 0.1)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between steps (default 0.5)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    out = run(args)
    print(f"{'phase':<12}{'steps':>6}{'shift s':>9}{'reached s':>11}  {'HAProxy split':<22}{'failed':>7}"
          f"{'mean ms':>9}{'p99 ms':>8}{'+mean':>7}{'+p99':>7}")
    for ph in out["phases"]:
        print(f"{ph['phase']:<12}{ph['steps']:>6}{ph['shift_s']:>9.2f}{ph['reached_s']:>11.2f}  "
              f"{str(ph['haproxy_split']):<22}{ph['failed']:>7}{ph['mean_ms']:>9.1f}{ph['p99_ms']:>8.1f}"
              f"{ph['added_mean_ms']:>7.1f}{ph['added_p99_ms']:>7.1f}")
    print("mean latency per site answering, ms:", out["site_latency_ms"])
    print("coordinator killed mid-shift:", json.dumps(out["kill"]))
    print(f"requests {out['requests']}, failed {out['failed']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
