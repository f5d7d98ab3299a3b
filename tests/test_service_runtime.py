"""The live runtime in-process: persisting before acting, resuming after a restart, tiers, windows."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.store.models import DecisionRow, TelemetryRow
from tests.service_support import FakeClock, make_service, run_ticks, store_url

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc).timestamp()


def _event(ev_id: str, start_s: float, minutes: float = 60, **target) -> GridEvent:
    start = datetime.fromtimestamp(start_s, timezone.utc)
    return GridEvent(id=ev_id, start=start, end=start + timedelta(minutes=minutes), target=target or {"power_w": 70e3})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    with store_url(request.param, tmp_path) as u:
        yield u


def test_event_is_met_and_everything_is_journaled(url):
    clock = FakeClock(T0)
    svc = make_service(url, clock)
    run_ticks(svc, clock, 5)
    svc.add_event(_event("cut", clock.t_s + 1))
    run_ticks(svc, clock, 15)
    assert svc.status.active_events == ("cut",)
    assert svc.status.site_power_w <= 70e3
    assert svc.store.count(DecisionRow) == 20 and svc.store.count(TelemetryRow) == 20
    assert svc.store.event("cut").baseline_w == pytest.approx(svc.controller.baselines_w["cut"])
    assert max(j["flex_budget_used"] for j in svc.jobs()) > 0


def test_restart_resumes_events_budgets_and_baselines(url):
    clock = FakeClock(T0)
    svc = make_service(url, clock)
    run_ticks(svc, clock, 3)
    svc.add_event(_event("cut", clock.t_s + 1))
    run_ticks(svc, clock, 10)
    before = svc.controller.budget.delivered_s.copy(), svc.controller.budget.elapsed_s.copy()
    baseline = svc.controller.baselines_w["cut"]
    svc.store.close()  # crash: no stop(), nothing restored or flushed beyond what was committed

    again = make_service(url, clock)
    assert again.active_event_ids() == ["cut"]
    assert again.controller.baselines_w == {"cut": baseline}
    np.testing.assert_allclose(again.controller.budget.delivered_s, before[0])
    np.testing.assert_allclose(again.controller.budget.elapsed_s, before[1])
    assert again.epoch_s == svc.epoch_s
    run_ticks(again, clock, 8)
    assert again.status.active_events == ("cut",) and again.status.site_power_w <= 70e3


def test_impossible_or_past_events_are_refused_and_not_recorded(url):
    clock = FakeClock(T0)
    svc = make_service(url, clock)
    with pytest.raises(InputError, match="target.power_w: 200000 W is not below the site's full power"):
        svc.add_event(_event("high", T0, power_w=200e3))
    with pytest.raises(InputError, match="target.power_w: 1000 W is below the least the site can draw"):
        svc.add_event(_event("low", T0, power_w=1e3))
    with pytest.raises(InputError, match="target.reduction: 0.95 would take the site below"):
        svc.add_event(_event("deep", T0, reduction=0.95))
    with pytest.raises(InputError, match="end: the event ended"):
        svc.add_event(_event("past", T0 - 7200))
    assert svc.store.events() == [] and svc.active_event_ids() == []


def test_cancel_persists_and_lifts_the_ceiling(url):
    clock = FakeClock(T0)
    svc = make_service(url, clock)
    svc.add_event(_event("cut", T0))
    run_ticks(svc, clock, 3)
    svc.cancel_event("cut", "operator")
    run_ticks(svc, clock, 1)
    assert svc.store.event("cut").status == "cancelled" and svc.status.target_w is None
    with pytest.raises(KeyError):
        svc.cancel_event("cut")


def test_tier_change_keeps_the_budget_account_and_survives_restart(url):
    clock = FakeClock(T0)
    svc = make_service(url, clock)
    svc.add_event(_event("cut", T0, power_w=60e3))
    run_ticks(svc, clock, 10)
    job = svc.jobs()[0]
    delivered = svc.controller.budget.delivered_s[0]
    svc.change_job(job["id"], 0)
    assert svc.jobs()[0]["flex_tier"] == 0 and svc.controller.budget.delivered_s[0] == delivered
    run_ticks(svc, clock, 3)
    assert svc.status.jobs[0]["cap_w"] == pytest.approx(svc.fleet.max_cap_w[0])  # flex 0: never slowed
    with pytest.raises(InputError, match="flex_tier: 7"):
        svc.change_job(job["id"], 7)
    assert make_service(url, clock).jobs()[0]["flex_tier"] == 0


def test_deadline_begin_and_load_floor_set_through_the_api_survive_restart(url):
    clock = FakeClock(T0)
    svc = make_service(url, clock)
    run_ticks(svc, clock, 2)
    job_id = svc.jobs()[0]["id"]
    deadline = datetime.fromtimestamp(T0 + 86400, timezone.utc)
    svc.change_job(job_id, deadline=deadline)
    svc.change_job(job_id, begin=datetime.fromtimestamp(T0 - 60, timezone.utc))  # the deadline is kept
    svc.change_job(job_id, load_floor=0.6)  # a fleet coordinator's, while it routes traffic here
    again = make_service(url, clock)
    assert again.controller.load_floors == {job_id: 0.6}
    run_ticks(again, clock, 1)
    row = next(j for j in again.jobs() if j["id"] == job_id)
    assert row["deadline"] == deadline and row["begin"].timestamp() == T0 - 60


def test_budget_window_rolls_over(tmp_path):
    clock = FakeClock(T0)
    svc = make_service(f"sqlite:///{tmp_path}/roll.db", clock, budget_window_s=20.0)
    svc.add_event(_event("cut", T0, power_w=60e3))
    run_ticks(svc, clock, 9)
    assert svc.controller.budget.elapsed_s.max() == pytest.approx(18.0)
    run_ticks(svc, clock, 2)
    assert svc.controller.win_start_s[0] == pytest.approx(T0 + 20.0)
    assert svc.controller.budget.elapsed_s.max() <= 2.0 + 1e-9
    assert svc.active_event_ids() == ["cut"]


def test_stop_restores_every_job(tmp_path):
    clock = FakeClock(T0)
    svc = make_service(f"sqlite:///{tmp_path}/stop.db", clock)
    svc.add_event(_event("cut", T0, power_w=60e3))
    run_ticks(svc, clock, 5)
    twin = svc.driver
    assert (twin.cap_w < svc.fleet.max_cap_w).any() or (twin.active < 1).any()
    svc.stop()
    twin.advance_to(clock.t_s + 10)
    np.testing.assert_allclose(twin.cap_w, svc.fleet.max_cap_w)
    np.testing.assert_allclose(twin.active, 1.0)


def test_old_telemetry_and_decisions_are_pruned(tmp_path):
    clock = FakeClock(T0)
    svc = make_service(
        f"sqlite:///{tmp_path}/prune.db", clock, store={"url": f"sqlite:///{tmp_path}/prune.db", "history_s": 60}
    )
    run_ticks(svc, clock, 5)
    clock.t_s += 3600
    run_ticks(svc, clock, 1)
    assert svc.store.count(TelemetryRow) == 1 and svc.store.count(DecisionRow) == 1


def test_example_site_config_loads():
    from pathlib import Path

    from gridflex.service.config import load_config
    from gridflex.service.plant import load_site

    path = Path(__file__).parent.parent / "examples" / "site.yaml"
    cfg = load_config(path)
    spec = load_site(cfg, path.parent)
    assert cfg.api.port == 8080 and len(spec.jobs) == 6 and spec.control.snapback_guard_s == 900


def test_bad_config_names_the_field(tmp_path):
    from gridflex.service.config import load_config

    path = tmp_path / "bad.yaml"
    path.write_text("driver: {kind: slurmish}\nopenadr: {simple_levels: {5: 0.2}}\n")
    with pytest.raises(InputError) as e:
        load_config(path)
    assert "driver.kind" in str(e.value) and "openadr" in str(e.value)


def test_driver_error_is_counted_and_retried(tmp_path, monkeypatch):
    from gridflex.errors import DriverError

    clock = FakeClock(T0)
    svc = make_service(f"sqlite:///{tmp_path}/err.db", clock)
    svc.add_event(_event("cut", T0, power_w=60e3))
    real_apply = svc.driver.apply
    calls = []

    def flaky(actions):
        calls.append(actions)
        if len(calls) == 1:
            raise DriverError("job 'x': cap_w rejected by the plant")
        real_apply(actions)

    monkeypatch.setattr(svc.driver, "apply", flaky)
    clock.t_s += 2
    assert svc.tick(clock.t_s) is None
    assert svc.metrics.registry.get_sample_value("gridflex_driver_errors_total") == 1
    run_ticks(svc, clock, 1)
    assert len(calls) == 2  # the failed actions are sent again
    run_ticks(svc, clock, 5)
    assert svc.status.site_power_w <= 60e3


def test_dry_run_plans_and_records_but_never_acts(tmp_path):
    from gridflex.service.config import ServiceConfig
    from gridflex.service.plant import load_site
    from gridflex.service.runtime import LiveService
    from gridflex.store import Store

    url = f"sqlite:///{tmp_path}/dry.db"
    cfg = ServiceConfig.model_validate({"store": {"url": url}})
    store = Store(url)
    store.migrate()
    clock = FakeClock(T0)
    svc = LiveService(cfg, load_site(cfg), store, dry_run=True, clock=clock)
    svc.add_event(_event("cut", T0, power_w=60e3))
    run_ticks(svc, clock, 5)
    assert min(svc.store.decisions()[-1].cap_w) < 400  # planned a cut
    twin = svc.driver.inner
    np.testing.assert_allclose(twin.cap_w, svc.fleet.max_cap_w)  # but nothing was changed
    assert svc.status.site_power_w > 60e3


@pytest.mark.parametrize("rule", ["hold", "curtail", "restore"])
def test_the_fail_safe_rule_acts_after_failed_ticks(tmp_path, monkeypatch, rule):
    """An unreadable plant during an event: after `failed_ticks`, 'hold' keeps the cut (nothing
    resumed blind), 'curtail' goes to the least power, 'restore' returns to normal; once readable
    again the controller reconciles and the cut is back."""
    from gridflex.errors import DriverError

    clock = FakeClock(T0)
    svc = make_service(f"sqlite:///{tmp_path}/lost.db", clock, control={"fail_safe": rule, "failed_ticks": 2})
    svc.add_event(_event("cut", T0, power_w=60e3))
    run_ticks(svc, clock, 5)
    twin = svc.driver
    cut = np.array([j["cap_w"] for j in svc.status.jobs])  # the last plan
    assert (cut < svc.fleet.max_cap_w).any()

    def lost():
        raise DriverError("meter not answering")

    monkeypatch.setattr(twin, "read", lost)
    run_ticks(svc, clock, 2)
    assert svc.metrics.registry.get_sample_value("gridflex_tick_errors_total") == 2
    clock.t_s += 10
    twin.advance_to(clock.t_s)
    flexible = svc.fleet.controllable
    if rule == "hold":
        np.testing.assert_allclose(twin.cap_w, cut)
    elif rule == "curtail":
        assert np.all(twin.cap_w[flexible] <= cut[flexible]) and twin.site_power_w < 60e3
    else:
        np.testing.assert_allclose(twin.cap_w, svc.fleet.max_cap_w)
    monkeypatch.undo()
    run_ticks(svc, clock, 5)
    assert svc.status.site_power_w <= 60e3  # watched again: the cut is back
