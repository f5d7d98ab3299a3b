"""`gridflex serve` as a process: killed with SIGKILL mid-event and restarted, it resumes the event
with nothing lost and the flex budgets carried over; SIGTERM restores every job before exit."""

import os
import signal
import subprocess
import time

import httpx
import pytest
import yaml

from gridflex.service.config import TOKEN_ENV
from gridflex.store import Store
from gridflex.store.models import DecisionRow
from tests.service_support import TOKEN, dispatch_now, free_port, serve_argv

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _start(cfg_path, port, log_path) -> subprocess.Popen:
    env = {**os.environ, TOKEN_ENV: TOKEN}
    return subprocess.Popen(
        serve_argv(cfg_path, port),
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait(url: str, pred, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = httpx.get(url, timeout=2).json()
            if pred(body):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting on {url}")


@pytest.fixture
def served(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/gf.db"}, "control": {"interval_s": 1.0}}))
    port = free_port()
    procs: list[subprocess.Popen] = []

    def start() -> str:
        procs.append(_start(cfg, port, tmp_path / "serve.log"))
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/api/v1/status", lambda b: b["t_s"] is not None)
        return base

    yield start, procs, tmp_path
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigkill_mid_event_then_restart_resumes_everything(served):
    start, procs, tmp_path = served
    base = start()
    event = dispatch_now("dispatch", 10, {"power_w": 70000})
    assert httpx.post(f"{base}/api/v1/events", json=event, headers=AUTH).status_code == 201
    _wait(f"{base}/api/v1/status", lambda b: b["site_power_w"] < 70000 and b["active_events"] == ["dispatch"])
    time.sleep(3)
    jobs_before = {j["id"]: j["flex_budget_used"] for j in httpx.get(f"{base}/api/v1/jobs").json()}
    seen = httpx.get(f"{base}/api/v1/decisions", params={"limit": 10000}).json()
    baseline_w = httpx.get(f"{base}/api/v1/events").json()[0]["baseline_w"]
    assert baseline_w and max(jobs_before.values()) > 0, (jobs_before, httpx.get(f"{base}/api/v1/status").json())

    procs[-1].send_signal(signal.SIGKILL)
    procs[-1].wait()
    store = Store(f"sqlite:///{tmp_path}/gf.db")
    stored_ids = {r.id for r in store.decisions(limit=100000)}
    assert {d["id"] for d in seen} <= stored_ids  # every decision acted on is on disk
    assert store.count(DecisionRow) >= len(seen)
    store.close()

    base = start()
    status = _wait(f"{base}/api/v1/status", lambda b: b["t_s"] is not None)
    assert status["known_events"] == ["dispatch"]
    events = httpx.get(f"{base}/api/v1/events").json()
    assert [(e["id"], e["status"], e["baseline_w"]) for e in events] == [("dispatch", "active", baseline_w)]
    jobs_after = {j["id"]: j["flex_budget_used"] for j in httpx.get(f"{base}/api/v1/jobs").json()}
    for job_id, used in jobs_before.items():
        assert jobs_after[job_id] >= used - 1e-9, job_id  # budgets carried over, not reset
    _wait(f"{base}/api/v1/status", lambda b: b["active_events"] == ["dispatch"] and b["site_power_w"] < 70000)
    after = httpx.get(f"{base}/api/v1/decisions", params={"limit": 10000}).json()
    assert {d["id"] for d in seen} <= {d["id"] for d in after}


def test_sigterm_restores_every_job_before_exit(served):
    start, procs, tmp_path = served
    base = start()
    event = dispatch_now("cut", 5, {"reduction": 0.3})
    assert httpx.post(f"{base}/api/v1/events", json=event, headers=AUTH).status_code == 201
    _wait(f"{base}/api/v1/status", lambda b: any(j["cap_w"] < 400 or j["active"] < 1 for j in b["jobs"]))
    procs[-1].send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown, so the exit reads as SIGTERM.
    assert procs[-1].wait(timeout=30) in (0, -signal.SIGTERM)
    assert "every job restored to normal" in (tmp_path / "serve.log").read_text()
