"""How Slurm queue entries become gridflex jobs (no cluster needed)."""

from __future__ import annotations

import pytest

from gridflex.drivers.slurm import QueueEntry, SlurmDriver, SlurmRules, SlurmSettings, _gpu_count, _parse_limit_s
from gridflex.errors import DriverError
from gridflex.model.site import Site
from gridflex.sim.curve_csv import builtin_curves


def entry(**kw) -> QueueEntry:
    base = dict(job_id="7", state="RUNNING", partition="batch", qos="normal", nodes=1, gres="N/A",
                time_limit="1-02:00:00", start="2026-11-22T10:00:00", reason="None", user="ana", name="train",
                comment="")
    return QueueEntry(**{**base, **kw})


RULES = SlurmRules(default_flex=0, flex_by_partition={"batch": 1}, flex_by_qos={"preempt": 3},
                   workload_by_partition={"infer": "infer_llama_8b"}, checkpoint_qos=("preempt",))
DRIVER = SlurmDriver(Site(), builtin_curves(), SlurmSettings(rules=RULES))


@pytest.mark.parametrize("kw, tier", [
    ({}, 1),  # partition rule
    ({"qos": "preempt"}, 3),  # QOS beats partition
    ({"qos": "preempt", "comment": "nightly gridflex:flex=2"}, 2),  # the comment beats both
    ({"partition": "other"}, 0),  # default
    ({"comment": "gridflex:flex=9"}, 1),  # invalid: ignored, with a warning
])
def test_flex_tier_precedence(kw, tier):
    assert DRIVER.job_of(entry(**kw)).flex_tier == tier


def test_workload_pause_mode_gpus_and_window():
    job = DRIVER.job_of(entry(partition="infer", qos="preempt", nodes=2, gres="gres:gpu:a100:4"))
    assert (job.workload, job.pause_mode.value, job.gpus) == ("infer_llama_8b", "checkpoint", 8)
    assert (job.end - job.start).total_seconds() == 26 * 3600
    job = DRIVER.job_of(entry(comment="gridflex:flex=2,workload=ft_llama_8b_p3,pause=suspend", time_limit="UNLIMITED"))
    assert (job.workload, job.pause_mode.value, job.gpus, job.end) == ("ft_llama_8b_p3", "suspend", 1, None)
    DRIVER.job_of(entry(comment="gridflex:flex=9"))
    assert any("flex='9'" in w for w in DRIVER.warnings)


def test_unknown_default_workload_is_refused():
    with pytest.raises(DriverError, match="workload 'gpt5' has no power curve"):
        SlurmDriver(Site(), builtin_curves(), SlurmSettings(rules=SlurmRules(default_workload="gpt5")))


@pytest.mark.parametrize("text, gpus", [("N/A", 0), ("gres:gpu:2", 2), ("gres/gpu:h100:8", 8),
                                        ("gpu:2(IDX:0-1)", 2), ("gres:gpu:1,gres:nic:1", 1)])
def test_gpu_count(text, gpus):
    assert _gpu_count(text) == gpus


@pytest.mark.parametrize("text, seconds", [("30:00", 1800), ("2:00:00", 7200), ("1-00:00:00", 86400),
                                           ("UNLIMITED", None), ("INVALID", None)])
def test_time_limits(text, seconds):
    assert _parse_limit_s(text) == seconds


def test_missing_tools_give_a_clear_error(tmp_path):
    driver = SlurmDriver(Site(), builtin_curves(), SlurmSettings(bin_dir=str(tmp_path)))
    with pytest.raises(DriverError, match="'squeue' not found; install the Slurm client tools or set bin_dir"):
        driver.discover()
    assert not driver.health().ok


def test_a_deadline_comes_from_the_comment_and_the_earlier_of_it_and_slurms_holds():
    from datetime import UTC, datetime

    pending = dict(state="PENDING", start="N/A", job_id="8")
    job = DRIVER.job_of(entry(**pending, comment="gridflex:flex=3,deadline=2026-12-01T06:00Z"))
    assert job.deadline == datetime(2026, 12, 1, 6, tzinfo=UTC)
    driver = SlurmDriver(Site(), builtin_curves(), SlurmSettings(rules=RULES))
    driver._times["8"] = (None, datetime(2026, 12, 1, 5, tzinfo=UTC))  # what `scontrol show job` gave (--deadline)
    assert driver.job_of(entry(**pending, comment="gridflex:deadline=2026-12-01T06:00Z")).deadline.hour == 5
    for bad in ("tomorrow", "2026-12-01T06:00"):  # no offset: which clock would it be?
        assert DRIVER.job_of(entry(**pending, comment=f"gridflex:deadline={bad}")).deadline is None
