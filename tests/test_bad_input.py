"""Invalid scenarios stop with a message naming the field, exit code 2 and no output."""

import pytest
from typer.testing import CliRunner

from gridflex.cli import app
from tests.conftest import SMALL_SCENARIO

runner = CliRunner()

CASES = {
    "unknown workload": (SMALL_SCENARIO.replace("pt_mpt_7b_fast", "gpt_99"), "jobs.0.workload", "allowed:"),
    "flex tier 7": (SMALL_SCENARIO.replace("flex_tier: 3", "flex_tier: 7"), "jobs.0.flex_tier", "less than or equal to 3"),
    "end before start": (
        SMALL_SCENARIO.replace('end: "2025-05-03T13:00:00Z"', 'end: "2025-05-03T11:00:00Z"'),
        "end",
        "must be after start",
    ),
    "negative gpus": (SMALL_SCENARIO.replace("gpus: 16", "gpus: -4"), "jobs.0.gpus", "greater than 0"),
    "target above baseline": (
        SMALL_SCENARIO.replace("target: {reduction: 0.2}", "target: {power_w: 900000}"),
        "events.0.target.power_w",
        "not below the baseline",
    ),
    "reduction over 1": (SMALL_SCENARIO.replace("reduction: 0.2", "reduction: 1.5"), "events.0.target.reduction", "less than 1"),
    "malformed yaml": ("name: [unclosed\njobs: {", "not valid YAML", ""),
    "unknown key": (SMALL_SCENARIO + "colour: blue\n", "colour", "Extra inputs are not permitted"),
    "naive time": (SMALL_SCENARIO.replace('"2025-05-03T12:00:00Z"', '"2025-05-03T12:00:00"'), "start", "timezone"),
}


@pytest.mark.parametrize("case", CASES)
def test_invalid_scenario_is_refused_clearly(tmp_path, case):
    text, field, detail = CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out_json, out_html = tmp_path / "o.json", tmp_path / "o.html"
    res = runner.invoke(app, ["simulate", str(path), "--json", str(out_json), "--report", str(out_html)])
    assert res.exit_code == 2, res.output
    assert field in res.output and detail in res.output
    assert not out_json.exists() and not out_html.exists()


def test_unknown_scenario_and_planner_name_the_choices(tmp_path):
    res = runner.invoke(app, ["simulate", "no-such-scenario"])
    assert res.exit_code == 2 and "phoenix-srp" in res.output
    res = runner.invoke(app, ["simulate", "--planner", "magic"])
    assert res.exit_code == 2 and "optimal" in res.output


def test_every_command_has_help():
    for args in (["--help"], ["simulate", "--help"], ["scenarios", "--help"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage" in res.output
