"""The OpenADR 2.0b VEN: event translation on the Alliance's sample messages, refusals, and a real
openleadr VTN on loopback dispatching to `gridflex serve`."""

import asyncio
import os
import re
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from openleadr import OpenADRServer
from openleadr.messaging import parse_message

from gridflex.service.config import TOKEN_ENV, OpenAdrConfig
from gridflex.service.openadr import Ven, translate
from tests.service_support import TOKEN, FakeClock, free_port, make_service, run_ticks, serve_argv

SAMPLES = Path(os.environ.get("GRIDFLEX_SHARED", "/work/shared")) / "data" / "openadr-samples"
CFG = OpenAdrConfig()


def _sample(name: str) -> dict:
    """The first event of a spec sample (they lack the oadrPayload envelope openleadr parses)."""
    path = SAMPLES / "enernoc_2.0a" / name
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    xml = re.sub(r"<\?xml[^>]*\?>|<!--.*?-->", "", path.read_text(), flags=re.S)
    envelope = (
        '<oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07"><oadr:oadrSignedObject>'
        f"{xml}</oadr:oadrSignedObject></oadr:oadrPayload>"
    )
    kind, payload = parse_message(envelope)
    assert kind == "oadrDistributeEvent"
    return payload["events"][0]


def _event(
    signal: str, kind: str, values: list[float], start: datetime, ramp_s: float = 0, status: str = "far"
) -> dict:
    return {
        "event_descriptor": {"event_id": "ev1", "modification_number": 0, "event_status": status},
        "active_period": {
            "dtstart": start,
            "duration": timedelta(minutes=10 * len(values)),
            "ramp_up": timedelta(seconds=ramp_s),
        },
        "event_signals": [
            {
                "signal_name": signal,
                "signal_type": kind,
                "intervals": [{"duration": timedelta(minutes=10), "signal_payload": v} for v in values],
            }
        ],
        "response_required": "always",
    }


def test_alliance_sample_simple_levels_and_prices():
    tr = translate(_sample("2.0b_spec__Sample_oadrDistributeEvent.xml"), CFG)
    assert tr.reason == ""
    assert [e.target.reduction for e in tr.events] == [CFG.simple_levels[3], CFG.simple_levels[2]]
    assert [e.start.isoformat() for e in tr.events] == ["2001-12-17T09:40:47+00:00", "2001-12-17T09:55:47+00:00"]
    assert [e.ramp_s for e in tr.events] == [300.0, 0.0]
    assert [p[2] for p in tr.prices] == [1.2, 1.3]


def test_alliance_sample_price_only():
    tr = translate(_sample("2.0b_spec__Sample_oadrDistributeEvent_W_GML.xml"), CFG)
    assert tr.events == [] and [p[2] for p in tr.prices] == [1.2, 1.3] and tr.reason == ""


def test_load_dispatch_setpoint_in_kw_and_refusals():
    start = datetime(2026, 5, 3, 16, tzinfo=timezone.utc)
    tr = translate(_event("LOAD_DISPATCH", "setpoint", [70.0, 65.0], start), CFG)
    assert [e.target.power_w for e in tr.events] == [70e3, 65e3]
    assert "not supported" in translate(_event("LOAD_DISPATCH", "delta", [5.0], start), CFG).reason
    assert "level 7" in translate(_event("SIMPLE", "level", [7], start), CFG).reason
    assert "ramp_s" in translate(_event("SIMPLE", "level", [1], start, ramp_s=900), CFG).reason
    assert "malformed" in translate({"event_descriptor": {}}, CFG).reason
    assert "malformed interval" in translate(_event("LOAD_DISPATCH", "setpoint", ["lots"], start), CFG).reason
    milli = _event("LOAD_DISPATCH", "setpoint", [70.0], start)
    milli["event_signals"][0]["measurement"] = {"scale": "m"}
    assert "scale 'm' not supported" in translate(milli, CFG).reason
    mega = _event("LOAD_DISPATCH", "setpoint", [0.07], start)
    mega["event_signals"][0]["measurement"] = {"scale": "M"}
    assert translate(mega, CFG).events[0].target.power_w == pytest.approx(70e3)


def test_impossible_or_malformed_events_opt_out_and_change_nothing(tmp_path):
    clock = FakeClock(datetime(2026, 5, 3, 16, tzinfo=timezone.utc).timestamp())
    svc = make_service(f"sqlite:///{tmp_path}/v.db", clock)
    ven = Ven(svc, CFG)
    now = datetime.fromtimestamp(clock.t_s, timezone.utc)
    # Second interval is impossible (1 kW): the first must not be applied either.
    assert ven.handle(_event("LOAD_DISPATCH", "setpoint", [70.0, 1.0], now)) == "optOut"
    assert ven.handle(_event("FOO", "level", [1.0], now)) == "optOut"
    assert svc.store.events() == [] and svc.active_event_ids() == []
    assert ven.handle(_event("SIMPLE", "level", [2.0], now)) == "optIn"
    assert svc.active_event_ids() == ["oadr:ev1:0:0"]
    assert ven.handle(_event("SIMPLE", "level", [2.0], now)) == "optIn"  # re-sent (VEN restarted): no change
    modified = _event("SIMPLE", "level", [3.0], now)
    modified["event_descriptor"]["modification_number"] = 1
    assert ven.handle(modified) == "optIn"
    assert svc.active_event_ids() == ["oadr:ev1:1:0"]
    assert svc.store.event("oadr:ev1:0:0").status == "cancelled"
    assert ven.handle(_event("SIMPLE", "level", [2.0], now, status="cancelled")) == "optIn"
    assert svc.active_event_ids() == []
    run_ticks(svc, clock, 1)


@pytest.mark.parametrize("oadr_id", ["a/b", "x\nINFO forged line", "x" * 120])
@pytest.mark.parametrize("signal, kind, value", [("SIMPLE", "level", 2.0), ("ELECTRICITY_PRICE", "price", 30.0)])
def test_event_ids_that_could_never_be_cancelled_opt_out(tmp_path, caplog, oadr_id, signal, kind, value):
    clock = FakeClock(datetime(2026, 5, 3, 16, tzinfo=timezone.utc).timestamp())
    svc = make_service(f"sqlite:///{tmp_path}/i.db", clock)
    event = _event(signal, kind, [value], datetime.fromtimestamp(clock.t_s, timezone.utc))
    event["event_descriptor"]["event_id"] = oadr_id
    assert "event_id" in translate(event, CFG).reason
    assert Ven(svc, CFG).handle(event) == "optOut"
    assert svc.store.events() == [] and svc.store.prices() == []
    assert not any("\n" in r.getMessage() for r in caplog.records)  # no forged log lines


class Vtn:
    """openleadr's real VTN on loopback, in its own thread and event loop."""

    def __init__(self, port: int):
        self.registered = threading.Event()
        self.responses: list[str] = []
        self.reports: list[tuple[datetime, float]] = []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = self._call(self._start(port))

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)

    async def _start(self, port: int) -> OpenADRServer:
        server = OpenADRServer(
            vtn_id="GRIDFLEX_TEST_VTN",
            http_host="127.0.0.1",
            http_port=port,
            requested_poll_freq=timedelta(seconds=1),
            show_fingerprint=False,
        )
        server.add_handler("on_create_party_registration", self._on_registration)
        server.add_handler("on_register_report", self._on_register_report)
        await server.run()
        return server

    def _on_registration(self, info: dict):
        self.registered.set()
        return "ven-gridflex", "reg-1"

    def _on_register_report(
        self, ven_id, resource_id, measurement, unit, scale, min_sampling_interval, max_sampling_interval
    ):
        return self.reports.extend, min_sampling_interval, min_sampling_interval

    def dispatch(self, setpoint_kw: float, minutes: float) -> None:
        async def add():
            self.server.add_event(
                ven_id="ven-gridflex",
                signal_name="LOAD_DISPATCH",
                signal_type="setpoint",
                intervals=[
                    {
                        "dtstart": datetime.now(timezone.utc),
                        "duration": timedelta(minutes=minutes),
                        "signal_payload": setpoint_kw,
                    }
                ],
                callback=lambda ven_id, event_id, opt_type: self.responses.append(opt_type),
            )

        self._call(add())

    def stop(self) -> None:
        self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.mark.slow
def test_vtn_dispatch_is_met_and_reported(tmp_path):
    vtn_port, api_port = free_port(), free_port()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "store": {"url": f"sqlite:///{tmp_path}/gf.db"},
                "control": {"interval_s": 1.0},
                "openadr": {
                    "enabled": True,
                    "vtn_url": f"http://127.0.0.1:{vtn_port}/OpenADR2/Simple/2.0b",
                    "report_interval_s": 2,
                    "retry_s": 1,
                },
            }
        )
    )
    proc = subprocess.Popen(
        serve_argv(cfg, api_port),
        stdout=open(tmp_path / "serve.log", "wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, TOKEN_ENV: TOKEN},
    )
    base = f"http://127.0.0.1:{api_port}"
    vtn = None
    try:
        _wait_ready(base)
        vtn = Vtn(vtn_port)  # after the VEN's first try: it must keep retrying until the VTN is up
        assert vtn.registered.wait(40), (tmp_path / "serve.log").read_text()
        setpoint_w = 72e3
        vtn.dispatch(setpoint_w / 1e3, minutes=10)
        sent = time.monotonic()
        met_after_s = None
        while time.monotonic() - sent < 60:
            try:
                status = httpx.get(f"{base}/api/v1/status", timeout=2).json()
            except httpx.HTTPError:
                status = {}
            if status.get("active_events") and status["site_power_w"] < setpoint_w:
                met_after_s = time.monotonic() - sent
                break
            time.sleep(0.5)
        assert met_after_s is not None, (tmp_path / "serve.log").read_text()[-3000:]
        print(f"dispatch met after {met_after_s:.1f} s")
        assert met_after_s < 30, met_after_s  # response time: poll (1 s) + tick (1 s) + cap latency (1 s)
        assert vtn.responses == ["optIn"]
        events = httpx.get(f"{base}/api/v1/events").json()
        assert [(e["source"], e["target"]["power_w"]) for e in events] == [("openadr", setpoint_w)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(v < setpoint_w for _, v in vtn.reports):
            time.sleep(0.5)
        assert any(50e3 < v < setpoint_w for _, v in vtn.reports), vtn.reports  # the VTN sees the cut
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if vtn:
            vtn.stop()


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/status", timeout=2).json()["t_s"]:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("service did not start")


@pytest.mark.slow
def test_ven_registers_again_after_the_vtn_restarts(tmp_path):
    """A VTN restarted on the same port has forgotten the VEN and its reports: the VEN notices the
    failed polls, registers again, and the new VTN receives site-power reports."""
    vtn_port, api_port = free_port(), free_port()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{tmp_path}/gf.db"},
        "control": {"interval_s": 1.0},
        "openadr": {"enabled": True, "vtn_url": f"http://127.0.0.1:{vtn_port}/OpenADR2/Simple/2.0b",
                    "report_interval_s": 2, "retry_s": 1},
    }))
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(serve_argv(cfg, api_port), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, TOKEN_ENV: TOKEN})
    vtns = []
    try:
        _wait_ready(f"http://127.0.0.1:{api_port}")
        vtns.append(Vtn(vtn_port))
        assert vtns[0].registered.wait(60), log.read_text()[-3000:]
        _until(lambda: vtns[0].reports, 60, "no report reached the first VTN")
        failures = log.read_text().count("Could not connect to server")  # the first tries, before any VTN
        vtns[0].stop()
        _until(lambda: log.read_text().count("Could not connect to server") > failures, 60,
               "the VEN never noticed the VTN gone")
        vtns.append(Vtn(vtn_port))
        assert vtns[1].registered.wait(60), log.read_text()[-3000:]
        _until(lambda: vtns[1].reports, 60, "no report reached the restarted VTN")
        text = log.read_text()
        assert "registering again" in text
        assert "apscheduler" not in text and "to report" not in text  # no scheduler or per-sample chatter
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if len(vtns) == 2:
            vtns[1].stop()


def _until(pred, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, message
        time.sleep(0.3)
