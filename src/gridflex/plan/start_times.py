"""When queued whole jobs start: the horizon LP for work that, once started, runs to the end.

The class LP of `plan.horizon` lets a class work in any slots of its window (interrupting),
which is right for its bound and for power shaping but not for a queued job that, once released,
runs its whole length at full power (the twin, Slurm). This LP chooses each queued job's start:
x[j, s] >= 0 is the share of job j started at slot s (s up to its latest start), with
sum_s x[j, s] = 1. Objective: the signal (carbon or price forecast) over the slots the job would
run, times its power above idle. Rows per slot: the GPUs of jobs running then within the GPUs
free of other work, and site power within the grid events' ceiling (both with a penalised slack,
so that the LP always answers). It is the LP relaxation of the start-time assignment; a job
whose largest share starts in slot 0 starts now. Solved by HiGHS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from gridflex.errors import GridflexError, InputError

#: Penalties on the pool and ceiling slacks, relative to the largest cost of one job-start.
SLACK_PENALTY = 1e3


@dataclass(frozen=True, eq=False)
class StartInput:
    """Queued jobs on a slot grid from now (slot 0). Per-job arrays [J]; per-slot arrays [K]."""

    signal: np.ndarray  # [K] forecast per slot (gCO2/kWh or USD/MWh: only its shape matters)
    gpus: np.ndarray  # [J]
    extra_w: np.ndarray  # [J] site power the job adds while it runs (PUE x (full - idle) x GPUs)
    duration_slots: np.ndarray  # [J] >= 1
    latest_start: np.ndarray  # [J] last slot it may start in (0: now)
    free_gpus: np.ndarray  # [K] GPUs free of other work
    headroom_w: np.ndarray | None = None  # [K] site power the ceiling leaves above other load (inf: none)
    earliest_start: np.ndarray | None = None  # [J] first slot it may start in (None: all now)


def solve_starts(inp: StartInput) -> np.ndarray:
    """[J, K] share of each job started in each slot (rows sum to 1)."""
    K, J = len(inp.signal), len(inp.gpus)
    if J == 0:
        return np.zeros((0, K))
    d = np.minimum(np.asarray(inp.duration_slots, int), K)
    if np.any(d < 1) or len(inp.free_gpus) != K:
        raise InputError("start times: duration_slots must be >= 1 and free_gpus one value per slot")
    first = np.zeros(J, int) if inp.earliest_start is None else np.clip(np.asarray(inp.earliest_start, int), 0, K - d)
    last = np.clip(np.asarray(inp.latest_start, int), first, K - d)
    n_starts = last - first + 1
    job = np.repeat(np.arange(J), n_starts)
    start = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])
    csum = np.concatenate([[0.0], np.cumsum(inp.signal)])
    cost = (csum[start + d[job]] - csum[start]) * inp.extra_w[job]
    scale = max(float(np.abs(cost).max()), 1e-9)
    cost = cost + scale * 1e-6 * start  # among equal starts, the earlier
    nx = len(job)
    # slot rows: x[j, s] occupies slots s .. s + d_j - 1
    occ = d[job]
    var = np.repeat(np.arange(nx), occ)
    slot = np.repeat(start, occ) + (np.arange(occ.sum()) - np.repeat(np.cumsum(occ) - occ, occ))
    rows, cols, vals, rhs = [], [], [], []
    limits = [(np.asarray(inp.free_gpus, float), inp.gpus[job].astype(float))]
    if inp.headroom_w is not None:
        limits.append((np.asarray(inp.headroom_w, float), np.asarray(inp.extra_w, float)[job]))
    n_rows, limited = 0, []
    for limit, per_start in limits:  # rows only where the limit is finite (no pool: none)
        kept = np.flatnonzero(np.isfinite(limit))
        row_of = np.full(K, -1)
        row_of[kept] = n_rows + np.arange(len(kept))
        on = row_of[slot] >= 0
        rows.append(row_of[slot[on]]), cols.append(var[on]), vals.append(per_start[var[on]])
        rhs.append(limit[kept])
        limited.append((len(kept), float(np.max(per_start))))
        n_rows += len(kept)
    # slacks: one per row, penalised
    n_var = nx + n_rows
    rows.append(np.arange(n_rows)), cols.append(nx + np.arange(n_rows)), vals.append(-np.ones(n_rows))
    per_row = np.concatenate([np.full(n, scale / max(top, 1e-9)) for n, top in limited])
    c = np.concatenate([cost, SLACK_PENALTY * per_row])
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_var))
    A_eq = sp.csr_matrix((np.ones(nx), (job, np.arange(nx))), shape=(J, n_var))
    res = linprog(c, A_ub=A if n_rows else None, b_ub=np.concatenate(rhs) if n_rows else None, A_eq=A_eq, b_eq=np.ones(J), bounds=(0, None), method="highs")
    if res.status != 0:
        raise GridflexError(f"start times: HiGHS did not solve the LP ({res.message})")
    out = np.zeros((J, K))
    out[job, start] = res.x[:nx]
    return out


def occupancy(shares: np.ndarray, duration_slots: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[K] sum of `weight` [J] over the jobs running in each slot, by their start shares [J, K]."""
    K = shares.shape[1]
    starts = np.cumsum(shares * weight[:, None], axis=1)  # weight started up to each slot
    k = np.arange(K)
    ended = np.where(k[None, :] >= duration_slots[:, None],
                     np.take_along_axis(starts, np.maximum(k[None, :] - duration_slots[:, None], 0), axis=1), 0.0)
    return (starts - ended).sum(axis=0)
