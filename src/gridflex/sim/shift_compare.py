"""`gridflex compare` on a scenario with `shifting:`: the time-shifting policies on the same
twin, seed and events in one process (run-now, Let's Wait Awhile, threshold with and without
power caps, gridflex's horizon planner shifting only and shifting with power caps, with the
forecasts as issued and with the actuals in their place), and the perfect-foresight bounds: the
horizon LPs over the whole scenario with the true signal and every job known in advance.

Each policy's saving is against run-now on the twin; a bound's saving is against run-now in the
LP's model (same jobs, pool, PUE and idle power, each job's curve scaled to the twin's true full
power for the seed; the services that run all the time add the same to both and cancel), so
`share_of_bound_*` = twin saving / model saving. Three bounds: shift only, whole jobs (a job runs
to its end at full power once started, as the shift-only policies run them); shift only,
interruptible (a job may stop and resume in any slot, at full power); and shift + caps (the class
LP with power-cap operating points, interruptible: the bound for the policies that also cap).
A policy with caps saves energy the shift-only bounds do not count, so its share of them may pass
100 %; its share of the shift + caps bound is the one to read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gridflex.model.site import Job
from gridflex.plan.horizon import Weights
from gridflex.plan.shift_baselines import ShiftProblem, perfect_foresight, run_now
from gridflex.plan.start_times import StartInput, occupancy, solve_starts
from gridflex.report.shifting import signal_total
from gridflex.signals.recorded import builtin

#: (label, shifting settings changed) of the policies compared.
#: LWA and run-now only choose start times (a started job runs at full power); threshold and
#: gridflex may also cap running flexible work (`power_shaping`); gridflex may also pause it
#: where its plan gives it no work (`shaping_pauses`).
POLICIES = (
    ("run-now", {"policy": "run-now"}),
    ("lwa", {"policy": "lwa"}),
    ("threshold, shift only", {"policy": "threshold", "power_shaping": False}),
    ("threshold + caps", {"policy": "threshold", "power_shaping": True}),
    ("gridflex, shift only", {"policy": "horizon", "power_shaping": False}),
    ("gridflex, shift only, actuals as forecast", {"policy": "horizon", "power_shaping": False, "forecast": "actual"}),
    ("gridflex, shift + caps", {"policy": "horizon", "power_shaping": True, "shaping_pauses": False}),
    ("gridflex, shift + caps, actuals as forecast", {"policy": "horizon", "power_shaping": True, "shaping_pauses": False,
                                                     "forecast": "actual"}),
    ("gridflex, shift + caps + pauses", {"policy": "horizon", "power_shaping": True, "shaping_pauses": True}),
    ("gridflex, shift + caps + pauses, actuals as forecast", {"policy": "horizon", "power_shaping": True,
                                                              "shaping_pauses": True, "forecast": "actual"}),
)
BOUNDS = (("perfect-foresight bound, shift only, whole jobs (LP)", "whole_jobs"),
          ("perfect-foresight bound, shift only, interruptible (LP)", "interruptible"),
          ("perfect-foresight bound, shift + caps, interruptible (LP)", "shift_caps"))
COLUMNS = ("policy", "total", "saved", *(f"share_of_bound_{key}" for _, key in BOUNDS), "deadlines_met",
           "mean_job_delay_h", "compliance", "sla_violations", "weighted_performance", "flex0_held_s")


def shift_comparison(loaded, seed: int = 0, progress: Callable[[float], None] | None = None) -> dict:
    from gridflex.assembly import simulated
    from gridflex.report.summary import summarize
    from gridflex.sim.run import run_scenario

    sc = loaded.scenario
    rows = []
    for n, (label, change) in enumerate(POLICIES):
        variant = dataclasses.replace(loaded, scenario=sc.model_copy(
            update={"shifting": sc.shifting.model_copy(update=change)}))
        tick = (lambda f, n=n: progress((n + f) / (len(POLICIES) + 1))) if progress else None
        s = summarize(run_scenario(variant, "optimal", seed, progress=tick))
        sh = s["shifting"]
        unit = next(k for k in sh if k in ("emissions_kg_co2", "energy_cost_usd"))
        rows.append({"policy": label, "unit": unit, "total": sh[unit],
                     "deadlines_met": f"{sh['deadlines_met']}/{sh['deadline_jobs']}",
                     "mean_job_delay_h": round(sh["mean_job_delay_s"] / 3600, 2), "compliance": s["compliance"],
                     "sla_violations": s["sla_violations"], "weighted_performance": s["weighted_performance"],
                     "flex0_held_s": sh["flex0_held_s"]})
    twin = simulated(loaded, "optimal", seed).driver
    model = bound_totals(loaded, {job.id: float(twin.true_power_w[i, -1]) for i, job in enumerate(twin.jobs)})
    base = rows[0]["total"]
    for label, key in BOUNDS:
        rows.append({"policy": label, "unit": rows[0]["unit"], "total": round(base - (model["run_now"] - model[key]), 3),
                     "deadlines_met": None, "mean_job_delay_h": None, "compliance": None, "sla_violations": None,
                     "weighted_performance": None, "flex0_held_s": None})
    for r in rows:
        r["saved"] = round((base - r["total"]) / base, 5)
        for _, key in BOUNDS:
            saved = model["run_now"] - model[key]
            r[f"share_of_bound_{key}"] = round((base - r["total"]) / saved, 4) if saved > 0 else None
    if progress:
        progress(1.0)
    return {"scenario": sc.name, "seed": seed, "unit": rows[0]["unit"],
            "model": {k: round(v, 3) for k, v in model.items()}, "policies": rows}


@dataclasses.dataclass(frozen=True, eq=False)
class ShiftModel:
    """A scenario's queued jobs in the horizon LP's model, with the true signal per slot."""

    problem: ShiftProblem
    curves: list
    t0_s: float
    signal: np.ndarray  # [K] the true signal, mean over each slot
    carbon_g_per_kwh: np.ndarray  # [K] the signal where it is carbon, else zeros
    price_usd_per_mwh: np.ndarray | None  # the signal where it is a price
    weights: Weights | None

    def perfect_foresight(self, power_shaping: bool):
        return perfect_foresight(self.problem, self.curves, self.carbon_g_per_kwh, self.price_usd_per_mwh,
                                 self.weights, power_shaping=power_shaping, t0_s=self.t0_s)


def shift_model(loaded, true_full_w: dict[str, float] | None = None, slot_s: float = 900.0) -> ShiftModel:
    """The scenario's queued jobs as a `ShiftProblem` (each with its curve, scaled to `true_full_w`
    where given: job id -> the plant's true per-GPU power at full speed), released at submission,
    due at its deadline (else the scenario's end), on the GPUs the other jobs leave."""
    sc = loaded.scenario
    t0, n = sc.start.timestamp(), int(sc.duration_s // slot_s)
    jobs: list[Job] = [j for j in sc.jobs if j.queued]
    other = sum(j.gpus for j in sc.jobs if not j.queued)
    pool = sum(p.gpus for p in sc.site.gpu_pools.values()) - other
    idle_w = float(np.mean([p.idle_w for p in sc.site.gpu_pools.values()]))
    curves = [loaded.curves[j.workload] for j in jobs]
    if true_full_w:
        curves = [c.model_copy(update={"power_w": tuple(np.array(c.power_w) * true_full_w[j.id] / c.full_power_w)})
                  for c, j in zip(curves, jobs)]
    release = np.array([int(np.ceil((j.submit.timestamp() - t0) / slot_s)) for j in jobs])
    duration = np.array([int(np.ceil(j.duration_s / slot_s)) for j in jobs])
    deadline = np.array([int((j.deadline.timestamp() - t0) // slot_s) if j.deadline else n for j in jobs])
    p = ShiftProblem(slot_s, n, np.array([j.gpus for j in jobs]), np.array([c.full_power_w for c in curves]),
                     duration, release, np.maximum(deadline, release + duration), pool, idle_w, sc.site.pue)
    actual = builtin(sc.shifting.signal).actual
    per_slot = np.array([actual.at(t0 + slot_s * (k + (np.arange(6) + 0.5) / 6)).mean() for k in range(n)])
    is_carbon = builtin(sc.shifting.signal).unit == "gCO2/kWh"
    return ShiftModel(p, curves, t0, per_slot, per_slot if is_carbon else np.zeros(n),
                      None if is_carbon else per_slot, None if is_carbon else Weights(0.0, 1.0))


def bound_totals(loaded, true_full_w: dict[str, float] | None = None, slot_s: float = 900.0) -> dict[str, float]:
    """Totals of the scenario's queued jobs in the LP's model (`shift_model`) under run-now and the
    three perfect-foresight bounds: shift only, whole jobs (each runs to its end at full power once
    started, as the twin and Slurm run them: `plan.start_times` over the whole scenario); shift
    only, interruptible (the class LP of `plan.horizon` at full power: a job may stop and go on in
    any slots of its window); shift + caps (the same class LP with power-cap operating points).
    `true_full_w` makes the bound of the same plant as the runs (the twin's true power departs
    from the measured curve by its seed)."""
    m = shift_model(loaded, true_full_w, slot_s)
    p, n, t0 = m.problem, m.problem.n_slots, m.t0_s
    extra_w = p.pue * p.gpus * (p.full_w - p.idle_w)
    shares = solve_starts(StartInput(m.signal, p.gpus, extra_w, p.duration_slots, p.deadline_k - p.duration_slots,
                                     np.full(n, float(p.pool_gpus)), earliest_start=p.release_k))
    whole_w = p.pue * p.idle_w * p.pool_gpus + occupancy(shares, p.duration_slots, extra_w)
    times = t0 + slot_s * np.arange(1, n + 1)
    signal = loaded.scenario.shifting.signal
    total = (lambda site_w: signal_total(times, site_w, slot_s, signal)[1])
    return {"run_now": total(p.site_power_w(run_now(p))), "whole_jobs": total(whole_w),
            "interruptible": total(m.perfect_foresight(False).site_power_w),
            "shift_caps": total(m.perfect_foresight(True).site_power_w)}
