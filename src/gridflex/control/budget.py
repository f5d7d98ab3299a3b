"""The flex-budget account: how much slowdown each job has used of its tier's allowance."""

from __future__ import annotations

import numpy as np


class FlexBudget:
    """Per-job throughput delivered inside its window, and the least throughput it may run at
    now so that its average over the window stays at or above its flex factor."""

    def __init__(self, flex_factor: np.ndarray, win_start_s: np.ndarray, win_end_s: np.ndarray, safety: float = 0.01):
        self.flex_factor = np.asarray(flex_factor, float)
        self.win_start_s, self.win_end_s = np.asarray(win_start_s, float), np.asarray(win_end_s, float)
        self.safety = safety
        self.delivered_s = np.zeros(len(self.flex_factor))  # throughput-seconds inside the window
        self.elapsed_s = np.zeros(len(self.flex_factor))  # window seconds accounted so far

    def remapped(
        self, src: np.ndarray, flex_factor: np.ndarray, win_start_s: np.ndarray, win_end_s: np.ndarray
    ) -> FlexBudget:
        """The account for a new job list: row i carries on this account's row `src[i]`, or starts
        afresh over its window where `src[i]` is -1. Every row takes the flex factor given (a tier
        changed, or a held job that must now keep more)."""
        kept = src >= 0

        def carried(old: np.ndarray, fresh: np.ndarray | float) -> np.ndarray:
            return np.where(kept, old[src] if len(old) else 0.0, fresh)

        out = FlexBudget(flex_factor, carried(self.win_start_s, win_start_s), carried(self.win_end_s, win_end_s),
                         self.safety)
        out.delivered_s, out.elapsed_s = carried(self.delivered_s, 0.0), carried(self.elapsed_s, 0.0)
        return out

    def restart(self, row: int, win_start_s: float, win_end_s: float) -> None:
        """Begin a new window for one job."""
        self.win_start_s[row], self.win_end_s[row] = win_start_s, win_end_s
        self.delivered_s[row] = self.elapsed_s[row] = 0.0

    @property
    def window_s(self) -> np.ndarray:
        return self.win_end_s - self.win_start_s

    def record(self, t0_s: float, t1_s: float, throughput: np.ndarray) -> None:
        """Add the mean throughput measured over (t0, t1]; NaN (unknown) counts as full."""
        overlap = np.clip(np.minimum(t1_s, self.win_end_s) - np.maximum(t0_s, self.win_start_s), 0, None)
        self.delivered_s += np.where(np.isnan(throughput), 1.0, throughput) * overlap
        self.elapsed_s += overlap

    def used(self) -> np.ndarray:
        """Fraction of each job's slowdown allowance spent so far (Flex 0: always 0)."""
        allowance = (1 - self.flex_factor) * self.window_s
        lost = self.elapsed_s - self.delivered_s
        return np.divide(lost, allowance, out=np.zeros_like(lost), where=allowance > 0)

    def performance(self) -> np.ndarray:
        """Mean throughput so far over the elapsed part of each window (1.0 before it starts)."""
        return np.divide(self.delivered_s, self.elapsed_s, out=np.ones_like(self.elapsed_s), where=self.elapsed_s > 0)

    def floor(self, constrained_left_s: np.ndarray) -> np.ndarray:
        """Least throughput for each job now, spreading what it may still lose evenly over the
        `constrained_left_s` seconds of its window in which targets will call for cuts, and
        assuming full throughput in the rest."""
        required = np.minimum(self.flex_factor + self.safety, 1.0) * self.window_s
        left = self.window_s - self.elapsed_s
        free = np.clip(left - constrained_left_s, 0, None)
        need = required - self.delivered_s - free
        floor = np.divide(need, constrained_left_s, out=np.ones_like(need), where=constrained_left_s > 0)
        floor = np.where(self.flex_factor >= 1.0, 1.0, floor)
        return np.clip(floor, 0.0, 1.0)
