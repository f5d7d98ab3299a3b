"""The HAProxy router driver against a real HAProxy on loopback (tests/haproxy_support.py):
three sites' backends, a bounded request load, gradual shifts, a coordinator killed mid-shift."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from gridflex.drivers.router_base import shift_traffic
from gridflex.drivers.router_haproxy import HAProxyDriver
from gridflex.errors import DriverError, InputError
from tests import haproxy_support
from tests.haproxy_support import (
    HAProxyRig,
    LoadClient,
    Site,
    answered_shares,
    haproxy_binary,
    require_haproxy,
    wait_for,
    wait_split,
)

pytestmark = pytest.mark.timeout(300)

SITES = [Site("siteA", "Washington DC", 3), Site("siteB", "Dallas", 1), Site("siteC", "Toronto", 1)]
NAMES = [s.name for s in SITES]
BASE = np.array([0.6, 0.2, 0.2])


def _rig(root, sites) -> HAProxyRig:
    if haproxy_binary() is None:
        msg = "HAProxy not installed; run scripts/ci/haproxy.sh"
        pytest.fail(msg) if require_haproxy() else pytest.skip(msg)
    rig = HAProxyRig(root, sites, client_region="Washington DC")
    try:
        rig.start()
    except Exception:
        rig.stop()
        raise
    return rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    rig = _rig(tmp_path_factory.mktemp("haproxy"), SITES)
    yield rig
    rig.stop()


@pytest.fixture
def router(rig, tmp_path):
    driver = HAProxyDriver(rig.socket, tmp_path / "router-ledger.json")
    yield driver
    driver.restore()
    assert list(driver.read("llm").weight) == [3, 1, 1]


def test_reads_backends_weights_and_counters(router, rig):
    assert router.backends() == {"llm": tuple(NAMES)}
    with LoadClient(rig.url, rate_per_s=50, max_requests=30) as client:
        wait_for(lambda: len(client.records) == 30, 60, "30 requests answered")
    stats = router.read("llm")
    assert stats.servers == tuple(NAMES) and list(stats.weight) == [3, 1, 1]
    assert stats.admin == ("ready",) * 3 and stats.up.all()
    assert np.allclose(stats.shares, BASE)
    assert stats.responses_2xx.sum() >= 30 and stats.failed_total.sum() == 0
    assert client.failed() == 0
    assert np.allclose(answered_shares(client.records, NAMES), BASE, atol=0.1)
    assert router.health().ok


def test_unknown_names_and_bad_values_are_clear_errors_and_change_nothing(router):
    with pytest.raises(InputError, match="'nope'.*backends: \\['llm'\\]"):
        router.read("nope")
    with pytest.raises(InputError, match="'siteX'.*siteA"):
        router.set_weights("llm", {"siteB": 5, "siteX": 3})
    with pytest.raises(InputError, match="0..256"):
        router.set_weight("llm", "siteA", 257)
    with pytest.raises(InputError, match="sum to 1"):
        shift_traffic(router, "llm", {"siteA": 0.5, "siteB": 0.2})
    with pytest.raises(InputError, match="not in backend"):
        router.drain("llm", "siteA; shutdown sessions")
    assert list(router.read("llm").weight) == [3, 1, 1] and len(router.ledger) == 0


def test_never_stops_the_only_server_taking_traffic(router):
    shift_traffic(router, "llm", {"siteA": 1.0}, max_step=1.0)
    assert list(router.read("llm").weight) == [256, 0, 0]
    with pytest.raises(DriverError, match="only server"):
        router.drain("llm", "siteA")
    with pytest.raises(DriverError, match="only server"):
        router.set_weight("llm", "siteA", 0)
    with pytest.raises(DriverError, match="only server"):
        router.set_weights("llm", {"siteA": 0, "siteB": 0})
    stats = router.read("llm")
    assert list(stats.weight) == [256, 0, 0] and stats.admin[0] == "ready"


def test_drain_then_restore_puts_the_state_back(router, tmp_path):
    router.drain("llm", "siteB")
    assert router.read("llm").admin == ("ready", "drain", "ready")
    assert json.loads((tmp_path / "router-ledger.json").read_text()) == {"admin:llm/siteB": "ready"}
    router.restore()
    assert router.read("llm").admin == ("ready",) * 3 and len(router.ledger) == 0


def test_gradual_shifts_under_load_fail_no_request(router, rig):
    """10 % then 50 % of the traffic from A to B and back, at 50 requests/s."""
    plan = [("10 %", [0.5, 0.3, 0.2]), ("50 %", [0.1, 0.7, 0.2]), ("back", list(BASE))]
    with LoadClient(rig.url, rate_per_s=50, max_requests=3000, max_s=240) as client:
        wait_split(client, NAMES, BASE, time.time())
        prev = list(BASE)
        for label, target in plan:
            t0 = time.time()
            steps = shift_traffic(router, "llm", dict(zip(NAMES, target)), max_step=0.1, step_interval_s=0.5)
            splits = np.array([prev] + [list(s.shares.values()) for s in steps])
            assert np.abs(np.diff(splits, axis=0)).max() <= 0.1 + 1e-9, label
            assert np.allclose(splits[-1], target, atol=1 / 256), label  # weights 0..256 express shares to 1/256
            prev = target
            assert np.allclose(router.read("llm").shares, target, atol=0.005), label
            before = router.read("llm").sessions_total
            reached_s = wait_split(client, NAMES, np.array(target), t0)
            assert reached_s < 30, label
            wait_for(lambda: (router.read("llm").sessions_total - before).sum() >= 100, 60, "100 more requests")
            seen = router.read("llm").sessions_total - before
            assert np.allclose(seen / seen.sum(), target, atol=0.05), (label, seen)
    assert len(client.records) > 300 and client.failed() == 0


def test_coordinator_killed_mid_shift_leaves_a_valid_split_and_restore_undoes_it(rig, tmp_path):
    ledger = tmp_path / "coordinator-ledger.json"
    with LoadClient(rig.url, rate_per_s=40, max_requests=3000, max_s=240) as client:
        coordinator = subprocess.Popen(
            [*haproxy_support.SCRIPT, "shift", str(rig.socket), str(ledger), "llm", "0.05", "1",
             "siteA=0.1", "siteB=0.7", "siteC=0.2"], cwd=haproxy_support.ROOT, stdout=subprocess.PIPE, text=True)
        try:
            steps = [coordinator.stdout.readline() for _ in range(2)]  # two steps taken, more to come
            assert all(s.startswith("step") for s in steps), steps
            coordinator.send_signal(signal.SIGKILL)
            coordinator.wait(30)
        finally:
            coordinator.kill()
        router = HAProxyDriver(rig.socket, ledger)
        mid = router.read("llm")
        assert mid.serving.any() and mid.weight.max() <= 256
        assert 0.1 < mid.shares[0] < 0.6 and mid.shares[1] > 0.2, mid.shares  # between start and target
        t_kill = time.time()
        wait_split(client, NAMES, mid.shares, t_kill)  # traffic keeps flowing at the split left behind
        assert len(router.ledger) == 3
        router.restore()
        assert list(router.read("llm").weight) == [3, 1, 1] and len(router.ledger) == 0
        wait_split(client, NAMES, BASE, time.time())
    assert client.failed() == 0 and len(client.since(t_kill)) >= 60


def test_shift_refuses_a_site_that_is_down_and_haproxy_routes_around_it(tmp_path):
    rig = _rig(tmp_path / "rig", SITES[:2])
    try:
        router = HAProxyDriver(rig.socket)
        rig.kill_site("siteB")
        wait_for(lambda: not router.read("llm").up[1], 60, "health checks mark siteB down")
        with pytest.raises(DriverError, match="siteB.*down or not ready"):
            shift_traffic(router, "llm", {"siteA": 0.5, "siteB": 0.5})
        assert len(router.ledger) == 0
        with LoadClient(rig.url, rate_per_s=40, max_requests=40) as client:
            wait_for(lambda: len(client.records) == 40, 60, "40 requests answered")
        assert client.failed() == 0 and {r[2] for r in client.records} == {"siteA"}
    finally:
        rig.stop()
