"""The `programs-month` scenario settled under three strategies in the same run setup: gridflex
(the merit-order planner at every event), never curtail (the site ignores the program calls: the
run has no events, the store still records them) and the Phoenix-style uniform cap at every
event (`uniform-cap`: on this hybrid site the miners give the same fraction of their power as the
flexible GPUs). Both curtailing strategies are given the same targets: each event aimed at its
program's baseline less the obligation (`simulate --store --programs`). Outside events the miners
run the same way in all three (economic units, within the steady setpoint). Each run goes into its
own store, then both programs are settled from it for August 2024. Net value of the month = program
payments (capacity + energy − penalties) + avoided 4CP transmission charges + mining revenue − lost
GPU work at the stated value per GPU-hour (the scenario's `qos_usd_per_gpu_hour`); the site's
energy cost is shown beside it.

    .venv/bin/python bench/programs_month.py --json out/programs_month.json
    .venv/bin/python bench/programs_month.py --no-miners --json out/programs_month_gpu_only.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from gridflex.config_file import load_yaml_model
from gridflex.model.economics import J_PER_MWH, revenue_usd
from gridflex.model.miners import MinerSettings
from gridflex.programs.model import ProgramsFile
from gridflex.programs.settle import month_bounds, settle_month
from gridflex.programs.steer import ProgramTargets
from gridflex.signals.prices import load_prices
from gridflex.sim.journal import TIERS
from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import LoadedScenario, load_scenario
from gridflex.sim.store_journal import StoreJournal, open_run_store, record_baselines

SCENARIO = "programs-month"
MONTH = "2024-08"
STRATEGIES = {  # name: (planner, acts on the events)
    "gridflex": ("optimal", True),
    "never curtail": ("optimal", False),
    "uniform cap at every event": ("uniform-cap", True),
}
PEAK_HIT = 0.5  # a peak counts as avoided when the reduction there is at least this share of the commitment


def run_strategy(loaded: LoadedScenario, planner: str, acts: bool, url: str, programs, miners: MinerSettings) -> dict:
    store = open_run_store(url, loaded)  # the program calls are received either way
    run_loaded = loaded if acts else LoadedScenario(
        loaded.scenario.model_copy(update={"events": ()}), loaded.curves, loaded.base_dir)
    journal = StoreJournal(store, 0.0, loaded.scenario.jobs, loaded.curves)
    steer = ProgramTargets.for_scenario(store, programs, loaded, journal.flush) if acts else None
    try:
        result = run_scenario(run_loaded, planner, journal=journal, each_tick=steer.apply if steer else None)
        if acts:
            record_baselines(store, result)
        statements = [settle_month(store, programs, p.name, MONTH) for p in programs.programs]
    finally:
        store.close()
    return {"statements": statements, **month_economics(loaded, result, miners)}


def month_economics(loaded: LoadedScenario, result, miners: MinerSettings) -> dict:
    """Mining revenue, lost GPU work and site energy cost over the settled month alone; `miners`:
    the scenario's miner settings, whose prices and stated GPU-hour values price every run."""
    sc = loaded.scenario
    m0, m1 = month_bounds(MONTH, sc.start.tzinfo)
    tr = result.trace
    t = tr.t_s
    dt = np.diff(t, append=t[-1] + sc.control.interval_s)
    inside = (t >= m0) & (t < m1)
    gpus = {k: sum(j.gpus for j in sc.jobs if j.flex_tier == k) for k in range(TIERS)}
    value = miners.dispatch.qos_usd_per_gpu_hour
    lost_h = {k: float(np.sum((gpus[k] - np.nan_to_num(tr.series(f"tier{k}_throughput_gpus")))[inside] * dt[inside])
                       / 3600) for k in range(TIERS) if gpus[k]}
    step_t = result.step_times_s - sc.step_s  # start of each step
    steps = (step_t >= m0) & (step_t < m1)
    mining_usd = float(revenue_usd(result.miners.hashrate_th_s[steps], sc.step_s, miners.hashprice_usd_per_th_day,
                                   miners.pool_fee).sum()) if result.miners else 0.0
    price = load_prices(miners.prices, miners.price_column, loaded.base_dir).at(step_t[steps])
    energy_usd = float(np.sum(result.site_power_w[steps] * sc.step_s * price) / J_PER_MWH)
    return {"gpu_hours_lost": lost_h, "lost_gpu_usd": sum(h * value.get(k, 0.0) for k, h in lost_h.items()),
            "mining_usd": mining_usd, "energy_cost_usd": energy_usd,
            "energy_mwh": float(np.sum(result.site_power_w[steps]) * sc.step_s / J_PER_MWH)}


def summary(name: str, out: dict) -> dict:
    events, peaks = [], []
    payments = avoided = 0.0
    for st in out["statements"]:
        payments += st.capacity_usd + st.energy_usd - st.penalty_usd
        avoided += st.avoided_usd
        for e in st.events:
            red = e.reduction_w
            events.append({"program": st.program.name, "event": e.event_id, "test": e.is_test,
                           "baseline_kw": round(float(np.nanmean(e.baseline_w)) / 1e3, 1) if len(red) else None,
                           "metered_kw": round(float(np.nanmean(e.metered_w)) / 1e3, 1) if len(red) else None,
                           "reduction_kw": round(float(np.nanmean(red)) / 1e3, 1) if len(red) else None,
                           "obligation_kw": e.obligation_w / 1e3,
                           "performance_factor": round(e.performance_factor, 3),
                           "payment_usd": round(e.payment_usd, 2), "penalty_usd": round(e.penalty_usd, 2),
                           "error": e.error})
        for p in st.peaks:
            red_kw = (p.baseline_w - p.metered_w) / 1e3
            peaks.append({"program": st.program.name, "start_s": p.start_s, "baseline_kw": round(p.baseline_w / 1e3, 1),
                          "metered_kw": round(p.metered_w / 1e3, 1), "reduction_kw": round(red_kw, 1),
                          "avoided": bool(red_kw >= PEAK_HIT * st.program.committed_w / 1e3),
                          "avoided_usd": round(p.avoided_usd, 2)})
    net = payments + avoided + out["mining_usd"] - out["lost_gpu_usd"]
    out["net_after_energy_usd"] = net - out["energy_cost_usd"]
    return {"strategy": name, "program_payments_usd": round(payments, 2),
            "capacity_usd": round(sum(s.capacity_usd for s in out["statements"]), 2),
            "penalty_usd": round(sum(s.penalty_usd for s in out["statements"]), 2),
            "avoided_transmission_usd": round(avoided, 2), "mining_usd": round(out["mining_usd"], 2),
            "lost_gpu_usd": round(out["lost_gpu_usd"], 2),
            "gpu_hours_lost": {k: round(v, 1) for k, v in out["gpu_hours_lost"].items()},
            "net_value_usd": round(net, 2), "energy_cost_usd": round(out["energy_cost_usd"], 2),
            "net_after_energy_usd": round(out["net_after_energy_usd"], 2),
            "energy_mwh": round(out["energy_mwh"], 2),
            "digests": {s.program.name: s.records.digest for s in out["statements"]},
            "events": events, "peaks": peaks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-miners", action="store_true", help="the same site without its miners (GPUs alone)")
    args = ap.parse_args()
    loaded = load_scenario(SCENARIO)
    miners = loaded.scenario.miners
    if args.no_miners:
        loaded = LoadedScenario(loaded.scenario.model_copy(update={"miners": None}), loaded.curves, loaded.base_dir)
    programs_path = Path(str(loaded.base_dir)) / f"{SCENARIO}-programs.yaml"
    programs = load_yaml_model(programs_path, ProgramsFile, "programs file").programs
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (planner, acts)) in enumerate(STRATEGIES.items()):
            out = run_strategy(loaded, planner, acts, f"sqlite:///{tmp}/run{i}.db", programs, miners)
            results.append(summary(name, out))
            r = results[-1]
            print(f"{name:>28}: payments {r['program_payments_usd']:>10,.0f}  avoided {r['avoided_transmission_usd']:>9,.0f}"
                  f"  mining {r['mining_usd']:>9,.0f}  lost GPU {r['lost_gpu_usd']:>8,.0f}  net {r['net_value_usd']:>10,.0f}"
                  f"  (energy cost {r['energy_cost_usd']:,.0f})", flush=True)
    text = json.dumps({"scenario": SCENARIO, "month": MONTH, "miners": not args.no_miners, "strategies": results},
                      indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
