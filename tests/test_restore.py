"""`gridflex restore --config` after a crash, and `gridflex serve` refusing an unreachable store
with one line and exit code 2."""

import json
import subprocess
import sys

import yaml

from gridflex.drivers.factory import make_driver
from gridflex.model.site import Site
from gridflex.sim.curve_csv import builtin_curves
from tests.service_support import TOKEN
from tests.test_process_driver import act, group, settled  # noqa: F401  (fixture)

GRIDFLEX = [sys.executable, "-m", "gridflex.cli"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*GRIDFLEX, *args], capture_output=True, text=True, timeout=120, env=env)


def test_restore_continues_what_a_killed_run_left_paused(group, tmp_path):  # noqa: F811
    settings = {"jobs": [{"id": "train", "pgid": group, "workload": "pt_mpt_7b_fast", "gpus": 2, "flex_tier": 2,
                          "actions": ["pause"]}]}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"driver": {"kind": "process", "settings": settings, "state_dir": "state"}}))
    driver = make_driver({"kind": "process", **settings}, Site(), builtin_curves(), tmp_path / "state")
    driver.discover()
    driver.apply(act(0.0))  # then gridflex is killed: nothing restores the group
    del driver
    assert settled(group, stopped=True) == {"T"}
    ledger = tmp_path / "state" / "process-ledger.json"
    assert json.loads(ledger.read_text())

    out = _run("restore", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "T" not in settled(group, stopped=False)
    assert json.loads(ledger.read_text()) == {}
    assert "restored every change recorded under" in out.stdout


def test_restore_without_a_state_dir_says_what_to_set(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"driver": {"kind": "process", "settings": {"jobs": []}}}))
    out = _run("restore", "--config", str(cfg))
    assert out.returncode == 2 and out.stderr.startswith("error: driver.state_dir: not set")


def test_unreachable_postgresql_is_one_line_and_exit_code_2(tmp_path):
    import os

    from tests.service_support import free_port

    cfg = tmp_path / "site.yaml"
    url = f"postgresql+psycopg://gf:pw-not-shown@127.0.0.1:{free_port()}/gridflex"
    cfg.write_text(yaml.safe_dump({"store": {"url": url}}))
    out = _run("serve", "--config", str(cfg), env={**os.environ, "GRIDFLEX_API_TOKEN": TOKEN})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: store.url: cannot use the store at"), out.stderr
    assert "pw-not-shown" not in out.stderr


def test_the_systemd_unit_restores_after_every_stop():
    from pathlib import Path

    unit = (Path(__file__).resolve().parents[1] / "examples" / "gridflex.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    start, stop = lines["ExecStart"].split(), lines["ExecStopPost"].split()
    assert start[1:3] == ["serve", "--config"] and stop[1:3] == ["restore", "--config"]
    assert start[0] == stop[0] and start[3] == stop[3]  # same gridflex, same config
