import numpy as np
import pytest

from gridflex.drivers.base import JobActions
from gridflex.drivers.twin import TwinDriver
from gridflex.errors import DriverError
from gridflex.model.scenario import TwinSettings
from gridflex.model.site import Job, Latency, Site

QUIET = TwinSettings(curve_spread=0.0, fluctuation=0.0, checkpoints=False, recovery=0.0)


def make_twin(curves, settings=QUIET, seed=0, latency=Latency()):
    jobs = [
        Job(id="a", workload="pt_mpt_7b_fast", gpus=8, flex_tier=3, latency=latency),
        Job(id="b", workload="infer_llama_8b", gpus=4, flex_tier=0),
    ]
    twin = TwinDriver(jobs, curves, Site(pue=1.2, overhead_w=1000), 0.0, settings=settings, seed=seed)
    return twin, twin.fleet


def test_uncapped_power_follows_the_curves_and_pue(curves):
    twin, fleet = make_twin(curves)
    twin.advance_to(10)
    tel = twin.read()
    it = float((fleet.gpus * fleet.full_w).sum())
    assert tel.it_power_w == pytest.approx(it)
    assert tel.site_power_w == pytest.approx(it * 1.2 + 1000)
    assert tel.throughput == pytest.approx([1.0, 1.0])


def test_a_cap_takes_effect_after_its_latency(curves):
    twin, fleet = make_twin(curves, latency=Latency(power_cap_s=3))
    twin.advance_to(10)
    twin.apply(JobActions(fleet.ids, np.array([200.0, fleet.max_cap_w[1]]), np.ones(2)))
    twin.advance_to(12)
    assert twin.read().cap_w[0] == fleet.max_cap_w[0]  # not yet
    twin.advance_to(13)
    tel = twin.read()
    assert tel.cap_w[0] == 200.0
    assert tel.job_power_w[0] == pytest.approx(8 * curves["pt_mpt_7b_fast"].power_at(200))


def test_suspend_takes_its_calibrated_time_and_stops_throughput(curves):
    twin, fleet = make_twin(curves)
    twin.apply(JobActions(fleet.ids, fleet.max_cap_w.copy(), np.array([0.0, 1.0])))
    twin.advance_to(2)
    tel = twin.read()
    assert tel.throughput[0] == 0.0 and tel.active[0] == 1.0  # work stops at once, the GPUs not yet
    assert tel.job_power_w[0] == pytest.approx(8 * fleet.full_w[0])
    twin.advance_to(10)
    twin.read()
    twin.advance_to(11)
    tel = twin.read()
    assert tel.active[0] == 0.0 and tel.job_power_w[0] == pytest.approx(8 * twin.curves.suspended_w[0])
    assert twin.curves.suspended_w[0] < curves["pt_mpt_7b_fast"].paused_w  # the twin's own, not the model's


def test_checkpoint_stop_saves_then_releases_and_restart_takes_minutes(curves):
    jobs = [Job(id="a", workload="pt_mpt_7b_fast", gpus=8, flex_tier=3, pause_mode="checkpoint")]
    twin = TwinDriver(jobs, curves, Site(), 0.0, settings=QUIET, seed=3)
    cal, full_w = twin.cal, twin.true_power_w[0, -1]
    twin.apply(JobActions(("a",), twin.fleet.max_cap_w.copy(), np.zeros(1)))
    save_s = twin._dur_s[0]
    twin.advance_to(10)
    tel = twin.read()
    idle = twin.curves.idle_w[0]
    assert tel.throughput[0] == 0 and tel.job_power_w[0] == pytest.approx(8 * (idle + cal.stall_activity * (full_w - idle)))
    twin.advance_to(np.ceil(save_s) + 1)
    twin.read()
    twin.advance_to(600)
    assert twin.read().job_power_w[0] == pytest.approx(8 * twin.curves.released_w[0])
    twin.apply(JobActions(("a",), twin.fleet.max_cap_w.copy(), np.ones(1)))
    reload_s = twin._dur_s[0]
    twin.advance_to(600 + np.floor(reload_s) - 1)
    tel = twin.read()
    assert tel.throughput[0] == 0 and tel.job_power_w[0] < 0.2 * 8 * full_w  # reloading, near idle
    twin.advance_to(600 + np.ceil(reload_s) + cal.warmup_s + 1)
    twin.read()
    twin.advance_to(600 + np.ceil(reload_s) + cal.warmup_s + 10)
    tel = twin.read()
    assert tel.throughput[0] == pytest.approx(1.0) and tel.job_power_w[0] == pytest.approx(8 * full_w)


def test_a_job_released_from_a_curtailment_comes_back_low(curves):
    twin, fleet = make_twin(curves, TwinSettings(curve_spread=0.0, fluctuation=0.0, checkpoints=False),
                            latency=Latency(power_cap_s=0))
    full = twin.read().job_power_w[0]
    twin.apply(JobActions(fleet.ids, np.array([200.0, fleet.max_cap_w[1]]), np.ones(2)))
    twin.advance_to(600)
    twin.read()
    twin.restore()
    twin.advance_to(3600)
    back = twin.read().job_power_w
    assert back[0] == pytest.approx(full * (1 - twin.cal.recovery_depth), rel=0.01)
    assert back[1] == pytest.approx(4 * twin.true_power_w[1, -1])  # never curtailed: as before


def test_true_curves_differ_from_the_model_by_a_seeded_error(curves):
    a, fleet = make_twin(curves, TwinSettings(fluctuation=0.0), seed=1)
    b, _ = make_twin(curves, TwinSettings(fluctuation=0.0), seed=1)
    c, _ = make_twin(curves, TwinSettings(fluctuation=0.0), seed=2)
    assert not np.allclose(a.true_power_w, fleet.power_w)
    assert not np.allclose(a.true_throughput, fleet.throughput)  # the shape too, not just the scale
    assert np.array_equal(a.true_power_w, b.true_power_w)
    assert not np.array_equal(a.true_power_w, c.true_power_w)
    assert np.all(a.true_power_w <= fleet.cap_w + 1e-9)  # a GPU never draws above its cap
    assert a.true_throughput[:, -1] == pytest.approx(1.0)


def test_power_fluctuates_per_job_around_the_curve(curves):
    twin, fleet = make_twin(curves, TwinSettings(curve_spread=0.0, checkpoints=False))
    twin.advance_to(4 * 3600)
    it_w = (twin.site_power_trace() - 1000) / 1.2
    full_w = fleet.gpus * fleet.full_w
    minute = it_w.reshape(-1, 60).mean(axis=1)
    assert it_w.mean() == pytest.approx(full_w.sum(), rel=0.02)
    # 1-minute means move by the calibrated per-job minute and drift processes (jobs move as one)
    cal = twin.cal
    above = fleet.gpus * (fleet.full_w - twin.curves.idle_w)
    expected = np.sqrt((above**2).sum()) * np.hypot(cal.drift_rel, cal.minute_rel * 0.6)
    assert 0.4 * expected < minute.std() < 2.0 * expected


def test_bad_actions_are_refused_whole(curves):
    twin, fleet = make_twin(curves)
    before = (twin.cap_w.copy(), twin.active.copy())
    with pytest.raises(DriverError, match="'a': cap_w 50"):
        twin.apply(JobActions(fleet.ids, np.array([50.0, 300.0]), np.ones(2)))
    with pytest.raises(DriverError, match="'b' .flex 0. does not allow"):
        twin.apply(JobActions(fleet.ids, np.array([300.0, 300.0]), np.ones(2)))
    with pytest.raises(DriverError, match="unknown"):
        twin.apply(JobActions(("a", "zz"), np.array([300.0, 300.0]), np.ones(2)))
    twin.advance_to(100)
    assert np.array_equal(twin.cap_w, before[0]) and np.array_equal(twin.active, before[1])


def test_restore_returns_every_job_to_normal(curves):
    twin, fleet = make_twin(curves, latency=Latency(power_cap_s=0))
    twin.apply(JobActions(fleet.ids, np.array([200.0, fleet.max_cap_w[1]]), np.array([0.0, 1.0])))
    twin.advance_to(60)
    twin.restore()
    twin.advance_to(60 + twin.cal.resume_s)
    assert np.array_equal(twin.cap_w, fleet.max_cap_w) and np.all(twin.active == 1)
