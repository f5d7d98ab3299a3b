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
