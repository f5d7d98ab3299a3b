"""A site-level ramp limit: the return after an event rises no faster than allowed (jobs that may
resize come back a few GPUs at a time)."""

import numpy as np
import pytest

from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import parse_scenario

SCENARIO = """
name: ramp
start: "2025-05-03T10:00:00Z"
end: "2025-05-03T12:00:00Z"
jobs:
  - {{id: train, workload: pt_mpt_7b_fast, gpus: 64, flex_tier: 3, actions: [power_cap, pause, resize]}}
  - {{id: tune, workload: ft_llama_8b_p3, gpus: 32, flex_tier: 2, actions: [power_cap, pause, resize]}}
  - {{id: serve, workload: infer_llama_8b, gpus: 16, flex_tier: 0}}
events:
  - {{id: cut, start: "2025-05-03T10:30:00Z", end: "2025-05-03T11:00:00Z", target: {{reduction: 0.3}}}}
control: {{baseline_window_s: 1200, snapback_guard_s: 0{ramp}}}
twin: {{curve_spread: 0.5, fluctuation: 0.5, checkpoints: false}}
"""


def _minute_rise(ramp: str, scenario: str = SCENARIO) -> tuple[float, np.ndarray]:
    result = run_scenario(parse_scenario(scenario.format(ramp=ramp), "ramp", None))
    ev = result.timeline.events[0]
    t, p = result.step_times_s, result.site_power_w
    after = (t > ev.end_s - 60) & (t <= ev.end_s + 900)
    n = after.sum() // 60
    minutes = p[after][: n * 60].reshape(n, 60).mean(axis=1)
    return ev.baseline_w, np.diff(minutes)


def test_the_return_after_an_event_respects_the_ramp_limit():
    baseline_w, _ = _minute_rise("")
    limit = 0.10 * baseline_w  # 10 % of the baseline per minute
    _, free = _minute_rise("")
    assert free.max() > 2 * limit  # without a limit the jobs come back at once
    _, limited = _minute_rise(f", ramp_up_w_per_min: {limit:.0f}")
    assert limited.max() <= limit * 1.03  # 1-minute means (noise: ~1 %)
    assert limited.sum() > 0.25 * baseline_w  # and it does come back


#: Twelve jobs that can only be paused whole (as Slurm suspends them), each a step of ~4 % of the site.
WHOLE_JOBS = SCENARIO.replace(
    SCENARIO[SCENARIO.index("  - {{id: train"):SCENARIO.index("  - {{id: serve")],
    "".join(f"  - {{{{id: j{i}, workload: {w}, gpus: 2, flex_tier: {2 + i % 2}, actions: [pause]}}}}\n"
            for i, w in enumerate(["pt_mpt_7b_fast", "ft_llama_8b_p3"] * 6)),
)


def test_jobs_that_only_pause_whole_come_back_within_the_ramp_limit():
    """Jobs that can only be paused whole (Slurm suspends) step the site by a whole job: the ramp
    ceiling keeps room for one such step above the measured power, so the site comes back at the
    limit rather than staying at its least (the ceiling used to follow the power down)."""
    baseline_w, free = _minute_rise("", WHOLE_JOBS)
    limit = 0.10 * baseline_w
    _, limited = _minute_rise(f", ramp_up_w_per_min: {limit:.0f}", WHOLE_JOBS)
    assert free.max() > 2 * limit
    assert limited.max() <= limit * 1.03
    assert limited.sum() > 0.25 * baseline_w


def _minutes(scenario: str, ramp: str, around: str):
    """(event baseline, ceiling in the hold, 1-minute means of site power from 10 minutes before the
    event's start (`around='start'`) or 1 minute before its end, over 15 minutes)."""
    result = run_scenario(parse_scenario(scenario.format(ramp=ramp), "ramp", None))
    ev = result.timeline.events[0]
    t, p = result.step_times_s, result.site_power_w
    t0 = ev.start_s - 600 if around == "start" else ev.end_s - 60
    sel = (t > t0) & (t <= t0 + 900)
    n = sel.sum() // 60
    hold = (t >= ev.start_s + 60) & (t < ev.end_s)
    return ev.baseline_w, float(ev.ceiling_w), p[sel][: n * 60].reshape(n, 60).mean(axis=1), p[hold]


def test_the_drop_into_a_known_event_starts_early_at_the_down_ramp_limit():
    """With a limit on falling power the site starts down before a known event, so that it reaches
    the target on time without falling faster than allowed; the event's baseline is not taken from
    the early start (that power is not unconstrained)."""
    baseline_w, _, free, _ = _minutes(SCENARIO, "", "start")
    limit = 0.10 * baseline_w
    assert (-np.diff(free)).max() > 2 * limit  # without a limit the site drops at once
    limited_baseline_w, ceiling_w, limited, hold_w = _minutes(SCENARIO, f", ramp_down_w_per_min: {limit:.0f}", "start")
    assert (-np.diff(limited)).max() <= limit * 1.03
    assert limited_baseline_w == pytest.approx(baseline_w, rel=0.01)
    assert np.mean(hold_w <= ceiling_w * 1.01) >= 0.99  # and the event is met from its start


def test_an_event_may_set_a_slower_return_than_the_site():
    baseline_w, _, _, _ = _minutes(SCENARIO, "", "end")
    limit = 0.05 * baseline_w
    slow = SCENARIO.replace("target: {{reduction: 0.3}}", f"target: {{{{reduction: 0.3}}}}, ramp_up_w_per_min: {limit:.0f}")
    _, _, back, _ = _minutes(slow, f", ramp_up_w_per_min: {2 * limit:.0f}", "end")
    assert np.diff(back).max() <= limit * 1.03  # the event's 5 %/min, not the site's 10 %/min
    assert np.diff(back).sum() > 0.25 * baseline_w
