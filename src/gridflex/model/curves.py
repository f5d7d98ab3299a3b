"""Power-performance curves: throughput and per-GPU power as functions of the GPU power cap.

A curve is piecewise linear through measured points (a DVFS / power-cap sweep),
made monotone, plus the per-GPU power of a paused and of an idle GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Per-GPU power of an A100 whose job is suspended (memory held, clocks idle). Not in the
#: Phoenix sweep; a typical A100 SXM figure, overridable per curve.
DEFAULT_PAUSED_W = 60.0
#: Per-GPU power of an A100 with no job at all.
DEFAULT_IDLE_W = 50.0


class PowerCurve(BaseModel):
    """One workload's measured response to per-GPU power caps."""

    model_config = ConfigDict(frozen=True)

    workload: str
    cap_w: tuple[float, ...] = Field(description="per-GPU power caps, ascending")
    power_w: tuple[float, ...] = Field(description="measured per-GPU power at each cap")
    throughput: tuple[float, ...] = Field(description="throughput at each cap, 1.0 at the highest")
    paused_w: float = Field(DEFAULT_PAUSED_W, ge=0)
    idle_w: float = Field(DEFAULT_IDLE_W, ge=0)

    @model_validator(mode="after")
    def _check(self) -> PowerCurve:
        n = len(self.cap_w)
        if n < 2 or len(self.power_w) != n or len(self.throughput) != n:
            raise ValueError(
                f"curve {self.workload!r}: cap_w, power_w and throughput need the same length, at least 2"
            )
        if any(b <= a for a, b in zip(self.cap_w, self.cap_w[1:])):
            raise ValueError(f"curve {self.workload!r}: cap_w must be strictly ascending")
        if self.paused_w >= self.power_w[0]:
            raise ValueError(
                f"curve {self.workload!r}: paused_w ({self.paused_w}) must be below the power at the lowest cap"
            )
        return self

    @property
    def max_cap_w(self) -> float:
        return self.cap_w[-1]

    @property
    def min_cap_w(self) -> float:
        return self.cap_w[0]

    @property
    def full_power_w(self) -> float:
        """Per-GPU power when uncapped (at the highest measured cap)."""
        return self.power_w[-1]

    def throughput_at(self, cap_w: float | np.ndarray) -> np.ndarray:
        return np.interp(cap_w, self.cap_w, self.throughput)

    def power_at(self, cap_w: float | np.ndarray) -> np.ndarray:
        return np.interp(cap_w, self.cap_w, self.power_w)

    def cap_for_power(self, power_w: float | np.ndarray) -> np.ndarray:
        """The cap at which a GPU draws `power_w` (inverse of `power_at`)."""
        return np.interp(power_w, self.power_w, self.cap_w)

    def hull(self, with_pause: bool) -> tuple[np.ndarray, np.ndarray]:
        """Upper concave hull of (per-GPU power, throughput): the best throughput reachable at
        each average power by capping and, if `with_pause`, by pausing part of the time or GPUs."""
        p = np.asarray(self.power_w, float)
        t = np.asarray(self.throughput, float)
        if with_pause:
            p = np.concatenate([[self.paused_w], p])
            t = np.concatenate([[0.0], t])
        return upper_concave_hull(p, t)


def upper_concave_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the upper concave hull of points sorted by x (Andrew's monotone chain),
    from the leftmost point to the rightmost."""
    keep: list[int] = []
    for i in range(len(x)):
        while len(keep) >= 2:
            a, b = keep[-2], keep[-1]
            cross = (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a])
            if cross >= 0:  # b lies on or below the chord a→i
                keep.pop()
            else:
                break
        keep.append(i)
    return x[keep], y[keep]


@dataclass(frozen=True)
class SweepPoint:
    """One measured point of a power-cap sweep."""

    workload: str
    cap_w: float
    power_w: float
    throughput: float


def fit_curve(workload: str, points: Iterable[SweepPoint], **kw: float) -> PowerCurve:
    """Fit a monotone piecewise-linear curve to sweep points of one workload.

    Repeated caps are averaged; power and throughput are made non-decreasing in the cap
    (pool-adjacent-violators), and throughput is normalised to 1.0 at the highest cap."""
    pts = sorted(points, key=lambda p: p.cap_w)
    if not pts:
        raise ValueError(f"curve {workload!r}: no sweep points")
    caps = np.array([p.cap_w for p in pts])
    uniq, inverse = np.unique(caps, return_inverse=True)
    counts = np.bincount(inverse)
    power = np.bincount(inverse, [p.power_w for p in pts]) / counts
    thr = np.bincount(inverse, [p.throughput for p in pts]) / counts
    power, thr = _isotonic(power, counts), _isotonic(thr, counts)
    if thr[-1] <= 0:
        raise ValueError(f"curve {workload!r}: throughput at the highest cap must be positive")
    return PowerCurve(
        workload=workload,
        cap_w=tuple(uniq.tolist()),
        power_w=tuple(power.tolist()),
        throughput=tuple((thr / thr[-1]).tolist()),
        **kw,
    )


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [weighted mean, weight, count]
    for yi, wi in zip(y.astype(float), w.astype(float)):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([[m] * c for m, _, c in blocks])


class CurveLibrary(Mapping[str, PowerCurve]):
    """Curves by workload name."""

    def __init__(self, curves: Iterable[PowerCurve] = ()):
        self._curves = {c.workload: c for c in curves}

    def __getitem__(self, workload: str) -> PowerCurve:
        try:
            return self._curves[workload]
        except KeyError:
            raise KeyError(
                f"unknown workload {workload!r}; known: {', '.join(sorted(self._curves))}"
            ) from None

    def __iter__(self):
        return iter(self._curves)

    def __len__(self) -> int:
        return len(self._curves)

    def merged(self, other: Iterable[PowerCurve]) -> CurveLibrary:
        """A library with `other`'s curves added (replacing same-named ones)."""
        return CurveLibrary([*self._curves.values(), *other])
