"""The suite's token grep (tests/conftest.py) can fail: in a pytest run of its own, a test that logs
the token, writes it into a log file, prints it, or leaves it in a daemon's log anywhere under the
session's temporary directory is reported; a clean test is not."""

from __future__ import annotations

import shutil
from pathlib import Path

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]

INNER = '''
import logging

from tests.service_support import TOKEN


def test_logs_it():
    logging.getLogger("gridflex.service.app").debug("login with %s", TOKEN)


def test_writes_it_into_a_log_file(tmp_path):
    (tmp_path / "serve.log").write_text(f"GET /?token={TOKEN}")


def test_prints_it():
    print("token:", TOKEN)


def test_a_daemon_logs_it(tmp_path_factory):
    log = tmp_path_factory.mktemp("daemon") / "log"
    log.mkdir()
    (log / "slurmctld.log").write_text(TOKEN)


def test_clean(tmp_path):
    logging.getLogger("gridflex").info("nothing secret")
    (tmp_path / "serve.log").write_text("GET /?token=*** HTTP/1.1 200")
'''


def test_the_token_grep_reports_every_leak_and_only_those(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_inner=INNER)
    try:
        result = pytester.runpytest_subprocess("-p", "tests.conftest", "-p", "no:cacheprovider", "-rfE",
                                               "--tb=line", "--show-capture=no", "-p", "no:randomly")
        reported = {(line.split(" ")[0], line.split("::")[-1].split(" ")[0])
                    for line in result.outlines if line.startswith(("FAILED", "ERROR"))}
        assert reported == {("ERROR", "test_logs_it"), ("ERROR", "test_writes_it_into_a_log_file"),
                            ("FAILED", "test_prints_it"),
                            ("ERROR", "test_clean")}, result.outlines  # the session's check, at the end
        text = "\n".join(result.outlines)
        assert "the API token appears in these log files" in text and "slurmctld.log" in text
        from tests.service_support import TOKEN

        assert TOKEN not in text  # the reports name the leak without spreading the token
    finally:
        shutil.rmtree(pytester.path, ignore_errors=True)  # its leaks are not the outer session's
