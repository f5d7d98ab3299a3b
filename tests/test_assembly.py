"""One code path: a simulated site and a live service on the twin make the same decisions."""

import numpy as np

from gridflex.assembly import control_ticks, simulated
from gridflex.sim.scenarios import load_scenario
from tests.conftest import SMALL_SCENARIO
from tests.service_support import FakeClock, make_service

QUIET_TWIN = {"curve_spread": 0.0, "fluctuation": 0.0, "checkpoints": False, "recovery": 0.0}


def test_a_simulated_and_a_live_site_decide_alike(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SCENARIO + f"twin: {QUIET_TWIN}\n".replace("'", ""))
    loaded = load_scenario(str(path))
    sc = loaded.scenario
    sim = simulated(loaded)
    ticks = control_ticks(loaded)
    clock = FakeClock(float(ticks[0]))
    live = make_service(
        f"sqlite:///{tmp_path}/gridflex.db", clock, scenario=str(path),
        driver={"kind": "twin", "twin": QUIET_TWIN}, budget_window_s=sc.duration_s,
    )
    for ev in sc.events:
        live.add_event(ev)
    held = 0
    for t in ticks[: len(ticks) // 2]:
        clock.t_s = float(t)
        a, b = sim.tick(float(t)), live.tick(float(t))
        assert a.job_ids == b.job_ids and a.active_events == b.active_events, t
        np.testing.assert_allclose(a.plan.cap_w, b.plan.cap_w, rtol=1e-9, err_msg=f"t={t}")
        np.testing.assert_allclose(a.plan.active, b.plan.active, rtol=1e-9, err_msg=f"t={t}")
        held += bool(a.active_events) and bool((a.plan.cap_w < live.fleet.max_cap_w).any() or (a.plan.active < 1).any())
    assert held > 100  # the event was under way, and both slowed the same jobs alike
    assert sim.controller.baselines_w == live.controller.baselines_w
    live.stop()
