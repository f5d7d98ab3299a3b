"""The field replay: the measured trace, the field scenario, the comparison and the report overlay."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from typer.testing import CliRunner

from gridflex.cli import app
from gridflex.errors import InputError
from gridflex.report.measured import builtin_measured, read_measured
from gridflex.sim.scenarios import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("fidelity_bench", ROOT / "bench" / "fidelity.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fidelity_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_bundled_trace_is_the_srp_event_in_utc():
    m = builtin_measured()
    assert len(m.t_s) == 400 and np.all(np.diff(m.t_s) == 60)
    first = datetime.fromtimestamp(m.t_s[0], ZoneInfo("America/Phoenix"))
    assert (first.date().isoformat(), first.hour, first.minute) == ("2025-05-03", 14, 40)
    assert 93e3 < m.power_w[:60].mean() < 95e3 and m.power_w.min() > 40e3


def test_read_measured_accepts_naive_utc_and_names_bad_lines(tmp_path):
    good = tmp_path / "field.csv"
    good.write_text("time,power\n2025-05-03T21:41:00,2000\n2025-05-03T21:40:00+00:00,1000\n")
    m = read_measured(good)
    assert list(m.power_w) == [1000, 2000] and m.t_s[1] - m.t_s[0] == 60
    bad = tmp_path / "bad.csv"
    bad.write_text("time,power\n2025-05-03T21:40:00Z,1000\nyesterday,5\n")
    with pytest.raises(InputError, match="line 3"):
        read_measured(bad)
    with pytest.raises(InputError, match="cannot read"):
        read_measured(tmp_path / "missing.csv")


def test_simulate_rejects_a_bad_measured_file_before_running(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("only,a header\n")
    res = CliRunner().invoke(app, ["simulate", "phoenix-srp-field", "--measured", str(bad)])
    assert res.exit_code != 0 and "fewer than two" in " ".join(res.output.split())


def test_field_scenario_has_the_field_timing_and_depth():
    sc = load_scenario("phoenix-srp-field").scenario
    ramp, hold = sc.events
    assert (ramp.start.strftime("%H:%M"), ramp.hold_start, hold.end.strftime("%H:%M")) == ("16:10", hold.start, "19:33")
    assert hold.ramp_s == 0 and ramp.target == hold.target and hold.target.reduction == pytest.approx(0.313)
    assert [j.gpus for j in sc.jobs] == [j.gpus for j in load_scenario("phoenix-srp").scenario.jobs]


def _replay_of_measurement(offset_w: float):
    """A fake run whose 1-s site power is the measured trace plus `offset_w`."""
    sc = load_scenario("phoenix-srp-field").scenario
    m = builtin_measured()
    steps = sc.start.timestamp() + np.arange(1, 400 * 60 + 1)
    power = np.repeat(m.power_w, 60) + offset_w
    return SimpleNamespace(scenario=sc, seed=0, planner="fake", step_times_s=steps, site_power_w=power,
                           performance=np.full(len(sc.jobs), 0.9))


def test_comparison_is_zero_on_the_measurement_and_sees_an_offset():
    bench = _bench()
    same = bench.compare([_replay_of_measurement(0.0)])
    assert same["rmse"] == pytest.approx(0.0, abs=1e-9) and same["hold_std_w"] == pytest.approx(same["measured_hold_std_w"])
    shifted = bench.compare([_replay_of_measurement(930.0)])
    assert shifted["rmse"] == pytest.approx(0.01, rel=0.01) and shifted["bias"] == pytest.approx(0.01, rel=0.01)
    ft = next(j for j in shifted["jobs"] if j["id"] == "ft-llama-8b-p3")
    assert ft["measured"] == pytest.approx(0.9396, abs=1e-3) and ft["error"] == pytest.approx(0.9 - 0.9396, abs=1e-3)


def test_report_overlays_the_measured_trace(monkeypatch):
    from gridflex.report import html

    drawn = []
    real_plot = html.plt.Axes.plot

    def spy(self, *args, **kw):
        drawn.append(kw.get("label"))
        return real_plot(self, *args, **kw)

    monkeypatch.setattr(html.plt.Axes, "plot", spy)
    run = _replay_of_measurement(0.0)
    run.timeline = SimpleNamespace(ceiling_at=lambda t: np.full(len(t), np.inf), events=[])
    html.power_plot([run], builtin_measured())
    assert "measured (srp_measured_power)" in drawn
