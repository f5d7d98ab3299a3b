"""The Prometheus site meter against a real Prometheus server (Debian package) scraping an exporter
(prometheus-client) started here on loopback: DCGM-style GPU power gauges plus a facility meter.

Without the `prometheus` binary the tests are skipped, except under CI (CI=true or
GRIDFLEX_REQUIRE_PROMETHEUS=1), where they fail: scripts/ci/prometheus.sh installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest

from gridflex.drivers.meter_prometheus import PrometheusMeter, PrometheusMeterSettings
from gridflex.errors import DriverError
from gridflex.model.events import GridEvent, Target
from tests.service_support import FakeClock, free_port, make_service

DEADLINE_S = 60.0
QUERY = "sum(DCGM_FI_DEV_POWER_USAGE) + sum(facility_power_w)"
SERIES = ("DCGM_FI_DEV_POWER_USAGE", "facility_power_w")
GPUS = 8


def required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("GRIDFLEX_REQUIRE_PROMETHEUS") == "1"


def wait_for(cond, what: str, deadline_s: float = DEADLINE_S):
    """Polls `cond()` until it is truthy; fails naming `what` after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {deadline_s:g} s")


class Exporter:
    """prometheus-client's HTTP server on loopback: per-GPU DCGM power and a facility meter, each
    collected from a callable at scrape time; `stamp_age_s` stamps the facility sample that old."""

    def __init__(self, gpu_w, facility_w):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.core import GaugeMetricFamily

        self.gpu_w, self.facility_w, self.stamp_age_s = gpu_w, facility_w, None
        exporter = self

        class Collector:
            def collect(self):
                g = GaugeMetricFamily("DCGM_FI_DEV_POWER_USAGE", "GPU power draw (W)", labels=["gpu"])
                for i in range(GPUS):
                    g.add_metric([str(i)], exporter.gpu_w() / GPUS)
                yield g
                f = GaugeMetricFamily("facility_power_w", "facility meter: load beyond the GPUs (W)")
                age = exporter.stamp_age_s
                f.add_metric([], exporter.facility_w(), timestamp=None if age is None else time.time() - age)
                yield f

        registry = CollectorRegistry()
        registry.register(Collector())
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=registry)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrometheusServer:
    """The real `prometheus` binary scraping `targets` every 500 ms, its data in `tmp`."""

    def __init__(self, tmp, targets: list[str]):
        binary = shutil.which("prometheus")
        if binary is None:
            msg = "prometheus is not installed (scripts/ci/prometheus.sh installs it)"
            pytest.fail(msg) if required() else pytest.skip(msg)
        conf = tmp / "prometheus.yml"
        conf.write_text(
            "global: {scrape_interval: 500ms, scrape_timeout: 500ms, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: site\n    static_configs:\n"
            f"      - targets: [{', '.join(targets)}]\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, "prometheus ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited: see {self.log.name}"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def value(self, promql: str) -> float | None:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]
        return float(r[0]["value"][1]) if r else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()


@pytest.fixture
def prom(tmp_path):
    """(prometheus, exporter, state): the exporter serves state['gpu_w'] and state['facility_w']."""
    state = {"gpu_w": 48_000.0, "facility_w": 6_500.0}
    exp = Exporter(lambda: state["gpu_w"], lambda: state["facility_w"])
    server = PrometheusServer(tmp_path, [f"'127.0.0.1:{exp.port}'"])
    yield server, exp, state
    server.stop()
    exp.stop()


def settings(url: str, **kw) -> PrometheusMeterSettings:
    return PrometheusMeterSettings(kind="prometheus", url=url, query=QUERY, series=SERIES, timeout_s=10, **kw)


def fresh(server: PrometheusServer, expected_w: float):
    """Waits until Prometheus has scraped the exporter's current values."""
    wait_for(lambda: (v := server.value(QUERY)) is not None and abs(v - expected_w) <= 1e-6 * expected_w,
             f"prometheus to scrape {expected_w:g} W")


def test_reads_site_power_from_a_query_and_is_stale_or_unreachable_as_a_driver_error(prom):
    server, exp, state = prom
    meter = PrometheusMeter(settings(server.url, max_age_s=30))
    fresh(server, 54_500.0)
    power_w, read_at_s = meter.read()
    assert power_w == pytest.approx(54_500.0)
    assert meter.age_s() < 30 and read_at_s <= time.time()
    state["gpu_w"] = 30_000.0  # the GPUs are capped: the meter follows within a scrape
    fresh(server, 36_500.0)
    assert meter.read()[0] == pytest.approx(36_500.0)

    exp.stop()  # the exporter is gone: Prometheus marks its series stale, the query has no sample
    with pytest.raises(DriverError, match="no sample"):
        wait_for(lambda: meter.read() and None, "exporter down", deadline_s=30)
    assert meter.age_s() > 0  # the last good reading is still there, with its age

    server.stop()
    with pytest.raises(DriverError, match="ConnectError"):
        meter.read()
    meter.close()


def test_a_series_sampled_longer_ago_than_max_age_is_stale(tmp_path):
    exp = Exporter(lambda: 48_000.0, lambda: 6_500.0)
    exp.stamp_age_s = 120.0  # the facility meter stamps its samples two minutes old
    server = PrometheusServer(tmp_path, [f"'127.0.0.1:{exp.port}'"])
    try:
        wait_for(lambda: server.value(SERIES[1]) is not None, "prometheus to scrape the facility meter")
        with pytest.raises(DriverError, match=r"facility_power_w was last sampled 1\d\d s ago \(max_age_s 30\)"):
            PrometheusMeter(settings(server.url, max_age_s=30)).read()
        assert PrometheusMeter(settings(server.url, max_age_s=300)).read()[0] == pytest.approx(54_500.0)
    finally:
        server.stop()
        exp.stop()


def test_a_query_giving_several_series_names_the_fix(prom):
    server, _, _ = prom
    fresh(server, 54_500.0)
    meter = PrometheusMeter(PrometheusMeterSettings(
        kind="prometheus", url=server.url, query="DCGM_FI_DEV_POWER_USAGE", series=SERIES, timeout_s=10))
    with pytest.raises(DriverError, match=r"8 series; wrap in sum\(\)"):
        meter.read()


T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
OTHER_LOAD = 0.06  # the facility meter: load beyond the GPUs, as a fraction of IT power


def test_the_service_closes_the_loop_on_prometheus_and_holds_when_it_goes_silent(tmp_path):
    holder = {}
    exp = Exporter(lambda: holder["svc"].driver.site_power_w if "svc" in holder else 0.0,
                   lambda: holder["svc"].driver.site_power_w * OTHER_LOAD if "svc" in holder else 0.0)
    server = PrometheusServer(tmp_path, [f"'127.0.0.1:{exp.port}'"])
    clock = FakeClock(T0.timestamp())
    try:
        svc = make_service(
            f"sqlite:///{tmp_path}/gridflex.db", clock,
            meter={"kind": "prometheus", "url": server.url, "query": QUERY, "series": list(SERIES),
                   "max_age_s": 30, "timeout_s": 10},
            control={"interval_s": 2.0, "snapback_guard_s": 0.0, "fail_safe": "hold", "failed_ticks": 2},
        )
        holder["svc"] = svc

        def tick():
            """The next good tick once Prometheus has seen the plant as it is now (a scrape that a
            busy machine makes fail is a failed tick, as it should be: try again)."""
            def good():
                fresh(server, svc.driver.site_power_w * (1 + OTHER_LOAD))
                clock.t_s += 2
                return svc.tick(clock.t_s) is not None
            wait_for(good, "a tick on a fresh scrape")

        for _ in range(3):
            tick()
        assert svc.status.site_power_source == f"prometheus {server.url}"
        baseline_w = svc.status.site_power_w
        assert baseline_w == pytest.approx(svc.driver.site_power_w * (1 + OTHER_LOAD), rel=0.02)
        start = datetime.fromtimestamp(clock.t_s, timezone.utc)
        target_w = 0.75 * baseline_w
        svc.add_event(GridEvent(id="cut", start=start, end=start + timedelta(hours=1), target=Target(power_w=target_w)))
        metered = []
        for _ in range(40):
            tick()
            metered.append(svc.status.site_power_w)
        steady = np.mean(metered[-10:])
        assert target_w * 0.96 <= steady <= target_w  # met on the query's reading, within 2 % (the margin)
        caps = np.array([j["cap_w"] for j in svc.status.jobs])  # the last plan
        active = np.array([j["active"] for j in svc.status.jobs])
        assert (caps < svc.driver.fleet.max_cap_w - 1).any() or (active < 1).any()

        exp.stop()  # the exporter goes silent mid-event
        wait_for(lambda: server.value(SERIES[1]) is None, "prometheus to mark the series stale")
        for _ in range(2):
            clock.t_s += 2
            assert svc.tick(clock.t_s) is None  # nothing is decided blind
        assert svc.status.driver_ok is False and "prometheus" in svc.status.error
        np.testing.assert_allclose(svc.driver.cap_w, caps)  # fail-safe 'hold': the last plan stays
        np.testing.assert_allclose(svc.driver.active, active)
    finally:
        server.stop()
        exp.stop()
