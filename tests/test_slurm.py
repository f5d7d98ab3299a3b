"""The Slurm driver against a real slurmctld + slurmd (see slurm_cluster.py)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridflex.control.controller import Controller
from gridflex.drivers.base import JobActions
from gridflex.drivers.factory import make_driver as make_gridflex_driver
from gridflex.drivers.slurm import SlurmDriver, SlurmRules, SlurmSettings, SlurmUnreachable
from gridflex.errors import DriverError
from gridflex.model.events import GridEvent, Target
from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Site
from gridflex.plan.registry import make_planner
from gridflex.sim.curve_csv import builtin_curves
from tests.fake_nvml import FakeNvml

pytestmark = pytest.mark.slurm
WORKER = Path(__file__).parent / "fixtures" / "worker.py"
RULES = SlurmRules(flex_by_partition={"flex": 3}, workload_by_partition={"flex": "infer_llama_8b"})


@pytest.fixture
def cluster(slurm_cluster):
    yield slurm_cluster
    slurm_cluster.cancel_all()


def make_driver(tmp_path: Path, **kw) -> SlurmDriver:
    settings = SlurmSettings(rules=RULES, state_file=tmp_path / "slurm-ledger.json", **kw)
    return SlurmDriver(Site(pue=1.2), builtin_curves(), settings)


def start_jobs(cluster, tmp_path: Path, **specs: dict) -> dict[str, tuple[str, Path]]:
    """Submit jobs (name -> sbatch options) and wait until all run and have logged their start."""
    jobs = {}
    for name, kw in specs.items():
        out = tmp_path / f"{name}.log"
        jobs[name] = (cluster.submit(WORKER, str(out), **kw), out)
    deadline = time.monotonic() + 120
    for job_id, out in jobs.values():
        cluster.wait_state(job_id, ("RUNNING",))
        while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
    return jobs


def proc_states(cluster, job_id: str) -> set[str]:
    return {cluster.proc_state(p) for p in cluster.pids(job_id)}


def wait_proc_states(cluster, job_id: str, want: set[str], timeout_s: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while (got := proc_states(cluster, job_id)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def by_id(jobs):
    return {j.id: j for j in jobs}


def test_discovers_running_jobs_with_tiers_gpus_and_curves(cluster, tmp_path):
    jobs = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2,workload=ft_llama_8b_p3", gpus=2),
                      b=dict(comment="gridflex:flex=0"), c=dict(partition="flex"), d={})
    (flex2, _), (flex0, _), (by_part, _), (plain, _) = jobs.values()
    jobs = by_id(make_driver(tmp_path).discover())
    assert set(jobs) == {flex2, flex0, by_part, plain}
    assert (jobs[flex2].flex_tier, jobs[flex2].gpus, jobs[flex2].workload) == (2, 2, "ft_llama_8b_p3")
    assert jobs[flex0].flex_tier == 0 and not jobs[flex0].actions
    assert (jobs[by_part].flex_tier, jobs[by_part].workload) == (3, "infer_llama_8b")
    assert (jobs[plain].flex_tier, jobs[plain].gpus) == (0, 1)  # default: never touched
    assert jobs[flex2].start is not None
    gpus = make_driver(tmp_path, node_name="localhost")
    gpus.discover()
    assert gpus.gpu_indices() == {flex2: [0, 1]}  # the GPUs Slurm allocated, for NVML


def test_jobs_keep_their_order_when_one_is_suspended(cluster, tmp_path):
    """squeue lists jobs by state; the driver lists them by id, so a suspend does not reorder them."""
    jobs = start_jobs(cluster, tmp_path, **{f"j{i}": dict(comment="gridflex:flex=2") for i in range(3)})
    driver = make_driver(tmp_path)
    ids = tuple(j.id for j in driver.discover())
    assert sorted(ids, key=int) == [job_id for job_id, _ in jobs.values()] == list(ids)
    driver.apply(JobActions(ids, np.full(3, 400.0), np.array([0.0, 1.0, 1.0])))
    assert cluster.state(ids[0]) == "SUSPENDED"
    assert tuple(j.id for j in driver.discover()) == ids


def cut_halfway(svc, minutes: float = 5) -> None:
    """Tick the service, dispatch an event now that asks for the site halfway between its full and
    its least power, and tick again (the event acted on)."""
    svc.tick(time.time())
    full_w, least_w = svc._power_range_w()
    now = datetime.now(UTC)
    svc.add_event(GridEvent(id="cut", start=now, end=now + timedelta(minutes=minutes),
                            target=Target(power_w=(full_w + least_w) / 2)))
    svc.tick(time.time())


def controller_for(driver, settings: ControlSettings) -> Controller:
    """The controller on a Slurm driver, each job's flex budget over the hour around now."""
    now = time.time()
    return Controller(driver.site, settings, driver, make_planner("optimal"), driver.curves,
                      lambda job, seen_s, t_s: (now - 60, now + 3600), now)


def test_event_suspends_flexible_jobs_and_resumes_them_after(cluster, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gridflex.drivers.slurm")
    jobs = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2", gpus=2), c=dict(partition="flex"),
                      b=dict(comment="gridflex:flex=0"))
    (flex2, _), (flex3, _), (flex0, _) = jobs.values()
    driver = make_driver(tmp_path)
    ctl = controller_for(driver, ControlSettings(interval_s=1.0, snapback_guard_s=0.0))
    ctl.sync_jobs(time.time())
    jobs = ctl.jobs
    before = driver.read()
    assert before.estimated and before.site_power_w > 0
    start = datetime.now(UTC)
    ctl.add_event(GridEvent(id="ev", start=start, end=start + timedelta(seconds=4),
                            target=Target(power_w=0.5 * before.site_power_w)))
    t0 = time.monotonic()
    d = ctl.step(time.time())
    assert d.active_events == ("ev",)
    assert cluster.state(flex2) == "SUSPENDED" and cluster.state(flex3) == "SUSPENDED"
    assert wait_proc_states(cluster, flex2, {"T"}) == {"T"}  # the processes really stop
    assert wait_proc_states(cluster, flex3, {"T"}) == {"T"}
    print(f"control step to every process stopped: {time.monotonic() - t0:.3f} s")
    assert cluster.state(flex0) == "RUNNING" and "T" not in proc_states(cluster, flex0)
    during = driver.read()
    assert during.site_power_w < before.site_power_w and list(during.active) == [
        0.0 if j.flex_tier else 1.0 for j in jobs]
    time.sleep(max(0.0, start.timestamp() + 4.2 - time.time()))
    ctl.step(time.time())
    assert cluster.state(flex2) == "RUNNING" and cluster.state(flex3) == "RUNNING"
    assert wait_proc_states(cluster, flex2, {"S"}) == {"S"}
    assert "suspend" in driver.latency_summary() and max(driver.latency_s["suspend"]) < 5.0
    print("slurm actuation latency:", driver.latency_summary())
    for verb in ("suspend", "resume"):  # every actuation is logged, one line each, with its reason
        assert [r.getMessage() for r in caplog.records].count(f"slurm: {verb} job {flex2} (plan)") == 1


def test_flex0_job_is_never_touched_and_bad_actions_change_nothing(cluster, tmp_path):
    (flex2, _), (flex0, _) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2"),
                                        b=dict(comment="gridflex:flex=0")).values()
    driver = make_driver(tmp_path)
    ids = tuple(j.id for j in driver.discover())
    top = np.full(len(ids), 400.0)
    pause_all = JobActions(ids, top, np.zeros(len(ids)))
    with pytest.raises(DriverError, match=f"job '{flex0}' \\(flex 0\\) does not allow pause"):
        driver.apply(pause_all)
    with pytest.raises(DriverError, match="cap_w 250.0 needs a GPU power cap"):
        driver.apply(JobActions(ids, np.full(len(ids), 250.0), np.ones(len(ids))))
    with pytest.raises(DriverError, match="unknown Slurm job"):
        driver.apply(JobActions(("999999",), top[:1], np.zeros(1)))
    assert cluster.state(flex2) == "RUNNING" and cluster.state(flex0) == "RUNNING"
    assert len(driver.ledger) == 0


def test_checkpoint_pause_signals_then_requeues_held_and_restarts(cluster, tmp_path):
    ((job, out),) = start_jobs(cluster, tmp_path, ck=dict(comment="gridflex:flex=3,pause=checkpoint")).values()
    driver = make_driver(tmp_path, checkpoint_grace_s=8.0)  # long enough to look inside it on a busy machine
    (found,) = driver.discover()
    assert found.pause_mode.value == "checkpoint"
    driver.apply(JobActions((job,), np.array([400.0]), np.zeros(1)))
    deadline = time.monotonic() + 60
    while "checkpoint" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "checkpoint" in out.read_text()  # the signal reached the job's handler
    assert cluster.state(job) == "RUNNING"  # still running during the grace time
    deadline = time.monotonic() + 60
    while driver.read().active[0] != 0.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.read().active[0] == 0.0  # grace over: requeued and held
    assert cluster.state(job) == "PENDING"
    assert "held" in cluster.run("squeue", "--noheader", "--jobs", job, "--format=%r").lower()
    driver.apply(JobActions((job,), np.array([400.0]), np.ones(1)))
    cluster.wait_state(job, ("RUNNING",), timeout_s=60)
    deadline = time.monotonic() + 60
    while out.read_text().count("start") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.read_text().count("start") == 2  # restarted (from its checkpoint)
    assert len(driver.ledger) == 0


def test_resuming_within_the_grace_time_cancels_the_requeue(cluster, tmp_path):
    ((job, out),) = start_jobs(cluster, tmp_path, ck=dict(comment="gridflex:flex=3,pause=checkpoint")).values()
    driver = make_driver(tmp_path, checkpoint_grace_s=30.0)
    driver.discover()
    driver.apply(JobActions((job,), np.array([400.0]), np.zeros(1)))
    driver.apply(JobActions((job,), np.array([400.0]), np.ones(1)))
    assert len(driver.ledger) == 0 and driver.read().active[0] == 1.0 and cluster.state(job) == "RUNNING"


def test_a_checkpoint_job_that_cannot_be_requeued_keeps_running(cluster, tmp_path):
    ((job, _),) = start_jobs(cluster, tmp_path, ck=dict(comment="gridflex:flex=3,pause=checkpoint",
                                                       requeue=False)).values()
    driver = make_driver(tmp_path, checkpoint_grace_s=0.5)
    driver.discover()
    driver.apply(JobActions((job,), np.array([400.0]), np.zeros(1)))
    time.sleep(0.6)
    assert driver.read().active[0] == 1.0 and cluster.state(job) == "RUNNING"
    assert any("checkpoint-stop failed" in w for w in driver.warnings) and len(driver.ledger) == 0


def test_pending_flexible_jobs_are_held_during_an_event(cluster, tmp_path):
    ((running, _),) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2", gpus=4)).values()
    waiting = cluster.submit(WORKER, str(tmp_path / "w.log"), comment="gridflex:flex=1", gpus=4)
    firm = cluster.submit(WORKER, str(tmp_path / "f.log"), comment="gridflex:flex=0", gpus=4)
    driver = make_driver(tmp_path)
    ids = tuple(j.id for j in driver.discover())
    assert ids == (running,)
    assert [(j.id, j.flex_tier) for j in driver.queue()] == [(waiting, 1), (firm, 0)]
    driver.apply(JobActions(ids, np.array([400.0]), np.zeros(1), frozenset({waiting, firm})))
    reasons = {e.job_id: e.reason for e in driver.cli.queue("--states=PENDING")}
    assert "Held" in reasons[waiting] and "Held" not in reasons[firm]  # Flex 0 is never held
    driver.apply(JobActions(ids, np.array([400.0]), np.ones(1)))
    reasons = {e.job_id: e.reason for e in driver.cli.queue("--states=PENDING")}
    assert "Held" not in reasons[waiting]
    assert len(driver.ledger) == 0


def test_survives_slurmctld_restart_and_restores_after_crash(cluster, tmp_path):
    ((job, _),) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2")).values()
    driver = make_driver(tmp_path)
    ids = tuple(j.id for j in driver.discover())
    driver.apply(JobActions(ids, np.array([400.0]), np.zeros(1)))
    assert wait_proc_states(cluster, job, {"T"}) == {"T"}
    cluster.stop_daemon("slurmctld")
    try:
        health = driver.health()
        assert not health.ok and "unreachable" in health.detail
        with pytest.raises(SlurmUnreachable, match="slurmctld unreachable"):
            driver.read()
        with pytest.raises(SlurmUnreachable):
            driver.apply(JobActions(ids, np.array([400.0]), np.ones(1)))
        assert f"suspend:{job}" in driver.ledger  # nothing half-applied: still recorded as suspended
    finally:
        cluster.start_ctld()
    assert driver.health().ok
    assert driver.read().active[0] == 0.0
    # A crashed run left the job suspended: a new driver with the same state file restores it.
    recovered = make_driver(tmp_path)
    recovered.restore()
    assert cluster.state(job) == "RUNNING"
    assert wait_proc_states(cluster, job, {"S"}) == {"S"}
    assert len(recovered.ledger) == 0


def test_controller_shutdown_resumes_everything(cluster, tmp_path):
    ((job, _),) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=1")).values()
    driver = make_driver(tmp_path)
    ids = tuple(j.id for j in driver.discover())
    driver.apply(JobActions(ids, np.array([400.0]), np.zeros(1)))
    assert cluster.state(job) == "SUSPENDED"
    ctl = controller_for(driver, ControlSettings())
    ctl.shutdown()
    assert cluster.state(job) == "RUNNING"
    assert wait_proc_states(cluster, job, {"S"}) == {"S"}


def test_dry_run_shows_the_commands_and_leaves_jobs_running(cluster, tmp_path):
    ((job, _),) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2")).values()
    driver = make_gridflex_driver({"kind": "slurm", "dry_run": True}, Site(), builtin_curves(), state_dir=tmp_path)
    ids = tuple(j.id for j in driver.discover())
    driver.apply(JobActions(ids, np.array([400.0]), np.zeros(1)))
    assert list(driver.actions) == [f"would scontrol suspend {job}"]
    assert cluster.state(job) == "RUNNING" and "T" not in proc_states(cluster, job)


def test_composite_caps_the_gpus_slurm_allocated_and_suspends_through_slurm(cluster, tmp_path):
    ((job, _),) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2", gpus=2)).values()
    fake = FakeNvml()
    spec = {"kind": "composite", "jobs": {"kind": "slurm", "node_name": "localhost"}, "power": {"map": "slurm"}}
    driver = make_gridflex_driver(spec, Site(), builtin_curves(), state_dir=tmp_path, nvml_lib=fake)
    (found,) = driver.discover()
    assert "power_cap" in {a.value for a in found.actions}
    driver.apply(JobActions((job,), np.array([150.0]), np.ones(1)))
    assert [g.limit_mw for g in fake.gpus] == [150_000, 150_000, 300_000, 300_000]
    tel = driver.read()
    assert not tel.estimated and tel.job_power_w[0] == pytest.approx(2 * 144.26, abs=0.01)  # measured
    driver.apply(JobActions((job,), np.array([150.0]), np.zeros(1)))
    assert cluster.state(job) == "SUSPENDED"
    driver.restore()
    assert cluster.state(job) == "RUNNING" and [g.limit_mw for g in fake.gpus] == [300_000] * 4


def test_the_service_drives_a_real_slurm_from_its_config(cluster, tmp_path):
    from tests.service_support import make_service

    (flex2, _), (flex0, _) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2", gpus=2),
                                        b=dict(comment="gridflex:flex=0")).values()
    svc = make_service(f"sqlite:///{tmp_path}/gridflex.db", time.time,
                       driver={"kind": "slurm", "state_dir": str(tmp_path)})
    assert [(j.id, j.flex_tier) for j in svc.controller.jobs] == [(flex2, 2), (flex0, 0)]
    cut_halfway(svc)
    assert cluster.state(flex2) == "SUSPENDED" and cluster.state(flex0) == "RUNNING"
    assert svc.status.active_events == ("cut",) and svc.driver.read().estimated
    svc.stop()  # on exit every job is back to normal
    assert cluster.state(flex2) == "RUNNING"


def test_gridflex_restore_resumes_what_a_killed_service_left_suspended(cluster, tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.service_support import make_service

    (flex2, _), = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2")).values()
    svc = make_service(f"sqlite:///{tmp_path}/gridflex.db", time.time,
                       driver={"kind": "slurm", "state_dir": str(tmp_path / "state")})
    cut_halfway(svc)
    assert cluster.state(flex2) == "SUSPENDED"  # and then gridflex is killed: nothing restores it
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"driver": {"kind": "slurm", "state_dir": "state"}}))
    out = subprocess.run([sys.executable, "-m", "gridflex.cli", "restore", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert cluster.state(flex2) == "RUNNING"
    assert f"slurm: resume job {flex2} (restore)" in out.stderr


def test_jobs_that_come_and_go_mid_event_are_controlled_within_two_ticks(cluster, tmp_path):
    """The service rediscovers Slurm's jobs every tick: a flexible job started mid-event is paused,
    a pending one held, a Flex 0 one never touched, an ended one dropped; the reported power is
    what a fresh look at Slurm gives."""
    from tests.service_support import make_service

    (flex2, _), (firm, _) = start_jobs(cluster, tmp_path, a=dict(comment="gridflex:flex=2", gpus=2),
                                        b=dict(comment="gridflex:flex=0")).values()
    svc = make_service(f"sqlite:///{tmp_path}/gridflex.db", time.time,
                       driver={"kind": "slurm", "state_dir": str(tmp_path), "settings": {"rules": RULES.model_dump()}})
    cut_halfway(svc, minutes=10)
    assert cluster.state(flex2) == "SUSPENDED"
    late = cluster.submit(WORKER, str(tmp_path / "late.log"), comment="gridflex:flex=3")
    firm_late = cluster.submit(WORKER, str(tmp_path / "firm.log"), comment="gridflex:flex=0")
    queued = cluster.submit(WORKER, str(tmp_path / "queued.log"), comment="gridflex:flex=3", gpus=4)  # no GPUs free
    cluster.wait_state(late, ("RUNNING",))
    cluster.wait_state(firm_late, ("RUNNING",))
    for _ in range(2):
        svc.tick(time.time())
    assert {late, firm_late} <= {j["id"] for j in svc.jobs()}
    assert cluster.state(late) == "SUSPENDED"  # paused, like the other flexible work, to meet the target
    assert cluster.state(firm_late) == "RUNNING" and cluster.state(firm) == "RUNNING"  # Flex 0: never touched
    reasons = {e.job_id: e.reason for e in svc.driver.cli.queue("--states=PENDING")}
    assert "Held" in reasons[queued] and queued in svc.status.held_jobs
    cluster.run("scancel", firm_late)
    cluster.wait_state(firm_late, ("CANCELLED", "COMPLETED", ""))
    for _ in range(2):
        svc.tick(time.time())
    assert firm_late not in {j["id"] for j in svc.jobs()}
    fresh = SlurmDriver(svc.spec.site, builtin_curves(), SlurmSettings(rules=RULES, state_file=tmp_path / "fresh.json"))
    fresh.discover()
    assert svc.status.site_power_w == pytest.approx(fresh.read().site_power_w, rel=0.05)
    svc.stop()  # on exit every job is back to normal and nothing stays held
    assert cluster.state(flex2) == "RUNNING" and cluster.state(late) == "RUNNING"
    assert "Held" not in {e.job_id: e.reason for e in svc.driver.cli.queue("--states=PENDING")}.get(queued, "")
