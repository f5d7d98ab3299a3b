"""What an operator tried on the live service: ids that can never be cancelled, NaN and absurd
numbers, events from year 1 to 9999, the OpenAPI document, an offline /docs, and a dashboard
login that keeps the token out of URLs and logs."""

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from gridflex.errors import InputError
from gridflex.service.app import SESSION_COOKIE, create_app
from gridflex.service.config import TOKEN_ENV, load_config
from gridflex.sim.scenarios import parse_scenario
from tests.service_support import (
    TOKEN,
    FakeClock,
    api_env,
    dispatch_now,
    free_port,
    make_service,
    run_ticks,
    serve_argv,
)

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    with api_env(tmp_path, monkeypatch, T0.timestamp()) as e:
        yield e


def _body(ev_id="dispatch-1", start=T0, minutes=60, **target):
    return {
        "id": ev_id,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=minutes)).isoformat(),
        "ramp_s": 60,
        "target": target or {"power_w": 70000},
    }


@pytest.mark.parametrize("bad_id", ["a/b", "line\nforged INFO line", "x" * 129, "", "ä", "a b", "x" * 1_000_000])
def test_ids_that_could_not_be_cancelled_are_refused(env, bad_id):
    client, svc, _ = env
    r = client.post("/api/v1/events", json=_body(bad_id), headers=AUTH)
    assert r.status_code == 422
    assert ["body", "id"] in [e["loc"] for e in r.json()["detail"]]
    assert len(r.content) < 2000  # the input is not echoed back
    assert svc.store.events() == []


def test_longest_allowed_id_round_trips(env):
    client, svc, _ = env
    ev_id = "oadr:" + "A.b_c-9" * 17 + "xyz"  # 127 characters of every allowed kind
    assert client.post("/api/v1/events", json=_body(ev_id), headers=AUTH).status_code == 201
    assert client.delete(f"/api/v1/events/{ev_id}", headers=AUTH).json()["status"] == "cancelled"


def test_scenario_files_refuse_bad_ids():
    text = yaml.safe_dump(
        {"name": "x", "start": "2025-01-01T00:00:00Z", "end": "2025-01-01T02:00:00Z",
         "jobs": [{"id": "j", "workload": "pt_mpt_7b_fast", "gpus": 8, "flex_tier": 3}],
         "events": [{"id": "a/b", "start": "2025-01-01T00:10:00Z", "end": "2025-01-01T00:40:00Z",
                     "target": {"reduction": 0.2}}]}
    )
    with pytest.raises(InputError, match=r"events\.0\.id: .*allowed: 1 to 128 characters"):
        parse_scenario(text, "x", base_dir=None)


@pytest.mark.parametrize(
    "raw, field",
    [
        ('"ramp_s": NaN', ["body", "ramp_s"]),
        ('"target": {"power_w": Infinity}', ["body", "target", "power_w"]),
        ('"target": {"reduction": NaN}', ["body", "target", "reduction"]),
        ('"baseline_w": -Infinity', ["body", "baseline_w"]),
        ('"notice_s": NaN', ["body", "notice_s"]),
    ],
)
def test_nan_and_infinity_get_422_naming_the_field(env, raw, field):
    client, svc, _ = env
    body = {k: v for k, v in _body().items() if k not in ("ramp_s", "target") or k in raw}
    if "target" not in raw:
        body["target"] = {"power_w": 70000}
    text = json.dumps(body)[:-1] + ", " + raw + "}"
    r = client.post("/api/v1/events", content=text, headers=AUTH | {"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in [e["loc"] for e in r.json()["detail"]]
    assert svc.store.events() == []


@pytest.mark.parametrize("path", ["/api/v1/telemetry", "/api/v1/decisions"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_in_queries_gets_422(env, path, value):
    client, _, _ = env
    r = client.get(path, params={"since_s": value})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "since_s"]


def test_absurd_baseline_is_refused_naming_it(env):
    client, svc, _ = env
    r = client.post("/api/v1/events", json=_body(reduction=0.2) | {"baseline_w": 1e12}, headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"].startswith("baseline_w: 1000000000000 W is outside")
    r = client.post("/api/v1/events", json=_body(reduction=0.2) | {"baseline_w": 100}, headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"].startswith("baseline_w:")
    full_w, _ = svc._power_range_w()
    ok = client.post("/api/v1/events", json=_body(reduction=0.2) | {"baseline_w": 0.9 * full_w}, headers=AUTH)
    assert ok.status_code == 201


@pytest.mark.parametrize(
    "body, field",
    [
        ({"id": "y", "start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z", "target": {"reduction": 0.2}},
         "start"),
        (_body(start=T0 + timedelta(days=400)), "start"),
        (_body(start=T0 - timedelta(days=2), minutes=3 * 24 * 60), "start"),
        (_body(minutes=8 * 24 * 60), "end"),
    ],
)
def test_event_times_are_bounded(env, body, field):
    client, svc, _ = env
    r = client.post("/api/v1/events", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"].startswith(f"{field}: "), r.text
    assert svc.store.events() == []


def test_event_limits_are_configurable(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    clock = FakeClock(T0.timestamp())
    svc = make_service(f"sqlite:///{tmp_path}/l.db", clock, events={"max_duration_s": 20 * 86400})
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        run_ticks(svc, clock, 2)
        assert client.post("/api/v1/events", json=_body(minutes=8 * 24 * 60), headers=AUTH).status_code == 201


def test_openapi_lists_the_answers_and_public_reads_need_no_token(env):
    client, _, _ = env
    paths = client.get("/openapi.json").json()["paths"]
    assert {"400", "401", "422"} <= set(paths["/api/v1/events"]["post"]["responses"])
    assert {"401", "404"} <= set(paths["/api/v1/events/{event_id}"]["delete"]["responses"])
    assert {"401", "404", "422"} <= set(paths["/api/v1/jobs/{job_id}"]["patch"]["responses"])
    assert "security" in paths["/api/v1/events"]["post"]
    for path in ("/api/v1/status", "/api/v1/events", "/api/v1/jobs", "/metrics"):
        assert "security" not in paths[path]["get"], path
        assert "401" not in paths[path]["get"]["responses"], path


def test_protected_reads_declare_the_token(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    svc = make_service(f"sqlite:///{tmp_path}/p.db", FakeClock(T0.timestamp()), api={"token": TOKEN, "protect_reads": True})
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        op = client.get("/openapi.json").json()["paths"]["/api/v1/status"]["get"]
        assert "security" in op and "401" in op["responses"]


def test_docs_are_served_without_a_cdn(env):
    client, _, _ = env
    page = client.get("/docs").text
    assert "cdn." not in page and "https://" not in page.replace("https://fastapi.tiangolo.com", "")
    scripts = [part.split('"')[0] for part in page.split('src="')[1:]]
    links = [part.split('"')[0] for part in page.split('href="')[1:] if part.endswith("css") or ".css" in part[:80]]
    assert scripts and links
    for url in scripts + links:
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 10000, url


def test_dashboard_login_sets_an_httponly_read_cookie(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    clock = FakeClock(T0.timestamp())
    svc = make_service(f"sqlite:///{tmp_path}/s.db", clock, api={"token": TOKEN, "protect_reads": True})
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        run_ticks(svc, clock, 1)
        assert client.post("/api/v1/session", json={"token": "wrong-token-0123456789"}).status_code == 401
        assert client.get("/api/v1/status").status_code == 401
        r = client.post("/api/v1/session", json={"token": TOKEN})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and TOKEN not in cookie
        assert client.get("/api/v1/status").status_code == 200  # the cookie is sent back
        assert client.post("/api/v1/events", json=_body()).status_code == 401  # reads only
        client.delete("/api/v1/session")
        client.cookies.clear()
        assert client.get("/api/v1/status").status_code == 401
    assert SESSION_COOKIE in cookie


def test_served_access_log_never_holds_the_token(tmp_path):
    """`gridflex serve` with its access log: a login, cookie reads, bearer writes, and a client that
    still puts the token in a URL. The token appears nowhere in the log."""
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": "sqlite:///gf.db"}, "api": {"protect_reads": True},
                                   "control": {"interval_s": 1.0}}))
    port = free_port()
    log_path = tmp_path / "serve.log"
    proc = subprocess.Popen(serve_argv(cfg, port), stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, TOKEN_ENV: TOKEN})
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            _wait_up(client, proc)
            assert client.get(f"/?token={TOKEN}").status_code == 200  # the old, documented way
            assert client.get("/api/v1/status", params={"token": TOKEN}).status_code == 401
            assert client.post("/api/v1/session", json={"token": TOKEN}).status_code == 204
            assert client.get("/api/v1/status").status_code == 200
            assert client.post("/api/v1/events", json=dispatch_now("d", 5, {"reduction": 0.2}),
                               headers=AUTH).status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log_path.read_text()
    assert "GET /?token=*** HTTP" in text and "POST /api/v1/session" in text  # access log was on
    assert TOKEN not in text


def _wait_up(client: httpx.Client, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gridflex serve exited"
        try:
            client.get("/openapi.json")
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("gridflex serve did not come up")


def test_store_url_is_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "site.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": "sqlite:///state/gf.db"}}))
    monkeypatch.chdir(tmp_path)
    assert load_config(cfg).store.url == f"sqlite:///{tmp_path}/conf/state/gf.db"
    cfg.write_text(yaml.safe_dump({"store": {"url": "sqlite:////abs/gf.db"}}))
    assert load_config(cfg).store.url == "sqlite:////abs/gf.db"


def test_the_documented_curl_example_makes_a_valid_upcoming_event(tmp_path):
    """docs/service.md's example computes its dates and calls .venv/bin/gridflex: run its shell
    lines with `curl` replaced by a stand-in that prints the body, and check the body."""
    from pathlib import Path

    from gridflex.model.events import GridEvent

    doc = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    assert "\ngridflex " not in doc and ".venv/bin/gridflex serve" in doc
    block = doc.split("An event from five minutes from now")[1].split("```")[1]
    script = "curl() { for a; do [ \"$prev\" = -d ] && printf '%s' \"$a\"; prev=$a; done; echo; }\n" + block
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True)
    body = json.loads(out.stdout.splitlines()[0])
    ev = GridEvent.model_validate(body)
    now = datetime.now(timezone.utc)
    assert now < ev.start < now + timedelta(minutes=10) and ev.end - ev.start == timedelta(hours=2)
