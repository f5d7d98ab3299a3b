"""Benchmark: how closely the digital twin replays the measured Phoenix SRP event.

Runs `phoenix-srp-field` (the event at the field's own timing) under a replay of the field's own
actions, over several seeds, and compares the twin's 1-minute site power with the measured trace
(src/gridflex/data/srp_measured_power.csv). The replay, `field-replay`, is the field-like baseline
policy `dvfs-pause-fair` (two pausable jobs take turns being checkpoint-stopped, equal-fraction power
caps on the rest: what the measured trace shows, docs/twin.md) given what the field's conductor was
given and did, where the data says it: the published request (a 25 % cut: the conductor planned
open loop for it, and the field delivered 31.3 %) and the turns the measured trace shows (the first
job stopped at the event's start, the swap at 18:00 local time, the second job restarted at the end
of the hold). The caps, and so the power and the throughputs, are the policy's on the model and the
twin's physics. `--request field` plans for the scenario's own depth instead, `--planner` replaces
the replay with any planner.

Figures:

- rmse and bias over 16:00-19:45 local time, as a fraction of the measured pre-event baseline
  (mean of 15:05-16:05), the RMSE of each seed averaged over the seeds;
- hold_std_w: the standard deviation of the 1-minute site power during the hold (16:25-19:32),
  twin (mean over seeds) against measured;
- per-job performance (window-average throughput) against the measured one.

Nothing here depends on how the twin is built: after the twin changes, the same command gives
the new numbers (`--label` names them in the JSON).

    .venv/bin/python bench/fidelity.py [--seeds 5] [--planner field-replay] [--request 0.25|field]
        [--label before] [--json out/fidelity.json] [--report out/fidelity.html]
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import datetime, time, timedelta, timezone
from importlib import resources

import numpy as np

from gridflex.model.events import Target
from gridflex.plan.baselines import DvfsPauseFair
from gridflex.plan.openloop import it_ceiling_w
from gridflex.plan.registry import PLANNERS
from gridflex.report.measured import builtin_measured
from gridflex.sim.run import RunResult, run_scenario
from gridflex.sim.scenarios import LoadedScenario, load_scenario

SCENARIO = "phoenix-srp-field"
COMPARE = (time(16, 0), time(19, 45))
HOLD = (time(16, 25), time(19, 32))
BASELINE = (time(15, 5), time(16, 5))
PUBLISHED_REQUEST = 0.25  # the SRP request the field's conductor planned for (phoenix-srp)
FIELD_SWAP = time(18, 0)  # one MPT job checkpoint-stopped, the other restarted (docs/twin.md)
PHOENIX = timezone(timedelta(hours=-7))  # local time of the field (no daylight saving)


class FieldReplay(DvfsPauseFair):
    """`dvfs-pause-fair` with the field's turns: of a pause set of two, the first is stopped from
    the block's start to `FIELD_SWAP`, the second from then to the block's end."""

    name = "field-replay"

    def actions(self, inp, floor, state):
        pause_set = state.extra if state else ()
        if len(pause_set) != 2:
            return super().actions(inp, floor, state)
        local = datetime.fromtimestamp(inp.t_s, PHOENIX)
        swap_s = datetime.combine(local.date(), FIELD_SWAP, PHOENIX).timestamp()
        return self._caps(inp, floor, pause_set, int(inp.t_s >= swap_s), float(it_ceiling_w(inp, inp.t_s)))


def with_request(loaded: LoadedScenario, reduction: float) -> LoadedScenario:
    """The scenario with every event's target a `reduction` of its baseline."""
    sc = loaded.scenario
    events = tuple(e.model_copy(update={"target": Target(reduction=reduction)}) for e in sc.events)
    return LoadedScenario(sc.model_copy(update={"events": events}), loaded.curves)


def _minute_series(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """1-minute means of site power, labelled by the start of their minute."""
    per = round(60 / result.scenario.step_s)
    n = len(result.site_power_w) // per
    t0 = result.step_times_s[0] - result.scenario.step_s
    return t0 + 60.0 * np.arange(n), result.site_power_w[: n * per].reshape(n, per).mean(axis=1)


def _mask(t_s: np.ndarray, span: tuple[time, time], tz) -> np.ndarray:
    local = np.array([datetime.fromtimestamp(t, tz).time() for t in t_s])
    return (local >= span[0]) & (local < span[1])


def measured_performance() -> dict[tuple[str, int], float]:
    """Measured per-job performance by (workload, flex tier)."""
    text = resources.files("gridflex.data").joinpath("srp_measured_performance.csv").read_text()
    out = {}
    for r in csv.DictReader(text.splitlines()):
        if r["Flexibility"].strip():
            out[(r["Model"].strip().rsplit("-", 1)[0], int(r["Flexibility"].split()[1]))] = float(r["Performance"])
    return out


def compare(results: list[RunResult]) -> dict:
    measured = builtin_measured()
    tz = results[0].scenario.start.tzinfo
    mt, mp = measured.t_s, measured.power_w
    baseline_w = float(mp[_mask(mt, BASELINE, tz)].mean())
    window, hold = _mask(mt, COMPARE, tz), _mask(mt, HOLD, tz)
    rmse, bias, hold_std = [], [], []
    for r in results:
        t, p = _minute_series(r)
        twin = np.interp(mt, t, p, left=np.nan, right=np.nan)
        err = (twin - mp)[window]
        rmse.append(float(np.sqrt(np.nanmean(err**2)) / baseline_w))
        bias.append(float(np.nanmean(err) / baseline_w))
        hold_std.append(float(np.nanstd(twin[hold])))
    perf = measured_performance()
    jobs = []
    for j, job in enumerate(results[0].scenario.jobs):
        twin_perf = [float(r.performance[j]) for r in results]
        m = perf.get((job.workload, job.flex_tier))
        jobs.append({"id": job.id, "twin": float(np.mean(twin_perf)), "measured": m,
                     "error": None if m is None else float(np.mean(twin_perf) - m)})
    return {
        "seeds": [r.seed for r in results],
        "planner": results[0].planner,
        "baseline_w": baseline_w,
        "rmse": float(np.mean(rmse)),
        "rmse_per_seed": rmse,
        "bias": float(np.mean(bias)),
        "hold_std_w": float(np.mean(hold_std)),
        "measured_hold_std_w": float(np.std(mp[hold])),
        "hold_mean_w": float(np.mean([np.nanmean(np.interp(mt, *_minute_series(r))[hold]) for r in results])),
        "measured_hold_mean_w": float(mp[hold].mean()),
        "max_job_error": max(abs(j["error"]) for j in jobs if j["error"] is not None),
        "jobs": jobs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--planner", default=FieldReplay.name, help="the field's actions (default) or any planner")
    ap.add_argument("--request", default=str(PUBLISHED_REQUEST),
                    help="the cut the planner is asked (default: the published request); 'field': the scenario's")
    ap.add_argument("--scenario", default=SCENARIO)
    ap.add_argument("--label", default="", help="a name for this twin (e.g. before, after)")
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--report", help="write seed 0's HTML report, with the measured trace overlaid, here")
    args = ap.parse_args()
    loaded = load_scenario(args.scenario)
    if args.request != "field":
        loaded = with_request(loaded, float(args.request))
    PLANNERS.setdefault(FieldReplay.name, FieldReplay)  # a bench-only planner, by name for run_scenario
    results = [run_scenario(loaded, args.planner, seed) for seed in range(args.seeds)]
    out = {"label": args.label, "scenario": args.scenario, "request": args.request, **compare(results)}
    print(f"{args.scenario} · {args.planner} asked {args.request} · seeds 0-{args.seeds - 1} {args.label}")
    print(f"  RMSE {out['rmse']:.2%} of baseline ({out['baseline_w'] / 1e3:.1f} kW), bias {out['bias']:+.2%}")
    print(f"  hold mean {out['hold_mean_w'] / 1e3:.1f} kW (measured {out['measured_hold_mean_w'] / 1e3:.1f});"
          f" per-minute std {out['hold_std_w']:.0f} W (measured {out['measured_hold_std_w']:.0f})")
    for j in out["jobs"]:
        print(f"  {j['id']:<22} twin {j['twin']:.3f}  measured {j['measured']:.3f}  error {j['error']:+.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if args.report:
        from gridflex.report.html import run_report
        from gridflex.report.summary import summarize

        with open(args.report, "w") as f:
            f.write(run_report(results[0], summarize(results[0]), builtin_measured()))


if __name__ == "__main__":
    main()
