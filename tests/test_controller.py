from datetime import timedelta

import numpy as np

from gridflex.assembly import simulated
from gridflex.model.events import GridEvent, Target


def controller_for(loaded):
    site = simulated(loaded.__class__(loaded.scenario.model_copy(update={"events": ()}), loaded.curves))
    return site.controller, site.driver


def test_budget_look_ahead_sees_an_event_the_tick_it_becomes_known(small):
    """A second event announced while the first holds must count in the pacing at once."""
    ctl, twin = controller_for(small)
    first = small.scenario.events[0]
    ctl.add_event(first, small.scenario.start.timestamp())
    later = GridEvent(
        id="later", start=first.end + timedelta(minutes=5), end=first.end + timedelta(minutes=15),
        target=Target(reduction=0.2), notice_s=600,
    )
    ctl.add_event(later, later.start.timestamp() - 600)
    t1 = later.start.timestamp() - 600  # 'later' is known from here on, during the first event's hold
    t0 = t1 - 30  # ... and not yet here
    twin.advance_to(t0)
    ctl.step(t0)
    before = ctl._constrained_left_s(t0, ctl.timeline(t0))
    twin.advance_to(t1)
    after = ctl._constrained_left_s(t1, ctl.timeline(t1))
    assert t1 - t0 < 60  # inside one refresh period of the look-ahead
    assert np.all(after > before - (t1 - t0) + 500)  # the 10-minute event is counted


def test_events_added_or_cancelled_from_another_thread_leave_a_tick_its_own_list(small):
    """The service adds and cancels events from API threads while a tick may run: a tick holds a
    snapshot that does not change under it (iterating a dict changed in place would raise)."""
    ctl, _ = controller_for(small)
    first = small.scenario.events[0]
    ctl.add_event(first, small.scenario.start.timestamp())
    snapshot = ctl.events()
    seen = []
    for event_id in snapshot:  # a tick iterating its list while another thread changes the controller's
        ctl.cancel_event(first.id)
        ctl.add_event(first.model_copy(update={"id": "again"}), small.scenario.start.timestamp())
        seen.append(event_id)
    assert seen == [first.id] and list(snapshot) == [first.id]
    assert list(ctl.events()) == ["again"]


def test_a_tick_with_no_job_running_plans_nothing_and_does_not_fail(small):
    """A site between jobs (none started yet) still ticks, through an event: nothing to plan."""
    sc = small.scenario
    later = tuple(j.model_copy(update={"start": sc.end - timedelta(minutes=1)}) for j in sc.jobs)
    site = simulated(small.__class__(sc.model_copy(update={"jobs": later}), small.curves))
    t_s = sc.events[0].start.timestamp() + 60
    site.driver.advance_to(t_s)
    decision = site.controller.step(t_s)
    assert decision.job_ids == () and len(decision.plan.cap_w) == 0


def test_caps_make_up_for_a_checkpoint_save_under_way():
    """A job told to checkpoint-and-stop draws its save power for about a minute; caps on the
    others cover it, so a no-notice cut is met within seconds (37 s when the save was ignored)."""
    import importlib.util
    from pathlib import Path

    from gridflex.model.site import PauseMode
    from gridflex.sim.run import run_scenario

    path = Path(__file__).resolve().parents[1] / "bench" / "response.py"
    spec = importlib.util.spec_from_file_location("response_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run = run_scenario(bench.busy_cluster(0.3, PauseMode.checkpoint), "optimal", 0)
    assert bench.response_s(run) is not None and bench.response_s(run) <= 10


def test_a_load_floor_keeps_a_serving_job_up_and_the_site_sheds_other_work(small):
    """A Flex-1 serving job may be slowed below what its load needs for a while (its budget
    spans its window); with a load floor (the traffic routed to it) it keeps the floor through
    the event, other work is slowed instead, and the event's target is still kept. (Training is
    Flex 0 here, so that the event reaches the serving job.)"""
    sc = small.scenario
    tiers = {"serve": 1, "train": 0, "tune": 3}
    jobs = tuple(j.model_copy(update={"flex_tier": tiers.get(j.id, j.flex_tier)}) for j in sc.jobs)
    ev = sc.events[0].model_copy(update={"target": Target(reduction=0.06)})
    sc = sc.model_copy(update={"events": (ev,)})
    hold = np.arange(ev.start.timestamp() + ev.ramp_s + 60, ev.end.timestamp() - ev.ramp_s, 2.0)

    def in_the_hold(load_floor: float) -> tuple[float, float, float]:
        """The serving job's least planned throughput, the other jobs' mean, and the site's
        mean power over its target (a share of it)."""
        site = simulated(small.__class__(sc.model_copy(update={"jobs": jobs}), small.curves))
        site.controller.set_load_floor("serve", load_floor)
        t = sc.start.timestamp()
        while t < hold[0]:
            site.tick(t)
            t += 2.0
        planned, over = [], []
        for t in hold:
            d = site.tick(t)
            planned.append(site.controller.fleet.throughput_at_cap(d.plan.cap_w) * d.plan.active)
            over.append((d.site_power_w - d.target_w) / d.target_w)
        serve = np.array(d.job_ids) == "serve"
        planned = np.array(planned)
        return float(planned[:, serve].min()), float(planned[:, ~serve].mean()), float(np.mean(over))

    serve_none, others_none, over_none = in_the_hold(0.0)
    serve_kept, others_kept, over_kept = in_the_hold(0.95)
    assert serve_none < 0.94, "without a load floor the tier lets the job run below what its load needs"
    assert serve_kept >= 0.95 - 1e-9 and others_kept < others_none - 0.02
    assert over_none < 0 and over_kept < 0, "the target is kept either way"


def test_a_load_floor_out_of_range_names_the_field(small):
    import pytest

    from gridflex.errors import InputError

    ctl, _ = controller_for(small)
    with pytest.raises(InputError, match="load_floor"):
        ctl.set_load_floor("serve", 1.5)
    ctl.set_load_floor("serve", 0.5)
    ctl.set_load_floor("serve", 0.0)
    assert ctl.load_floors == {}
