"""`gridflex compare`: one table and JSON entry per planner, ratios to the offline bound."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gridflex.cli import app
from tests.conftest import SMALL_SCENARIO

runner = CliRunner()


def test_compare_writes_one_entry_per_planner_with_simulate_keys(tmp_path):
    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL_SCENARIO)
    out_json, out_html = tmp_path / "cmp.json", tmp_path / "cmp.html"
    result = runner.invoke(app, ["compare", str(scenario), "--planners", "optimal,pause-by-tier",
                                 "--json", str(out_json), "--report", str(out_html)])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert data["scenario"] == "small"
    assert [p["planner"] for p in data["planners"]] == ["optimal", "pause-by-tier"]
    optimal, by_tier = data["planners"]
    for entry in data["planners"]:
        for key in ("compliance", "sla_violations", "weighted_performance", "oracle_ratio", "over_delivery",
                    "response_s", "energy_kwh", "events", "jobs"):
            assert key in entry
        assert 0 < entry["oracle_ratio"] <= 1.001
        assert entry["oracle_ratio"] * entry["oracle_bound"] == pytest.approx(entry["weighted_performance"], abs=1e-5)
    assert optimal["weighted_performance"] >= by_tier["weighted_performance"]
    assert "<img" in out_html.read_text() and "pause-by-tier" in out_html.read_text()


def test_compare_rejects_an_unknown_planner():
    result = runner.invoke(app, ["compare", "--planners", "optimal,nope"])
    assert result.exit_code == 2
    assert "--planners" in result.output and "nope" in result.output


def test_compare_refuses_a_fleet_scenario_and_says_what_runs_it():
    from typer.testing import CliRunner

    from gridflex.cli import app

    out = CliRunner().invoke(app, ["compare", "geo-fleet"])
    assert out.exit_code == 2 and "gridflex simulate geo-fleet" in out.output
