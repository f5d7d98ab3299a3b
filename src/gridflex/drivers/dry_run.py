"""Dry run: reads and discovers for real, logs every action it would take, takes none."""

from __future__ import annotations

import logging
from collections import deque

from gridflex.drivers.base import Driver, DriverHealth, JobActions, Telemetry
from gridflex.model.site import Job

log = logging.getLogger(__name__)


class DryRunDriver:
    """Wraps a driver; `apply` and `restore` only log (and keep in `actions`) what the wrapped
    driver would do. Actions are still checked, so a dry run also shows what would be refused."""

    def __init__(self, inner: Driver):
        self.inner = inner
        self.name = f"dry-run:{inner.name}"
        self.actions: deque[str] = deque(maxlen=1000)  # the latest of what it would have done, in order

    def discover(self) -> list[Job]:
        return self.inner.discover()

    def queue(self) -> list[Job]:
        return list(self.inner.queue())

    def read(self) -> Telemetry:
        return self.inner.read()

    def apply(self, actions: JobActions) -> None:
        preview = getattr(self.inner, "preview", None)
        lines = preview(actions) if preview else [f"job {jid}: cap_w {c:.0f} W, active {a:.2f}"
                                                  for jid, c, a in actions]
        lines += [f"hold queued job {job_id}" for job_id in sorted(actions.held)]
        for line in lines:
            self._log(f"would {line}")

    def restore(self) -> None:
        self._log(f"would restore everything {self.inner.name} changed")

    def health(self) -> DriverHealth:
        h = self.inner.health()
        return DriverHealth(h.ok, f"dry run (no actions taken); {h.detail}")

    def _log(self, line: str) -> None:
        self.actions.append(line)
        log.info("dry run: %s", line)
