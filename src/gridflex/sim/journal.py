"""The run's journal: what the controller saw and decided, aggregated as it goes.

Memory grows with the site, never with site × ticks: one row of accumulators per job ever seen
(rows of ended jobs stay for the report), and a fixed number of scalars per control tick (the
site's and each flex tier's series). Per-job series are kept only for small sites (at most
`JOB_HISTORY_LIMIT` jobs, all described up front); full traces are streamed to disk by a `TraceWriter`
when asked for. The set of jobs may change from one tick to the next: every reading and decision
names its jobs (`job_ids`), and rows are found, or added, by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from gridflex.model.curves import CurveLibrary
from gridflex.model.site import FLEX_FACTOR, Job
from gridflex.sim.trace_writer import TraceWriter

if TYPE_CHECKING:
    from gridflex.control.controller import Decision
    from gridflex.drivers.base import Telemetry

#: Per-job series (throughput, cap, budget used) are kept for runs with at most this many jobs.
JOB_HISTORY_LIMIT = 50
#: Warnings name jobs one by one up to this many; beyond, one line per tier.
WARN_JOBS_LIMIT = 10
TIERS = len(FLEX_FACTOR)
UNKNOWN_WORKLOAD = "unknown"


class Table:
    """Columns of equal length in NumPy arrays that grow by doubling (amortised O(1) appends)."""

    def __init__(self, columns: dict[str, tuple[type, object]], width: int | None = None):
        self._spec = columns  # name -> (dtype, value of a new row)
        self._width = width  # None: 1-D columns; k: rows of k values
        self.n = 0
        self._cols = {k: self._blank(dt, fill, 16) for k, (dt, fill) in columns.items()}

    def _blank(self, dtype, fill, rows: int) -> np.ndarray:
        return np.full((rows,) if self._width is None else (rows, self._width), fill, dtype)

    def append(self, rows: int = 1, **values) -> None:
        """Add `rows` rows; columns not given keep their new-row value."""
        need = self.n + rows
        cap = len(next(iter(self._cols.values())))
        if need > cap:
            size = max(need, 2 * cap)
            for k, col in self._cols.items():
                dt, fill = self._spec[k]
                grown = self._blank(dt, fill, size)
                grown[: self.n] = col[: self.n]
                self._cols[k] = grown
        for k, v in values.items():
            self._cols[k][self.n : need] = v
        self.n = need

    def __getitem__(self, name: str) -> np.ndarray:
        """The column's rows so far (a view: writing to it updates the table)."""
        return self._cols[name][: self.n]

    def columns(self) -> dict[str, np.ndarray]:
        return {k: self[k] for k in self._cols}

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._cols.values())


def _job_rows() -> Table:
    nan, inf = np.nan, np.inf
    return Table({
        "tier": (np.int8, -1), "workload": (np.int16, 0), "gpus": (np.int32, 1), "max_cap_w": (float, inf),
        "first_s": (float, nan), "last_s": (float, nan),  # first and last reading naming the job
        "seen_s": (float, 0.0),  # seconds covered by readings naming the job
        "energy_j": (float, 0.0),  # the job's measured IT energy
        "throughput_s": (float, 0.0),  # measured normalised throughput × seconds
        "paused_s": (float, 0.0), "resized_s": (float, 0.0),  # all, or some, of its GPUs paused
        "min_cap_w": (float, inf),  # lowest per-GPU cap in effect while working
        "budget_used": (float, 0.0), "max_budget_used": (float, 0.0),
        "below_tier_ticks": (np.int32, 0), "below_tier_first_s": (float, nan), "below_tier_last_s": (float, nan),
    })


def _tick_rows() -> Table:
    cols = {k: (float, np.nan) for k in (
        "t_s", "site_power_w", "target_w", "it_power_w", "it_ceiling_w", "planned_it_w", "shortfall_w", "miner_w",
        "jobs_slowed",  # jobs the plan capped below their highest cap or paused in part
    )}
    cols |= {f"tier{k}_{what}": (float, np.nan) for k in range(TIERS) for what in TIER_SERIES}
    return Table(cols)


#: Per tier and tick: measured power, throughput in full-speed GPUs (Σ gpus × normalised
#: throughput), and the GPU-weighted mean of cap × active fraction (the effective per-GPU cap).
TIER_SERIES = ("power_w", "throughput_gpus", "effective_cap_w")


class TraceJournal:
    """Aggregates every tick's telemetry and decision (the controller's `Journal`)."""

    def __init__(
        self,
        jobs: Iterable[Job] = (),
        curves: CurveLibrary | None = None,
        writer: TraceWriter | None = None,
        job_writer: TraceWriter | None = None,
    ):
        self.curves = curves  # each job's highest cap, to tell slowed jobs (unknown: only pauses count)
        self.jobs: dict[str, Job] = {}
        self.add_jobs(jobs)
        self.writer, self.job_writer = writer, job_writer  # streamed traces (site and tiers; per job)
        self.budget_source: Callable[[], np.ndarray] | None = None  # budget used, aligned with the decision's jobs
        self.ids: list[str] = []  # job id of each row
        self._row: dict[str, int] = {}
        self._ptr_sorted = np.zeros(0, np.uint64)  # addresses of the id strings in `ids`, sorted
        self._ptr_row = np.zeros(0, np.int64)  # ... and their rows
        self._workloads: list[str] = [UNKNOWN_WORKLOAD]
        self.rows = _job_rows()
        self.ticks = _tick_rows()
        # Per-job series, one column per job described up front (the scenario's), if at most JOB_HISTORY_LIMIT.
        self._history_width = width = len(self.jobs)
        self._history: dict[str, Table] | None = {
            k: Table({"v": (float, np.nan)}, width) for k in ("throughput", "effective_cap_w", "budget_used")
        } if 0 < width <= JOB_HISTORY_LIMIT else None
        self._index_cache: tuple[tuple[str, ...], np.ndarray | slice] = ((), np.zeros(0, int))
        self._tel = None  # the reading of the tick under way, and its rows
        self._tel_rows = np.zeros(0, int)
        self._tier_meta: tuple = (None,)  # rows, tier membership [jobs, tiers], GPUs, GPUs per tier
        self._last_read_s: float | None = None
        self.short_ticks = 0
        self.short_first_s = self.short_last_s = np.nan
        self.worst_short_w = 0.0

    def add_jobs(self, jobs: Iterable[Job]) -> None:
        """Describe jobs (tier, workload, GPUs) the readings may name; unknown ids count as tier -1."""
        self.jobs.update((j.id, j) for j in jobs)

    # --- the controller's Journal --------------------------------------------------------------
    def telemetry(self, tel: Telemetry) -> None:
        rows = self._index(tel.job_ids)
        t = float(tel.t_s)
        dt = 0.0 if self._last_read_s is None else max(0.0, t - self._last_read_s)
        self._last_read_s = t
        r = self.rows
        working = tel.active > 0
        r["first_s"][rows] = np.fmin(r["first_s"][rows], t)
        r["last_s"][rows] = t
        r["seen_s"][rows] += dt
        r["energy_j"][rows] += np.nan_to_num(tel.job_power_w) * dt
        r["throughput_s"][rows] += np.nan_to_num(tel.throughput) * dt
        r["paused_s"][rows] += dt * (tel.active <= 0)
        r["resized_s"][rows] += dt * (working & (tel.active < 1))
        r["min_cap_w"][rows] = np.where(working, np.minimum(r["min_cap_w"][rows], tel.cap_w), r["min_cap_w"][rows])
        self._tel, self._tel_rows = tel, rows

    def decision(self, d: Decision) -> None:
        t = float(d.t_s)
        plan = d.plan
        # The plan's arrays follow the decision's job ids (a fleet whose jobs come and go), else the reading's.
        rows = self._index(getattr(d, "job_ids", None) or self._tel.job_ids)
        slowed = (plan.cap_w < self.rows["max_cap_w"][rows] - 1e-6) | (plan.active < 1 - 1e-9)
        if self.budget_source is not None:
            used = self.budget_source()
            self.rows["budget_used"][rows] = used
            self.rows["max_budget_used"][rows] = np.maximum(self.rows["max_budget_used"][rows], used)
        if plan.broken_tier:
            broken = self._index(tuple(plan.broken_tier), remember=False)
            r = self.rows
            r["below_tier_ticks"][broken] += 1
            r["below_tier_first_s"][broken] = np.fmin(r["below_tier_first_s"][broken], t)
            r["below_tier_last_s"][broken] = t
        if plan.shortfall_w > 0:
            if not self.short_ticks:
                self.short_first_s = t
            self.short_ticks += 1
            self.short_last_s = t
            self.worst_short_w = max(self.worst_short_w, float(plan.shortfall_w))
        tick = {
            "t_s": t, "site_power_w": d.site_power_w, "target_w": d.target_w, "it_ceiling_w": d.it_ceiling_w,
            "planned_it_w": plan.it_power_w, "shortfall_w": plan.shortfall_w, "jobs_slowed": int(slowed.sum()),
            "miner_w": float(plan.miner_w.sum()) if plan.miner_w is not None else np.nan,
        }
        if self._tel is not None:
            tick |= {"it_power_w": self._tel.it_power_w, **self._tier_values(self._tel, self._tel_rows)}
            self._record_history(self._tel, self._tel_rows)
        self.ticks.append(**tick)
        if self.writer is not None:
            self.writer.write({"time_utc": _utc([t]), **{k: [v] for k, v in tick.items() if k != "t_s"}})
        if self.job_writer is not None and self._tel is not None:
            self._write_jobs(t)
        self._tel = None

    # --- what the report reads ----------------------------------------------------------------
    @property
    def t_s(self) -> np.ndarray:
        return self.ticks["t_s"]

    @property
    def target_w(self) -> np.ndarray:
        return self.ticks["target_w"]

    def series(self, name: str) -> np.ndarray:
        """One per-tick series (see `_tick_rows`), e.g. 'site_power_w' or 'tier2_power_w'."""
        return self.ticks[name]

    def job_history(self, name: str) -> np.ndarray | None:
        """[ticks, jobs] series of 'throughput', 'effective_cap_w' or 'budget_used', columns in
        `ids` order; None when more than `JOB_HISTORY_LIMIT` jobs were described up front, or
        more jobs than that turned up."""
        if self._history is None:
            return None
        return self._history[name]["v"][:, : len(self.ids)]

    def job_table(self) -> dict[str, np.ndarray]:
        """Every job's accumulators, one row per job ever seen, with its id and workload name."""
        cols = self.rows.columns()
        cols["workload"] = np.array(self._workloads, dtype=object)[cols["workload"]]
        return {"id": np.array(self.ids, dtype=object), **cols}

    def warnings(self, tz) -> list[str]:
        """What the operator must know: targets the plan could not meet, tiers it had to break."""
        r = self.rows
        broken = np.flatnonzero(r["below_tier_ticks"] > 0)
        out = []
        if len(broken) <= WARN_JOBS_LIMIT:
            out += [
                f"job {self.ids[i]} was pushed below its flex-budget floor (its tier at risk) to meet the target,"
                f" {_span(r['below_tier_ticks'][i], r['below_tier_first_s'][i], r['below_tier_last_s'][i], tz)}"
                for i in broken
            ]
        else:
            for tier in np.unique(r["tier"][broken]):
                sel = broken[r["tier"][broken] == tier]
                span = _span(r["below_tier_ticks"][sel].sum(), r["below_tier_first_s"][sel].min(),
                             r["below_tier_last_s"][sel].max(), tz, "job-ticks")
                examples = ", ".join(self.ids[i] for i in sel[:3])
                out.append(
                    f"{len(sel)} jobs of flex tier {tier} (e.g. {examples}) were pushed below their flex-budget"
                    f" floor (their tier at risk) to meet the target, {span}"
                )
        if self.short_ticks:
            out.append(
                f"the target could not be met even by the plan, "
                f"{_span(self.short_ticks, self.short_first_s, self.short_last_s, tz)};"
                f" worst shortfall {self.worst_short_w:,.0f} W"
            )
        return out

    @property
    def nbytes(self) -> int:
        """Memory held: per-job rows, per-tick series and (small runs only) per-job series."""
        hist = sum(t.nbytes for t in self._history.values()) if self._history is not None else 0
        return self.rows.nbytes + self.ticks.nbytes + hist

    def close(self) -> None:
        """Flush and close the streamed traces."""
        for w in (self.writer, self.job_writer):
            if w is not None:
                w.close()

    # --- internals ----------------------------------------------------------------------------
    def _index(self, ids: tuple[str, ...], remember: bool = True) -> np.ndarray | slice:
        """Rows of these job ids, adding a row for each id not seen before; the last set of ids
        remembered is answered again without a look-up (the fleet's ids rarely change)."""
        cached_ids, cached = self._index_cache
        if ids is cached_ids or ids == cached_ids:
            return cached
        # Ids are matched by object first (a plant that lists the same id strings, as the twin
        # does, costs no string reads), by value where the object is new.
        ptr = np.fromiter(map(id, ids), np.uint64, len(ids))
        at = np.minimum(np.searchsorted(self._ptr_sorted, ptr), max(len(self._ptr_sorted) - 1, 0))
        found = self._ptr_sorted[at] == ptr if len(self._ptr_sorted) else np.zeros(len(ids), dtype=bool)
        rows = np.where(found, self._ptr_row[at] if len(self._ptr_row) else 0, -1)
        missed = np.flatnonzero(~found)
        if len(missed):
            names = [ids[i] for i in missed]
            new = [i for i in dict.fromkeys(names) if i not in self._row]
            if new:
                self._add_rows(new)
            rows[missed] = np.fromiter(map(self._row.__getitem__, names), int, len(names))
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
            rows = slice(int(rows[0]), int(rows[-1]) + 1)  # consecutive rows: views, not gathers and scatters
        if remember:
            self._index_cache = (tuple(ids), rows)
        return rows

    def _add_rows(self, new: list[str]) -> None:
        jobs = [self.jobs.get(i) for i in new]
        for w in {j.workload for j in jobs if j is not None} - set(self._workloads):
            self._workloads.append(w)
        code = {w: k for k, w in enumerate(self._workloads)}
        first = len(self.ids)
        self._row.update((i, first + k) for k, i in enumerate(new))
        self.ids += new  # holds the id strings, so that their addresses are not reused
        ptr = np.concatenate([self._ptr_sorted, np.fromiter(map(id, new), np.uint64, len(new))])
        order = np.argsort(ptr, kind="stable")
        self._ptr_sorted, self._ptr_row = ptr[order], np.concatenate([self._ptr_row, first + np.arange(len(new))])[order]
        self.rows.append(
            len(new),
            tier=[j.flex_tier if j else -1 for j in jobs],
            workload=[code[j.workload] if j else 0 for j in jobs],
            gpus=[j.gpus if j else 1 for j in jobs],
            max_cap_w=[self.curves[j.workload].max_cap_w if j and self.curves and j.workload in self.curves
                       else np.inf for j in jobs],
        )
        if self._history is not None and len(self.ids) > self._history_width:
            self._history = None  # a large run: per-job series would grow with jobs × ticks

    def _tier_values(self, tel: Telemetry, rows: np.ndarray | slice) -> dict[str, float]:
        if self._tier_meta[0] is not rows:  # the same jobs as last tick: reuse their tiers and GPUs
            tier = self.rows["tier"][rows].astype(int)
            member = (tier[:, None] == np.arange(TIERS)).astype(float)  # [jobs, tiers]; unknown tier: none
            gpus = self.rows["gpus"][rows].astype(float)
            self._tier_meta = (rows, member, gpus, gpus @ member)
        _, member, gpus, tier_gpus = self._tier_meta
        per_job = np.stack([
            np.nan_to_num(tel.job_power_w),  # power_w
            gpus * np.nan_to_num(tel.throughput),  # throughput_gpus
            gpus * tel.cap_w * tel.active,  # effective_cap_w, as a GPU-weighted sum for now
        ])
        per_tier = per_job @ member
        with np.errstate(invalid="ignore", divide="ignore"):
            per_tier[2] /= tier_gpus
        return {f"tier{k}_{name}": float(per_tier[i, k]) for i, name in enumerate(TIER_SERIES) for k in range(TIERS)}

    def _record_history(self, tel: Telemetry, rows: np.ndarray | slice) -> None:
        if self._history is None:
            return
        values = {"throughput": tel.throughput, "effective_cap_w": tel.cap_w * tel.active,
                  "budget_used": self.rows["budget_used"][rows]}
        for name, table in self._history.items():
            line = np.full(self._history_width, np.nan)
            line[rows] = values[name]
            table.append(v=line)

    def _write_jobs(self, t: float) -> None:
        tel, rows = self._tel, self._tel_rows
        n = len(tel.job_ids)
        state = np.where(tel.active <= 0, "paused", np.where(tel.active < 1, "resized", "running"))
        self.job_writer.write({
            "time_utc": _utc(np.full(n, t)), "job_id": list(tel.job_ids), "flex_tier": self.rows["tier"][rows],
            "power_w": tel.job_power_w, "cap_w": tel.cap_w, "active": tel.active, "throughput": tel.throughput,
            "state": state,
        })


def _utc(t_s) -> np.ndarray:
    return (np.asarray(t_s, float) * 1e3).astype("datetime64[ms]")


def _span(ticks: int, first_s: float, last_s: float, tz, what: str = "control ticks") -> str:
    first, last = (datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") for t in (first_s, last_s))
    return f"at {int(ticks)} {what} between {first} and {last}"
