"""The twin's calibrated physics: each component's profile and statistics."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from gridflex.drivers import twin_physics as tp
from gridflex.model.fleet import JobFleet
from gridflex.sim.scenarios import load_scenario

CAL = tp.CALIBRATION


@pytest.fixture(scope="module")
def fleet() -> JobFleet:
    loaded = load_scenario("phoenix-srp")
    return JobFleet.build(loaded.scenario.jobs, loaded.curves)


def _knee(cap, thr):
    return np.interp(0.9, thr, cap)


def test_true_curves_change_shape_with_the_measured_spread(fleet):
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(len(fleet)), 400)
    curves = tp.TrueCurves.draw(fleet.cap_w[rows], fleet.power_w[rows], fleet.throughput[rows], rng)
    assert np.allclose(curves.throughput[:, -1], 1.0)
    assert (np.diff(curves.throughput, axis=1) >= -1e-12).all()
    knees = np.array([_knee(c, t) for c, t in zip(curves.cap_w, curves.throughput)])
    model_knees = np.array([_knee(c, t) for c, t in zip(fleet.cap_w, fleet.throughput)])[rows]
    assert np.std(knees - model_knees) == pytest.approx(CAL.knee_sd_w, rel=0.2)
    # Not a rescaling: the 200 W and 350 W throughput errors are far from proportional.
    err = curves.throughput - fleet.throughput[rows]
    assert abs(np.corrcoef(err[:, 1], err[:, 4])[0, 1]) < 0.95
    ratio = curves.power_w / fleet.power_w[rows]
    assert np.exp(np.log(ratio[:, -1]).mean()) == pytest.approx(np.exp(CAL.power_bias), abs=0.003)
    assert (curves.power_w <= curves.cap_w + 1e-9).all()


def test_true_curves_rows_come_and_go(fleet):
    rng = np.random.default_rng(2)
    a = tp.TrueCurves.draw(fleet.cap_w[:2], fleet.power_w[:2], fleet.throughput[:2], rng)
    b = tp.TrueCurves.draw(fleet.cap_w[2:, :4], fleet.power_w[2:, :4], fleet.throughput[2:, :4], rng)
    both = a.append(b)
    assert len(both) == len(fleet) and both.cap_w.shape[1] == fleet.cap_w.shape[1]
    kept = both.take(np.array([0, 3]))
    cap = np.array([300.0, 300.0])
    assert np.allclose(kept.throughput_at_cap(cap), both.throughput_at_cap(np.full(len(both), 300.0))[[0, 3]])
    assert kept.released_w[0] < kept.idle_w[0] < kept.power_w[0, 0]


def _site_minute_std(training: np.ndarray, gpus: np.ndarray, per_gpu_w: float, seed: int, minutes: int = 240):
    rng = np.random.default_rng(seed)
    fl = tp.Fluctuation()
    fl.append(training, rng)
    activity, _ = fl.advance(minutes * 60, 1.0, rng)
    site = (activity * gpus * per_gpu_w).sum(axis=1)
    return site.reshape(minutes, 60).mean(axis=1)


def test_fluctuation_minute_std_of_a_256_gpu_site_matches_the_field():
    # The phoenix mix of job sizes, no checkpoints: minute-scale std of the site against the SRP
    # pre-event figure (301 W, minute noise around a 7-minute median; bench/calibrate_twin.py).
    gpus = np.array([32, 32, 48, 48, 48, 48])
    per_gpu_w = 360.0
    minute = _site_minute_std(np.zeros(6, bool), gpus, per_gpu_w, seed=3)
    k = 7
    pad = np.pad(minute, (k // 2, k // 2), mode="edge")
    resid = minute - np.array([np.median(pad[i : i + k]) for i in range(len(minute))])
    assert resid.std() * np.sqrt(k / (k - 1)) == pytest.approx(301.0, rel=0.2)


def test_fluctuation_adds_per_job_not_per_gpu():
    one_big = _site_minute_std(np.zeros(1, bool), np.array([256]), 360.0, seed=4)
    many = _site_minute_std(np.zeros(8, bool), np.full(8, 32), 360.0, seed=4)
    # 8 independent jobs of 32: std / sqrt(8) of one job of 256 (per-GPU noise would give /16).
    assert one_big.std() / many.std() == pytest.approx(np.sqrt(8), rel=0.35)


def test_checkpoint_stalls_are_periodic_near_idle_and_cost_throughput():
    rng = np.random.default_rng(5)
    fl = tp.Fluctuation()
    fl.append(np.array([True, False]), rng, phase_s=np.array([100.0, 100.0]))  # outside a stall at first
    activity, thr = fl.advance(3 * 3600, 1.0, rng)
    stalled = thr[:, 0] < 1
    assert (1 - thr[:, 0]).sum() == pytest.approx(3 * fl.stall_s[0], abs=1e-6)
    assert np.allclose(activity[thr[:, 0] == 0, 0], CAL.stall_activity)
    assert (thr[:, 1] == 1).all()
    starts = np.flatnonzero(np.diff(stalled.astype(int)) == 1)
    assert np.allclose(np.diff(starts), CAL.checkpoint_period_s)
    fl.take(np.array([1]))
    assert len(fl) == 1 and not fl.training[0]


def test_checkpoint_stop_is_near_idle_then_released():
    since = np.arange(0.0, 120.0)[:, None]
    dur = np.array([40.0])
    floor, activity, thr = tp.transition_profile(np.array([tp.Transition.CHECKPOINT_STOP]), since, dur)
    assert (thr == 0).all()
    assert (activity[:40] == CAL.stall_activity).all() and (floor[:40] == tp.Floor.IDLE).all()
    assert (floor[40:] == tp.Floor.RELEASED).all() and (activity[40:] == 0).all()


def test_restart_has_no_throughput_then_warms_up(fleet):
    rng = np.random.default_rng(6)
    dur = tp.draw_durations(tp.Transition.RESTART, 2000, rng)
    assert np.median(dur) == pytest.approx(CAL.restart_s, rel=0.1)
    since = np.arange(0.0, 600.0)[:, None]
    kind = np.array([tp.Transition.RESTART])
    floor, activity, thr = tp.transition_profile(kind, since, np.array([300.0]))
    assert (thr[:300] == 0).all() and np.allclose(activity[:300], CAL.startup_activity)
    assert 0 < thr[330, 0] < 1 and np.all(np.diff(thr[300:, 0]) >= 0) and (thr[300 + int(CAL.warmup_s) :] == 1).all()
    curves = tp.TrueCurves.draw(fleet.cap_w[:1], fleet.power_w[:1], fleet.throughput[:1], rng)
    p = tp.per_gpu_power_w(curves, np.array([400.0]), floor, activity)
    assert p[0, 0] < 0.25 * curves.power_w[0, -1] and p[-1, 0] == pytest.approx(curves.power_w[0, -1])


def test_restart_takes_longer_for_a_larger_model():
    median = tp.restart_median_s(["pt_mpt_13b_sm", "b1k_pt_mpt_7b_fast", "resnet50"])
    assert median == pytest.approx([13 * CAL.restart_s_per_bparam, 7 * CAL.restart_s_per_bparam, CAL.restart_s])
    dur = tp.draw_durations(tp.Transition.RESTART, 3, np.random.default_rng(0), restart_median=median)
    assert dur[0] > dur[1] and np.all(np.abs(np.log(dur / median)) < 4 * CAL.restart_log_sd)


def test_suspend_and_resume():
    since = np.arange(0.0, 10.0)[:, None]
    f, a, t = tp.transition_profile(np.array([tp.Transition.SUSPEND]), since, np.array([3.0]))
    assert (t == 0).all() and (a[:3] == 1).all() and (a[3:] == 0).all() and (f == tp.Floor.SUSPENDED).all()
    f, a, t = tp.transition_profile(np.array([tp.Transition.RESUME]), since, np.array([3.0]))
    assert (t[:3] == 0).all() and (t[3:] == 1).all()


def test_recovery_is_low_after_the_event_and_one_before():
    f = tp.recovery_factor(np.array([np.nan, -5.0, 0.0, 3600.0]))
    assert f[0] == f[1] == 1.0
    assert f[2] == pytest.approx(1 - CAL.recovery_depth)
    assert 1 - f[3] > 0.025  # still ~3 % low an hour later, as measured


def test_the_controller_and_planners_cannot_reach_the_twin():
    root = Path(__file__).resolve().parents[1] / "src" / "gridflex"
    for package in ("control", "plan"):
        for path in (root / package).rglob("*.py"):
            if path.name == "oracle.py":  # the offline bound knows the true curves on purpose
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                assert not any("twin" in n for n in names), f"{path} imports the twin"


def test_calibration_matches_what_the_script_derives_from_the_data():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "calibrate_twin.py"
    spec = importlib.util.spec_from_file_location("calibrate_twin", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = Path("../shared/data")
    srp, curves, h100 = script.srp_figures(data), script.curve_spread(data), script.h100_figures(data)
    d = script.derived(data, srp, curves, h100)
    expected = {
        "knee_sd_w": max(curves["phoenix_knee_std_w"], curves["zeus_knee_std_w"]),
        "low_slope_log_sd": max(curves["phoenix_log_low_slope_std"], curves["zeus_log_low_slope_std"]),
        "power_bias": d["power_bias"],
        "power_scale_sd": curves["phoenix_power_scale_std"],
        "idle_fraction": h100["idle_fraction_of_max"],
        "released_fraction": d["released_w"] / 400.0,
        "iteration_rel": h100["run1000"]["compute_rel_std_1s"],
        "minute_rel": d["minute_process_rel"],
        "minute_tau_s": d["minute_noise_tau_s"],
        "drift_rel": d["slow_drift_rel"],
        "checkpoint_stall_s": d["checkpoint_stall_s_median"],
        "checkpoint_stall_log_sd": d["checkpoint_stall_log_sd"],
        "stall_activity": h100["stall_activity"],
        "startup_activity": h100["startup_activity"],
        "restart_s": d["restart_s_median"],
        "restart_s_per_bparam": d["restart_s_per_bparam"],
        "restart_log_sd": d["restart_log_sd"],
        "recovery_depth": srp["post_deficit"],
    }
    for name, value in expected.items():
        assert getattr(CAL, name) == pytest.approx(value, rel=0.03, abs=1e-3), name


def _reachable(root, skip: tuple, depth: int = 8):
    """Every object reachable from `root` through attributes, dict values and sequence items,
    not entering the objects in `skip`."""
    seen, todo = {id(s) for s in skip}, [(root, 0)]
    while todo:
        obj, d = todo.pop()
        if id(obj) in seen or d > depth or isinstance(obj, (str, bytes, int, float, type)):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        else:
            children = list(getattr(obj, "__dict__", {}).values())
            children += [getattr(obj, s, None) for s in getattr(type(obj), "__slots__", ())]
        todo.extend((c, d + 1) for c in children)


def test_the_controller_shares_no_object_with_the_twins_physics():
    from gridflex.assembly import simulated

    loaded = load_scenario("phoenix-srp-field")
    site = simulated(loaded, "optimal", seed=0, record=False)
    start = loaded.scenario.start.timestamp()
    for t in (start, start + 6600.0, start + 6602.0):  # before the event, then in its hold
        site.tick(t)
    twin, controller = site.driver, site.controller
    assert controller.driver is twin  # it reaches the plant only through the driver's verbs
    secret = [twin.curves, twin.fluctuation, twin.cal, twin._rng]
    secret_arrays = [a for s in (twin.curves, twin.fluctuation) for a in vars(s).values() if isinstance(a, np.ndarray)]
    mine = list(_reachable(controller, skip=(twin,)))
    assert any(isinstance(o, JobFleet) for o in mine)  # the walk reaches the controller's model
    for obj in mine:
        assert not any(obj is s for s in secret), f"the controller holds the twin's {type(obj).__name__}"
        if isinstance(obj, np.ndarray):
            assert not any(np.shares_memory(obj, a) for a in secret_arrays), "an array shared with the twin"
    model = next(o for o in mine if isinstance(o, JobFleet) and len(o) == len(twin.fleet))
    assert not np.allclose(model.power_w, twin.curves.power_w)  # its curves are the model's, not the true ones


def test_the_bound_counts_the_checkpoint_saves_no_plan_avoids():
    from gridflex.model.scenario import TwinSettings
    from gridflex.plan.oracle import solve_oracle
    from gridflex.sim.scenarios import LoadedScenario

    loaded = load_scenario("phoenix-srp")
    no_saves = LoadedScenario(loaded.scenario.model_copy(update={"twin": TwinSettings(checkpoints=False)}), loaded.curves)
    sol, without = solve_oracle(loaded, 0), solve_oracle(no_saves, 0)
    share = sol.true_fleet.hull_throughput[:, -1]
    training = np.array(["pt_" in j.workload or "ft_" in j.workload for j in loaded.scenario.jobs])
    assert np.all(share[~training] == 1.0) and np.all((share[training] > 0.98) & (share[training] < 1.0))
    assert np.all(sol.performance <= share + 1e-9)
    assert sol.weighted_performance < without.weighted_performance - 0.003
