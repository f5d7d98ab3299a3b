"""Published time-shifting policies the horizon planner is measured against.

All schedule whole jobs on the same slot grid as `plan.horizon`, run each job at full power
with all its GPUs, never start more GPUs than the pool has, and decide with what they would know
at the time: `known(k)` returns the signal (carbon or price) per slot as forecast at slot k.

- `run_now`: first in, first out; each job starts as soon as GPUs are free and runs to the end.
- `lwa_noninterrupting` / `lwa_interrupting`: Let's Wait Awhile (Wiesner et al., Middleware
  2021): when a job arrives, start it at the lowest-signal window before its deadline, or run it
  in the lowest-signal slots before its deadline (interruptible).
- `threshold`: pause flexible work while the signal now is above a threshold, unless the job
  would otherwise miss its deadline (run when its slack is gone).
- `perfect_foresight`: the horizon LP with the true signal and every job known in advance: the
  bound on what shifting (and, with power shaping, capping) can save.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gridflex.errors import InputError
from gridflex.model.curves import DEFAULT_IDLE_W, PowerCurve
from gridflex.plan.horizon import HorizonInput, HorizonPlan, JobClass, Weights, solve

Known = Callable[[int], np.ndarray]  # slot index -> signal per slot as known then


@dataclass(frozen=True, eq=False)
class ShiftProblem:
    """Jobs on a slot grid: each needs `duration_slots` slots of all its GPUs at full power,
    released at slot `release_k` and due by the start of slot `deadline_k`."""

    slot_s: float
    n_slots: int
    gpus: np.ndarray  # [J]
    full_w: np.ndarray  # [J] per-GPU power at full speed
    duration_slots: np.ndarray  # [J]
    release_k: np.ndarray  # [J]
    deadline_k: np.ndarray  # [J]
    pool_gpus: int
    idle_w: float = DEFAULT_IDLE_W
    pue: float = 1.0

    def __post_init__(self) -> None:
        n = len(self.gpus)
        if any(len(a) != n for a in (self.full_w, self.duration_slots, self.release_k, self.deadline_k)):
            raise InputError(
                "shift problem: gpus, full_w, duration_slots, release_k, deadline_k need one value per job"
            )
        if np.any(self.gpus > self.pool_gpus) or np.any(self.duration_slots < 1):
            raise InputError("shift problem: each job needs 1..pool_gpus GPUs and at least one slot")

    def site_power_w(self, run: np.ndarray) -> np.ndarray:
        """[K] site power of a schedule `run` [J, K] (True: the job works in that slot)."""
        busy = (run * self.gpus[:, None]).sum(axis=0)
        it = (run * (self.gpus * self.full_w)[:, None]).sum(axis=0) + self.idle_w * (self.pool_gpus - busy)
        return self.pue * it

    def late_jobs(self, run: np.ndarray) -> int:
        """Jobs not finished by their deadline."""
        k = np.arange(self.n_slots)
        done = (run & (k[None, :] < self.deadline_k[:, None])).sum(axis=1)
        return int((done < self.duration_slots).sum())


def run_now(p: ShiftProblem) -> np.ndarray:
    """FIFO: start jobs in order of arrival as soon as the pool has their GPUs; run to the end."""
    run = np.zeros((len(p.gpus), p.n_slots), bool)
    free = np.full(p.n_slots, p.pool_gpus)
    for j in np.argsort(p.release_k, kind="stable"):
        s = _first_fit(free, p.gpus[j], p.duration_slots[j], p.release_k[j])
        _book(run, free, p, j, np.arange(s, min(s + p.duration_slots[j], p.n_slots)))
    return run


def lwa_noninterrupting(p: ShiftProblem, known: Known) -> np.ndarray:
    """Start each job, on arrival, at the window of lowest forecast sum that ends by its deadline
    and has free GPUs; if none has, as early as GPUs allow."""
    run = np.zeros((len(p.gpus), p.n_slots), bool)
    free = np.full(p.n_slots, p.pool_gpus)
    for j in np.argsort(p.release_k, kind="stable"):
        d, r = p.duration_slots[j], p.release_k[j]
        f = known(r)
        last = min(p.deadline_k[j], p.n_slots) - d
        starts = np.arange(r, last + 1)
        if len(starts):
            c = np.concatenate([[0.0], np.cumsum(f)])
            sums = c[starts + d] - c[starts]
            fits = [s for s in starts[np.argsort(sums, kind="stable")] if free[s:s + d].min() >= p.gpus[j]]
        else:
            fits = []
        s = fits[0] if fits else _first_fit(free, p.gpus[j], d, r)
        _book(run, free, p, j, np.arange(s, min(s + d, p.n_slots)))
    return run


def lwa_interrupting(p: ShiftProblem, known: Known) -> np.ndarray:
    """Run each job, decided on arrival, in the lowest-forecast slots before its deadline that
    have free GPUs; what does not fit goes to the earliest free slots after."""
    run = np.zeros((len(p.gpus), p.n_slots), bool)
    free = np.full(p.n_slots, p.pool_gpus)
    for j in np.argsort(p.release_k, kind="stable"):
        r, end = p.release_k[j], min(p.deadline_k[j], p.n_slots)
        f = known(r)
        window = np.arange(r, end)
        ok = window[free[window] >= p.gpus[j]]
        chosen = ok[np.argsort(f[ok], kind="stable")][: p.duration_slots[j]]
        if len(chosen) < p.duration_slots[j]:
            after = np.arange(end, p.n_slots)
            chosen = np.concatenate([chosen, after[free[after] >= p.gpus[j]][: p.duration_slots[j] - len(chosen)]])
        _book(run, free, p, j, np.sort(chosen).astype(int))
    return run


def threshold(p: ShiftProblem, known: Known, limit: float) -> np.ndarray:
    """Each slot: run released, unfinished jobs (earliest deadline first, as GPUs allow) if the
    signal now is at or below `limit`, or if waiting one more slot would make them late."""
    run = np.zeros((len(p.gpus), p.n_slots), bool)
    left = p.duration_slots.astype(int).copy()
    for k in range(p.n_slots):
        now_value = known(k)[k]
        free = p.pool_gpus
        ready = np.flatnonzero((p.release_k <= k) & (left > 0))
        for j in ready[np.argsort(p.deadline_k[ready], kind="stable")]:
            must = p.deadline_k[j] - k <= left[j]
            if (now_value <= limit or must) and p.gpus[j] <= free:
                run[j, k], free, left[j] = True, free - p.gpus[j], left[j] - 1
    return run


def perfect_foresight(p: ShiftProblem, curves: list[PowerCurve], carbon_g_per_kwh: np.ndarray,
                      price_usd_per_mwh: np.ndarray | None = None, weights: Weights | None = None,
                      power_shaping: bool = True, t0_s: float = 0.0) -> HorizonPlan:
    """The horizon LP over the whole period with the true signal and all jobs known: one class
    per job (`curves[j]` its curve), released and due as in `p`."""
    classes = [JobClass(f"j{j}", curves[j], int(p.gpus[j]), float(p.gpus[j] * p.duration_slots[j] * p.slot_s / 3600),
                        t0_s + p.release_k[j] * p.slot_s, t0_s + p.deadline_k[j] * p.slot_s, 2)
               for j in range(len(p.gpus))]
    price = np.zeros(p.n_slots) if price_usd_per_mwh is None else price_usd_per_mwh
    return solve(HorizonInput(t0_s, p.slot_s, classes, p.pool_gpus, np.asarray(carbon_g_per_kwh, float), price,
                              pue=p.pue, idle_w=p.idle_w, weights=weights or Weights(), power_shaping=power_shaping))


def _first_fit(free: np.ndarray, gpus: int, d: int, r: int) -> int:
    """The earliest start at or after `r` with `gpus` free for `d` slots (truncated at the end)."""
    for s in range(r, len(free)):
        if free[s:s + d].min() >= gpus:
            return s
    return len(free)  # nothing fits in the period: not run


def _book(run: np.ndarray, free: np.ndarray, p: ShiftProblem, j: int, slots: np.ndarray) -> None:
    run[j, slots] = True
    free[slots] -= p.gpus[j]
