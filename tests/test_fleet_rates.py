"""The coordinator plans with the request rates the router counted (`router.measured_rates`),
read back through the router contract (here the twin router; HAProxy's `stot` counters live)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from pydantic import ValidationError

from gridflex.drivers.router_twin import TwinRouter
from gridflex.fleet.config import FleetConfig
from gridflex.fleet.loop import FleetCoordinator, SiteReport, site_report

RTT = resources.files("gridflex.data").joinpath("fleet-rtt-us.csv")
REPORTS = {"dc": SiteReport(True, 100e3), "dallas": SiteReport(True, 50e3)}


def config(measured: bool, backends=("llm",), margin: float = 0.0) -> FleetConfig:
    classes = [{"name": f"chat{i}", "backend": b, "origin": "Washington DC", "rate_rps": 50, "latency_budget_ms": 200}
               for i, b in enumerate(backends)]
    return FleetConfig.model_validate({
        "rtt_file": str(RTT), "router": {"socket": "unused.sock", "measured_rates": measured},
        "costs": {"latency_usd_per_request_s": 0},  # carbon alone decides: Dallas is far cleaner here
        "sites": [{"name": "dc", "region": "Washington DC", "api_url": "http://127.0.0.1:1", "limit_w": 1e6,
                   "carbon_g_per_kwh": 600},
                  {"name": "dallas", "region": "Dallas", "api_url": "http://127.0.0.1:2", "limit_w": 1e6,
                   "carbon_g_per_kwh": 100}],
        "models": [{"name": "llama", "servers": {"dc": "a", "dallas": "b"}, "capacity_rps": {"dc": 300, "dallas": 100}, "capacity_margin": margin,
                    "energy_per_request_j": {"dc": 500, "dallas": 500}, "jobs": {"dc": "serve", "dallas": "serve"},
                    "classes": classes}]})


def tick(coordinator: FleetCoordinator, router: TwinRouter, t_s: float, answered: list[float]) -> dict:
    router.count("llm", np.array(answered), np.zeros(2))
    router.t_s = t_s
    return coordinator.tick_with(REPORTS)["models"]["llama"]


@pytest.mark.parametrize("measured", [True, False])
def test_a_measured_rate_beyond_the_clean_sites_capacity_keeps_the_rest_home(measured):
    router = TwinRouter({"llm": {"a": 1, "b": 0}})
    coordinator = FleetCoordinator(config(measured), router)
    first = tick(coordinator, router, 0.0, [0, 0])
    assert first["rates_rps"] == {"chat0": 50.0} and first["split"]["chat0"] == {"dc": 0.0, "dallas": 1.0}
    second = tick(coordinator, router, 30.0, [4500, 0])  # 150 requests/s counted; Dallas serves 100 at most
    if measured:
        assert second["rates_rps"] == {"chat0": 150.0}
        assert second["split"]["chat0"] == pytest.approx({"dc": 1 / 3, "dallas": 2 / 3}, abs=1e-4)
    else:
        assert second["rates_rps"] == {"chat0": 50.0} and second["split"]["chat0"] == {"dc": 0.0, "dallas": 1.0}


def test_a_counter_reset_falls_back_to_the_configured_rate():
    router = TwinRouter({"llm": {"a": 1, "b": 0}})
    coordinator = FleetCoordinator(config(True), router)
    tick(coordinator, router, 0.0, [6000, 0])
    assert tick(coordinator, router, 30.0, [3000, 0])["rates_rps"] == {"chat0": 100.0}
    router._answered["llm"][:] = 0  # HAProxy reloaded: its counters start again from 0
    assert tick(coordinator, router, 60.0, [300, 0])["rates_rps"] == {"chat0": 50.0}
    assert tick(coordinator, router, 90.0, [600, 0])["rates_rps"] == {"chat0": 20.0}


def test_measured_rates_need_a_backend_per_class():
    with pytest.raises(ValidationError, match="router.measured_rates: classes share a backend"):
        config(True, backends=("llm", "llm"))


def test_a_site_serving_less_now_gets_no_more_than_it_can_serve():
    """Dallas's serving job slowed to half speed (its own event): the clean site takes only the
    50 requests/s it can serve now, the rest stays home."""
    router = TwinRouter({"llm": {"a": 1, "b": 0}})
    coordinator = FleetCoordinator(config(False), router)
    slowed = {**REPORTS, "dallas": site_report({"site_power_w": 50e3, "jobs": [  # as its /api/v1/status says
        {"id": "serve", "flex_tier": 1, "throughput": 0.5}, {"id": "train", "flex_tier": 3, "throughput": 1.0}]})}
    assert slowed["dallas"].serving_share == {"serve": 0.5, "train": 0.5}
    router.count("llm", np.zeros(2), np.zeros(2))
    split = coordinator.tick_with(slowed)["models"]["llama"]["split"]["chat0"]
    assert split == pytest.approx({"dc": 0.0, "dallas": 1.0}, abs=1e-4)  # 50 rps: all fit at half speed
    split = coordinator.tick_with(slowed, {"chat0": 80.0})["models"]["llama"]["split"]["chat0"]
    assert split == pytest.approx({"dc": 30 / 80, "dallas": 50 / 80}, abs=1e-4)
    kept_free = FleetCoordinator(config(False, margin=0.2), router)  # a fifth left free for bursts
    split = kept_free.tick_with(slowed, {"chat0": 80.0})["models"]["llama"]["split"]["chat0"]
    assert split == pytest.approx({"dc": 40 / 80, "dallas": 40 / 80}, abs=1e-4)


def test_a_site_counts_for_its_serving_jobs_throughput_and_no_more_than_its_tiers_floor():
    report = site_report({"site_power_w": 1e5, "jobs": [
        {"id": "fast", "flex_tier": 1, "throughput": 1.0}, {"id": "flex0", "flex_tier": 0, "throughput": 0.97},
        {"id": "unknown", "flex_tier": 1, "throughput": None}]})
    assert report.serving_share == {"fast": 0.9, "flex0": 0.97}  # a Flex 1 job may be slowed to 0.9 any time
    assert site_report({"site_power_w": 1e5}).serving_share == {}  # an older site: taken at full capacity
