"""The REST API: tokens, validation, events, jobs, audit log, metrics and the OpenAPI document."""

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gridflex.errors import InputError
from gridflex.service.app import create_app
from gridflex.service.config import TOKEN_ENV
from tests.service_support import TOKEN, FakeClock, api_env, make_service, run_ticks

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    with api_env(tmp_path, monkeypatch, T0.timestamp()) as e:
        yield e


def _body(ev_id="dispatch-1", minutes=60, **target):
    return {
        "id": ev_id,
        "start": T0.isoformat(),
        "end": (T0 + timedelta(minutes=minutes)).isoformat(),
        "ramp_s": 60,
        "target": target or {"power_w": 70000},
    }


def test_status_has_the_fixed_fields(env):
    client, svc, _ = env
    body = client.get("/api/v1/status").json()
    assert body["site_power_w"] > 50e3 and body["target_w"] is None and body["active_events"] == []
    assert {j["id"] for j in body["jobs"]} == set(svc.fleet.ids)
    from gridflex.fleet.loop import site_report  # what a fleet coordinator counts each serving job for

    shares = site_report(body).serving_share
    assert set(shares) == set(svc.fleet.ids) and all(0 < v <= 1 for v in shares.values())
    assert {j["id"]: j["flex_tier"] for j in body["jobs"]} == dict(zip(svc.fleet.ids, svc.fleet.flex_tier.tolist()))


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic x"}]
)
def test_writes_without_the_token_get_401(env, headers):
    client, svc, _ = env
    assert client.post("/api/v1/events", json=_body(), headers=headers).status_code == 401
    assert client.delete("/api/v1/events/x", headers=headers).status_code == 401
    assert client.patch(f"/api/v1/jobs/{svc.fleet.ids[0]}", json={"flex_tier": 0}, headers=headers).status_code == 401
    assert svc.store.events() == []


def test_event_create_list_cancel(env):
    client, svc, clock = env
    r = client.post("/api/v1/events", json=_body(), headers=AUTH)
    assert r.status_code == 201 and r.json()["status"] == "active"
    run_ticks(svc, clock, 10)
    status = client.get("/api/v1/status").json()
    assert status["active_events"] == ["dispatch-1"] and status["target_w"] < 100e3
    window = status["event_windows"][0]  # with its times, for a fleet coordinator placing batch jobs
    assert window["id"] == "dispatch-1" and window["start_s"] == T0.timestamp()
    assert window["quiet_from_s"] < window["start_s"] < window["end_s"] < window["quiet_until_s"]
    assert [e["id"] for e in client.get("/api/v1/events").json()] == ["dispatch-1"]
    assert client.post("/api/v1/events", json=_body(), headers=AUTH).status_code == 400  # duplicate id
    r = client.delete("/api/v1/events/dispatch-1", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.delete("/api/v1/events/dispatch-1", headers=AUTH).status_code == 404
    assert client.get("/api/v1/events", params={"status": "active"}).json() == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({k: v for k, v in _body().items() if k != "end"}, ["body", "end"]),
        (_body() | {"ramp_s": -5}, ["body", "ramp_s"]),
        (_body() | {"start": "yesterday"}, ["body", "start"]),
        (_body(power_x=1), ["body", "target", "power_x"]),
        (_body(reduction=1.5), ["body", "target", "reduction"]),
    ],
)
def test_malformed_bodies_get_422_naming_the_field(env, body, field):
    client, svc, _ = env
    r = client.post("/api/v1/events", json=body, headers=AUTH)
    assert r.status_code == 422
    assert field in [e["loc"] for e in r.json()["detail"]]
    assert svc.store.events() == []


def test_impossible_target_gets_a_clear_400(env):
    client, svc, _ = env
    r = client.post("/api/v1/events", json=_body(power_w=500), headers=AUTH)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("target.power_w: 500 W is below the least the site can draw")
    r = client.post("/api/v1/events", json=_body(power_w=500e3), headers=AUTH)
    assert r.status_code == 400 and "not below the site's full power" in r.json()["detail"]
    assert svc.store.events() == []


def test_jobs_tier_change_and_decisions(env):
    client, svc, clock = env
    jobs = client.get("/api/v1/jobs").json()
    assert {"id", "flex_tier", "flex_budget_used"} <= set(jobs[0])
    r = client.patch(f"/api/v1/jobs/{jobs[0]['id']}", json={"flex_tier": 0}, headers=AUTH)
    assert r.status_code == 200 and r.json()["flex_tier"] == 0
    assert client.patch("/api/v1/jobs/nope", json={"flex_tier": 1}, headers=AUTH).status_code == 404
    r = client.patch(f"/api/v1/jobs/{jobs[0]['id']}", json={"flex_tier": 4}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "flex_tier"]
    run_ticks(svc, clock, 3)
    decisions = client.get("/api/v1/decisions", params={"limit": 2}).json()
    assert len(decisions) == 2 and decisions[0]["t_s"] < decisions[1]["t_s"]
    assert len(decisions[0]["cap_w"]) == len(jobs)
    telemetry = client.get("/api/v1/telemetry", params={"since_s": decisions[0]["t_s"]}).json()
    assert [t["t_s"] for t in telemetry][-1] == pytest.approx(clock.t_s)


def test_metrics_parse_with_the_prometheus_parser(env):
    client, svc, clock = env
    client.post("/api/v1/events", json=_body(), headers=AUTH)
    run_ticks(svc, clock, 10)
    r = client.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in (
        "gridflex_site_power_watts",
        "gridflex_target_power_watts",
        "gridflex_tier_power_watts",
        "gridflex_event_compliance_ratio",
        "gridflex_flex_budget_used_ratio",
        "gridflex_planner_latency_seconds",
        "gridflex_driver_errors",
    ):
        assert name in families, name
    assert families["gridflex_target_power_watts"].samples[0].value == pytest.approx(svc.status.target_w)
    tiers = {s.labels["tier"]: s.value for s in families["gridflex_tier_power_watts"].samples}
    assert sum(tiers.values()) == pytest.approx(sum(j["power_w"] for j in svc.status.jobs), rel=1e-6)


def test_openapi_and_dashboard_are_served(env):
    client, _, _ = env
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/status", "/api/v1/events", "/api/v1/events/{event_id}", "/api/v1/jobs/{job_id}"} <= set(paths)
    assert "power-chart" in client.get("/").text
    assert client.get("/static/dashboard.js").status_code == 200


def test_refuses_to_start_with_writes_and_no_token(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    svc = make_service(f"sqlite:///{tmp_path}/t.db", FakeClock(T0.timestamp()), api={"token": None})
    with pytest.raises(InputError, match="api.token: writes are enabled but no token"):
        create_app(svc, svc.config)
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-123")
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        ok = client.post("/api/v1/events", json=_body(), headers={"Authorization": "Bearer from-the-environment-123"})
        assert ok.status_code == 201


def test_protected_reads(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    svc = make_service(
        f"sqlite:///{tmp_path}/r.db", FakeClock(T0.timestamp()), api={"token": TOKEN, "protect_reads": True}
    )
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        assert client.get("/api/v1/status").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/api/v1/status", headers=AUTH).status_code == 200


def test_short_token_refused_and_writes_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "short")
    svc = make_service(f"sqlite:///{tmp_path}/w.db", FakeClock(T0.timestamp()))
    with pytest.raises(InputError, match="at least 16 characters"):
        create_app(svc, svc.config)
    monkeypatch.delenv(TOKEN_ENV)
    svc = make_service(f"sqlite:///{tmp_path}/w2.db", FakeClock(T0.timestamp()), api={"writes_enabled": False})
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        assert client.post("/api/v1/events", json=_body(), headers=AUTH).status_code == 403
        assert client.get("/api/v1/events").status_code == 200
