"""Calibrated physics of the digital twin, in pieces the twin driver composes.

Each piece works on rows (one per running job) that come and go: `take(rows)` keeps some rows,
`append(...)` adds new ones, or the function is stateless over per-row arrays. Randomness comes
only from the `numpy.random.Generator` passed in. Every figure in `Calibration` is derived by
`bench/calibrate_twin.py` from measured data (or marked assumed); docs/twin.md gives the source
of each. The controller never imports this module: the twin's errors are its own.

Per-GPU power of a row at a step is

    floor_w + activity * (curve_power_at_cap - floor_w)

where the transition profile gives `floor_w` (idle, released or suspended GPUs) and a profile
activity, the fluctuation multiplies the activity (all GPUs of a job move together) and the
post-event recovery scales the whole; throughput is the curve's at the cap times the profile's
and the fluctuation's throughput factors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cached_property

import numpy as np
from scipy.signal import lfilter

from gridflex.model.fleet import RowInterp


@dataclass(frozen=True)
class Calibration:
    """The twin's figures (docs/twin.md: where each comes from)."""

    # True curves (phoenix-2025 dvfs_sweep; gpu-power-limit-zeus, power-bound curves).
    knee_sd_w: float = 11.0  # job-to-job std of the cap where throughput reaches 0.9
    low_slope_log_sd: float = 0.09  # std of log(slope below 250 W)
    low_cap_w: float = 250.0
    power_bias: float = -0.0175  # log(measured pre-event SRP power / modelled full power)
    power_scale_sd: float = 0.007  # job-to-job std of log(power at cap) within a family
    # GPUs not working, as fractions of the job's highest cap (h100 idle; SRP hold balance).
    idle_fraction: float = 0.103  # allocated, nothing running (h100: 72 W of 700 W)
    released_fraction: float = 0.026  # stopped job's GPUs, as the site meter sees them (SRP: ~11 W)
    suspended_fraction: float = 0.103  # suspended in memory: as idle (assumed)
    # Fluctuation of a job's power above idle, common to all its GPUs.
    iteration_rel: float = 0.018  # std of 1-s means within compute (h100)
    minute_rel: float = 0.0096  # per-job std of the 1-s process behind the SRP minute residual
    minute_tau_s: float = 30.0  # its correlation time (SRP lag-1 autocorrelation)
    drift_rel: float = 0.013  # per-job std of slow drift (SRP pre-event 7-min median)
    drift_tau_s: float = 1800.0  # assumed
    checkpoint_period_s: float = 3600.0  # SRP: dips recur at the same minute every hour
    checkpoint_stall_s: float = 34.7  # SRP dip energy / drop rate (h100: 17-56 s)
    checkpoint_stall_log_sd: float = 0.16
    stall_activity: float = 0.176  # power above idle while saving (h100: 157 W vs 553 W compute)
    # Transitions.
    startup_activity: float = 0.089  # reload and re-initialise (h100: 115 W for ~105 s)
    # Command to work: proportional to the model's size (reload and re-initialise; assumed), per
    # billion parameters from the SRP restarts (MPT-13B at the swap 396 s, MPT-7B at the end 170 s).
    restart_s_per_bparam: float = 27.2
    restart_log_sd: float = 0.16  # the two restarts about that law (1 degree of freedom)
    restart_s: float = 259.0  # a model of unknown size: the two restarts' geometric mean
    warmup_s: float = 60.0  # throughput and power ramp after re-initialising (assumed; SRP < 1 min)
    suspend_s: float = 3.0  # assumed
    resume_s: float = 3.0  # assumed
    # After the event (SRP: 19:50-21:20 median 3.4 % under the pre-event hour, no recovery seen).
    recovery_depth: float = 0.034
    recovery_tau_s: float = 6 * 3600.0  # assumed: longer than the 105 min the trace shows
    recovery_min_cut: float = 0.01  # a cap taking less off a job's power is no curtailment (assumed)

    def scaled(self, curve_spread: float, fluctuation: float, recovery: float) -> Calibration:
        """These figures with the curve errors (spreads and bias), the fluctuation and the
        post-event deficit each multiplied by a factor (0: none; 1: as calibrated)."""
        return replace(
            self,
            knee_sd_w=self.knee_sd_w * curve_spread,
            low_slope_log_sd=self.low_slope_log_sd * curve_spread,
            power_bias=self.power_bias * curve_spread,
            power_scale_sd=self.power_scale_sd * curve_spread,
            iteration_rel=self.iteration_rel * fluctuation,
            minute_rel=self.minute_rel * fluctuation,
            drift_rel=self.drift_rel * fluctuation,
            recovery_depth=self.recovery_depth * recovery,
        )


CALIBRATION = Calibration()


def _pad_cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Stack two [R, M] tables of possibly different widths, padding by the last column."""
    width = max(a.shape[1], b.shape[1])

    def pad(x):
        return np.concatenate([x, np.repeat(x[:, -1:], width - x.shape[1], axis=1)], axis=1) if x.shape[1] < width else x

    return np.concatenate([pad(a), pad(b)], axis=0)


# --- true curves -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TrueCurves:
    """Each row's true curve and its GPUs' power when not working."""

    cap_w: np.ndarray  # [R, M]
    power_w: np.ndarray  # [R, M] per GPU
    throughput: np.ndarray  # [R, M]
    idle_w: np.ndarray  # [R]
    released_w: np.ndarray  # [R]
    suspended_w: np.ndarray  # [R]

    @classmethod
    def draw(
        cls, cap_w: np.ndarray, power_w: np.ndarray, throughput: np.ndarray, rng: np.random.Generator,
        cal: Calibration = CALIBRATION,
    ) -> TrueCurves:
        """True curves for model curves [R, M]: the knee moved by N(0, knee_sd_w) (the top cap
        fixed), the slope below `low_cap_w` scaled by exp(N(0, low_slope_log_sd)), power scaled
        by exp(N(power_bias, power_scale_sd)) and never above the cap."""
        cap_w, power_w, throughput = (np.atleast_2d(np.asarray(x, float)) for x in (cap_w, power_w, throughput))
        r = len(cap_w)
        knee_shift = rng.normal(0.0, cal.knee_sd_w, r)
        slope = np.exp(rng.normal(0.0, cal.low_slope_log_sd, r))
        scale = np.exp(rng.normal(cal.power_bias, cal.power_scale_sd, r))
        model = RowInterp(cap_w, throughput)
        knee = RowInterp(throughput, cap_w)(np.full(r, 0.9))
        top = cap_w[:, -1]
        weight = np.clip((top[:, None] - cap_w) / np.maximum(top - knee, 1.0)[:, None], 0.0, 1.0)
        shifted = np.column_stack([model(c) for c in (cap_w - knee_shift[:, None] * weight).T])
        low = np.minimum(cal.low_cap_w, top)
        at_low = model(low - knee_shift * np.clip((top - low) / np.maximum(top - knee, 1.0), 0, 1))[:, None]
        below = cap_w < low[:, None]
        thr = np.where(below, at_low - slope[:, None] * (at_low - shifted), shifted)
        thr = np.maximum.accumulate(np.clip(thr, 0.0, None), axis=1)
        thr = thr / thr[:, -1:]
        power = np.minimum(power_w * scale[:, None], cap_w)
        return cls(cap_w, power, thr, cal.idle_fraction * top, cal.released_fraction * top, cal.suspended_fraction * top)

    def __len__(self) -> int:
        return len(self.cap_w)

    def take(self, rows: np.ndarray) -> TrueCurves:
        return TrueCurves(*(getattr(self, f)[rows] for f in _CURVE_FIELDS))

    def append(self, other: TrueCurves) -> TrueCurves:
        tables = [_pad_cat(getattr(self, f), getattr(other, f)) for f in _CURVE_FIELDS[:3]]
        return TrueCurves(*tables, *(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _CURVE_FIELDS[3:]))

    @cached_property
    def power_at_cap(self) -> RowInterp:
        return RowInterp(self.cap_w, self.power_w)

    @cached_property
    def throughput_at_cap(self) -> RowInterp:
        return RowInterp(self.cap_w, self.throughput)


_CURVE_FIELDS = ("cap_w", "power_w", "throughput", "idle_w", "released_w", "suspended_w")


# --- fluctuation -------------------------------------------------------------------------------
class Fluctuation:
    """Job-level power fluctuation: one process per row shared by all the job's GPUs, so a
    site's swings add up per job, as synchronised training does (h100: GPUs correlate 0.999).

    activity = (1 + iteration + minute + drift) on compute, `stall_activity` while a training job
    saves its periodic checkpoint (throughput 0 then)."""

    def __init__(self, cal: Calibration = CALIBRATION):
        self.cal = cal
        self.minute = np.zeros(0)
        self.drift = np.zeros(0)
        self.phase_s = np.zeros(0)  # seconds since the row's last checkpoint began
        self.stall_s = np.zeros(0)
        self.training = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.minute)

    def append(self, training: np.ndarray, rng: np.random.Generator, phase_s: np.ndarray | None = None) -> None:
        """Add rows (True: a training job that checkpoints), each in its stationary state; the
        checkpoint phase (seconds into the hourly cycle, whose first `stall_s` are the save) is
        random unless given (a job just restarted: e.g. `period - minutes until its first save`)."""
        training = np.asarray(training, bool)
        k, cal = len(training), self.cal
        if phase_s is None:
            phase_s = rng.uniform(0.0, cal.checkpoint_period_s, k)
        self.minute = np.concatenate([self.minute, rng.normal(0.0, cal.minute_rel, k)])
        self.drift = np.concatenate([self.drift, rng.normal(0.0, cal.drift_rel, k)])
        self.phase_s = np.concatenate([self.phase_s, np.asarray(phase_s, float) % cal.checkpoint_period_s])
        stall = cal.checkpoint_stall_s * np.exp(rng.normal(0.0, cal.checkpoint_stall_log_sd, k))
        self.stall_s = np.concatenate([self.stall_s, stall])
        self.training = np.concatenate([self.training, training])

    def take(self, rows: np.ndarray) -> None:
        for name in ("minute", "drift", "phase_s", "stall_s", "training"):
            setattr(self, name, getattr(self, name)[rows])

    def advance(
        self, n: int, step_s: float, rng: np.random.Generator, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(activity, throughput factor), each [n, R], for the next `n` steps of `step_s` of the
        rows at `rows` (None: all); the other rows stand still (a job not running)."""
        cal = self.cal
        at = slice(None) if rows is None else rows
        r = len(self.minute[at])
        self.minute[at], minute = _ar1(self.minute[at], n, step_s, cal.minute_tau_s, cal.minute_rel, rng)
        self.drift[at], drift = _ar1(self.drift[at], n, step_s, cal.drift_tau_s, cal.drift_rel, rng)
        compute = 1.0 + minute + drift
        if cal.iteration_rel > 0:
            compute += rng.normal(0.0, cal.iteration_rel / np.sqrt(max(step_s, 1.0)), (n, r))
        compute = np.maximum(compute, 0.0)
        phase_s = self.phase_s[at]
        self.phase_s[at] = (phase_s + n * step_s) % cal.checkpoint_period_s
        training = self.training[at]
        if not training.any():
            return compute, np.ones((n, r))
        phase = (phase_s[None, :] + step_s * np.arange(n)[:, None]) % cal.checkpoint_period_s
        saving = np.clip((self.stall_s[at][None, :] - phase) / step_s, 0.0, 1.0) * training[None, :]
        return compute * (1 - saving) + cal.stall_activity * saving, 1.0 - saving

    def duty(self) -> np.ndarray:
        """Each row's mean throughput factor over its checkpoint cycle: 1 − save time / period for
        a training job (its saves cost that whatever the caps), 1 otherwise."""
        return 1.0 - self.training * np.minimum(self.stall_s / self.cal.checkpoint_period_s, 1.0)

    def restart(self, rows: np.ndarray) -> None:
        """The rows' jobs restart from a checkpoint: their next save comes a period later."""
        self.phase_s[rows] = self.stall_s[rows]


def _ar1(state: np.ndarray, n: int, step_s: float, tau_s: float, sd: float, rng: np.random.Generator):
    """`n` steps of a stationary AR(1) with std `sd` and time constant `tau_s` from `state`."""
    if sd == 0:
        return state, np.zeros((n, len(state)))
    phi = float(np.exp(-step_s / tau_s))
    shocks = rng.normal(0.0, sd * np.sqrt(1 - phi**2), (n, len(state)))
    out, _ = lfilter([1.0], [1.0, -phi], shocks, axis=0, zi=(phi * state)[None, :])
    return (out[-1] if n else state), out


# --- transitions -------------------------------------------------------------------------------
class Transition(IntEnum):
    """What a row is doing since its last command."""

    RUN = 0  # working (or settled after a cap change)
    CHECKPOINT_STOP = 1  # saving (GPUs near idle), then stopped and its GPUs released
    RESTART = 2  # reload and re-initialise, then warm up
    SUSPEND = 3  # suspended in memory after `suspend_s`
    RESUME = 4  # back to work after `resume_s`


class Floor(IntEnum):
    """Which power the row's GPUs fall back to when not working."""

    IDLE = 0
    RELEASED = 1
    SUSPENDED = 2


_BILLION_PARAMS = re.compile(r"(?:^|_)(\d+(?:\.\d+)?)b(?:_|$)")  # pt_mpt_13b_sm: 13


def restart_median_s(workloads: Sequence[str], cal: Calibration = CALIBRATION) -> np.ndarray:
    """Median restart time of each job: `restart_s_per_bparam` times its model's billions of
    parameters, read from the workload name (`pt_mpt_13b_sm`: 13), or `restart_s` without one."""
    sizes = [_BILLION_PARAMS.search(w) for w in workloads]
    return np.array([cal.restart_s_per_bparam * float(m.group(1)) if m else cal.restart_s for m in sizes])


def draw_durations(
    kind: Transition, n: int, rng: np.random.Generator, cal: Calibration = CALIBRATION,
    restart_median: np.ndarray | None = None,
) -> np.ndarray:
    """Seconds each of `n` transitions of one kind takes: a checkpoint-stop's save, a restart's
    reload and re-initialisation (before its warm-up; median `restart_median` [n], see
    `restart_median_s`, or `restart_s`), a suspend or resume."""
    if kind is Transition.CHECKPOINT_STOP:
        return cal.checkpoint_stall_s * np.exp(rng.normal(0.0, cal.checkpoint_stall_log_sd, n))
    if kind is Transition.RESTART:
        median = cal.restart_s if restart_median is None else restart_median
        return median * np.exp(rng.normal(0.0, cal.restart_log_sd, n))
    if kind is Transition.SUSPEND:
        return np.full(n, cal.suspend_s)
    if kind is Transition.RESUME:
        return np.full(n, cal.resume_s)
    return np.zeros(n)


def transition_profile(
    kind: np.ndarray, since_s: np.ndarray, duration_s: np.ndarray, cal: Calibration = CALIBRATION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floor code, activity, throughput factor) of rows `kind` [R] at `since_s` [..., R]
    seconds after their command, which takes `duration_s` [R] (see `draw_durations`)."""
    kind = np.broadcast_to(kind, np.shape(since_s))
    dur = np.broadcast_to(duration_s, np.shape(since_s))
    t = np.asarray(since_s, float)
    before = t < dur
    warm = np.clip((t - dur) / cal.warmup_s, 0.0, 1.0) if cal.warmup_s > 0 else (~before).astype(float)
    floor = np.full(t.shape, Floor.IDLE, dtype=np.int8)
    activity = np.ones(t.shape)
    thr = np.ones(t.shape)
    ck = kind == Transition.CHECKPOINT_STOP
    floor[ck & ~before] = Floor.RELEASED
    activity[ck] = np.where(before[ck], cal.stall_activity, 0.0)
    thr[ck] = 0.0
    rs = kind == Transition.RESTART
    activity[rs] = np.where(before[rs], cal.startup_activity, cal.startup_activity + (1 - cal.startup_activity) * warm[rs])
    thr[rs] = np.where(before[rs], 0.0, warm[rs])
    su = kind == Transition.SUSPEND
    floor[su] = Floor.SUSPENDED
    activity[su] = np.where(before[su], 1.0, 0.0)
    thr[su] = 0.0
    re = kind == Transition.RESUME
    floor[re] = Floor.SUSPENDED
    activity[re] = np.where(before[re], 0.0, 1.0)
    thr[re] = np.where(before[re], 0.0, 1.0)
    return floor, activity, thr


def floor_power_w(curves: TrueCurves, floor: np.ndarray) -> np.ndarray:
    """Per-GPU power of each row's GPUs when not working, for floor codes [..., R]."""
    return np.choose(floor, [curves.idle_w, curves.released_w, curves.suspended_w])


def per_gpu_power_w(curves: TrueCurves, cap_w: np.ndarray, floor: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """Per-GPU power [..., R]: the floor plus `activity` of the way up to the true power at the cap."""
    base = floor_power_w(curves, floor)
    return base + activity * (curves.power_at_cap(cap_w) - base)


# --- after the event ---------------------------------------------------------------------------
def recovery_factor(since_release_s: np.ndarray, cal: Calibration = CALIBRATION) -> np.ndarray:
    """Power factor of rows released from a curtailment `since_release_s` ago (NaN or negative:
    not released, 1.0): 1 − depth · exp(−t / tau), as the field came back ~3.4 % low."""
    t = np.asarray(since_release_s, float)
    released = np.isfinite(t) & (t >= 0)
    return np.where(released, 1.0 - cal.recovery_depth * np.exp(-np.where(released, t, 0.0) / cal.recovery_tau_s), 1.0)

