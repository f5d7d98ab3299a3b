"""Shared fixtures: small scenarios built in code so that tests stay fast."""

from __future__ import annotations

import logging

import pytest

from gridflex.sim.curve_csv import builtin_curves
from gridflex.sim.scenarios import LoadedScenario, parse_scenario

SMALL_SCENARIO = """
name: small
description: two jobs, one 30 % event
start: "2025-05-03T12:00:00Z"
end: "2025-05-03T13:00:00Z"
jobs:
  - {id: train, workload: pt_mpt_7b_fast, gpus: 16, flex_tier: 3}
  - {id: serve, workload: infer_llama_8b, gpus: 8, flex_tier: 0}
  - {id: tune, workload: ft_llama_8b_p3, gpus: 8, flex_tier: 2}
events:
  - id: cut
    start: "2025-05-03T12:10:00Z"
    end: "2025-05-03T12:40:00Z"
    ramp_s: 120
    target: {reduction: 0.2}
control: {baseline_window_s: 600, snapback_guard_s: 600}
"""


@pytest.fixture(scope="session")
def curves():
    return builtin_curves()


@pytest.fixture
def small() -> LoadedScenario:
    return parse_scenario(SMALL_SCENARIO, "small", base_dir=None)


# --- real Slurm (tests/slurm_cluster.py): under CI the `slurm` tests must run, never be skipped ---
from tests.slurm_cluster import require_slurm, slurm_cluster  # noqa: F401  (session fixture)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("slurm") and require_slurm():
        report.outcome = "failed"
        report.longrepr = f"slurm test skipped under CI (not allowed): {report.longrepr}"


# --- the API token never reaches a log: every service test's records and its served logs are grepped ---
SERVICE_TEST_MODULES = ("test_service", "test_openadr", "test_dashboard", "test_restore")


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("httpx", "httpcore")):  # the tests' own HTTP client, not the service
            self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def _token_never_logged(request):
    """In the service tests: every log record (at DEBUG) and every *.log the test wrote is free of the token."""
    if not request.module.__name__.rsplit(".", 1)[-1].startswith(SERVICE_TEST_MODULES):
        yield
        return
    from tests.service_support import TOKEN

    root, keep = logging.getLogger(), _Keep()
    level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
    tmp = request.node.funcargs.get("tmp_path")
    files = {str(p): p.read_text(errors="replace") for p in tmp.rglob("*.log")} if tmp else {}
    leaks = [line for line in keep.lines if TOKEN in line] + [name for name, text in files.items() if TOKEN in text]
    assert not leaks, f"the API token appears in the logs: {leaks[:3]}"
