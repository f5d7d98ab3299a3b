"""Reports and summaries of sites with many jobs aggregate: by tier and workload, the jobs furthest
behind, the distribution of performance; never a line, a legend entry or a record per job."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gridflex.cli import app
from gridflex.report.html import run_report
from gridflex.report.summary import JOB_RECORDS_LIMIT, kept_jobs, summarize
from gridflex.sim.run import run_scenario
from gridflex.sim.scenarios import parse_scenario

JOBS = JOB_RECORDS_LIMIT + 10
WORKLOADS = ("pt_mpt_7b_fast", "infer_llama_8b", "ft_llama_8b_p3")


def _many_jobs_yaml(jobs: int = JOBS) -> str:
    return yaml.safe_dump({
        "name": "many",
        "description": f"{jobs} jobs, one 25 % cut",
        "start": "2025-05-03T12:00:00Z",
        "end": "2025-05-03T12:12:00Z",
        "jobs": [{"id": f"job-{i:03d}", "workload": WORKLOADS[i % 3], "gpus": 4 + 4 * (i % 2), "flex_tier": i % 4}
                 for i in range(jobs)],
        "events": [{"id": "cut", "start": "2025-05-03T12:04:00Z", "end": "2025-05-03T12:10:00Z", "ramp_s": 60,
                    "target": {"reduction": 0.25}}],
        "control": {"baseline_window_s": 180, "snapback_guard_s": 60},
    })


@pytest.fixture(scope="module")
def many():
    result = run_scenario(parse_scenario(_many_jobs_yaml(), "many", None))
    return result, summarize(result), summarize(result, job_records=None)


def test_summary_keeps_the_jobs_furthest_behind_and_aggregates(many):
    _, summary, full = many
    assert summary["jobs_total"] == JOBS and len(summary["jobs"]) == JOB_RECORDS_LIMIT
    assert len(full["jobs"]) == JOBS
    kept = {j["id"] for j in summary["jobs"]}
    dropped = [j for j in full["jobs"] if j["id"] not in kept]
    assert max(j["performance"] for j in summary["jobs"]) <= min(j["performance"] for j in dropped)
    for key, groups in (("flex_tier", summary["tiers"]), ("workload", summary["workloads"])):
        assert sum(g["jobs"] for g in groups) == JOBS
        for g in groups:
            members = [j for j in full["jobs"] if j[key] == g[key]]
            gpus = np.array([j["gpus"] for j in members])
            perf = np.array([j["performance"] for j in members])
            assert g["gpus"] == gpus.sum() and g["jobs"] == len(members)
            assert g["performance"] == pytest.approx((gpus * perf).sum() / gpus.sum(), abs=1e-6)
            assert g["lowest_performance"] == pytest.approx(perf.min(), abs=1e-6)
            assert g["energy_kwh"] == pytest.approx(sum(j["energy_kwh"] for j in members), abs=1e-5)
    slowed = next(g for g in summary["tiers"] if g["flex_tier"] == 3)
    assert slowed["performance"] < 1.0  # the cut was taken somewhere: the aggregate is not 1 by construction


def test_kept_jobs_put_sla_violations_first_then_lowest_performance():
    performance = np.array([0.95, 0.5, 0.85, 1.0, 0.7])
    within = np.array([True, True, False, True, True])
    assert list(kept_jobs(performance, within, 3)) == [2, 1, 4]
    assert list(kept_jobs(performance, within, 5)) == [0, 1, 2, 3, 4]  # all: in order
    assert list(kept_jobs(performance, within, None)) == [0, 1, 2, 3, 4]


def test_html_report_of_many_jobs_shows_tiers_and_distribution(many):
    result, summary, _ = many
    text = run_report(result, summary)
    assert "By flex tier" in text and "By workload" in text and "furthest behind" in text
    assert text.count("data:image/png;base64,") == 3  # site power, performance histogram, per-tier series
    kept = {j["id"] for j in summary["jobs"]}
    assert all(f"job-{i:03d}" in kept or f"job-{i:03d}" not in text for i in range(JOBS))


def test_simulate_prints_and_writes_aggregates(tmp_path):
    scenario = tmp_path / "many.yaml"
    scenario.write_text(_many_jobs_yaml())
    out = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "jobs by flex_tier" in res.output and "jobs by workload" in res.output
    assert f"the {JOB_RECORDS_LIMIT} of {JOBS} jobs furthest behind" in res.output
    assert len(json.loads(out.read_text())["jobs"]) == JOB_RECORDS_LIMIT
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--json", str(out), "--all-jobs"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["jobs"]) == JOBS
    assert res.output.count("job-0") <= JOB_RECORDS_LIMIT  # the printed table stays short


def test_simulate_streams_a_trace_of_every_tick(tmp_path):
    scenario = tmp_path / "many.yaml"
    scenario.write_text(_many_jobs_yaml(8))
    trace, jobs = tmp_path / "t.csv", tmp_path / "jobs.parquet"
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--trace", str(trace), "--trace-jobs", str(jobs)])
    assert res.exit_code == 0, res.output
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    site = pa_csv.read_csv(trace).to_pydict()
    ticks = 12 * 60 // 2  # 12 minutes, a control tick every 2 s
    assert len(site["time_utc"]) == ticks
    assert np.isinf(site["target_w"][0]) and np.isfinite(site["target_w"]).sum() > 0  # the cut shows
    assert pq.read_table(jobs).num_rows == 8 * ticks
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--trace", str(tmp_path / "t.json")])
    assert res.exit_code == 2 and "--trace" in res.output and ".parquet" in res.output


def test_report_modules_import_without_a_cycle():
    code = ("import sys, gridflex.report.miners_html;"
            " assert 'gridflex.report.html' not in sys.modules, 'miners_html imports html'")
    subprocess.run([sys.executable, "-c", code], check=True)
