"""The journal aggregates as it goes: rows by job id while jobs come and go, memory that grows
with the site and not with site × ticks, streamed traces."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from gridflex.drivers.base import Telemetry
from gridflex.errors import InputError
from gridflex.model.site import Job
from gridflex.plan.base import Plan
from gridflex.sim.journal import JOB_HISTORY_LIMIT, TraceJournal
from gridflex.sim.trace_writer import BATCH_ROWS, TraceWriter

UTC = ZoneInfo("UTC")
T0 = 1_750_000_000.0


@dataclass(frozen=True)
class FakeDecision:
    """What the journal reads of a controller decision; per-job arrays follow `job_ids`."""

    t_s: float
    job_ids: tuple[str, ...]
    plan: Plan
    site_power_w: float = 0.0
    target_w: float = np.inf
    it_ceiling_w: float = np.inf


def _jobs(n: int, gpus: int = 8) -> list[Job]:
    return [Job(id=f"j{i}", workload="infer_llama_8b", gpus=gpus, flex_tier=i % 4) for i in range(n)]


def _tick(journal: TraceJournal, t: float, ids: list[str], power_w: np.ndarray, thr: np.ndarray,
          cap_w: np.ndarray | None = None, active: np.ndarray | None = None, broken: tuple[str, ...] = (),
          shortfall_w: float = 0.0) -> None:
    n = len(ids)
    cap_w = np.full(n, 400.0) if cap_w is None else cap_w
    active = np.ones(n) if active is None else active
    tel = Telemetry(t, float(power_w.sum()) * 1.2, float(power_w.sum()), tuple(ids), power_w, thr, cap_w, active)
    journal.telemetry(tel)
    plan = Plan(cap_w, active, float(power_w.sum()), shortfall_w, broken)
    journal.decision(FakeDecision(t, tuple(ids), plan, site_power_w=tel.site_power_w))


def test_rows_follow_job_ids_as_jobs_come_and_go():
    jobs = _jobs(4)
    journal = TraceJournal(jobs)
    used = {}
    journal.budget_source = lambda: np.array([used[i] for i in current])
    # (ids present, per-job power) for each 2-s tick: j3 arrives at the 3rd tick, j0 ends after the 2nd,
    # and the order of ids changes.
    stream = [
        (["j0", "j1", "j2"], [100.0, 200.0, 300.0]),
        (["j0", "j1", "j2"], [100.0, 200.0, 300.0]),
        (["j2", "j3", "j1"], [300.0, 50.0, 200.0]),
        (["j3", "j1"], [60.0, 200.0]),
    ]
    for k, (current, power) in enumerate(stream):
        used.update({i: 0.1 * k for i in current})
        _tick(journal, T0 + 2 * k, current, np.array(power), np.ones(len(current)))
    table = journal.job_table()
    assert list(table["id"]) == ["j0", "j1", "j2", "j3"]  # one row per job ever seen, the ended one kept
    energy = dict(zip(table["id"], table["energy_j"]))
    # A reading covers the 2 s since the previous one; the first covers none.
    assert energy == pytest.approx({"j0": 100 * 2, "j1": 200 * 6, "j2": 300 * 4, "j3": 50 * 2 + 60 * 2})
    assert dict(zip(table["id"], table["first_s"])) == pytest.approx({"j0": T0, "j1": T0, "j2": T0, "j3": T0 + 4})
    assert dict(zip(table["id"], table["last_s"]))["j0"] == T0 + 2
    assert dict(zip(table["id"], table["budget_used"])) == pytest.approx({"j0": 0.1, "j1": 0.3, "j2": 0.2, "j3": 0.3})
    assert list(table["tier"]) == [0, 1, 2, 3]
    # Per-tier series: the tiers' power adds up to the IT power of each tick.
    tiers = np.column_stack([journal.series(f"tier{k}_power_w") for k in range(4)])
    assert tiers.sum(axis=1) == pytest.approx([600, 600, 550, 260])
    assert journal.series("tier3_power_w")[2:] == pytest.approx([50, 60])
    # Small run: the per-job series have a column per job, NaN while the job is absent.
    thr = journal.job_history("throughput")
    assert thr.shape == (4, 4)
    assert np.isnan(thr[2:, 0]).all() and np.isnan(thr[:2, 3]).all() and (thr[2:, 3] == 1).all()


def test_unknown_job_ids_get_a_row_of_their_own():
    journal = TraceJournal(_jobs(1))
    _tick(journal, T0, ["j0", "stranger"], np.array([10.0, 20.0]), np.ones(2))
    _tick(journal, T0 + 1, ["stranger"], np.array([20.0]), np.ones(1))
    table = journal.job_table()
    assert list(table["id"]) == ["j0", "stranger"]
    assert list(table["tier"]) == [0, -1] and list(table["workload"]) == ["infer_llama_8b", "unknown"]
    assert table["energy_j"][1] == pytest.approx(20.0)
    assert journal.job_history("throughput") is None  # more jobs than described: no per-job series


def test_paused_and_resized_time_lowest_cap_and_jobs_slowed(curves):
    journal = TraceJournal(_jobs(3), curves)
    ids = ["j0", "j1", "j2"]
    for k, (cap, active) in enumerate([([400, 400, 400], [1, 1, 1]), ([250, 300, 400], [1, 0.5, 0]),
                                       ([400, 400, 400], [1, 1, 0])]):
        _tick(journal, T0 + 5 * k, ids, np.full(3, 100.0), np.ones(3), np.array(cap, float), np.array(active, float))
    table = journal.job_table()
    assert list(table["paused_s"]) == [0, 0, 10] and list(table["resized_s"]) == [0, 5, 0]
    assert list(table["min_cap_w"]) == [250, 300, 400]  # a paused job's cap does not count
    assert list(journal.series("jobs_slowed")) == [0, 3, 1]


def _journal_after(jobs: int, ticks: int) -> TraceJournal:
    journal = TraceJournal(_jobs(jobs))
    ids = [f"j{i}" for i in range(jobs)]
    power, thr = np.full(jobs, 500.0), np.ones(jobs)
    for k in range(ticks):
        _tick(journal, T0 + k, ids, power, thr)
    return journal


def test_memory_grows_with_the_site_not_with_site_times_ticks():
    n = 200
    small, large = {}, {}
    for jobs, out in ((JOB_HISTORY_LIMIT + 10, small), (20 * JOB_HISTORY_LIMIT, large)):
        for ticks in (n, 10 * n):
            j = _journal_after(jobs, ticks)
            out[ticks] = (j.rows.nbytes, j.nbytes)
    # Per-job rows: the same after n and 10 n ticks.
    assert small[n][0] == small[10 * n][0] and large[n][0] == large[10 * n][0]
    # What grows with ticks does not depend on the number of jobs.
    assert small[10 * n][1] - small[n][1] == large[10 * n][1] - large[n][1] > 0
    # Per-job series are kept only for small runs: bounded by JOB_HISTORY_LIMIT columns.
    assert _journal_after(JOB_HISTORY_LIMIT + 1, 3).job_history("throughput") is None
    assert _journal_after(JOB_HISTORY_LIMIT, 3).job_history("throughput").shape == (3, JOB_HISTORY_LIMIT)


def test_warnings_name_a_few_jobs_and_aggregate_many():
    ids = [f"j{i}" for i in range(40)]
    journal = TraceJournal(_jobs(40))
    _tick(journal, T0, ids, np.ones(40), np.ones(40))
    _tick(journal, T0 + 2, ids, np.ones(40), np.ones(40), broken=("j1",), shortfall_w=1500.0)
    few = journal.warnings(UTC)
    assert len(few) == 2 and "job j1 was pushed below" in few[0] and "at 1 control ticks" in few[0]
    assert "worst shortfall 1,500 W" in few[1]
    _tick(journal, T0 + 4, ids, np.ones(40), np.ones(40), broken=tuple(ids[:20]), shortfall_w=500.0)
    many = journal.warnings(UTC)
    assert len(many) == 4 + 1  # one line per tier, then the shortfall
    assert "5 jobs of flex tier 1" in many[1] and "at 6 job-ticks" in many[1]  # j1 twice; j5, j9, j13, j17 once
    assert "at 2 control ticks" in many[-1] and "worst shortfall 1,500 W" in many[-1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_site_and_job_traces(tmp_path, suffix):
    site, jobs = tmp_path / f"site{suffix}", tmp_path / f"jobs{suffix}"
    journal = TraceJournal(_jobs(3), writer=TraceWriter(site), job_writer=TraceWriter(jobs, "--trace-jobs"))
    ticks = 5
    for k in range(ticks):
        ids = ["j0", "j1", "j2"] if k < 3 else ["j1", "j2"]  # j0 ends
        _tick(journal, T0 + k, ids, np.full(len(ids), 100.0), np.ones(len(ids)), active=np.full(len(ids), 0.5))
    journal.close()
    read = pq.read_table if suffix == ".parquet" else pa_csv.read_csv
    s, j = read(site).to_pydict(), read(jobs).to_pydict()
    assert len(s["time_utc"]) == ticks
    assert s["time_utc"][0].timestamp() == T0 and s["it_power_w"] == pytest.approx([300] * 3 + [200] * 2)
    assert {"site_power_w", "target_w", "tier1_power_w", "tier1_throughput_gpus", "tier1_effective_cap_w"} <= set(s)
    assert len(j["job_id"]) == 3 * 3 + 2 * 2 and j["job_id"][-2:] == ["j1", "j2"]
    assert set(j["state"]) == {"resized"} and j["cap_w"][0] == 400


def test_trace_writer_streams_in_batches(tmp_path):
    writer = TraceWriter(tmp_path / "t.csv")
    for k in range(3):
        writer.write({"x": np.arange(BATCH_ROWS // 2) + k})
    assert writer.rows_written == BATCH_ROWS  # written once the batch is full, not held to the end
    writer.close()
    assert len(pa_csv.read_csv(tmp_path / "t.csv")["x"]) == 3 * (BATCH_ROWS // 2)


def test_trace_writer_rejects_an_unknown_format_or_a_path_it_cannot_write(tmp_path):
    with pytest.raises(InputError, match=r"--trace-jobs: .*'\.xlsx'; allowed: \.csv, \.parquet"):
        TraceWriter(tmp_path / "t.xlsx", "--trace-jobs")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"--trace: cannot write .*file/t\.csv"):
        TraceWriter(tmp_path / "file" / "t.csv")
