"""Honest health: while a tick is stuck on a driver (slurmctld down), the API answers at once from
the last state, says how old it is and that it is degraded, and a DELETE does not wait."""

import threading
import time
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from gridflex.errors import DriverError
from gridflex.service.app import create_app
from tests.service_support import TOKEN, FakeClock, make_service, run_ticks

T0 = datetime(2026, 5, 3, 16, 0, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class StuckDriver:
    """Wraps a driver; while `stuck` is set, every read blocks until it is released (or raises)."""

    def __init__(self, inner):
        self.inner, self.stuck, self.release, self.entered = inner, threading.Event(), threading.Event(), threading.Event()
        self.fail = False

    def read(self):
        if self.stuck.is_set():
            self.entered.set()
            assert self.release.wait(120)
            if self.fail:
                raise DriverError("slurmctld does not answer")
        return self.inner.read()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _answer_within(fn, timeout_s: float = 30.0):
    """fn() run in a thread: its result, or an assertion error if it is still waiting after timeout_s."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn()), daemon=True)
    t.start()
    t.join(timeout_s)
    assert "r" in out, f"the API waited on the stuck tick for more than {timeout_s} s"
    return out["r"]


def test_api_answers_from_the_last_state_while_a_tick_is_stuck(tmp_path):
    clock = FakeClock(T0.timestamp())
    svc = make_service(f"sqlite:///{tmp_path}/h.db", clock, control={"interval_s": 2.0, "stale_after_s": 10.0})
    stuck = StuckDriver(svc.controller.driver)
    svc.controller.driver = stuck
    with TestClient(create_app(svc, svc.config, run_loop=False)) as client:
        run_ticks(svc, clock, 2)
        body = {"id": "cut", "start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat(),
                "target": {"power_w": 70000}}
        assert client.post("/api/v1/events", json=body, headers=AUTH).status_code == 201
        fresh = client.get("/api/v1/status").json()
        assert fresh["degraded"] is False and fresh["age_s"] == 0 and fresh["degraded_reasons"] == []

        stuck.stuck.set()
        clock.t_s += 60
        ticking = threading.Thread(target=svc.tick, args=(clock.t_s,), daemon=True)
        ticking.start()
        assert stuck.entered.wait(30)  # the tick holds the controller, stuck in the driver
        t0 = time.monotonic()
        status = _answer_within(lambda: client.get("/api/v1/status").json())
        assert status["degraded"] is True and status["age_s"] >= 60 and status["site_power_w"] == fresh["site_power_w"]
        assert "60 s old (limit 10 s)" in status["degraded_reasons"][0]
        assert _answer_within(lambda: client.get("/api/v1/jobs").status_code) == 200
        r = _answer_within(lambda: client.delete("/api/v1/events/cut", headers=AUTH))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        later = body | {"id": "later", "start": (T0 + timedelta(hours=2)).isoformat(),
                        "end": (T0 + timedelta(hours=3)).isoformat()}
        assert _answer_within(lambda: client.post("/api/v1/events", json=later, headers=AUTH)).status_code == 201
        print(f"status, jobs, DELETE and POST answered in {time.monotonic() - t0:.2f} s while the tick was stuck")
        assert ticking.is_alive()  # it really was stuck all along

        stuck.fail = True  # slurmctld stays down: the tick fails, and the status says so
        stuck.release.set()
        ticking.join(60)
        failed = client.get("/api/v1/status").json()
        assert failed["driver_ok"] is False and "slurmctld does not answer" in " ".join(failed["degraded_reasons"])

        stuck.stuck.clear()  # back: the next tick lifts the cancelled event and the status is fresh
        clock.t_s += 2
        decision = svc.tick(clock.t_s)
        assert decision is not None and decision.active_events == ()  # "cut" lifted, "later" not yet due
        assert [r.event.id for r in svc.controller.timeline(clock.t_s).events] == ["later"]  # known, upcoming
        back = client.get("/api/v1/status").json()
        assert back["degraded"] is False and back["driver_ok"] is True and back["known_events"] == ["later"]
