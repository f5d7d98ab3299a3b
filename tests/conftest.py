"""Shared fixtures; under CI the `slurm` tests must run, never be skipped."""

import pytest
from slurm_cluster import require_slurm, slurm_cluster  # noqa: F401  (session fixture)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("slurm") and require_slurm():
        report.outcome = "failed"
        report.longrepr = f"slurm test skipped under CI (not allowed): {report.longrepr}"
