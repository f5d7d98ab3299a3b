"""Jobs as NumPy arrays, one row per job, so planners and the twin work on whole fleets at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np

from gridflex.model.curves import CurveLibrary, PowerCurve
from gridflex.model.site import Action, Job


@dataclass(frozen=True, eq=False)
class JobFleet:
    """Static per-job arrays. Curve tables are padded to a common width by repeating
    their last point, which adds zero-width segments that change nothing."""

    ids: tuple[str, ...]
    gpus: np.ndarray  # [J] int
    flex_tier: np.ndarray  # [J] int
    flex_factor: np.ndarray  # [J]
    may_cap: np.ndarray  # [J] bool
    may_pause: np.ndarray  # [J] bool
    may_resize: np.ndarray  # [J] bool
    cap_w: np.ndarray  # [J, M] measured caps
    power_w: np.ndarray  # [J, M] per-GPU power at those caps
    throughput: np.ndarray  # [J, M]
    paused_w: np.ndarray  # [J]
    idle_w: np.ndarray  # [J]
    hull_w: np.ndarray  # [J, K] per-GPU power at the vertices of the reachable concave hull
    hull_throughput: np.ndarray  # [J, K]

    @classmethod
    def build(cls, jobs: Sequence[Job], curves: CurveLibrary) -> JobFleet:
        """Arrays for `jobs`. Hulls are computed once per (curve, allowed actions), so building
        a campus of many jobs of a few workloads costs a few hulls and a pass over the jobs."""
        n = len(jobs)
        flex0 = np.fromiter((j.flex_tier == 0 for j in jobs), bool, n)
        may_cap = np.fromiter((Action.power_cap in j.actions for j in jobs), bool, n) & ~flex0
        may_pause = np.fromiter((Action.pause in j.actions for j in jobs), bool, n) & ~flex0
        kinds: dict[tuple[str, bool, bool], int] = {}
        kind = np.fromiter(
            (kinds.setdefault((j.workload, bool(c), bool(p)), len(kinds)) for j, c, p in zip(jobs, may_cap, may_pause)),
            np.int64, n,
        )
        used = [curves[w] for w, _, _ in kinds]
        hulls = [_reachable_hull(curves[w], c, p) for w, c, p in kinds]
        return cls(
            ids=tuple(j.id for j in jobs),
            gpus=np.fromiter((j.gpus for j in jobs), np.int64, n),
            flex_tier=np.fromiter((j.flex_tier for j in jobs), np.int64, n),
            flex_factor=np.fromiter((j.flex_factor for j in jobs), float, n),
            may_cap=may_cap,
            may_pause=may_pause,
            may_resize=np.fromiter((Action.resize in j.actions for j in jobs), bool, n) & ~flex0,
            cap_w=_pad([c.cap_w for c in used])[kind],
            power_w=_pad([c.power_w for c in used])[kind],
            throughput=_pad([c.throughput for c in used])[kind],
            paused_w=np.array([c.paused_w for c in used])[kind] if used else np.zeros(0),
            idle_w=np.array([c.idle_w for c in used])[kind] if used else np.zeros(0),
            hull_w=_pad([h[0] for h in hulls])[kind],
            hull_throughput=_pad([h[1] for h in hulls])[kind],
        )

    def take(self, rows: np.ndarray) -> JobFleet:
        """The fleet of the jobs at `rows`, in that order."""
        return _map_arrays(self, lambda a: a[rows], tuple(map(self.ids.__getitem__, np.asarray(rows).tolist())))

    def extended(self, other: JobFleet) -> JobFleet:
        """This fleet with `other`'s jobs appended (curve tables padded to the wider of the two)."""
        return _map_arrays(
            self, lambda a, name: _concat(a, getattr(other, name)), self.ids + other.ids, with_name=True
        )

    def __len__(self) -> int:
        return len(self.ids)

    def under_load(self, load: np.ndarray) -> JobFleet:
        """The fleet with each job's power above idle scaled by its load [J] (the share of its
        full-speed capacity its work uses; 1: the curve as measured, flat out), as a server whose
        power follows its load draws it; throughput at each cap is unchanged."""
        load = np.asarray(load, float)

        def loaded(power_w: np.ndarray) -> np.ndarray:
            idle = self.idle_w.reshape(-1, *([1] * (power_w.ndim - 1)))
            return idle + load.reshape(idle.shape) * (power_w - idle)

        return replace(self, power_w=loaded(self.power_w), hull_w=loaded(self.hull_w), paused_w=loaded(self.paused_w))

    @property
    def full_w(self) -> np.ndarray:
        """Per-GPU power of each job running uncapped."""
        return self.power_w[:, -1]

    @property
    def max_cap_w(self) -> np.ndarray:
        return self.cap_w[:, -1]

    @property
    def controllable(self) -> np.ndarray:
        return self.may_cap | self.may_pause

    def index(self, job_id: str) -> int:
        try:
            return self.ids.index(job_id)
        except ValueError:
            raise KeyError(f"unknown job {job_id!r}") from None

    @cached_property
    def hull_slope(self) -> np.ndarray:
        """[J, K-1] throughput gained per watt per GPU along each hull segment (0 on padding)."""
        dw = np.diff(self.hull_w, axis=1)
        return np.divide(np.diff(self.hull_throughput, axis=1), dw, out=np.zeros_like(dw), where=dw > 0)

    @cached_property
    def throughput_at_cap(self) -> RowInterp:
        return RowInterp(self.cap_w, self.throughput)

    @cached_property
    def power_at_cap(self) -> RowInterp:
        return RowInterp(self.cap_w, self.power_w)

    @cached_property
    def cap_at_power(self) -> RowInterp:
        return RowInterp(self.power_w, self.cap_w)

    @cached_property
    def level_at_throughput(self) -> RowInterp:
        """Least per-GPU power on the reachable hull that gives a throughput."""
        return RowInterp(self.hull_throughput, self.hull_w)

    def job_power_w(self, cap_w: np.ndarray, active: np.ndarray, running: np.ndarray | None = None) -> np.ndarray:
        """Modelled power of each job [W]: `active` fraction of GPUs at the cap, the rest paused;
        idle where `running` (default: all) is false."""
        per_gpu = active * self.power_at_cap(cap_w) + (1 - active) * self.paused_w
        return self.gpus * (per_gpu if running is None else np.where(running, per_gpu, self.idle_w))


def _reachable_hull(curve: PowerCurve, may_cap: bool, may_pause: bool) -> tuple[np.ndarray, np.ndarray]:
    """(per-GPU power, throughput) vertices a job can reach with the actions it allows."""
    if may_cap:
        return curve.hull(with_pause=may_pause)
    full = (np.array([curve.full_power_w]), np.array([1.0]))
    if not may_pause:
        return full
    return np.array([curve.paused_w, curve.full_power_w]), np.array([0.0, 1.0])


def _map_arrays(fleet: JobFleet, fn, ids: tuple[str, ...], with_name: bool = False) -> JobFleet:
    names = [f.name for f in fields(fleet) if f.name != "ids"]
    return type(fleet)(ids=ids, **{n: fn(getattr(fleet, n), n) if with_name else fn(getattr(fleet, n)) for n in names})


def _concat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of `a` then `b`; 2-D tables padded to a common width by repeating each row's last point."""
    if a.ndim == 2 and a.shape[1] != b.shape[1]:
        width = max(a.shape[1], b.shape[1])
        a, b = (np.pad(x, ((0, 0), (0, width - x.shape[1])), mode="edge") if len(x) else x.reshape(0, width)
                for x in (a, b))
    return np.concatenate([a, b])


def _pad(rows: Sequence[Sequence[float]]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 1))
    width = max(len(r) for r in rows)
    out = np.empty((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        out[i, len(r) :] = r[-1]
    return out


class RowInterp:
    """`np.interp` applied row by row: xp and fp [J, K] with xp non-decreasing in each row,
    called with x [J]; values outside a row's range are clamped. The rows are laid end to end,
    each shifted past the previous one, so that one `np.interp` call serves them all."""

    def __init__(self, xp: np.ndarray, fp: np.ndarray):
        self.lo, self.hi = xp[:, 0], xp[:, -1]
        self.shift = np.arange(len(xp)) * (float(np.max(self.hi - self.lo, initial=0.0)) + 1.0) - self.lo
        self.flat_xp = (xp + self.shift[:, None]).ravel()
        self.flat_fp = np.asarray(fp, float).ravel()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not len(self.lo):  # no rows (a site with no job running): np.interp refuses empty tables
            return np.zeros(0)
        x = np.minimum(np.maximum(x, self.lo), self.hi)
        return np.interp(x + self.shift, self.flat_xp, self.flat_fp)

