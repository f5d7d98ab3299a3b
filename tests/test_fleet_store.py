"""The coordinator's state in the store: a coordinator restarted during an event keeps the
reference split from before it (SQLite, and PostgreSQL when GRIDFLEX_TEST_PG_URL is set)."""

from __future__ import annotations

import numpy as np
import pytest

from gridflex.drivers.router_twin import TwinRouter
from gridflex.fleet.latency import RttTable
from gridflex.fleet.loop import FleetCoordinator, SiteReport
from gridflex.fleet.scenario import load_fleet
from gridflex.store.db import Store
from tests.service_support import store_url

CFG = load_fleet("geo-fleet-august").fleet_config()  # pjm (Washington DC) and ercot (Dallas), four classes
RATES = {"chat-dc": 150.0, "code-dc": 50.0, "chat-dallas": 100.0, "code-dallas": 50.0}
CALM = {"pjm": SiteReport(True, 100e3), "ercot": SiteReport(True, 100e3)}
# during the event pjm's own controller holds it at its target, by slowing what traffic does not relieve
EVENT = {"pjm": SiteReport(True, 85e3, 85e3, ("peak",)), "ercot": SiteReport(True, 100e3)}


def router() -> TwinRouter:
    home = {"chat-dc": "pjm", "code-dc": "pjm", "chat-dallas": "ercot", "code-dallas": "ercot"}
    return TwinRouter({c: {s: int(s == h) for s in ("pjm", "ercot")} for c, h in home.items()})


def split(r: TwinRouter, backend: str = "chat-dc") -> float:
    return float(r.read(backend).shares[0])  # pjm's share


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_restarted_coordinator_keeps_the_reference_from_the_store(backend, tmp_path):
    rtt = RttTable.from_csv(CFG.rtt_file)
    with store_url(backend, tmp_path) as url:
        r = router()
        store = Store(url)
        store.migrate()
        first = FleetCoordinator(CFG, r, rtt, store)
        first.tick_with(CALM, RATES)
        for _ in range(3):  # the event: chat-dc moves out a step a tick
            first.tick_with(EVENT, RATES)
        moved = split(r)
        assert moved < 0.75
        store.close()

        again = Store(url)
        restarted = FleetCoordinator(CFG, r, rtt, again)  # the same router, still mid-shift
        assert np.allclose(restarted.reference["llama-3-8b"][0], first.reference["llama-3-8b"][0])
        line = restarted.tick_with(EVENT, RATES)
        assert line["models"]["llama-3-8b"]["ok"] and split(r) < moved  # goes on moving out
        again.close()

        forgetful = FleetCoordinator(CFG, router(), rtt)  # no store: what it first sees is its reference
        forgetful.router.set_weights("chat-dc", {"pjm": int(moved * 256), "ercot": 256 - int(moved * 256)})
        forgetful.tick_with(EVENT, RATES)
        # the site held at its target by slowing looks like no cut (and no headroom): the shift stalls halfway
        assert split(forgetful.router) == pytest.approx(moved)


def test_a_stored_reference_that_no_longer_fits_the_config_is_ignored(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.migrate()
    store.set_meta("fleet.reference", '{"llama-3-8b": {"share": [[1.0, 0.0]], "power_w": {"pjm": 1.0, "ercot": 1.0}}}')
    coordinator = FleetCoordinator(CFG, router(), RttTable.from_csv(CFG.rtt_file), store)
    assert coordinator.reference == {}  # one class stored, four configured: start afresh
    coordinator.tick_with(CALM, RATES)
    assert coordinator.reference["llama-3-8b"][0].shape == (4, 2)
    store.close()
