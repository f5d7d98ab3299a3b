"""Derive the digital twin's calibration figures from the measured data in ../shared/data.

Every figure that `gridflex.drivers.twin_physics.CALIBRATION` holds comes out of this script
(or is marked "assumed" in docs/twin.md). It reads:

- phoenix-2025/dvfs_sweep.csv and gpu-power-limit-zeus/summary_power_*.csv: job-to-job spread of
  the curve's shape (knee, slope below 250 W) among jobs of one family;
- phoenix-2025-measured-srp/SRP_total_power.csv: per-minute variability, checkpoint dips,
  the checkpoint-stop/restart swap and the restart at the end of the event, post-event deficit,
  the power the stopped (released) GPUs add to the measured hold;
- h100-training-power/*: second-scale swings of one training node, how synchronised its GPUs
  are, checkpoint stalls, start-up and idle power.

    .venv/bin/python bench/calibrate_twin.py [--data ../shared/data] [--json docs/results/twin_calibration.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np

#: Field timing read off the measured trace (local time, minutes of the day); see docs/twin.md.
PRE = ("15:05", "16:05")  # the hour before the ramp: the event's baseline window
HOLD = ("16:25", "19:33")  # after the ramp settled, until the reduction ended
POST = ("19:50", "21:20")  # after the ramp back up settled, to the end of the trace
SWAP = ("18:01", "18:08")  # one MPT job checkpoint-stopped, the other restarting
FIELD_CUT_START, FIELD_HOLD_END = "16:09", "19:32"
# Billions of parameters of the job restarting at the swap and at the end of the hold: the MPT-13B
# was stopped first (its throughput is the lower, 0.667 against 0.743) and restarted at the swap.
RESTART_BPARAMS = (13.0, 7.0)
A100_MAX_CAP_W = 400.0
H100_MAX_W = 700.0
LOW_CAP_W = 250.0  # "slope below 250 W"


def _minute(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


# --- the measured SRP trace -------------------------------------------------------------------
def load_srp(data: Path) -> tuple[list[datetime], np.ndarray]:
    with open(data / "phoenix-2025-measured-srp" / "SRP_total_power.csv") as f:
        rows = list(csv.reader(f))[1:]
    return [datetime.fromisoformat(r[0]) for r in rows], np.array([float(r[1]) for r in rows])


def srp_figures(data: Path) -> dict:
    t, p = load_srp(data)
    minute = np.array([x.hour * 60 + x.minute for x in t])

    def sel(span):
        return (minute >= _minute(span[0])) & (minute < _minute(span[1]))

    k = 7  # rolling median over 7 minutes: the slow level, against which dips and noise are measured
    pad = np.pad(p, (k // 2, k // 2), mode="edge")
    level = np.array([np.median(pad[i : i + k]) for i in range(len(p))])
    resid = p - level
    dip = resid < -1500.0
    edges = np.diff(np.r_[0, dip.astype(int), 0])
    dips = [
        {"at": t[s].strftime("%H:%M"), "minutes": int(e - s), "depth_w": float(-resid[s:e].min()),
         "energy_wmin": float(-resid[s:e].sum())}
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))
        if not sel(SWAP)[s]
    ]
    pre, hold, post = p[sel(PRE)], p[sel(HOLD)], p[sel(POST)]
    quiet = ~dip & ~sel(SWAP)
    # Minute-scale noise: std of the residual around the slow level in quiet minutes (a 7-point
    # median takes about 1/7 of the variance away; corrected).
    noise_pre_w = float(resid[sel(PRE) & quiet].std() * np.sqrt(k / (k - 1)))
    noise_post_w = float(resid[sel(POST) & quiet].std() * np.sqrt(k / (k - 1)))
    noise_hold_w = float(resid[sel(HOLD) & quiet].std() * np.sqrt(k / (k - 1)))
    drift_pre_w = float(level[sel(PRE)].std())
    # Lag-1 autocorrelation of the quiet residual: how long the minute-scale wander lasts.
    r = resid[sel(("14:40", "16:05"))]
    lag1 = float(np.corrcoef(r[:-1], r[1:])[0, 1])
    swap = p[sel(SWAP)]
    before_swap = float(np.median(p[sel(("17:30", "18:01"))]))
    swap_deficit_wmin = float((before_swap - swap).sum())
    swap_floor_w = float(np.median(swap[1:-2]))
    # Restart times: at the swap, minutes from the stop until the restarted job is back
    # (deficit / full drop, in minutes); at the end, from the last held minute to the step up.
    swap_restart_s = swap_deficit_wmin / (before_swap - swap_floor_w) * 60.0
    # At the end: caps rose in the first minute after the hold; the paused job came back during
    # the minute before the big step, by the fraction of that step it already shows.
    end = _minute(FIELD_HOLD_END)
    after = p[(minute > end) & (minute <= end + 12)]
    jump = int(np.argmax(np.diff(after))) + 1
    frac = (after[jump - 1] - after[jump - 2]) / (after[jump] - after[jump - 2])
    end_restart_s = float((jump - frac) * 60.0)
    first_half = float(np.median(p[sel(("16:30", "18:00"))]))
    second_half = float(np.median(p[sel(("18:20", "19:30"))]))
    return {
        "pre_event_w": float(pre.mean()),
        "pre_event_median_w": float(np.median(pre)),
        "hold_mean_w": float(hold.mean()),
        "field_cut": float(1 - hold.mean() / pre.mean()),
        "hold_minute_std_w": float(hold.std()),
        "hold_minute_std_quiet_w": float(hold[quiet[sel(HOLD)]].std()),
        "post_event_w": float(post.mean()),
        "post_event_median_w": float(np.median(post)),
        "post_deficit": float(1 - np.median(post) / np.median(pre)),
        "post_deficit_first_hour": float(1 - np.median(p[sel(("19:50", "20:50"))]) / np.median(pre)),
        "post_deficit_last_30_min": float(1 - np.median(p[sel(("20:50", "21:20"))]) / np.median(pre)),
        "minute_noise_pre_w": noise_pre_w,
        "minute_noise_hold_w": noise_hold_w,
        "minute_noise_post_w": noise_post_w,
        "minute_noise_lag1": lag1,
        "slow_drift_pre_w": drift_pre_w,
        "checkpoint_dips": dips,
        "swap_level_before_w": before_swap,
        "swap_floor_w": swap_floor_w,
        "swap_deficit_wmin": swap_deficit_wmin,
        "restart_s_swap": float(swap_restart_s),
        "restart_s_end": end_restart_s,
        "hold_first_half_w": first_half,
        "hold_second_half_w": second_half,
    }


# --- curve shape spread ------------------------------------------------------------------------
def _shape(cap_rel: np.ndarray, thr: np.ndarray) -> tuple[float, float]:
    """(knee, low slope) of a normalised curve: the relative cap where throughput first reaches
    0.9, and the throughput gained per relative cap from the lowest cap up to 250/400."""
    thr = np.maximum.accumulate(thr / thr[-1])
    knee = float(np.interp(0.9, thr, cap_rel)) if thr[0] < 0.9 else float(cap_rel[0])
    lo = LOW_CAP_W / A100_MAX_CAP_W
    slope = (np.interp(lo, cap_rel, thr) - thr[0]) / (lo - cap_rel[0])
    return knee, float(slope)


def _pooled_spread(groups: dict[str, list[tuple[float, float]]]) -> tuple[float, float, int]:
    """Pooled within-group std of the knee (in A100 watts) and of log(low slope)."""
    dk, ds, n = [], [], 0
    for shapes in groups.values():
        if len(shapes) < 2:
            continue
        k = np.array([s[0] for s in shapes]) * A100_MAX_CAP_W
        s = np.log(np.array([max(s[1], 1e-3) for s in shapes]))
        dk.extend(k - k.mean())
        ds.extend(s - s.mean())
        n += len(shapes) - 1
    return float(np.sqrt(np.sum(np.square(dk)) / n)), float(np.sqrt(np.sum(np.square(ds)) / n)), n


def curve_spread(data: Path) -> dict:
    families: dict[str, list[tuple[float, float]]] = {}
    power_ratio: dict[str, list[float]] = {}
    with open(data / "phoenix-2025" / "dvfs_sweep.csv") as f:
        rows = list(csv.DictReader(f))
    by_w: dict[str, list[dict]] = {}
    for r in rows:
        by_w.setdefault(r["Workload"], []).append(r)
    for w, rs in by_w.items():
        if w.startswith("infer") and w != "infer_llama_8b_48g":
            continue  # the inference rows share one normalised curve: one job
        cap = np.array([float(r["GPU power cap"]) for r in rs])
        thr = np.array([float(r["normalized throughput"]) for r in rs])
        pw = np.array([float(r["power per GPU"]) for r in rs])
        fam = w.split("_")[0]
        families.setdefault("phoenix/" + fam, []).append(_shape(cap / cap.max(), thr))
        power_ratio.setdefault(fam, []).append(float(np.mean(pw / cap)))
    zeus: dict[str, list[tuple[float, float]]] = {}
    for gpu_file in sorted((data / "gpu-power-limit-zeus").glob("summary_power_*.csv")):
        with open(gpu_file) as f:
            zr = list(csv.DictReader(f))
        curves: dict[tuple, list[tuple[float, float]]] = {}
        for r in zr:
            curves.setdefault((r["network"], r["batch_size"], r["optimizer"]), []).append(
                (float(r["power_limit"]), float(r["time_per_epoch"]))
            )
        for (net, _, _), pts in curves.items():
            pts.sort()
            cap = np.array([c for c, _ in pts])
            thr = 1.0 / np.array([tpe for _, tpe in pts])
            # Power-bound curves only (a job that loses < 40 % at the lowest cap has no knee to move).
            if len(cap) >= 5 and thr[0] / thr[-1] < 0.6:
                zeus.setdefault(f"{gpu_file.stem}/{net}", []).append(_shape(cap / cap.max(), thr))
    pk, ps, pn = _pooled_spread(families)
    zk, zs, zn = _pooled_spread(zeus)
    ratios = [np.std(np.log(v), ddof=1) for v in power_ratio.values() if len(v) > 1]
    return {
        "phoenix_knee_std_w": pk, "phoenix_log_low_slope_std": ps, "phoenix_dof": pn,
        "zeus_knee_std_w": zk, "zeus_log_low_slope_std": zs, "zeus_dof": zn,
        "phoenix_power_scale_std": float(np.sqrt(np.mean(np.square(ratios)))),
        "phoenix_families": {k: [[round(a * A100_MAX_CAP_W, 1), round(b, 3)] for a, b in v] for k, v in families.items()},
    }


# --- one H100 training node ----------------------------------------------------------------
def h100_figures(data: Path) -> dict:
    folder = data / "h100-training-power"
    with open(folder / "raw_nvidia_smi_8xH100_ckpt100.csv") as f:
        rows = list(csv.reader(f))[1:]
    p = np.array([float(r[1].split()[0]) for r in rows])
    t = np.array([datetime.strptime(r[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp() for r in rows])
    n = len(p) // 8
    per_gpu, ts = p[: n * 8].reshape(n, 8), t[: n * 8 : 8] - t[0]
    total = per_gpu.sum(axis=1)
    busy = np.flatnonzero(total > 8 * 200)
    a, b = busy[0], busy[-1]
    g, s = per_gpu[a:b], total[a:b]
    corr = np.corrcoef(g.T)
    out = {
        "per_gpu_min_w": float(per_gpu.min()), "per_gpu_max_w": float(per_gpu.max()),
        "idle_w": float(np.median(per_gpu[: int(np.searchsorted(ts, 5.0))])),
        "gpu_correlation": float((corr.sum() - 8) / 56),
        "sum_std_over_sum_of_std": float(s.std() / g.std(axis=0).sum()),
        "sum_std_if_independent_ratio": float(np.sqrt((g.std(axis=0) ** 2).sum()) / g.std(axis=0).sum()),
    }
    for run in ("100", "1000"):
        d = np.genfromtxt(folder / f"aggregated_8gpu_sum_{run}stepsync.csv", delimiter=",", skip_header=1,
                          usecols=(1, 2))
        w, tt = d[:, 0] / 8, d[:, 1]
        on = np.flatnonzero(w > 200)
        w2, t2 = w[on[0] : on[-1]], tt[on[0] : on[-1]]
        hi = w2 > 350
        e = np.diff(np.r_[0, hi.astype(int), 0])
        st, en = np.flatnonzero(e == 1), np.flatnonzero(e == -1) - 1
        compute_s = t2[en] - t2[st]
        stall_s = t2[st[1:]] - t2[en[:-1]]
        sec = (t2 // 1).astype(int)
        _, inv = np.unique(sec, return_inverse=True)
        w1 = np.bincount(inv, w2) / np.bincount(inv)
        hi1 = np.bincount(inv, hi) / np.bincount(inv) == 1
        startup = (tt > 15) & (tt < tt[on[0]] - 5)
        out[f"run{run}"] = {
            "compute_w": float(np.median(w2[hi])), "stall_w": float(np.median(w2[~hi])),
            "compute_s_median": float(np.median(compute_s[:-1])) if len(compute_s) > 1 else float(compute_s[0]),
            "stall_s": [round(float(x), 1) for x in stall_s],
            "compute_rel_std_100ms": float(w2[hi].std() / w2[hi].mean()),
            "compute_rel_std_1s": float(w1[hi1].std() / w1[hi1].mean()),
            "startup_s": float(tt[on[0]] - tt[np.flatnonzero(w > 90)[0]]),
            "startup_w": float(np.median(w[startup])),
        }
    r = out["run1000"]
    out["stall_activity"] = (r["stall_w"] - out["idle_w"]) / (r["compute_w"] - out["idle_w"])
    out["startup_activity"] = (r["startup_w"] - out["idle_w"]) / (r["compute_w"] - out["idle_w"])
    out["idle_fraction_of_max"] = out["idle_w"] / H100_MAX_W
    return out


def _minute_mean_variance(tau_s: float, step_s: float = 1.0, span_s: float = 60.0) -> float:
    """Variance of the mean over `span_s` of a unit-variance AR(1) with time constant `tau_s`."""
    n = int(span_s / step_s)
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return float(np.exp(-lag * step_s / tau_s).mean())


def derived(data: Path, srp: dict, curves: dict, h100: dict) -> dict:
    """The twin's parameters from the raw figures (the formulas are in docs/twin.md)."""
    from gridflex.sim.scenarios import load_scenario

    loaded = load_scenario("phoenix-srp")
    sc = loaded.scenario
    full = {j.id: j.gpus * loaded.curves[j.workload].full_power_w for j in sc.jobs}
    model_w = sum(full.values())
    root_sum_sq = float(np.sqrt(sum(v**2 for v in full.values())))
    # Checkpoint stall length: energy of a dip / (job's drop rate while saving). Before and after
    # the event every job runs uncapped; a 48-GPU MPT job (":14", ":11", ":49" dips) and the
    # 32-GPU fine-tuning job (":18").
    idle_a100 = h100["idle_fraction_of_max"] * A100_MAX_CAP_W
    drop_mpt = 48 * (0.5 * (full["pt-mpt-13b-sm"] + full["pt-mpt-7b-fast"]) / 48 - idle_a100) * (1 - h100["stall_activity"])
    drop_ft = (full["ft-llama-8b-p3"] - 32 * idle_a100) * (1 - h100["stall_activity"])
    stall = []
    for d in srp["checkpoint_dips"]:
        minute = _minute(d["at"])
        if _minute("16:05") <= minute < _minute("19:45"):
            continue  # capped during the event: the drop rate is not known
        each = d["energy_wmin"] / (2 if d["at"] == "15:14" else 1)  # 15:14: both MPT jobs at once
        stall.append(each / (drop_ft if d["at"].endswith(("17", "18")) else drop_mpt) * 60.0)
    restart = np.array([srp["restart_s_swap"], srp["restart_s_end"]])
    tau_s = float(-60.0 / np.log(max(srp["minute_noise_lag1"], 0.05)))
    released = released_w(data, loaded, srp, float(np.exp(np.log(srp["pre_event_median_w"] / model_w))))
    return {
        "model_full_w": model_w,
        "power_bias": float(np.log(srp["pre_event_median_w"] / model_w)),
        "minute_noise_rel": srp["minute_noise_pre_w"] / root_sum_sq,
        # std of the 1-s AR(1) whose 1-minute means have that std, less what the (white, 1-s)
        # iteration swings of h100 leave in a minute mean
        "minute_process_rel": float(np.sqrt(
            (srp["minute_noise_pre_w"] / root_sum_sq) ** 2 - h100["run1000"]["compute_rel_std_1s"] ** 2 / 60
        ) / np.sqrt(_minute_mean_variance(tau_s))),
        "slow_drift_rel": srp["slow_drift_pre_w"] / root_sum_sq,
        "minute_noise_tau_s": tau_s,
        "checkpoint_stall_s": [round(float(x), 1) for x in stall],
        "checkpoint_stall_s_median": float(np.median(stall)),
        "checkpoint_stall_log_sd": float(np.log(stall).std(ddof=1)),
        "checkpoint_period_s": 3600.0,
        "restart_s_median": float(np.exp(np.log(restart).mean())),
        # restart time proportional to the model's size: the factor, and the spread about it
        "restart_s_per_bparam": float(np.exp(np.log(restart / RESTART_BPARAMS).mean())),
        "restart_log_sd": float(np.log(restart / RESTART_BPARAMS).std(ddof=1)),
        "idle_w_a100": idle_a100,
        "released_w_estimates": [round(x, 1) for x in released],
        "released_w": float(np.clip(np.mean(released), 0.0, None)),
        "post_deficit": srp["post_deficit"],
    }


def released_w(data: Path, loaded, srp: dict, scale: float) -> list[float]:
    """Per-GPU power the stopped MPT job adds to the measured hold, from each half of the hold:
    measured power less the modelled power of the running jobs at the caps that give their
    measured throughputs. Which MPT job stopped first is not recorded: both orders are tried."""
    sc = loaded.scenario
    with open(data / "phoenix-2025-measured-srp" / "SRP_exp_performance.csv") as f:
        perf = {r["Model"].strip().rsplit("-", 1)[0]: float(r["Performance"]) for r in csv.DictReader(f) if r["Flexibility"]}
    window_min = sc.duration_s / 60.0
    event_min = _minute(FIELD_HOLD_END) - _minute(FIELD_CUT_START)
    first_off, second_off = (_minute("16:10"), _minute("18:07")), (_minute("18:00"), _minute("19:36"))
    out = []
    for first, second in (("pt-mpt-13b-sm", "pt-mpt-7b-fast"), ("pt-mpt-7b-fast", "pt-mpt-13b-sm")):
        halves = {}
        for half, stopped, running, off in ((1, first, second, second_off), (2, second, first, first_off)):
            power = 0.0
            for job in sc.jobs:
                if job.id == stopped:
                    continue
                curve = loaded.curves[job.workload]
                lost_min = (1 - perf[job.workload]) * window_min
                on_min = event_min
                if job.id == running:  # its own stop is a loss of throughput too
                    lost_min -= off[1] - off[0]
                    on_min -= off[1] - off[0]
                thr = float(np.clip(1 - lost_min / on_min, curve.throughput[0], 1.0))
                cap = np.interp(thr, curve.throughput, curve.cap_w)
                power += job.gpus * float(curve.power_at(cap)) * scale
            measured = srp["hold_first_half_w"] if half == 1 else srp["hold_second_half_w"]
            halves[half] = (measured - power) / 48
        out.extend(halves.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    srp, curves, h100 = srp_figures(args.data), curve_spread(args.data), h100_figures(args.data)
    out = {"srp": srp, "curves": curves, "h100": h100, "derived": derived(args.data, srp, curves, h100)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
