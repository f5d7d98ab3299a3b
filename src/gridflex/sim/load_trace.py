"""Utilization traces: how hard an inference job is driven over time, from real request arrivals.

The bundled trace is the tokens per second (prompt + output) of the Azure LLM inference trace
2023 (one hour of conversation and of code requests). A serving GPU's power above idle follows
its load; the load is the token rate smoothed over `SMOOTH_S` (batching), over its 99th
percentile. The hour is tiled over the day and scaled by a diurnal factor (lowest at 04:00 local,
highest at 16:00): the real trace gives the second-to-minute swings, the diurnal shape is a
stated assumption because the public trace covers one hour only.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import tzinfo
from functools import cache
from importlib import resources

import numpy as np

from gridflex.errors import InputError

TRACES = {"azure-llm-conv": "conv_tokens", "azure-llm-code": "code_tokens"}
SMOOTH_S = 30
DIURNAL_MIN = 0.55  # load at 04:00 local relative to 16:00


@cache
def _hourly_load(name: str) -> np.ndarray:
    if name not in TRACES:
        raise InputError(f"load trace {name!r} unknown; allowed: {', '.join(TRACES)}")
    text = resources.files("gridflex.data").joinpath("azure_llm_tokens_per_s.csv").read_text()
    tokens = np.array([float(r[TRACES[name]]) for r in csv.DictReader(text.splitlines())])
    tokens = tokens[: np.flatnonzero(tokens)[-1] + 1]
    padded = np.concatenate([tokens[-SMOOTH_S:], tokens])  # the hour is tiled, so wrap around
    smooth = np.convolve(padded, np.ones(SMOOTH_S) / SMOOTH_S, mode="valid")[1:]
    return np.clip(smooth / np.percentile(smooth, 99), 0.0, 1.0)


def diurnal(t_s: np.ndarray, tz: tzinfo) -> np.ndarray:
    offset_s = tz.utcoffset(None).total_seconds()
    hour = ((np.asarray(t_s) + offset_s) / 3600.0) % 24
    return DIURNAL_MIN + (1 - DIURNAL_MIN) * 0.5 * (1 - np.cos(2 * np.pi * (hour - 4) / 24))


def load_at(name: str, t_s: np.ndarray, tz: tzinfo) -> np.ndarray:
    """Load fraction (0..1) of a job driven by trace `name` at epoch seconds `t_s`."""
    hourly = _hourly_load(name)
    return hourly[np.asarray(t_s, np.int64) % len(hourly)] * diurnal(t_s, tz)


def utilization_fn(traces: dict[str, str], job_ids: Sequence[str], tz: tzinfo):
    """A function of step times [n] and job rows [R] (indices into `job_ids`) giving those jobs'
    load [n, R] (1 for jobs without a trace), or None when no job has a trace."""
    if not traces:
        return None
    index = {j: i for i, j in enumerate(job_ids)}
    traced = {index[j]: name for j, name in traces.items()}

    def utilization(times_s: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.ones((len(times_s), len(rows)))
        for k in np.flatnonzero(np.isin(rows, list(traced))):
            out[:, k] = load_at(traced[int(rows[k])], times_s, tz)
        return out

    return utilization
