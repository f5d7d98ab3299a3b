"""Deferral: queued flexible jobs held while the grid asks for less, released one by one after.

A queued job may be held for at most its tier's allowance: the time that running at its flex
factor would have added, `(1 / flex_factor - 1)` times its work, less a 5 % reserve (a Flex 3 job
of 2 h may wait 1.9 h, a Flex 1 job of 2 h about 12.7 min); the work counted is at most `hold_work_s` (a job of
unknown length counts that much), so that a service meant to run for days is not held for
hours. A held job whose allowance is spent is released at once. A job is held only if its allowance covers the rest of the events under way or near:
a job that would have to start before they end anyway starts now, with its whole allowance left
for the planner to slow it. Flex 0 jobs are never held. Once no event is under way or near,
held jobs are released oldest first, one every `release_stagger_s`, so that site power climbs
back gradually.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gridflex.model.scenario import ControlSettings
from gridflex.model.site import Job

#: Share of a job's allowance never spent on holding: room for what running costs anyway (a training
#: job's checkpoint saves, ~1 % of its time) once a held job has started.
HOLD_RESERVE = 0.05


class Deferral:
    """Which queued jobs to hold now, and how long each has been held."""

    def __init__(self, settings: ControlSettings):
        self.settings = settings
        self.held_s: dict[str, float] = {}  # job id -> seconds held so far
        self.held: list[str] = []  # held now, oldest first
        self._last_release_s = float("-inf")

    @property
    def _lag_s(self) -> float:
        """A release reaches the plant at the next tick and the job starts at the scheduler's next
        pass: hold that much less than the allowance."""
        return 2 * self.settings.interval_s

    def allowance_s(self, job: Job) -> float:
        return (1.0 / job.flex_factor - 1.0) * self._work_s(job) * (1.0 - HOLD_RESERVE)

    def _work_s(self, job: Job) -> float:
        return min(job.duration_s or np.inf, self.settings.hold_work_s)

    def decide(self, t_s: float, dt_s: float, queued: Sequence[Job], constrained_until_s: float | None) -> frozenset[str]:
        """The ids to hold from now on. `constrained_until_s`: when the events under way or near
        end (None: none)."""
        waiting = {j.id: j for j in queued}
        self.held = [i for i in self.held if i in waiting]
        for i in self.held:
            self.held_s[i] = self.held_s.get(i, 0.0) + dt_s
        if constrained_until_s is not None:
            rest_s = constrained_until_s - t_s

            def covers(j: Job) -> bool:
                return j.flex_tier > 0 and self.held_s.get(j.id, 0.0) + rest_s + self._lag_s <= self.allowance_s(j)

            already = set(self.held)
            self.held = [i for i in self.held if covers(waiting[i])]
            self.held += [j.id for j in queued if j.id not in already and covers(j)]
        else:
            self.held = [i for i in self.held if self.held_s[i] + self._lag_s < self.allowance_s(waiting[i])]
            if self.held and t_s - self._last_release_s >= self.settings.release_stagger_s:
                self.held.pop(0)
                self._last_release_s = t_s
        return frozenset(self.held)

    def flex_factor(self, job: Job) -> float:
        """The throughput a job that was held must keep once it runs, so that holding and slowing
        together leave it no later than its tier allows: work / (work / flex_factor − held)."""
        work_s = self._work_s(job)
        left_s = work_s / job.flex_factor - self.held_s.get(job.id, 0.0)
        return min(1.0, work_s / left_s) if left_s > work_s else 1.0
