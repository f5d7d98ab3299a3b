"""Slurm driver: Slurm jobs become gridflex jobs; pauses go through Slurm's own controls.

- discover: running and suspended jobs from ``squeue``; flex tier, workload curve and pause
  mode from `SlurmRules` (job comment ``gridflex:flex=2,workload=...,pause=checkpoint``,
  then QOS, then partition, then the default); GPU count from the job's GPU GRES; a deadline from
  ``--deadline`` or the comment (``deadline=2026-12-01T06:00Z``; with both, the earlier).
- pause (active 0): ``scontrol suspend`` (pause mode suspend), or for jobs that checkpoint a
  signal sent ahead with ``scancel --signal --full`` and, after the grace time,
  ``scontrol requeuehold``; run (active 1): ``scontrol resume`` / ``scontrol release``.
- queued work: pending jobs are listed by `queue()`; those the controller asks to hold are held
  (``scontrol hold``), and released (``scontrol release``) when it no longer does.
- one ``squeue`` call per tick serves `discover()`, `queue()` and `read()`; a tick that sees
  new jobs adds one ``scontrol show job --oneliner`` for their ``--begin`` (EligibleTime) and
  ``--deadline``, which squeue's ``--format`` letters do not give.
- power: there is no meter in Slurm, so telemetry is estimated from job state and curve
  (`PowerEstimate`); a composite with the NVML driver replaces it by measurements.

Everything the driver changes is recorded in its `Ledger` before the command runs;
`restore()` undoes all of it, also after a crash. Per-GPU caps are not a Slurm control: a
cap below the curve's top must come through NVML.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gridflex.drivers.base import DriverHealth, JobActions, Telemetry, pair_with_jobs
from gridflex.drivers.estimate import PowerEstimate
from gridflex.drivers.ledger import Ledger
from gridflex.errors import DriverError
from gridflex.model.curves import CurveLibrary
from gridflex.model.site import Action, Job, Latency, PauseMode, Site

log = logging.getLogger(__name__)

#: squeue fields, separated by the ASCII unit separator so names and comments cannot break them.
SEP = "\x1f"
SQUEUE_FIELDS = ("%i", "%T", "%P", "%q", "%D", "%b", "%l", "%S", "%r", "%u", "%j", "%k")
UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted",
               "Connection refused", "Unable to establish controller", "is DOWN")
GONE = ("Invalid job id", "already completed", "Job/step already completing or completed",
        "is not running", "Job has already finished", "not suspended")
#: Errors seen while slurmctld is recovering (e.g. just restarted, nodes not yet registered): retried.
TRANSIENT = ("Unexpected message received", "not responding", "Resource temporarily unavailable",
             "Slurm backup controller in standby mode")
COMMENT_RE = re.compile(r"gridflex:(\S+)")


class SlurmUnreachable(DriverError):
    """slurmctld did not answer."""


class SlurmRules(BaseModel):
    """How Slurm jobs map to gridflex jobs. The job comment convention wins over QOS, QOS over
    partition, partition over the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_flex: int = Field(0, ge=0, le=3, description="tier of jobs no rule matches (0: never touched)")
    flex_by_qos: dict[str, int] = Field(default_factory=dict)
    flex_by_partition: dict[str, int] = Field(default_factory=dict)
    default_workload: str = Field("pt_mpt_7b_fast", description="power curve of jobs no rule names")
    workload_by_partition: dict[str, str] = Field(default_factory=dict)
    checkpoint_qos: tuple[str, ...] = Field((), description="QOS whose jobs pause by checkpoint-stop")
    default_gpus: int = Field(1, gt=0, description="GPU count of jobs without a GPU GRES")
    partitions: tuple[str, ...] = Field((), description="only jobs in these partitions (empty: all)")


class SlurmSettings(BaseModel):
    """How the driver reaches Slurm and acts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: SlurmRules = SlurmRules()
    bin_dir: str | None = Field(None, description="directory of squeue/scontrol/scancel (default: PATH)")
    command_timeout_s: float = Field(15.0, gt=0)
    checkpoint_signal: str = Field("USR1", pattern=r"^[A-Z0-9]+$", description="sent ahead of a requeue")
    checkpoint_grace_s: float = Field(60.0, ge=0, description="seconds between the signal and the requeue")
    hold_pending: bool = Field(True, description="hold pending flexible jobs when the controller defers them")
    confirm_timeout_s: float = Field(5.0, ge=0, description="wait this long for squeue to show an action")
    retry_s: float = Field(20.0, ge=0, description="keep retrying a command that fails transiently this long")
    state_file: Path | None = Field(None, description="ledger of changes (default: in memory only)")
    node_name: str | None = Field(None, description="this host's Slurm NodeName, for GPU maps (default: hostname)")


@dataclass(frozen=True)
class QueueEntry:
    """One line of squeue."""

    job_id: str
    state: str
    partition: str
    qos: str
    nodes: int
    gres: str
    time_limit: str
    start: str
    reason: str
    user: str
    name: str
    comment: str

    @classmethod
    def parse(cls, line: str) -> QueueEntry:
        parts = line.split(SEP)
        if len(parts) != len(SQUEUE_FIELDS):
            raise DriverError(f"squeue: unexpected line {line!r}")
        jid, state, part, qos, nodes, gres, limit, start, reason, user, name, comment = (p.strip() for p in parts)
        return cls(jid, state, part, qos, int(nodes) if nodes.isdigit() else 1, gres, limit, start, reason, user,
                   name, comment)


class SlurmCli:
    """Runs Slurm's command-line tools and turns their failures into `DriverError`s."""

    def __init__(self, bin_dir: str | None = None, timeout_s: float = 15.0, env: dict[str, str] | None = None):
        self.bin_dir, self.timeout_s, self.env = bin_dir, timeout_s, env

    def __call__(self, tool: str, *args: str) -> str:
        exe = str(Path(self.bin_dir) / tool) if self.bin_dir else tool
        cmd = [exe, *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s, env=self.env)
        except FileNotFoundError:
            raise DriverError(f"slurm: {tool!r} not found; install the Slurm client tools or set bin_dir") from None
        except subprocess.TimeoutExpired:
            raise SlurmUnreachable(f"slurmctld unreachable: `{tool}` gave no answer in {self.timeout_s:.0f} s") from None
        if done.returncode != 0:
            err = (done.stderr or done.stdout).strip()
            if any(s in err for s in UNREACHABLE) or (args != ("ping",) and not self._ctld_up()):
                raise SlurmUnreachable(f"slurmctld unreachable (`{' '.join([tool, *args])}`): {err}")
            raise DriverError(f"slurm: `{' '.join([tool, *args])}` failed: {err}")
        return done.stdout

    def _ctld_up(self) -> bool:
        try:
            self("scontrol", "ping")
        except DriverError:
            return False
        return True

    def queue(self, *filters: str) -> list[QueueEntry]:
        out = self("squeue", "--noheader", "--array", f"--format={SEP.join(SQUEUE_FIELDS)}", *filters)
        return [QueueEntry.parse(line) for line in out.splitlines() if line.strip()]


class SlurmDriver:
    """The driver contract on a Slurm cluster (see the module docstring)."""

    name = "slurm"

    def __init__(
        self,
        site: Site,
        curves: CurveLibrary,
        settings: SlurmSettings = SlurmSettings(),
        cli: SlurmCli | None = None,
        clock: Callable[[], float] = time.time,
    ):
        rules = settings.rules
        for wl in (rules.default_workload, *rules.workload_by_partition.values()):
            if wl not in curves:
                raise DriverError(f"slurm rules: workload {wl!r} has no power curve; known: {', '.join(curves)}")
        self.site, self.curves, self.settings, self.rules = site, curves, settings, rules
        self.cli = cli or SlurmCli(settings.bin_dir, settings.command_timeout_s)
        self.clock = clock
        self.ledger = Ledger(settings.state_file)
        self.latency_s: dict[str, list[float]] = defaultdict(list)  # verb -> command-to-confirmed seconds
        self.jobs: list[Job] = []
        self.pending: list[Job] = []
        self._states_seen: dict[str, str] | None = None  # job states from discover()'s squeue, for read()
        self._estimate = PowerEstimate([], curves, site)
        self.warnings: list[str] = []
        self._times: dict[str, tuple[datetime | None, datetime | None]] = {}  # job id -> (begin, deadline)

    # --- driver verbs --------------------------------------------------------------------
    def discover(self) -> list[Job]:
        """Running and suspended jobs, plus those this driver checkpoint-stopped; pending jobs
        go to `queue()`. Jobs that ended are gone; new ones are classified by the rules."""
        self._settle()
        ours = {k.split(":", 1)[1] for k in self.ledger.keys("stop:")}
        entries = [e for e in self.cli.queue() if self._in_scope(e)]
        # in job id order: squeue sorts by state, so a suspend would reorder the jobs (and flip the
        # planner's choice between equal jobs at every tick)
        running = sorted((e for e in entries if e.state in ("RUNNING", "SUSPENDED") or e.job_id in ours),
                         key=lambda e: [int(n) for n in re.findall(r"\d+", e.job_id)])
        self._learn_times(entries)
        before = {j.id for j in self.jobs}
        self.jobs = [self.job_of(e) for e in running]
        self.pending = [self.job_of(e) for e in entries if e.state == "PENDING" and e.job_id not in ours]
        self._states_seen = {e.job_id: e.state for e in entries}
        now = {j.id for j in self.jobs}
        if now != before:
            log.info("slurm jobs: %d running%s%s", len(now),
                     f"; started {sorted(now - before)}" if now - before else "",
                     f"; ended {sorted(before - now)}" if before - now else "")
        self._estimate = PowerEstimate(self.jobs, self.curves, self.site)
        return list(self.jobs)

    def queue(self) -> list[Job]:
        """Pending jobs seen by the last `discover()`, in squeue's order."""
        return list(self.pending)

    def read(self) -> Telemetry:
        self._settle()
        states, self._states_seen = self._states_seen or self._states(), None
        cap = self._estimate.max_cap_w.copy()
        active = np.array([0.0 if self._paused(j.id, states) else 1.0 for j in self.jobs])
        running = np.array([states.get(j.id) in ("RUNNING", "SUSPENDED") or self._paused(j.id, states)
                            for j in self.jobs], dtype=bool)
        return self._estimate.telemetry(self.clock(), cap, active, running)

    def preview(self, actions: JobActions) -> list[str]:
        """Check every action and list the commands `apply` would run; raises `DriverError`
        naming the job and field if one is not allowed."""
        return [" ".join(step[1:]) for step in self._steps(actions)]

    def apply(self, actions: JobActions) -> None:
        self._settle()
        self._states_seen = None  # what discover() saw is about to change
        steps = self._steps(actions)
        self._run(steps)
        if self.settings.hold_pending:
            self._hold_only(actions.held)

    def restore(self) -> None:
        """Resume, release and un-hold everything this driver changed (also after a crash)."""
        issued = []
        for key in self.ledger.keys():
            verb, job_id = key.split(":", 1)
            if verb == "signal":  # signalled but not yet requeued: the job simply keeps running
                self.ledger.forget(key)
                continue
            tool_args = {"suspend": ("scontrol", "resume"), "stop": ("scontrol", "release"),
                         "hold": ("scontrol", "release")}[verb]
            issued.append(self._command(key, (*tool_args, job_id), forget=True, reason="restore"))
        self._confirm(issued)

    def health(self) -> DriverHealth:
        try:
            self.cli("scontrol", "ping")
        except DriverError as e:
            return DriverHealth(False, str(e))
        return DriverHealth(True, f"slurmctld answers; {len(self.ledger)} change(s) in effect; latency "
                                  + (self.latency_summary() or "not yet measured"))

    # --- mapping -----------------------------------------------------------------------------
    def job_of(self, e: QueueEntry) -> Job:
        """The gridflex job for a queue entry, following the rules."""
        r = self.rules
        flex = r.flex_by_partition.get(e.partition, r.default_flex)
        flex = r.flex_by_qos.get(e.qos, flex)
        workload = r.workload_by_partition.get(e.partition, r.default_workload)
        mode = PauseMode.checkpoint if e.qos in r.checkpoint_qos else PauseMode.suspend
        begin, deadline = self._times.get(e.job_id, (None, None))
        for key, value in self._comment_fields(e).items():
            if key == "flex" and value in ("0", "1", "2", "3"):
                flex = int(value)
            elif key == "workload" and value in self.curves:
                workload = value
            elif key == "pause" and value in ("suspend", "checkpoint"):
                mode = PauseMode(value)
            elif key == "deadline" and (stated := _aware_time(value)) is not None:  # with Slurm's own, the earlier
                deadline = stated if deadline is None else min(deadline, stated)
            else:
                self._warn(f"job {e.job_id}: ignored comment field {key}={value!r} (flex 0-3, workload of a "
                           f"known curve, pause suspend|checkpoint, deadline an ISO 8601 time with its offset,"
                           f" e.g. 2026-12-01T06:00Z)")
        gpus = _gpu_count(e.gres) * max(e.nodes, 1) or self.rules.default_gpus
        limit_s = _parse_limit_s(e.time_limit)
        if e.state == "PENDING":  # not started: its expected start is Slurm's guess, its length at most the limit
            start = end = None
        else:
            start = _parse_time(e.start)
            end = start + timedelta(seconds=limit_s) if start and limit_s else None
        earliest = max((t for t in (begin, start) if t is not None), default=None)
        if deadline is not None and earliest is not None and deadline <= earliest:
            self._warn(f"job {e.job_id}: deadline {deadline} is not after its begin/start; ignored")
            deadline = None
        return Job(
            id=e.job_id, workload=workload, gpus=gpus, flex_tier=flex, start=start, end=end, begin=begin,
            deadline=deadline,
            duration_s=limit_s if e.state == "PENDING" and limit_s else None,
            actions=frozenset({Action.pause}) if flex > 0 else frozenset(),
            pause_mode=mode,
            latency=Latency(suspend_s=1.0, resume_s=1.0, checkpoint_s=self.settings.checkpoint_grace_s),
        )

    def _learn_times(self, entries: Sequence[QueueEntry]) -> None:
        """Begin and deadline of jobs not seen before (one scontrol call); forget jobs gone."""
        ids = {e.job_id for e in entries}
        self._times = {k: v for k, v in self._times.items() if k in ids}
        if ids - set(self._times):
            for line in self.cli("scontrol", "show", "job", "--oneliner").splitlines():
                job_id, begin, deadline = _job_times(line)
                if job_id in ids:
                    self._times[job_id] = (begin, deadline)

    def _comment_fields(self, e: QueueEntry) -> dict[str, str]:
        m = COMMENT_RE.search(e.comment)
        if not m:
            return {}
        fields = {}
        for part in m.group(1).split(","):
            key, _, value = part.partition("=")
            fields[key.strip()] = value.strip()
        return fields

    def _in_scope(self, e: QueueEntry) -> bool:
        return not self.rules.partitions or e.partition in self.rules.partitions

    # --- acting ------------------------------------------------------------------------------
    def _steps(self, actions: JobActions) -> list[tuple[str, ...]]:
        """Validated commands for `actions`, as (ledger key, tool, args...)."""
        paired = pair_with_jobs(actions, self.jobs, kind="Slurm job")
        for job, c, a in paired:
            jid, top = job.id, self.curves[job.workload].max_cap_w
            if not np.isfinite(a) or a not in (0.0, 1.0):
                raise DriverError(f"job {jid!r}: active {a} not allowed; Slurm suspends whole jobs (0 or 1)")
            if not np.isfinite(c) or c < top - 1e-6:
                raise DriverError(f"job {jid!r}: cap_w {c} needs a GPU power cap, which Slurm cannot set; "
                                  f"allowed: {top:.0f} W (uncapped) or add an nvml driver in a composite")
            if a < 1 and Action.pause not in job.actions:
                raise DriverError(f"job {jid!r} (flex {job.flex_tier}) does not allow pause")
        steps = []
        for job, _, a in paired:
            jid, mode = job.id, job.pause_mode
            suspended, stopped, signalled = (f"{v}:{jid}" in self.ledger for v in ("suspend", "stop", "signal"))
            if a == 0 and not (suspended or stopped or signalled):
                if mode is PauseMode.checkpoint:
                    steps.append((f"signal:{jid}", "scancel", f"--signal={self.settings.checkpoint_signal}",
                                  "--full", jid))
                else:
                    steps.append((f"suspend:{jid}", "scontrol", "suspend", jid))
            elif a == 1 and suspended:
                steps.append((f"suspend:{jid}", "scontrol", "resume", jid))
            elif a == 1 and stopped:
                steps.append((f"stop:{jid}", "scontrol", "release", jid))
            elif a == 1 and signalled:
                steps.append((f"signal:{jid}", "cancel-requeue", jid))
        return steps

    def _run(self, steps: Sequence[tuple[str, ...]]) -> None:
        issued = []
        for key, *cmd in steps:
            if cmd[0] == "cancel-requeue":  # signalled but not yet requeued: simply do not requeue
                self.ledger.forget(key)
                continue
            due_s = self.clock() + self.settings.checkpoint_grace_s if key.startswith("signal:") else None
            issued.append(self._command(key, tuple(cmd), forget=cmd[1] in ("resume", "release"), original=due_s,
                                        reason="plan"))
        self._confirm(issued)

    def _command(self, key: str, cmd: tuple[str, ...], forget: bool, original: float | None = None,
                 reason: str = "") -> tuple[tuple[str, ...], float] | None:
        """Run one command with the ledger kept in step: remembered before a change, forgotten
        after an undo; a job that has meanwhile ended is forgotten. Returns (command, start time)
        for `_confirm`, or None if the job had ended."""
        job_id = cmd[-1]
        if not forget:
            self.ledger.remember(key, original)
        t0 = time.monotonic()
        try:
            self._retrying(cmd)
        except SlurmUnreachable:
            if not forget:
                self.ledger.forget(key)
            raise
        except DriverError as e:
            if any(s in str(e) for s in GONE):
                log.info("job %s has ended; nothing to undo", job_id)
                self.ledger.forget(key)
                return None
            if not forget:
                self.ledger.forget(key)
            raise
        if forget:
            self.ledger.forget(key)
        log.info("slurm: %s job %s (%s)", cmd[1] if cmd[0] == "scontrol" else cmd[0], job_id, reason)
        return cmd, t0

    def _retrying(self, cmd: tuple[str, ...]) -> None:
        deadline = time.monotonic() + self.settings.retry_s
        while True:
            try:
                self.cli(*cmd)
                return
            except SlurmUnreachable:
                raise
            except DriverError as e:
                if not any(s in str(e) for s in TRANSIENT) or time.monotonic() > deadline:
                    raise
                log.info("retrying after a transient Slurm error: %s", e)
                time.sleep(0.5)

    def _confirm(self, issued: Sequence[tuple[tuple[str, ...], float] | None]) -> None:
        """Wait until squeue shows the effect of every issued command; record each latency."""
        want = {"suspend": ("SUSPENDED",), "resume": ("RUNNING",), "requeuehold": ("PENDING",),
                "release": ("PENDING", "RUNNING"), "hold": ("PENDING",)}
        waiting = {}
        for item in filter(None, issued):
            cmd, t0 = item
            verb = cmd[1] if cmd[0] == "scontrol" else cmd[0]
            if verb in want:
                waiting[cmd[-1]] = (verb, t0, cmd)
            else:
                self.latency_s[verb].append(time.monotonic() - t0)
        deadline = time.monotonic() + self.settings.confirm_timeout_s
        while waiting:
            states = {e.job_id: e.state for e in self.cli.queue("--jobs", ",".join(waiting))}
            for job_id, (verb, t0, _) in list(waiting.items()):
                if states.get(job_id) in want[verb] or job_id not in states:
                    self.latency_s[verb].append(time.monotonic() - t0)
                    del waiting[job_id]
            if waiting and time.monotonic() > deadline:
                for job_id, (_, _, cmd) in waiting.items():
                    self._warn(f"`{' '.join(cmd)}`: squeue still shows {states.get(job_id)} after "
                               f"{self.settings.confirm_timeout_s:.0f} s")
                return
            if waiting:
                time.sleep(0.02)

    def _settle(self) -> None:
        """Requeue (held) the checkpointing jobs whose grace time is over."""
        now = self.clock()
        for key, due in self.ledger.items():
            if key.startswith("signal:") and due is not None and now >= due:
                job_id = key.split(":", 1)[1]
                try:
                    self._confirm([self._command(f"stop:{job_id}", ("scontrol", "requeuehold", job_id), forget=False,
                                                reason="checkpoint grace time over")])
                except SlurmUnreachable:
                    raise  # the signal entry stays: requeue when slurmctld is back
                except DriverError as e:  # e.g. a job that is not requeueable: it keeps running
                    self._warn(f"job {job_id}: checkpoint-stop failed, the job keeps running: {e}")
                self.ledger.forget(key)

    def _hold_only(self, held: frozenset[str]) -> None:
        """Hold the pending jobs in `held` and release those this driver held that are not."""
        pending = {j.id: j for j in self.pending}
        for job_id in held - set(pending):
            self._warn(f"job {job_id}: not pending any more; not held")
        issued = [self._command(f"hold:{i}", ("scontrol", "hold", i), forget=False,
                                reason="queued flexible job deferred by the plan")
                  for i in sorted(held & set(pending)) if f"hold:{i}" not in self.ledger and pending[i].flex_tier > 0]
        issued += [self._command(key, ("scontrol", "release", key.split(":", 1)[1]), forget=True,
                                 reason="the plan releases it")
                   for key in self.ledger.keys("hold:") if key.split(":", 1)[1] not in held]
        self._confirm(issued)

    # --- reading -----------------------------------------------------------------------------
    def _states(self) -> dict[str, str]:
        if not self.jobs:
            return {}
        return {e.job_id: e.state for e in self.cli.queue("--jobs", ",".join(j.id for j in self.jobs))}

    def gpu_indices(self, node: str | None = None) -> dict[str, list[int]]:
        """GPU indices Slurm allocated to each discovered job on `node` (default: this host),
        from ``scontrol show job -d`` (``GRES=gpu:2(IDX:0-1)``)."""
        node = node or self.settings.node_name or socket.gethostname().split(".")[0]
        out: dict[str, list[int]] = {}
        for job in self.jobs:
            text = self.cli("scontrol", "show", "job", "--details", "--oneliner", job.id)
            for nodes, gres in re.findall(r"Nodes=(\S+) CPU_IDs=\S+ Mem=\S+ GRES=(\S*)", text):
                if node in _expand_nodes(nodes):
                    for idx in re.findall(r"gpu[^(,]*\(IDX:([\d,-]+)\)", gres):
                        out.setdefault(job.id, []).extend(_expand_ranges(idx))
        return out

    def _paused(self, job_id: str, states: dict[str, str]) -> bool:
        return states.get(job_id) == "SUSPENDED" or f"stop:{job_id}" in self.ledger

    def latency_summary(self) -> str:
        """Median and worst command-to-confirmed latency per verb, e.g. ``suspend 0.06/0.09 s``."""
        return ", ".join(f"{v} {np.median(s):.2f}/{max(s):.2f} s (n={len(s)})"
                         for v, s in sorted(self.latency_s.items()) if s)

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)
            log.warning(msg)


def _gpu_count(gres: str) -> int:
    """GPUs per node in a GRES/TRES string such as ``gres:gpu:2``, ``gres/gpu:a100:4``, ``gpu:2(IDX:0-1)``."""
    total = 0
    for m in re.finditer(r"gpu(?::[A-Za-z0-9_.-]+)?[:=](\d+)", gres):
        total += int(m.group(1))
    return total


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _job_times(line: str) -> tuple[str, datetime | None, datetime | None]:
    """(job id as squeue's %i shows it, begin, deadline) from a line of ``scontrol show job --oneliner``."""
    fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
    job_id = fields.get("JobId", "")
    if fields.get("ArrayTaskId") not in (None, "", "N/A"):
        job_id = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
    return job_id, _parse_time(fields.get("EligibleTime", "")), _parse_time(fields.get("Deadline", ""))


def _parse_limit_s(text: str) -> float | None:
    """Seconds in a Slurm time limit (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``); None if unlimited."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text)
    if not m:
        return None
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def _expand_ranges(text: str) -> list[int]:
    """``0-1,3`` -> [0, 1, 3]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _expand_nodes(text: str) -> list[str]:
    """Slurm host lists: ``gpu[01-03,07],login`` -> gpu01, gpu02, gpu03, gpu07, login."""
    out = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", text):
        if plain:
            out.append(plain)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            out.extend(f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi or lo) + 1))
    return out


def _aware_time(text: str) -> datetime | None:
    """An ISO 8601 time that states its offset (``2026-12-01T06:00Z``, ``...+01:00``); else None."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None
