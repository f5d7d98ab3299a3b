"""Power shaping pauses (control/shifting.py, `shaping_pauses`): a running flexible job the horizon
plan gives no work is paused across the dirty hours and resumed when the plan gives it work; never
Flex 0, never a job whose slack cannot cover the pause's stall, never for a pause shorter than its
stall allows: no resuming before, no pausing again right after a resume."""

from datetime import timedelta

import numpy as np

from gridflex.control.shifting import Shifter
from gridflex.model.fleet import JobFleet
from gridflex.model.shifting import ShiftSettings
from gridflex.model.site import PauseMode
from gridflex.plan.base import first_cap_vertex_w, level_to_actions
from gridflex.signals.forecast import Forecast
from gridflex.signals.prices import StepSignal
from gridflex.signals.recorded import Recorded
from tests.test_shifting_shaping import CURVES, NO_EVENTS, SITE, T0, running, signal

H = 3600.0
CHECKPOINT = {"pause_mode": PauseMode.checkpoint}  # stall: 180 s save + 240 s restart: pauses of 70 min or more


def walk(jobs, rec: Recorded, hours: float, **kw) -> tuple[JobFleet, list[np.ndarray]]:
    """Run the shifter every 15 min for `hours` from T0 with the jobs it shapes working at the
    throughput of the levels it sets (none queued); each tick's active fraction per job."""
    settings = ShiftSettings(signal="gb-carbon-week", **{"shaping_pauses": True, **kw})
    s = Shifter(settings, SITE, CURVES, 60.0, recorded=rec)
    fleet = JobFleet.build(jobs, CURVES)
    done, active = np.ones(len(jobs)), []
    for k in range(int(hours * 4)):
        t = T0.timestamp() + k * 900.0
        s.observe(t, jobs, fleet, done, 900.0 if k else 0.0)
        s.decide(t, jobs, [], NO_EVENTS)
        upper = s.upper_level_w(t, fleet)
        cap, act = level_to_actions(fleet, fleet.full_w if upper is None else np.minimum(upper, fleet.full_w))
        done = act * fleet.throughput_at_cap(cap)
        active.append(act)
    return fleet, active


def test_a_flex3_job_is_paused_across_the_dirty_hours_and_resumed_after_flex0_never():
    jobs = [running("flex3", 3, hours=2.0), running("firm", 0)]
    # Flex 3: 2 h of work within 4 h; the first hour dirty: the plan gives it no work then
    _, active = walk(jobs, signal([400.0] + [50.0] * 47), 2.0)
    assert [a[0] for a in active] == [0.0] * 4 + [1.0] * 4
    assert all(a[1] == 1.0 for a in active)  # Flex 0 untouched
    # the operator's switch off: the same plan only caps, at the most efficient cap
    _, active = walk(jobs, signal([400.0] + [50.0] * 47), 2.0, shaping_pauses=False)
    assert all(a[0] == 1.0 for a in active)


def test_a_pause_shorter_than_its_stall_allows_or_its_slack_covers_is_not_taken():
    # a checkpoint-and-restart job: the plan's one dirty hour is shorter than 10 x its 7-min stall
    jobs = [running("ck", 3, hours=2.0).model_copy(update=CHECKPOINT)]
    fleet, active = walk(jobs, signal([400.0] + [50.0] * 47), 1.0)
    assert all(a[0] == 1.0 for a in active)
    # two dirty hours, but its tier (2 h of work within 4 h, less the margin) leaves too little
    # slack for a 70-min pause and its stall after the first minutes: not paused either
    _, active = walk(jobs, signal([400.0] * 2 + [50.0] * 46), 2.0)
    assert all(a[0] == 1.0 for a in active)
    # two dirty hours and the room to wait them out: paused
    jobs = [running("ck", 3, hours=8.0, due_h=48.0).model_copy(update=CHECKPOINT)]
    _, active = walk(jobs, signal([400.0] * 2 + [50.0] * 46), 2.0)
    assert [a[0] for a in active] == [0.0] * 8


def test_a_paused_job_whose_slack_is_gone_runs_free_at_once():
    s = Shifter(ShiftSettings(signal="gb-carbon-week", shaping_pauses=True), SITE, CURVES, 60.0,
                recorded=signal([400.0] + [50.0] * 47))
    t = T0.timestamp()
    jobs = [running("a", 3, hours=2.0)]
    fleet = JobFleet.build(jobs, CURVES)
    s.observe(t, jobs, fleet, np.ones(1), 0.0)
    s.decide(t, jobs, [], NO_EVENTS)
    assert s.upper_level_w(t, fleet)[0] == fleet.paused_w[0] and s.paused == {"a"}
    moved = [jobs[0].model_copy(update={"deadline": T0 + timedelta(hours=2.3)})]  # set through the API: no slack left
    fleet = JobFleet.build(moved, CURVES)
    s.observe(t + 60, moved, fleet, np.zeros(1), 60.0)
    assert np.isinf(s.upper_level_w(t + 60, fleet)).all() and not s.paused


def test_no_flapping_a_resumed_job_runs_as_long_as_its_shortest_pause_before_pausing_again():
    jobs = [running("ck", 3, hours=8.0, due_h=48.0).model_copy(update=CHECKPOINT)]
    # dirty 2 h, clean 1 h, dirty 3 h: the plan gives it no work in both dirty spells
    fleet, active = walk(jobs, signal([400.0] * 2 + [50.0] + [400.0] * 3 + [50.0] * 42), 6.0)
    paused = [a[0] == 0.0 for a in active]
    assert paused[:8] == [True] * 8 and paused[8:12] == [False] * 4
    # resumed at 2 h: not paused again before 3 h 10 min (70 min of running), then paused
    assert paused[12:13] == [False] and paused[13:24] == [True] * 11
    assert np.all(np.array(active)[~np.array(paused), 0] == 1.0)  # at a cap when not paused, never between
    assert first_cap_vertex_w(fleet)[0] > fleet.paused_w[0]


def test_a_pause_is_not_cut_shorter_than_its_stall_allows_when_a_new_forecast_says_go():
    t0, hours = T0.timestamp(), T0.timestamp() + H * np.arange(48)
    first = np.where(np.arange(48) < 2, 400.0, 50.0)  # issued at T0: dirty for 2 h
    issued = Forecast(np.concatenate([np.full(48, t0), np.full(48, t0 + 600)]), np.concatenate([hours, hours]),
                      np.concatenate([first, np.full(48, 50.0)]), "issued")  # 10 min later: clean all along
    rec = Recorded(StepSignal(hours, np.full(48, 50.0), "actual"), issued, "gCO2/kWh", "carbon_average")
    # a checkpoint job's least pause is 70 min: paused at T0, it waits that long; a suspend's is a slot
    _, active = walk([running("ck", 3, hours=8.0, due_h=48.0).model_copy(update=CHECKPOINT)], rec, 2.0)
    assert [a[0] for a in active] == [0.0] * 5 + [1.0] * 3
    _, active = walk([running("su", 3, hours=8.0, due_h=48.0)], rec, 2.0)
    assert [a[0] for a in active] == [0.0] + [1.0] * 7


def test_the_first_two_days_of_the_gb_week_pause_and_resume_jobs_meet_the_event_deadlines_and_flex0():
    import dataclasses

    from gridflex.report.summary import summarize
    from gridflex.sim.run import run_scenario
    from gridflex.sim.scenarios import load_scenario

    loaded = load_scenario("carbon-week-gb")
    sc = loaded.scenario
    start, end = sc.start, sc.start + timedelta(hours=48)
    event = sc.events[0].model_copy(update={"start": start + timedelta(hours=24), "end": start + timedelta(hours=26)})
    short = dataclasses.replace(loaded, scenario=sc.model_copy(update={
        "end": end, "jobs": tuple(j for j in sc.jobs if not j.queued or j.deadline <= end), "job_trace": None,
        "events": (event,), "shifting": sc.shifting.model_copy(update={"shaping_pauses": True})}))
    result = run_scenario(short, "optimal", 0)
    s = summarize(result)
    assert s["compliance"] == 1.0 and s["shifting"]["deadlines_met"] == s["shifting"]["deadline_jobs"] > 0
    assert s["shifting"]["flex0_held_s"] == 0 and s["shifting"]["flex0_lowest_performance"] > 0.999
    working = result.trace.job_history("effective_cap_w")  # cap x active: 0 while paused
    pauses = []
    for k in range(working.shape[1]):
        ran = np.flatnonzero(~np.isnan(working[:, k]))
        if len(ran):
            off = np.diff(np.concatenate([[0], working[ran[0]:ran[-1] + 1, k] == 0, [0]]).astype(int))
            pauses += (np.flatnonzero(off == -1) - np.flatnonzero(off == 1)).tolist()
    assert len(pauses) >= 3 and min(pauses) >= 15  # each at least a slot (60-s ticks)
