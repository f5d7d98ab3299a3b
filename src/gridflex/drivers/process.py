"""Process driver: single hosts without a scheduler.

Each job is a process group (e.g. a training run started in its own session). Pausing sends
SIGSTOP to the whole group and resuming SIGCONT; with `duty_period_s` set, an active
fraction between 0 and 1 is reached by duty-cycling: the group runs that fraction of every
period. Power is estimated from each job's curve (there is no meter); a composite with the
NVML driver measures it. Every stopped group is recorded in the `Ledger` before the signal,
and `restore()` continues them all, also after a crash.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gridflex.drivers.base import DriverHealth, JobActions, Telemetry, pair_with_jobs
from gridflex.drivers.estimate import PowerEstimate
from gridflex.drivers.ledger import Ledger
from gridflex.errors import DriverError
from gridflex.model.curves import CurveLibrary
from gridflex.model.site import Action, Job, Site

log = logging.getLogger(__name__)


class ProcessJob(Job):
    """A job and the process group it runs in."""

    pgid: int = Field(gt=1, description="process group id (the pid of a process started in its own session)")

    def job(self) -> Job:
        return Job(**self.model_dump(exclude={"pgid"}))


class ProcessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: tuple[ProcessJob, ...] = ()
    duty_period_s: float | None = Field(
        None, gt=0, description="period of duty-cycling for active fractions between 0 and 1 (None: off)")
    state_file: str | None = Field(None, description="ledger of stopped groups (default: in memory only)")


class ProcessDriver:
    """The driver contract over POSIX process groups (see the module docstring)."""

    name = "process"

    def __init__(self, site: Site, curves: CurveLibrary, settings: ProcessSettings,
                 clock: Callable[[], float] = time.time):
        ids = [j.id for j in settings.jobs]
        if len(set(ids)) != len(ids):
            raise DriverError(f"process driver: job ids must be unique; got {ids}")
        for j in settings.jobs:
            if j.workload not in curves:
                raise DriverError(f"job {j.id!r}: workload {j.workload!r} has no power curve; known: {', '.join(curves)}")
        self.site, self.curves, self.settings, self.clock = site, curves, settings, clock
        self.pgid = {j.id: j.pgid for j in settings.jobs}
        self.all_jobs = [j.job() for j in settings.jobs]
        self.jobs: list[Job] = []
        self.ledger = Ledger(settings.state_file)
        self._active: dict[str, float] = {}  # job -> active fraction commanded
        self._estimate = PowerEstimate([], curves, site)
        self._cycler: _DutyCycler | None = None

    # --- driver verbs --------------------------------------------------------------------
    def discover(self) -> list[Job]:
        """The configured jobs whose process group is alive."""
        self.jobs = [j for j in self.all_jobs if _alive(self.pgid[j.id])]
        self._estimate = PowerEstimate(self.jobs, self.curves, self.site)
        return list(self.jobs)

    def queue(self) -> list[Job]:
        """Process groups have no queue."""
        return []

    def read(self) -> Telemetry:
        running = np.array([_alive(self.pgid[j.id]) for j in self.jobs], dtype=bool)
        active = np.array([self._active.get(j.id, 1.0) for j in self.jobs])
        return self._estimate.telemetry(self.clock(), self._estimate.max_cap_w.copy(), active, running)

    def preview(self, actions: JobActions) -> list[str]:
        return [f"{verb} process group {self.pgid[jid]} (job {jid})" for jid, verb, _ in self._steps(actions)]

    def apply(self, actions: JobActions) -> None:
        steps = self._steps(actions)
        for jid, verb, frac in steps:
            if verb != "continue":
                self.ledger.remember(f"stop:{jid}", self.pgid[jid])
            self._active[jid] = frac
        self._update_cycler()  # first, as it continues the groups that leave duty-cycling
        for jid, verb, _ in steps:
            if verb == "stop":
                self._signal(jid, signal.SIGSTOP)
            elif verb == "continue":
                self._signal(jid, signal.SIGCONT)
                self.ledger.forget(f"stop:{jid}")

    def restore(self) -> None:
        """Continue every group this driver stopped or duty-cycles (also after a crash)."""
        if self._cycler:
            self._cycler.stop()
            self._cycler = None
        for key, pgid in self.ledger.items():
            try:
                os.killpg(int(pgid), signal.SIGCONT)
            except ProcessLookupError:
                pass  # the job has ended
            except PermissionError:
                raise DriverError(f"{key}: not allowed to signal process group {pgid}; run as its owner") from None
            self.ledger.forget(key)
        self._active.clear()

    def health(self) -> DriverHealth:
        gone = [j.id for j in self.all_jobs if not _alive(self.pgid[j.id])]
        return DriverHealth(True, f"{len(self.all_jobs) - len(gone)} process group(s) alive"
                                  + (f"; ended: {', '.join(gone)}" if gone else ""))

    # --- internals ---------------------------------------------------------------------
    def _steps(self, actions: JobActions) -> list[tuple[str, str, float]]:
        paired = pair_with_jobs(actions, self.jobs)
        for job, c, a in paired:
            jid, top = job.id, self.curves[job.workload].max_cap_w
            if not np.isfinite(a) or not 0 <= a <= 1:
                raise DriverError(f"job {jid!r}: active {a} outside 0..1")
            if 0 < a < 1 and self.settings.duty_period_s is None:
                raise DriverError(f"job {jid!r}: active {a} needs duty-cycling; allowed: 0 or 1 (set duty_period_s)")
            if not np.isfinite(c) or c < top - 1e-6:
                raise DriverError(f"job {jid!r}: cap_w {c} needs a GPU power cap; allowed: {top:.0f} W (uncapped) "
                                  "or add an nvml driver in a composite")
            if a < 1 and (job.flex_tier == 0 or Action.pause not in job.actions):
                raise DriverError(f"job {jid!r} (flex {job.flex_tier}) does not allow pause")
        steps = []
        for jid, a in ((job.id, a) for job, _, a in paired):
            if a == self._active.get(jid, 1.0):
                continue
            steps.append((jid, "stop" if a == 0 else "continue" if a == 1 else f"duty-cycle at {a:.2f} of", a))
        return steps

    def _signal(self, jid: str, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pgid[jid], sig)
        except ProcessLookupError:
            log.info("job %s: process group %s has ended", jid, self.pgid[jid])
        except PermissionError:
            raise DriverError(f"job {jid!r}: not allowed to signal process group {self.pgid[jid]}; "
                              "run gridflex as the job's owner") from None

    def _update_cycler(self) -> None:
        fractions = {self.pgid[j]: a for j, a in self._active.items() if 0 < a < 1}
        if fractions and self._cycler is None:
            self._cycler = _DutyCycler(float(self.settings.duty_period_s))
            self._cycler.start()
        if self._cycler:
            self._cycler.set(fractions)


class _DutyCycler(threading.Thread):
    """Runs each process group for its fraction of every period (SIGCONT at the period's start,
    SIGSTOP when its share is used); a group that leaves the set is continued."""

    def __init__(self, period_s: float):
        super().__init__(name="gridflex-duty-cycle", daemon=True)
        self.period_s = period_s
        self._fractions: dict[int, float] = {}
        self._stopped: set[int] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def set(self, fractions: dict[int, float]) -> None:
        with self._lock:
            for pgid in set(self._fractions) - set(fractions):
                self._send(pgid, signal.SIGCONT)
            self._fractions = dict(fractions)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        with self._lock:
            for pgid in list(self._stopped):
                self._send(pgid, signal.SIGCONT)

    def run(self) -> None:
        while not self._halt.wait(min(0.05, self.period_s / 20)):
            phase = (time.monotonic() % self.period_s) / self.period_s
            with self._lock:
                for pgid, frac in self._fractions.items():
                    want_stopped = phase >= frac
                    if want_stopped != (pgid in self._stopped):
                        self._send(pgid, signal.SIGSTOP if want_stopped else signal.SIGCONT)

    def _send(self, pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        (self._stopped.add if sig == signal.SIGSTOP else self._stopped.discard)(pgid)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

