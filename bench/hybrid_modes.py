"""Benchmark: what the miners do for the grid on the `hybrid-site` day.

Runs the scenario three ways and prints the site draw's variability next to the mining account:
- steady: miners fill the AI load's headroom up to the 1.0 MW setpoint (the scenario as shipped);
- economic: every miner that pays runs, up to the grid's ceiling (no setpoint);
- no miners: the AI cluster alone.
Minute means of site power, over the minutes outside events in which every miner model pays.

    .venv/bin/python bench/hybrid_modes.py [--seed 0] [--json out/hybrid_modes.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gridflex.report.miners import hybrid_summary
from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import LoadedScenario, load_scenario


def variant(loaded: LoadedScenario, mode: str) -> LoadedScenario:
    sc = loaded.scenario
    if mode == "no miners":
        return LoadedScenario(sc.model_copy(update={"miners": None}), loaded.curves, loaded.base_dir)
    dispatch = sc.miners.dispatch.model_copy(update={"mode": mode})
    miners = sc.miners.model_copy(update={"dispatch": dispatch})
    return LoadedScenario(sc.model_copy(update={"miners": miners}), loaded.curves, loaded.base_dir)


def minute_spread(site_w: np.ndarray, counted: np.ndarray) -> dict:
    n = len(counted)
    minutes = site_w[: n * 60].reshape(n, 60).mean(axis=1)[counted]
    return {"site_min_kw": float(minutes.min()) / 1e3, "site_max_kw": float(minutes.max()) / 1e3,
            "site_std_kw": float(minutes.std()) / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    base = load_scenario("hybrid-site")
    reference = run_scenario(base, seed=args.seed)
    m = reference.miners
    t = reference.step_times_s
    n = len(t) // 60
    price = m.side.prices.at(t[::60][:n] - 1)
    economic = (m.side.value_usd_per_mwh(float(t[0]))[None, :] >= price[:, None]).all(axis=1)
    in_event = np.zeros(n, bool)
    for ev in reference.timeline.events:
        in_event |= (t[::60][:n] > ev.start_s - 60) & (t[::60][:n] <= ev.end_s)
    counted = economic & ~in_event
    rows = {}
    for mode in ("steady", "economic", "no miners"):
        started = time.process_time()
        result = reference if mode == "steady" else run_scenario(variant(base, mode), seed=args.seed)
        hy = hybrid_summary(result).get("miners", {})
        rows[mode] = minute_spread(result.site_power_w, counted) | {
            "miner_energy_mwh": hy.get("energy_mwh", 0.0),
            "mining_margin_usd": (hy.get("revenue_usd") or 0.0) - (hy.get("energy_cost_usd") or 0.0),
            "cpu_s": time.process_time() - started if mode != "steady" else None,
        }
        print(mode, {k: round(v, 1) if isinstance(v, float) else v for k, v in rows[mode].items()}, flush=True)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"seed": args.seed, "minutes": int(counted.sum()), "modes": rows}, f, indent=2)


if __name__ == "__main__":
    main()
