"""Job deadlines: the model, job traces and Slurm's --begin/--deadline."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gridflex.drivers.slurm import _job_times
from gridflex.model.scenario import JobTraceSpec
from gridflex.model.site import Job
from gridflex.sim.job_trace import load_job_trace

T0 = datetime(2023, 3, 14, 12, tzinfo=timezone.utc)


def test_a_deadline_must_come_after_submit_and_begin():
    job = Job(id="a", workload="w", gpus=8, flex_tier=2, submit=T0, duration_s=3600, deadline=T0 + timedelta(hours=5))
    assert job.deadline == T0 + timedelta(hours=5)
    with pytest.raises(ValidationError, match="deadline"):
        Job(id="b", workload="w", gpus=8, flex_tier=2, submit=T0, duration_s=60, begin=T0 + timedelta(hours=2),
            deadline=T0 + timedelta(hours=1))
    with pytest.raises(ValidationError, match="timezone"):
        Job(id="c", workload="w", gpus=8, flex_tier=2, submit=T0, duration_s=60, deadline=datetime(2023, 3, 15))


def test_job_trace_reads_an_optional_deadline_column(tmp_path):
    (tmp_path / "jobs.csv").write_text(
        "id,submit_s,duration_s,gpus,workload,flex_tier,deadline_s\n"
        "a,0,3600,8,pt_mpt_7b_fast,2,7200\n"
        "b,60,3600,8,pt_mpt_7b_fast,2,\n"
    )
    a, b = load_job_trace(JobTraceSpec(file="jobs.csv"), tmp_path, T0)
    assert a.deadline == T0 + timedelta(hours=2) and b.deadline is None


def test_scontrol_line_gives_begin_and_deadline():
    line = ("JobId=17 JobName=wrap UserId=u(1000) Priority=1 JobState=PENDING Reason=BeginTime "
            "SubmitTime=2026-11-30T07:03:55 EligibleTime=2026-11-30T08:03:55 AccrueTime=Unknown "
            "StartTime=2026-11-30T08:03:55 EndTime=2026-11-30T08:13:55 Deadline=2026-11-30T09:03:55 Comment=gridflex:flex=2")
    job_id, begin, deadline = _job_times(line)
    assert job_id == "17" and begin.hour == datetime(2026, 11, 30, 8, 3, 55).astimezone().hour
    assert (deadline - begin) == timedelta(hours=1)
    assert _job_times("JobId=18 ArrayJobId=18 ArrayTaskId=2 EligibleTime=Unknown Deadline=N/A")[1:] == (None, None)
    assert _job_times("JobId=19 ArrayJobId=18 ArrayTaskId=2 Deadline=N/A")[0] == "18_2"
