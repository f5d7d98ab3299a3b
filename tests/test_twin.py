import numpy as np
import pytest

from gridflex.drivers.base import JobActions
from gridflex.drivers.twin import TwinDriver
from gridflex.errors import DriverError
from gridflex.model.scenario import TwinSettings
from gridflex.model.site import Job, Latency, Site

QUIET = TwinSettings(curve_error=0.0, power_noise=0.0)


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


def test_suspend_takes_effect_after_its_latency_and_stops_throughput(curves):
    twin, fleet = make_twin(curves, latency=Latency(suspend_s=5))
    twin.apply(JobActions(fleet.ids, fleet.max_cap_w.copy(), np.array([0.0, 1.0])))
    twin.advance_to(4)
    assert twin.read().throughput[0] == pytest.approx(1.0)
    twin.advance_to(10)
    twin.read()
    twin.advance_to(11)
    tel = twin.read()
    assert tel.throughput[0] == 0.0 and tel.job_power_w[0] == pytest.approx(8 * fleet.paused_w[0])


def test_true_curves_differ_from_the_model_by_a_seeded_error(curves):
    a, fleet = make_twin(curves, TwinSettings(curve_error=0.05, power_noise=0.0), seed=1)
    b, _ = make_twin(curves, TwinSettings(curve_error=0.05, power_noise=0.0), seed=1)
    c, _ = make_twin(curves, TwinSettings(curve_error=0.05, power_noise=0.0), seed=2)
    assert not np.allclose(a.true_power_w, fleet.power_w)
    assert np.array_equal(a.true_power_w, b.true_power_w)
    assert not np.array_equal(a.true_power_w, c.true_power_w)
    assert np.all(a.true_power_w <= fleet.cap_w + 1e-9)  # a GPU never draws above its cap
    assert a.true_throughput[:, -1] == pytest.approx(1.0)


def test_power_fluctuates_around_the_curve(curves):
    twin, fleet = make_twin(curves, TwinSettings(curve_error=0.0, power_noise=0.02))
    twin.advance_to(3600)
    trace = twin.site_power_trace()
    mean_it = (trace - 1000) / 1.2
    it = float((fleet.gpus * fleet.full_w).sum())
    job_w = fleet.gpus * fleet.full_w  # each job's power fluctuates as a whole, by 2 %
    assert mean_it.std() / it == pytest.approx(0.02 * np.sqrt((job_w**2).sum()) / job_w.sum(), rel=0.25)
    assert mean_it.mean() == pytest.approx(it, rel=0.01)


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
    twin, fleet = make_twin(curves, latency=Latency(power_cap_s=0, resume_s=0))
    twin.apply(JobActions(fleet.ids, np.array([200.0, fleet.max_cap_w[1]]), np.array([0.0, 1.0])))
    twin.advance_to(60)
    twin.restore()
    twin.advance_to(61)
    assert np.array_equal(twin.cap_w, fleet.max_cap_w) and np.all(twin.active == 1)
