"""The examples and docs stay true."""

from pathlib import Path

import pytest
import yaml

from gridflex.fleet.scenario import is_fleet_scenario, load_fleet
from gridflex.sim.scenarios import builtin_scenarios, load_scenario

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_scenarios_load(path):
    if "jobs" in yaml.safe_load(path.read_text()):  # scenario files (site and fleet configs are tested elsewhere)
        load_scenario(str(path))


@pytest.mark.parametrize("name", builtin_scenarios())
def test_builtin_scenarios_load(name):
    if is_fleet_scenario(name):  # a fleet of site scenarios (geo-fleet)
        assert len(load_fleet(name).sites) >= 2
    else:
        load_scenario(name)


def test_scenario_doc_lists_every_builtin_workload(curves):
    doc = (ROOT / "docs" / "scenarios.md").read_text()
    assert all(f"`{w}`" in doc for w in curves)
