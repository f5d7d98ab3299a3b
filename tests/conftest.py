"""Shared fixtures: small scenarios built in code so that tests stay fast."""

from __future__ import annotations

import logging
from pathlib import Path

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


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`make test`: `-n 2 --dist loadgroup`) the Slurm tests share one worker,
    hence one cluster (a session fixture), while the other worker runs the rest beside them; they
    go first (they mostly wait on the cluster, minutes of it), so that the rest fills in around them."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)  # stable: files keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Slurm tests may not be skipped under CI; what each test printed (pytest's captured stdout and
    stderr; its log records are grepped by `_token_never_logged`) must be free of the API token."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("slurm") and require_slurm():
        report.outcome = "failed"
        report.longrepr = f"slurm test skipped under CI (not allowed): {report.longrepr}"
    elif report.passed and _token() in "".join(t for name, t in report.sections
                                                if name.endswith(f" {call.when}") and "Captured log" not in name):
        report.outcome = "failed"
        report.longrepr = f"the API token appears in the captured output of {item.nodeid} ({call.when})"


# --- the API token never reaches a log, in the whole suite: every test's log records (at DEBUG) and
# captured output, every log file a test wrote, and at the end every log file under the session's
# temporary directory (services, Slurm daemons, jobs) are grepped for it ---
LOG_FILES = ("*.log", "*.out", "*.err")


def _token() -> str:
    from tests.service_support import TOKEN

    return TOKEN


class _Grep(logging.Handler):
    """Keeps the log records that contain `needle` (message, arguments and traceback)."""

    def __init__(self, needle: str):
        super().__init__(logging.DEBUG)
        self.needle, self.leaks = needle, []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):  # the tests' own HTTP client, not the service
            return
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if self.needle in text:
            self.leaks.append(f"{record.name}: {text}")


def _leaking_files(root: Path, needle: str) -> list[str]:
    files = {p for pattern in LOG_FILES for p in root.rglob(pattern)} | set(root.rglob("log/*"))
    return sorted(str(p) for p in files if p.is_file() and needle in p.read_text(errors="replace"))


@pytest.fixture(autouse=True)
def _token_never_logged(request):
    """Every log record (at DEBUG) and every log file the test wrote is free of the token."""
    root, grep = logging.getLogger(), _Grep(_token())
    level = root.level
    root.addHandler(grep)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(grep)
        root.setLevel(level)
    tmp = request.node.funcargs.get("tmp_path")
    leaks = grep.leaks + (_leaking_files(tmp, grep.needle) if tmp else [])
    if leaks:
        pytest.fail(f"the API token appears in the logs: {_redacted(leaks[:3])}", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _token_never_in_the_session_logs(tmp_path_factory):
    """At the end of the session: no log file under its temporary directory holds the token."""
    yield
    leaks = _leaking_files(tmp_path_factory.getbasetemp(), _token())
    if leaks:
        pytest.fail(f"the API token appears in these log files: {leaks[:5]}", pytrace=False)


def _redacted(lines: list[str]) -> list[str]:
    """The leaking lines with the token blanked (a failure report must not spread it further)."""
    return [line.replace(_token(), "<the token>") for line in lines]
