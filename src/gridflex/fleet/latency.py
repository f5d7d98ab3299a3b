"""Round-trip times between regions: the latency cost of serving a request at another site.

The measured source is IBM Cloud's published inter-region latency (30-day average RTT,
Netperf TCP_RR between VMs; ../shared/data/cloud-interregion-latency, facts with attribution to
IBM Cloud docs). Its long CSV has one row per snapshot and direction; `RttTable.from_csv`
keeps the newest snapshot of each pair. RTT within a region is 0.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridflex.errors import InputError


@dataclass(frozen=True, eq=False)
class RttTable:
    """`rtt_ms[i, j]`: round trip from `regions[i]` to `regions[j]` (NaN: not measured)."""

    regions: tuple[str, ...]
    rtt_ms: np.ndarray

    @classmethod
    def from_pairs(cls, pairs: Mapping[tuple[str, str], float]) -> RttTable:
        """From {(a, b): ms}; a pair given one way holds both ways."""
        regions = tuple(sorted({r for pair in pairs for r in pair}))
        idx = {r: i for i, r in enumerate(regions)}
        m = np.full((len(regions), len(regions)), np.nan)
        np.fill_diagonal(m, 0.0)
        for (a, b), ms in pairs.items():
            if not (isinstance(ms, (int, float)) and 0 <= ms < float("inf")):
                raise InputError(f"rtt_ms {a}->{b}: {ms!r}; allowed: milliseconds >= 0")
            m[idx[a], idx[b]] = ms
            if (b, a) not in pairs:
                m[idx[b], idx[a]] = ms
        return cls(regions, m)

    @classmethod
    def from_csv(cls, path: Path | str) -> RttTable:
        """The long CSV (snapshot_date, src_region, dst_region, avg_latency_ms, ...): newest
        snapshot of each directed pair."""
        newest: dict[tuple[str, str], tuple[str, float]] = {}
        try:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    key = (row["src_region"], row["dst_region"])
                    if key not in newest or row["snapshot_date"] > newest[key][0]:
                        newest[key] = (row["snapshot_date"], float(row["avg_latency_ms"]))
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"rtt file {path}: cannot read ({e}); expected columns snapshot_date, src_region, "
                             "dst_region, avg_latency_ms") from None
        return cls.from_pairs({k: v[1] for k, v in newest.items()})

    def between(self, src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
        """RTT matrix from each of `src` to each of `dst`; InputError naming an unknown region
        or a pair that was never measured."""
        idx = {r: i for i, r in enumerate(self.regions)}
        unknown = sorted({r for r in (*src, *dst) if r not in idx})
        if unknown:
            raise InputError(f"region(s) {unknown} not in the RTT table; known: {list(self.regions)}")
        m = self.rtt_ms[np.ix_([idx[r] for r in src], [idx[r] for r in dst])]
        if np.isnan(m).any():
            i, j = np.argwhere(np.isnan(m))[0]
            raise InputError(f"no RTT measured between {src[i]!r} and {dst[j]!r}; add it to the RTT table")
        return m
