"""The built-in `hybrid-site` scenario, 11:00-21:00 of its day: both grid events (13:00 and 19:30)
and the price spike (19:00-20:15) at 1-s steps, in about 40 CPU-s (the whole day takes 2.5 times
as long; `gridflex simulate hybrid-site` runs it)."""

import dataclasses
from datetime import timedelta

import pytest

from gridflex.report.summary import summarize
from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import load_scenario


@pytest.fixture(scope="module")
def run():
    loaded = load_scenario("hybrid-site")
    day = loaded.scenario
    window = day.model_copy(update={"start": day.start + timedelta(hours=11), "end": day.start + timedelta(hours=21)})
    result = run_scenario(dataclasses.replace(loaded, scenario=window))
    return result, summarize(result)


def test_targets_met_and_no_sla_broken(run):
    _, s = run
    assert s["compliance"] == 1.0
    assert s["sla_violations"] == 0


def test_site_draw_is_steady_while_the_ai_load_swings(run):
    _, s = run
    assert s["site_draw_steadiness"] >= 0.95
    assert s["ai_load_swing"] > 0.20


def test_miners_shed_before_any_gpu_is_slowed(run):
    result, s = run
    assert s["miners"]["gpu_slowed_with_miners_on_s"] == 0
    tr = result.trace
    slowed = tr.series("jobs_slowed") > 0  # some job capped below its highest cap or paused
    t, miner_w = tr.t_s, tr.series("miner_w")
    ers = result.timeline.events[0]
    in_ers = (t >= ers.start_s) & (t <= ers.end_s)
    assert slowed[in_ers].any()  # the 300 kW target needs the GPUs too ...
    first_slowed = t[in_ers & slowed][0]
    assert miner_w[(t >= ers.start_s) & (t <= first_slowed)][-1] == 0  # ... after every miner is out
    # The miners follow the 60-s ramp down and are asleep within seconds of its end, not minutes.
    k = int(round(ers.hold_start_s + 10 - result.step_times_s[0]))
    assert result.miners.power_w[k] < 10_000 < result.miners.power_w[k - 60]


def test_miners_sleep_when_the_price_is_above_breakeven(run):
    result, _ = run
    spike = result.miners.side.prices.at(result.step_times_s) > 1000  # 19:00-20:15 CDT
    assert spike.sum() > 3600
    assert result.miners.hashrate_th_s[spike].max() == 0


def test_summary_carries_the_mining_account(run):
    _, s = run
    m = s["miners"]
    assert m["units"] == 280
    assert m["energy_mwh"] > 2.5 and m["revenue_usd"] > m["energy_cost_usd"] > 0
    assert 0 < m["hashrate_th_hours_lost_in_events"] <= m["hashrate_th_hours_lost"] < m["hashrate_th_hours"]
    assert m["breakeven_usd_per_mwh"]["bitmain antminer s19j pro"] == pytest.approx(60.73, abs=0.01)
