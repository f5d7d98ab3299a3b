"""`gridflex serve` on a real Slurm cluster, closing the loop on a real Modbus TCP site meter whose
register follows what the Slurm jobs draw (their curves, in the state Slurm shows them in) plus a
load no job draws. An event is met on the meter's reading within 2 %; the meter going silent
mid-event leads to the configured fail-safe within two ticks, and to `degraded` in /status and on
the dashboard (headless Chromium)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from gridflex.drivers.slurm import SlurmRules
from gridflex.model.site import Site
from tests.service_support import TOKEN
from tests.slurm_cluster import SlurmSitePower, wait_for
from tests.test_dashboard_browser import _browser, _serve
from tests.test_meter_loop import REGISTER, LiveMeter
from tests.test_slurm import cluster, start_jobs  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SITE = Site(name="metered", margin=0.01)  # the controller keeps 1 % of the target in reserve
#: Cooling, storage and racks outside Slurm: the meter sees them, no driver does. With it each
#: one-GPU job is under 1 % of the site, the step by which Slurm's whole-job suspends move it.
OTHER_W = 32_000.0
FLEX = {f"f{i}": dict(comment=f"gridflex:flex={2 + i % 2},workload={w}")
        for i, w in enumerate(["pt_mpt_7b_fast", "ft_llama_8b_p3", "infer_llama_8b", "pt_mpt_13b_sm"] * 2)}
FLEX.pop("f7")  # seven flexible one-GPU jobs, and one that is never touched, fill the node's 8 CPUs
DEADLINE_S = 120.0


def _get(base: str, path: str):
    return httpx.get(f"{base}{path}", headers=AUTH, timeout=30).json()


def _steady(base: str, since_s: float, n: int = 5) -> list[dict] | None:
    """The last `n` decisions since `since_s` if the plan and the meter's reading did not change over them."""
    ds = _get(base, f"/api/v1/decisions?since_s={since_s}&limit=100")[-n:]
    if len(ds) < n or any(d["active"] != ds[0]["active"] for d in ds):
        return None
    return ds if np.ptp([d["site_power_w"] for d in ds]) < 1.0 else None


@pytest.mark.parametrize("fail_safe", ["curtail", "hold"])
def test_serve_meets_an_event_on_the_modbus_meter_and_fails_safe_when_it_goes_silent(
    cluster, tmp_path, fail_safe  # noqa: F811
):
    jobs = start_jobs(cluster, tmp_path, **FLEX, firm=dict(comment="gridflex:flex=0"))
    firm = jobs.pop("firm")[0]
    flexible = [job_id for job_id, _ in jobs.values()]
    plant = SlurmSitePower(SITE, SlurmRules(), OTHER_W)
    meter = LiveMeter(plant)
    base, proc = _serve(
        tmp_path,
        site=SITE.model_dump(),
        driver={"kind": "slurm", "state_dir": str(tmp_path / "state")},
        meter={"host": "127.0.0.1", "port": meter.port, "address": REGISTER, "scale": 1000, "timeout_s": 5},
        control={"interval_s": 2.0, "snapback_guard_s": 0.0, "fail_safe": fail_safe, "failed_ticks": 2},
    )
    log = tmp_path / "serve.log"
    try:
        wait_for(lambda: (_get(base, "/api/v1/status")["t_s"] or 0) > 0, DEADLINE_S, "no status from serve",
                 {"serve": proc}, log.read_text)
        status = _get(base, "/api/v1/status")
        assert status["site_power_source"] == f"meter 127.0.0.1:{meter.port}" and status["estimated"] is False
        baseline_w = status["site_power_w"]
        assert baseline_w == pytest.approx(plant(), rel=1e-3)  # the meter reads the plant (float32 kW)

        target_w = 0.96 * baseline_w
        now = datetime.now(UTC)
        event = {"id": "cut", "start": now.isoformat(), "end": (now + timedelta(minutes=30)).isoformat(),
                 "target": {"power_w": target_w}}
        r = httpx.post(f"{base}/api/v1/events", json=event, headers=AUTH, timeout=30)
        assert r.status_code == 201, r.text
        steady: list = []
        wait_for(lambda: steady.extend(_steady(base, now.timestamp()) or []) or steady, DEADLINE_S,
                 "no steady state under the event", {"serve": proc}, log.read_text)
        metered_w = float(np.mean([d["site_power_w"] for d in steady]))
        suspended = [j for j in flexible if cluster.state(j) == "SUSPENDED"]
        print(f"baseline {baseline_w:.0f} W, target {target_w:.0f} W, steady on the meter {metered_w:.0f} W"
              f" ({metered_w / target_w - 1:+.2%}), {len(suspended)} of {len(flexible)} flexible jobs suspended")
        assert 0.98 * target_w <= metered_w <= target_w  # met on the meter's reading, within 2 %
        assert metered_w == pytest.approx(plant(), rel=1e-3)  # and that reading is what Slurm's jobs draw
        assert 0 < len(suspended) < len(flexible) and cluster.state(firm) == "RUNNING"

        sync_api = pytest.importorskip("playwright.sync_api")
        with sync_api.sync_playwright() as pw:
            browser = _browser(pw)
            page = browser.new_page()
            page.goto(base)
            page.wait_for_function("document.getElementById('site-state').textContent === 'under event'",
                                   timeout=DEADLINE_S * 1000)
            assert page.get_attribute("#site-power", "title") == f"read from meter 127.0.0.1:{meter.port}"

            before = [cluster.state(j) for j in flexible]
            offset = len(log.read_text())
            t0 = time.monotonic()
            meter.silence()  # the meter stops answering mid-event
            applied = f"fail-safe '{fail_safe}'"
            wait_for(lambda: applied in log.read_text()[offset:], DEADLINE_S, "no fail-safe after the meter went silent",
                     {"serve": proc}, lambda: log.read_text()[offset:])
            after = log.read_text()[offset:]
            silent = "driver error: meter 127.0.0.1"
            failed = after[: after.index(applied)].count(silent)
            print(f"fail-safe {fail_safe!r} after {failed} failed ticks, {time.monotonic() - t0:.1f} s after the"
                  " meter went silent")
            assert failed == 2  # within two ticks
            if fail_safe == "curtail":  # every flexible job to its least
                assert [cluster.state(j) for j in flexible] == ["SUSPENDED"] * len(flexible)
            else:  # the last plan stays, a few ticks on: nothing paused is resumed blind, nothing else paused
                wait_for(lambda: log.read_text()[offset:].count(silent) >= 4, DEADLINE_S, "no more failed ticks",
                         {"serve": proc})
                assert [cluster.state(j) for j in flexible] == before
            assert cluster.state(firm) == "RUNNING"  # Flex 0 is never touched

            status = _get(base, "/api/v1/status")
            assert status["degraded"] is True and status["driver_ok"] is False
            assert any(f"meter 127.0.0.1:{meter.port}" in r for r in status["degraded_reasons"])
            assert status["active_events"] == ["cut"]  # the event is not lost
            page.wait_for_function("document.getElementById('site-state').textContent.startsWith('degraded')",
                                   timeout=DEADLINE_S * 1000)
            assert "(stale)" in page.inner_text("#site-power")
            assert f"meter 127.0.0.1:{meter.port}" in page.get_attribute("#site-state", "title")
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE_S)
        meter.close()
        plant.close()
    assert [cluster.state(j) for j in flexible] == ["RUNNING"] * len(flexible)  # stopped: every job back
