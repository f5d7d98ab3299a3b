"""The built-in london-dispatch scenario: reproducible from its generator, and shaped like the
London field demonstration's dispatch series."""

from __future__ import annotations

from collections import defaultdict
from importlib import resources

import numpy as np
import pytest

from gridflex.model.scenario import ControlSettings
from gridflex.plan.targets import ResolvedEvent, TargetTimeline
from gridflex.sim.london import NAME, render
from gridflex.sim.scenarios import load_scenario


@pytest.fixture(scope="module")
def london():
    return load_scenario(NAME)


def test_the_files_are_what_the_generator_writes():
    folder = resources.files("gridflex.data").joinpath("scenarios")
    scenario, curves = render()
    assert folder.joinpath(f"{NAME}.yaml").read_text() == scenario
    assert folder.joinpath(f"{NAME}-curves.csv").read_text() == curves


def test_dispatch_series_has_the_london_shape(london):
    sc = london.scenario
    assert sc.duration_s == 5 * 86400
    dispatches = defaultdict(list)
    for ev in sc.events:
        dispatches[ev.id.split("-s")[0]].append(ev)
    assert len(dispatches) == 22
    assert len(sc.events) >= 200
    assert all(0.10 <= ev.target.reduction <= 0.40 for ev in sc.events)
    kinds = {d.split("-", 1)[1] for d in dispatches}
    assert kinds == {"day-ahead", "hour-ahead", "real-time", "no-notice"}
    hours = [(evs[-1].end - evs[0].start).total_seconds() / 3600 for evs in dispatches.values()]
    assert sum(2 <= h <= 10.1 for h in hours) >= 5 and max(hours) <= 10.1
    for d, evs in dispatches.items():  # a no-notice dispatch is known only when it starts
        if d.endswith("no-notice"):
            assert evs[0].notice_s == 0


def test_cluster_is_busy_and_about_130_kw(london):
    sc, curves = london.scenario, london.curves
    t = np.arange(sc.start.timestamp(), sc.end.timestamp(), 600.0)
    busy = sum(((t >= sc.job_window(j)[0].timestamp()) & (t < sc.job_window(j)[1].timestamp())) * j.gpus
               for j in sc.jobs)
    assert np.all(busy == 96)
    full_it_w = sum(j.gpus * curves[j.workload].full_power_w for j in sc.jobs if j.start == sc.start)
    assert sc.site.site_power_w(full_it_w) == pytest.approx(130e3, rel=0.02)


def test_targets_never_spring_back_to_baseline_inside_a_dispatch(london):
    sc = london.scenario
    timeline = TargetTimeline.build([ResolvedEvent(ev, ev.baseline_w) for ev in sc.events], None, ControlSettings())
    dispatches = defaultdict(list)
    for ev in sc.events:
        dispatches[ev.id.split("-s")[0]].append(ev)
    for evs in dispatches.values():
        t = np.arange(evs[0].hold_start.timestamp(), evs[-1].hold_end.timestamp(), 5.0)
        assert np.all(timeline.ceiling_at(t) <= evs[0].baseline_w * 0.9 + 1e-6)
