"""`gridflex fleet` end to end on loopback: stub site APIs (GET /api/v1/status) and a real
HAProxy (tests/haproxy_support.py) whose weights the coordinator steps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gridflex.cli import app
from gridflex.drivers.router_haproxy import HAProxyDriver
from gridflex.fleet.config import load_fleet_config
from gridflex.fleet.latency import RttTable
from gridflex.fleet.loop import FleetCoordinator
from gridflex.service.schemas import StatusOut
from tests.haproxy_support import HAProxyRig, Site, haproxy_binary, require_haproxy, wait_for

pytestmark = pytest.mark.timeout(300)
RTT_CSV = Path("../shared/data/cloud-interregion-latency/ibm_vpc_interregion_latency_long.csv").resolve()
HOME = [1.0, 0.0]  # with equal prices and carbon, requests from Washington DC are served there


class StubSite:
    """A site API answering GET /api/v1/status with whatever `status` holds, in the shape of the
    real API's `StatusOut` (checked on every answer)."""

    def __init__(self, **status):
        self.status = {"t_s": 1.0, "site_power_w": 100e3, "target_w": None, "active_events": [], "jobs": [],
                       "known_events": [], "interval_s": 2.0, "degraded": False, "degraded_reasons": [],
                       "stale_after_s": 10.0, **status}
        self.patches: list[tuple[str, dict]] = []  # (path, body) of each PATCH (a job's change)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = StatusOut.model_validate(stub.status).model_dump_json().encode() \
                    if self.path == "/api/v1/status" else b"{}"
                self.send_response(200 if self.path == "/api/v1/status" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PATCH(self):  # noqa: N802
                stub.patches.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    if haproxy_binary() is None:
        msg = "HAProxy not installed; run scripts/ci/haproxy.sh"
        pytest.fail(msg) if require_haproxy() else pytest.skip(msg)
    rig = HAProxyRig(tmp_path_factory.mktemp("fleet"), [Site("siteA", "Washington DC", 1),
                                                        Site("siteB", "Dallas", 1)], "Washington DC")
    rig.start()
    yield rig
    rig.stop()


@pytest.fixture
def setup(rig, tmp_path):
    sites = {"dc": StubSite(site_power_w=100e3), "dallas": StubSite(site_power_w=50e3)}
    cfg = {
        "interval_s": 0.1, "timeout_s": 10, "rtt_file": str(RTT_CSV),
        "router": {"socket": str(rig.socket), "state_file": "ledger.json", "max_step": 0.1},
        "sites": [{"name": "dc", "region": "Washington DC", "api_url": sites["dc"].url, "limit_w": 200e3,
                   "slow_usd_per_mwh": 5000},
                  {"name": "dallas", "region": "Dallas", "api_url": sites["dallas"].url, "limit_w": 200e3}],
        "models": [{"name": "llama", "servers": {"dc": "siteA", "dallas": "siteB"},
                    "capacity_rps": {"dc": 300, "dallas": 300}, "energy_per_request_j": {"dc": 500, "dallas": 500},
                    "classes": [{"name": "batch", "backend": "llm", "origin": "Washington DC", "rate_rps": 100,
                                 "latency_budget_ms": 200}]}],
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    yield path, sites
    for s in sites.values():
        s.stop()
    HAProxyDriver(rig.socket, tmp_path / "ledger.json").restore()


@pytest.fixture
def at_home(setup):
    """A coordinator whose router split has settled without events, and its reference taken."""
    path, sites = setup
    cfg = load_fleet_config(path)
    router = HAProxyDriver(cfg.router.socket, cfg.router.state_file)
    coordinator = FleetCoordinator(cfg, router)
    run_until(coordinator, router, HOME)
    coordinator.tick()  # the reference: this split, and the power the sites draw with it
    return router, coordinator, sites


def run_until(coordinator, router, target, max_ticks=30) -> list[dict]:
    """Tick until the backend's split is `target`; every tick moves a share by 0.1 at most."""
    lines, before = [], router.read("llm").shares
    for _ in range(max_ticks):
        lines.append(coordinator.tick())
        now = router.read("llm").shares
        assert np.abs(now - before).max() <= 0.1 + 1e-9
        before = now
        if np.allclose(now, target, atol=1 / 256):
            return lines
    raise AssertionError(f"split {before} did not reach {target} in {max_ticks} ticks")


def test_event_at_one_site_moves_traffic_out_and_back(at_home):
    router, coordinator, sites = at_home
    # an event at dc: 20 kW below the 100 kW it drew = 40 requests/s of 500 J leave for Dallas
    sites["dc"].status.update(active_events=["e1"], target_w=80e3)
    lines = run_until(coordinator, router, [0.6, 0.4])
    sites["dc"].status.update(site_power_w=80e3)  # the site now draws less: the decision holds
    lines.append(coordinator.tick())
    last = lines[-1]["models"]["llama"]
    assert last["ok"] and last["split"]["batch"] == {"dc": 0.6, "dallas": 0.4}
    assert last["power_change_w"] == {"dc": -20e3, "dallas": 20e3} and last["slow_in_place_w"]["dc"] == 0
    assert 25 * 0.4 <= last["added_latency_ms"]["batch"] <= 40 * 0.4
    assert np.allclose(router.read("llm").shares, [0.6, 0.4], atol=1 / 256)
    seen = lines[-1]["models"]["llama"]["router"]["batch"]  # HAProxy's stats read back as telemetry
    assert set(seen["failed_total"]) == {"dc", "dallas"} and set(seen["response_ms"]) == {"dc", "dallas"}
    sites["dc"].status.update(active_events=[], target_w=None, site_power_w=80e3)
    run_until(coordinator, router, HOME)


def test_each_site_serving_job_gets_the_load_floor_of_the_traffic_routed_to_it(at_home):
    """With the serving jobs named (`models[].jobs`), every tick sets each job's load floor
    through its site's API: the requests/s routed there before and after the step, over its
    capacity less the margin for bursts (300 × 0.95 requests/s)."""
    router, coordinator, sites = at_home
    model = coordinator.cfg.models[0].model_copy(update={"jobs": {"dc": "serve-dc", "dallas": "serve-dallas"}})
    coordinator.cfg = coordinator.cfg.model_copy(update={"models": (model,)})
    line = coordinator.tick()
    assert line["models"]["llama"]["load_floor"] == {"dc": round(100 / 285, 4), "dallas": 0.0}
    assert sites["dc"].patches[-1] == ("/api/v1/jobs/serve-dc", {"load_floor": round(100 / 285, 4)})
    assert sites["dallas"].patches[-1] == ("/api/v1/jobs/serve-dallas", {"load_floor": 0.0})
    sites["dc"].status.update(active_events=["e1"], target_w=80e3)  # 40 requests/s leave for Dallas
    floor = coordinator.tick()["models"]["llama"]["load_floor"]  # the first step, up to 0.1 of the way:
    assert floor["dc"] == round(100 / 285, 4) and 9 / 285 < floor["dallas"] <= 10 / 285  # Dallas holds what it gets
    run_until(coordinator, router, [0.6, 0.4])
    for name, rps in (("dc", 60), ("dallas", 40)):  # within the router's weights (1/256) of the split
        path, body = sites[name].patches[-1]
        assert path == f"/api/v1/jobs/serve-{name}" and body["load_floor"] == pytest.approx(rps / 285, abs=0.005)
    sites["dallas"].stop()
    line = coordinator.tick()
    assert "load_floor_errors" not in line, "an unreachable site is not written to"
    sites["dc"].status.update(active_events=[], target_w=None)


def test_unreachable_site_keeps_its_share_and_the_event_site_slows_for_the_rest(at_home):
    router, coordinator, sites = at_home
    sites["dc"].status.update(active_events=["e1"], target_w=80e3)
    coordinator.tick()
    coordinator.tick()  # two steps of its way to 0.6 / 0.4
    mid = router.read("llm").shares
    assert 0.6 < mid[0] < 0.9
    sites["dallas"].stop()
    line = coordinator.tick()
    assert not line["sites"]["dallas"]["reachable"] and "error" in line["sites"]["dallas"]
    model = line["models"]["llama"]
    split = model["split"]["batch"]
    assert np.allclose([split["dc"], split["dallas"]], mid, atol=1e-4)  # no more, no less for Dallas
    assert model["slow_in_place_w"]["dc"] == pytest.approx(20e3 - mid[1] * 100 * 500, abs=5)
    assert np.allclose(router.read("llm").shares, mid)


def test_the_carbon_a_site_reports_outweighs_fleet_yaml(at_home):
    """fleet.yaml says both grids are alike (400 g/kWh); the sites' status says Washington DC's is
    dirty now: the split decided moves the class to Dallas (its 32 ms are worth less than the carbon)."""
    router, coordinator, sites = at_home
    sites["dc"].status.update(carbon_g_per_kwh=3000.0)
    sites["dallas"].status.update(carbon_g_per_kwh=0.0)
    line = coordinator.tick()
    assert line["models"]["llama"]["split"]["batch"] == {"dc": 0.0, "dallas": 1.0}
    sites["dc"].status.update(carbon_g_per_kwh=None)  # unknown again: fleet.yaml's value holds
    sites["dallas"].status.update(carbon_g_per_kwh=None)
    assert coordinator.tick()["models"]["llama"]["split"]["batch"] == {"dc": 1.0, "dallas": 0.0}


def test_the_command_prints_a_line_per_tick_and_restores_on_exit(setup, rig):
    path, _ = setup
    result = CliRunner().invoke(app, ["fleet", "--config", str(path), "--ticks", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(s) for s in result.stdout.splitlines() if s.startswith("{")]
    assert len(lines) == 2 and lines[0]["models"]["llama"]["ok"]
    assert list(HAProxyDriver(rig.socket).read("llm").weight) == [1, 1]


def test_bad_fleet_config_names_the_field(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text(yaml.safe_dump({"rtt_file": "x.csv", "sites": [], "models": []}))
    result = CliRunner().invoke(app, ["fleet", "--config", str(bad)])
    assert result.exit_code == 2
    assert "router" in result.output and "sites" in result.output


def test_example_fleet_config_loads_and_its_regions_are_measured():
    cfg = load_fleet_config("examples/fleet.yaml")
    rtt = RttTable.from_csv(cfg.rtt_file)
    for model in cfg.models:
        regions = [next(s.region for s in cfg.sites if s.name == n) for n in model.servers]
        assert rtt.between([c.origin for c in model.classes], regions).shape == (len(model.classes), len(regions))


def test_sigterm_mid_shift_restores_and_sigkill_leaves_a_valid_split(setup, rig):
    path, _ = setup
    router = HAProxyDriver(rig.socket)

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "gridflex.cli", "fleet", "--config", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = start()
        try:
            wait_for(lambda: router.read("llm").shares[0] > 0.6, 60, "the coordinator's first steps", {"fleet": proc})
            proc.send_signal(sig)
            proc.wait(60)
        finally:
            proc.kill()
        left = router.read("llm")
        if sig == signal.SIGTERM:
            assert proc.returncode == 0 and list(left.weight) == [1, 1], proc.stderr.read()
        else:  # killed outright: the last step stays, a valid split; the ledger still knows the original
            assert left.serving.any() and left.shares[0] > 0.6 and len(HAProxyDriver(rig.socket, path.parent
                                                                                     / "ledger.json").ledger) == 2


def test_a_load_floor_covers_the_planned_rate_when_the_rate_now_is_lower():
    """A rate measured now can double before the next tick: the floor takes the class at its
    configured rate (`rate_rps`, what the coordinator plans with) unless the rate now is higher."""
    from gridflex.drivers.router_twin import TwinRouter
    from gridflex.fleet.config import FleetConfig
    from gridflex.fleet.loop import SiteReport

    cfg = FleetConfig.model_validate({
        "rtt_file": str(RTT_CSV), "router": {"socket": "twin-router"},
        "sites": [{"name": "dc", "region": "Washington DC", "api_url": "http://dc.invalid"},
                  {"name": "dallas", "region": "Dallas", "api_url": "http://dallas.invalid"}],
        "models": [{"name": "m", "servers": {"dc": "dc", "dallas": "dallas"}, "capacity_rps": {"dc": 300, "dallas": 300},
                    "energy_per_request_j": {"dc": 500, "dallas": 500}, "jobs": {"dc": "serve"},
                    "classes": [{"name": "c", "backend": "c", "origin": "Washington DC", "rate_rps": 100,
                                 "latency_budget_ms": 10}]}]})
    coordinator = FleetCoordinator(cfg, TwinRouter({"c": {"dc": 1, "dallas": 0}}))
    reports = {"dc": SiteReport(True, 100e3), "dallas": SiteReport(True, 50e3)}
    for now_rps, floor in ((20.0, 100 / 285), (200.0, 200 / 285), (400.0, 1.0)):
        line = coordinator.tick_with(reports, {"c": now_rps})
        assert line["models"]["m"]["load_floor"] == {"dc": round(floor, 4), "dallas": 0.0}
        assert coordinator.load_floors(line, reports) == {("dc", "serve"): round(floor, 4)}, "dallas names no job"
