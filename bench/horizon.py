"""Benchmark: the horizon planner's speed at campus scale, and what it saves on a real week.

speed: 10,000 GPUs (about 1,000 jobs of 4-16 GPUs: half running with flex tiers, half queued
  with deadlines 6-48 h out), 48 h of 15-min slots, a grid event and the interconnection limit,
  the GB carbon forecast of 2023-03-14 12:31. Jobs are grouped into classes (`classify`, 6-h
  deadline buckets) and the LP is solved with HiGHS; wall time of classify + solve, median of 3.

week: a week of real GB carbon intensity (2023-03-14 12:00 to 03-21 12:00 UTC) and the 48-h
  forecasts the NESO API actually issued in it (bundled). 2,048 GPUs; every two hours (seeded)
  a batch job of 64-512 GPUs arrives needing 2-8 h at full speed, due 12-36 h after it arrives
  (Phoenix A100 curves). Policies, each deciding with the forecast known at the time (the
  latest issued vintage corrected by its last observed error, `CorrectedForecast`, tau 3 h, as
  carbon forecast errors persist for hours):
  run-now (FIFO), Let's Wait Awhile non-interrupting and interrupting, a threshold policy (pause
  above the median of the 48-h forecast known at the start), and the horizon planner re-solved every
  hour over 48 h of 15-min slots (MPC; jobs unknown until they arrive). The perfect-foresight
  bound is the same LP over the whole week with the actual intensity and every job known. The
  horizon planner runs twice: shifting only (GPUs at full power, like the baselines) and
  shifting with power caps; each is compared with the bound of the same model. The cost of
  forecast error is measured by running it again on the uncorrected forecast and on the actuals.

    .venv/bin/python bench/horizon.py [--part speed|week|all] [--seeds 0 1 2] [--source gb-carbon-week]
                                      [--json out/horizon.json]

With --source ercot-price-week the week is ERCOT HB_SOUTH real-time prices (2024-08-16 to 08-23,
with the spike of 08-20) and the forecast is the day-ahead price, uncorrected (price spikes do not
persist); the policies minimise cost.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from gridflex.model.curves import PowerCurve
from gridflex.plan.horizon import HorizonInput, JobDemand, classify, dispatch, running_class, solve
from gridflex.plan.shift_baselines import (
    ShiftProblem,
    lwa_interrupting,
    lwa_noninterrupting,
    perfect_foresight,
    run_now,
    threshold,
)
from gridflex.signals.forecast import BlendedForecast, CorrectedForecast, Forecast, as_known
from gridflex.signals.recorded import builtin
from gridflex.sim.curve_csv import builtin_curves
from gridflex.sim.scenarios import load_scenario
from gridflex.sim.shift_compare import shift_model

H = 3600.0
SLOT_S = 900.0
HORIZON_SLOTS = 192  # 48 h


def speed(gpus: int = 10_000, repeats: int = 3) -> dict:
    rng = np.random.default_rng(0)
    curves = [builtin_curves()[n] for n in sorted(builtin_curves())]
    gb = builtin("gb-carbon-week")
    t0 = float(gb.forecast.issue_times_s[0])
    slots = t0 + SLOT_S * np.arange(HORIZON_SLOTS)
    carbon = gb.forecast.forecast_at(t0).at(slots)
    jobs, left = [], gpus
    while left > 0:
        g = min(left, int(rng.choice([4, 8, 16])))
        curve, tier = curves[int(rng.integers(len(curves)))], int(rng.choice(4, p=[0.1, 0.3, 0.3, 0.3]))
        if rng.random() < 0.5:  # running: keeps its tier's share until its window ends
            end = t0 + float(rng.uniform(6, 48)) * H
            c = running_class("r", curve, g, tier, t0, end)
            jobs.append(JobDemand(f"j{len(jobs)}", curve, g, tier, c.work_gpu_h, t0, end, running=True))
        else:  # queued with a deadline
            hours = float(rng.uniform(2, 12))
            jobs.append(JobDemand(f"j{len(jobs)}", curve, g, max(tier, 1), g * hours, t0,
                                  t0 + (hours + float(rng.uniform(4, 36))) * H))
        left -= g
    full_site_w = 1.3 * gpus * 400.0
    ceiling = np.full(HORIZON_SLOTS, np.inf)
    ceiling[40:48] = 0.7 * full_site_w  # a 2-h grid event ten hours out
    times, cpu, plan, n_classes = [], [], None, 0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        classes, _member = classify(jobs, t0, SLOT_S)
        plan = solve(HorizonInput(t0, SLOT_S, classes, gpus, carbon, np.zeros(HORIZON_SLOTS), ceiling_w=ceiling,
                                  interconnection_w=full_site_w, pue=1.3))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        n_classes = len(classes)
    return {"gpus": gpus, "jobs": len(jobs), "classes": n_classes, "slots": HORIZON_SLOTS,
            "wall_s_median": float(np.median(times)), "wall_s_all": times, "cpu_s_median": float(np.median(cpu)),
            "shortfall_gpu_h": float(plan.shortfall_gpu_h.sum()), "over_ceiling_w": float(plan.over_ceiling_w.max()),
            "load_avg": os.getloadavg()[0]}


@dataclass(frozen=True, eq=False)
class Week:
    t0_s: float
    n_slots: int
    actual: np.ndarray  # [K] g/kWh
    used: Forecast | CorrectedForecast | BlendedForecast  # the forecast every policy decides with
    other: Forecast | CorrectedForecast  # the alternative, for the horizon planner only
    other_label: str
    problem: ShiftProblem
    curves: list[PowerCurve]

    def _at(self, source, k: int) -> np.ndarray:
        return source.forecast_at(self.t0_s + k * SLOT_S).at(self.t0_s + SLOT_S * np.arange(self.n_slots))

    def known(self, k: int) -> np.ndarray:
        """The whole week's slots as forecast at slot k (the latest vintage; its last value holds)."""
        return self._at(self.used, k)

    def known_other(self, k: int) -> np.ndarray:
        return self._at(self.other, k)

    def perfect(self, _k: int) -> np.ndarray:
        return self.actual


def make_week(source: str = "gb-carbon-week", seed: int = 0, pool: int = 2048) -> Week:
    rec = builtin(source)
    t0 = max(float(np.ceil(rec.forecast.issue_times_s[0] / H) * H), float(rec.actual.times_s[0]))
    n = min(7 * 24 * 4, int((rec.actual.times_s[-1] - t0) // SLOT_S) + 1)
    actual = rec.actual.at(t0 + SLOT_S * np.arange(n))
    rng = np.random.default_rng(seed)
    names = sorted(n for n in builtin_curves() if not n.startswith("infer"))
    release = np.arange(0, n - 4 * 40, 8)  # every 2 h, the last one 40 h before the end
    J = len(release)
    gpus = rng.choice([64, 128, 256, 512], J)
    duration = rng.integers(8, 33, J)  # 2-8 h
    deadline = np.minimum(release + duration + rng.integers(40, 113), n)  # 10-28 h of slack
    curves = [builtin_curves()[names[int(i)]] for i in rng.integers(len(names), size=J)]
    full_w = np.array([c.full_power_w for c in curves])
    problem = ShiftProblem(SLOT_S, n, gpus, full_w, duration, release, deadline, pool, pue=1.2)
    step_s = float(np.median(np.diff(rec.actual.times_s)))  # an interval's value is known at its end
    corrected = CorrectedForecast(rec.forecast, rec.actual, tau_s=3 * H, report_delay_s=step_s)
    if rec.kind == "price":  # price spikes do not persist: the day-ahead price as it is
        return Week(t0, n, actual, rec.forecast, corrected, "day-ahead corrected by the last error", problem, curves)
    return Week(t0, n, actual, corrected, rec.forecast, "issued forecast uncorrected", problem, curves)


def scenario_week(name: str) -> Week:
    """A built-in scenario's queued jobs (`sim.shift_compare.shift_model`: the model of `gridflex
    compare`'s bounds) with its signal and its forecast as its shifting settings read it
    (`as_known`: corrected and blended as in the loop); the plain issued forecast as the other."""
    loaded = load_scenario(name)
    m, settings = shift_model(loaded), loaded.scenario.shifting
    rec = builtin(settings.signal)
    used = as_known(rec.forecast, rec.actual, settings.corrected_tau_s, settings.persistence_weight, settings.horizon_s)
    return Week(m.t0_s, m.problem.n_slots, m.signal, used, rec.forecast, "issued forecast as published",
                m.problem, m.curves)


def mpc(week: Week, known, power_shaping: bool, replan_slots: int = 4) -> tuple[np.ndarray, int]:
    """Run the horizon planner in closed loop: every `replan_slots` slots plan 48 h ahead for the
    jobs that have arrived, then carry out the plan's first slots. Returns site power and the
    number of jobs finished after their deadline (a job already late is planned as soon as it can)."""
    p = week.problem
    left = p.gpus * p.duration_slots * SLOT_S / H  # full-speed GPU-hours still to do
    finished = np.full(len(left), week.n_slots + 1)
    site_w = np.zeros(week.n_slots)
    dt_h = SLOT_S / H
    for k0 in range(0, week.n_slots, replan_slots):
        idx = [j for j in range(len(left)) if p.release_k[j] <= k0 and left[j] > 1e-9]
        K = min(HORIZON_SLOTS, week.n_slots - k0)
        t_k0 = week.t0_s + k0 * SLOT_S

        def demands(t_s: float, idx: list[int] = idx) -> list[JobDemand]:
            return [JobDemand(str(j), week.curves[j], int(p.gpus[j]), 2, float(left[j]), t_s,
                              max(week.t0_s + p.deadline_k[j] * SLOT_S,  # late: as soon as it can
                                  t_s + np.ceil(left[j] / (p.gpus[j] * dt_h) - 1e-9) * SLOT_S)) for j in idx]

        jobs = demands(t_k0)
        classes, member = classify(jobs, t_k0, SLOT_S)
        plan = solve(HorizonInput(t_k0, SLOT_S, classes, p.pool_gpus, known(k0)[k0:k0 + K], np.zeros(K),
                                  pue=p.pue, idle_w=p.idle_w, power_shaping=power_shaping))
        for dk in range(min(replan_slots, K)):
            gpus, level = dispatch(plan, dk, demands(t_k0 + dk * SLOT_S), member)
            for i, j in enumerate(idx):
                if gpus[i] > 0:
                    left[j] -= gpus[i] * float(np.interp(level[i], *week.curves[j].hull(with_pause=False))) * dt_h
                    if left[j] <= 1e-6 and finished[j] > week.n_slots:
                        finished[j] = k0 + dk + 1
            site_w[k0 + dk] = p.pue * ((gpus * (level - p.idle_w)).sum() + p.idle_w * p.pool_gpus)
    return site_w, int((finished > p.deadline_k).sum())


def week_comparison(source: str = "gb-carbon-week", seed: int = 0, scenario: str | None = None) -> dict:
    w = scenario_week(scenario) if scenario else make_week(source, seed)
    source = load_scenario(scenario).scenario.shifting.signal if scenario else source
    p = w.problem
    dt_h = SLOT_S / H
    # kg CO2 (g/kWh) or USD (USD/MWh): site kWh x signal / 1000
    total = (lambda site_w: float((site_w * dt_h / 1000 * w.actual / 1000).sum()))
    limit = float(np.median(w.known(0)[:HORIZON_SLOTS]))  # the median of the first 48-h forecast
    runs = {
        "run-now (FIFO)": run_now(p),
        "LWA non-interrupting": lwa_noninterrupting(p, w.known),
        "LWA interrupting": lwa_interrupting(p, w.known),
        f"threshold ({limit:.0f})": threshold(p, w.known, limit),
    }
    rows = {name: {"total": total(p.site_power_w(r)), "late_jobs": p.late_jobs(r)} for name, r in runs.items()}
    for shaping, label in ((False, "shift only"), (True, "shift + caps")):
        t = time.perf_counter()
        site_w, late = mpc(w, w.known, shaping)
        rows[f"horizon MPC, {label}"] = {"total": total(site_w), "late_jobs": late, "wall_s": time.perf_counter() - t}
        site_w, late = mpc(w, w.known_other, shaping)
        rows[f"horizon MPC, {label}, {w.other_label}"] = {"total": total(site_w), "late_jobs": late}
        site_w, late = mpc(w, w.perfect, shaping)
        rows[f"horizon MPC, {label}, actuals as forecast"] = {"total": total(site_w), "late_jobs": late}
        bound = perfect_foresight(p, w.curves, w.actual, power_shaping=shaping, t0_s=w.t0_s)
        rows[f"perfect-foresight bound, {label}"] = {"total": total(bound.site_power_w),
                                                     "late_jobs": int((bound.shortfall_gpu_h > 1e-6).sum())}
    base = rows["run-now (FIFO)"]["total"]
    for name, row in rows.items():
        label = "shift + caps" if "caps" in name else "shift only"
        bound_saved = base - rows[f"perfect-foresight bound, {label}"]["total"]
        row["saved_vs_run_now"] = (base - row["total"]) / base
        row["share_of_bound_saving"] = (base - row["total"]) / bound_saved if bound_saved > 0 else float("nan")
    mae = {name: float(np.mean([np.abs(f(k) - w.actual)[k:k + HORIZON_SLOTS].mean() for k in range(0, w.n_slots, 4)]))
           for name, f in (("used", w.known), ("other", w.known_other))}
    unit = "kg CO2" if builtin(source).unit == "gCO2/kWh" else "USD"
    return {"source": source, "unit": unit, "other_label": w.other_label, "jobs": len(p.gpus), "pool_gpus": p.pool_gpus, "slots": w.n_slots,
            "forecast_mae_g_per_kwh_48h": mae, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["speed", "week", "all"], default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="job-arrival seeds of the week")
    ap.add_argument("--source", default="gb-carbon-week", choices=["gb-carbon-week", "ercot-price-week"],
                    help="the week's signal: GB carbon (forecasts as issued) or ERCOT prices (day-ahead as forecast)")
    ap.add_argument("--scenario", help="the week of a built-in scenario instead (carbon-week-gb, price-week-ercot):"
                    " its own queued jobs and forecast settings, as `gridflex compare` bounds them; --seeds ignored")
    ap.add_argument("--json", help="write the results to this JSON file")
    a = ap.parse_args()
    if a.scenario:
        a.seeds = [0]
    out = {}
    if a.part in ("speed", "all"):
        out["speed"] = s = speed()
        print(f"speed: {s['gpus']} GPUs, {s['jobs']} jobs -> {s['classes']} classes, {s['slots']} slots: "
              f"{s['wall_s_median']:.2f} s median wall (all {', '.join(f'{x:.2f}' for x in s['wall_s_all'])}), "
              f"{s['cpu_s_median']:.2f} s CPU, "
              f"load average {s['load_avg']:.1f}")
    if a.part in ("week", "all"):
        out["week"] = weeks = {seed: week_comparison(a.source, seed, a.scenario) for seed in a.seeds}
        for seed, wk in weeks.items():
            mae = wk["forecast_mae_g_per_kwh_48h"]
            print(f"week of {wk['source']}, seed {seed}: {wk['jobs']} jobs on {wk['pool_gpus']} GPUs; "
                  f"forecast MAE over 48 h: {mae['used']:.1f} ({mae['other']:.1f} {wk['other_label']})")
            print(f"{'policy':62s} {wk['unit']:>9s} {'saved':>7s} {'of bound':>9s} {'late':>5s}")
            for name, r in wk["rows"].items():
                print(f"{name:62s} {r['total']:9.0f} {100 * r['saved_vs_run_now']:6.1f}% "
                      f"{100 * r['share_of_bound_saving']:8.1f}% {r['late_jobs']:5d}")
    if a.json:
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
