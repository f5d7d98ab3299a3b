"""Reduction baselines come from unconstrained power, never from power another event already cut."""

import numpy as np

from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import parse_scenario

JOBS = """
jobs:
  - {id: train, workload: pt_mpt_7b_fast, gpus: 32, flex_tier: 3, actions: [power_cap, pause, resize]}
  - {id: tune, workload: ft_llama_8b_p3, gpus: 16, flex_tier: 3, actions: [power_cap, pause, resize]}
  - {id: serve, workload: infer_llama_8b, gpus: 8, flex_tier: 0}
"""


def _run(events: str, hours: int, **control):
    text = f"""
name: baselines
start: "2025-05-03T10:00:00Z"
end: "2025-05-03T{10 + hours:02d}:00:00Z"
{JOBS}
events:
{events}
control: {{baseline_window_s: 1800, snapback_guard_s: 1800, {", ".join(f"{k}: {v}" for k, v in control.items())}}}
twin: {{curve_spread: 0.5, fluctuation: 0.5, recovery: 0}}  # the guard's level, not the field's post-event deficit
"""
    return run_scenario(parse_scenario(text, "baselines", None))


def _hold_mean_w(result, ev) -> float:
    t, p = result.step_times_s, result.site_power_w
    return float(p[(t > ev.hold_start_s) & (t <= ev.hold_end_s)].mean())


def test_back_to_back_events_keep_the_unconstrained_baseline():
    """Four 1-h 25 % events in a row: each keeps 75 % of the power before the first, not 75 % of
    the power the previous one left (the old baseline walked 94 -> 71 -> 54 -> 39 kW)."""
    events = "\n".join(
        f'  - {{id: e{i}, start: "2025-05-03T{11 + i:02d}:00:00Z", end: "2025-05-03T{12 + i:02d}:00:00Z",'
        f" target: {{reduction: 0.25}}}}"
        for i in range(4)
    )
    result = _run(events, 6)
    resolved = result.timeline.events
    first_w = resolved[0].baseline_w
    for ev in resolved:
        assert abs(ev.baseline_w - first_w) / first_w < 0.02, (ev.event.id, ev.baseline_w, first_w)
        assert 0.70 * first_w < _hold_mean_w(result, ev) <= 0.76 * first_w


def test_guard_after_a_nested_event_releases_at_the_outer_baseline():
    """An emergency inside a conservation appeal: its baseline is the unconstrained one, so once
    the appeal ends the site may return to full power (the old guard held it at ~74 %)."""
    events = """
  - {id: appeal, start: "2025-05-03T11:00:00Z", end: "2025-05-03T13:00:00Z", target: {reduction: 0.1}}
  - {id: emergency, start: "2025-05-03T11:30:00Z", end: "2025-05-03T12:00:00Z", target: {reduction: 0.3}}
"""
    result = _run(events, 4)
    appeal, emergency = result.timeline.events
    assert abs(emergency.baseline_w - appeal.baseline_w) / appeal.baseline_w < 0.02
    t, p = result.step_times_s, result.site_power_w
    after = (t > appeal.end_s + 300) & (t <= appeal.end_s + 1500)
    assert p[after].mean() > 0.97 * appeal.baseline_w
    # between the emergency and the end of the appeal the site sits at the appeal's 90 %, not lower
    between = (t > emergency.end_s + 300) & (t <= appeal.hold_end_s)
    assert 0.85 * appeal.baseline_w < p[between].mean() <= 0.91 * appeal.baseline_w


def test_a_small_event_on_a_larger_one_cuts_no_deeper():
    """A 5 % event during a 20 % one: the site holds 80 % of unconstrained, not 0.8 x 0.95."""
    events = """
  - {id: big, start: "2025-05-03T11:00:00Z", end: "2025-05-03T12:30:00Z", target: {reduction: 0.2}}
  - {id: small, start: "2025-05-03T11:30:00Z", end: "2025-05-03T12:00:00Z", target: {reduction: 0.05}}
"""
    result = _run(events, 3)
    big, small = result.timeline.events
    assert 0.77 * big.baseline_w < _hold_mean_w(result, small) <= 0.81 * big.baseline_w


def test_model_baseline_source_uses_the_modelled_unconstrained_power():
    events = '  - {id: e, start: "2025-05-03T11:00:00Z", end: "2025-05-03T12:00:00Z", target: {reduction: 0.25}}'
    measured = _run(events, 2).timeline.events[0].baseline_w
    modelled = _run(events, 2, baseline_source="model").timeline.events[0].baseline_w
    assert np.isclose(measured, modelled, rtol=0.05) and measured != modelled
