"""Deadlines and earliest starts through the REST API: PATCH /api/v1/jobs/{id} sets them on a
running or a queued job, validated (ISO time with an offset, errors naming the field), never
half-applied; the controller hands them to time shifting from the next tick."""

from datetime import datetime, timezone

import pytest

from gridflex.model.site import Job
from tests.service_support import TOKEN, api_env, run_ticks

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    with api_env(tmp_path, monkeypatch, T0.timestamp()) as e:
        client, svc, clock = e
        waiting = Job(id="batch-1", workload="pt_mpt_7b_fast", gpus=8, flex_tier=2, submit=T0, duration_s=3600.0)
        monkeypatch.setattr(svc.controller.driver, "queue", lambda: [waiting])
        run_ticks(svc, clock, 1)
        yield e


def test_a_queued_jobs_deadline_and_begin_are_set_and_reach_the_controller(env):
    client, svc, clock = env
    deadline, begin = "2026-05-04T06:00:00+01:00", "2026-05-03T18:30:00+00:00"
    r = client.patch("/api/v1/jobs/batch-1", json={"deadline": deadline, "begin": begin}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["queued"] and datetime.fromisoformat(body["deadline"]) == datetime.fromisoformat(deadline)
    run_ticks(svc, clock, 1)
    job = svc.controller.queued[0]  # what time shifting and the deferral see
    assert job.deadline == datetime.fromisoformat(deadline) and job.begin == datetime.fromisoformat(begin)
    # a running job: its row in GET /jobs shows it
    running = svc.fleet.ids[0]
    r = client.patch(f"/api/v1/jobs/{running}", json={"deadline": "2026-05-05T00:00:00Z"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["window_end_s"] > 0
    row = next(j for j in client.get("/api/v1/jobs").json() if j["id"] == running)
    assert datetime.fromisoformat(row["deadline"]) == datetime(2026, 5, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("body, loc", [
    ({"deadline": "2026-05-04T06:00:00"}, ["body", "deadline"]),  # no offset
    ({"deadline": "tomorrow"}, ["body", "deadline"]),
    ({"begin": "2026-05-04T06:00:00"}, ["body", "begin"]),
    ({"deadline": "2026-05-04T06:00:00Z", "flex_tier": 4}, ["body", "flex_tier"]),
    ({"deadline": "2026-05-04T06:00:00Z", "begin": "2026-05-04T07:00:00Z"}, ["body"]),  # deadline before begin
    ({}, ["body"]),
    ({"deadlne": "2026-05-04T06:00:00Z"}, ["body", "deadlne"]),
])
def test_malformed_changes_get_422_naming_the_field_and_change_nothing(env, body, loc):
    client, svc, _ = env
    r = client.patch("/api/v1/jobs/batch-1", json=body, headers=AUTH)
    assert r.status_code == 422
    assert loc in [e["loc"] for e in r.json()["detail"]]
    assert svc.controller.times == {}


def test_impossible_changes_get_a_clear_400_or_404_and_are_never_half_applied(env):
    client, svc, _ = env
    # a deadline before the job was submitted
    r = client.patch("/api/v1/jobs/batch-1", json={"deadline": "2026-05-03T15:00:00Z"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"].startswith("deadline: ")
    # a tier for a queued job with a valid deadline: neither is applied
    r = client.patch("/api/v1/jobs/batch-1", json={"flex_tier": 0, "deadline": "2026-05-04T06:00:00Z"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"].startswith("flex_tier: ")
    assert svc.controller.times == {} and svc.controller.tiers == {}
    # a running job's tier and deadline at once, the deadline impossible: the tier is not applied either
    running = svc.fleet.ids[0]
    r = client.patch(f"/api/v1/jobs/{running}", json={"flex_tier": 0, "deadline": "2000-01-01T00:00:00Z"},
                     headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"].startswith("deadline: ")
    assert svc.controller.times == {} and svc.controller.tiers == {}
    assert client.patch("/api/v1/jobs/nope", json={"deadline": "2026-05-04T06:00:00Z"}, headers=AUTH).status_code == 404


def test_a_running_jobs_load_floor_is_set_through_the_api_and_reaches_the_controller(env, caplog):
    """The fleet coordinator's PATCH: a running job's load floor (0 to 1) goes to the controller,
    whose next tick keeps the job at or above it; a queued job or a value out of range is refused.
    The same floor again (the coordinator sends it every tick) is neither stored again nor logged."""
    client, svc, clock = env
    running = svc.fleet.ids[0]
    for _ in range(3):
        r = client.patch(f"/api/v1/jobs/{running}", json={"load_floor": 0.8}, headers=AUTH)
        assert r.status_code == 200, r.text
    assert svc.controller.load_floors == {running: 0.8}
    assert sum("load_floor set to 0.8" in m for m in caplog.messages) == 1
    run_ticks(svc, clock, 1)
    assert client.patch(f"/api/v1/jobs/{running}", json={"load_floor": 1.5}, headers=AUTH).status_code == 422
    assert client.patch("/api/v1/jobs/batch-1", json={"load_floor": 0.5}, headers=AUTH).status_code == 400
    assert client.patch(f"/api/v1/jobs/{running}", json={"load_floor": 0}, headers=AUTH).status_code == 200
    assert svc.controller.load_floors == {}
