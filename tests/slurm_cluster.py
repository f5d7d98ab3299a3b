"""A real single-node Slurm cluster on loopback for the `slurm` integration tests.

The fixture writes its own munge key, slurm.conf and gres.conf into a temporary directory,
starts munged, slurmctld and slurmd in the foreground mode (`-D`) as child processes, and
stops them at the end. No systemd and no cgroups are needed (proctrack/linuxproc,
task/none). The node advertises four GPUs backed by plain files so that GPU GRES
allocations are real Slurm allocations. When Slurm cannot start the tests fail under CI
(CI=true or GRIDFLEX_REQUIRE_SLURM=1) and are skipped elsewhere.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def require_slurm() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("GRIDFLEX_REQUIRE_SLURM") == "1"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for(ok, timeout_s: float, what: str, procs: dict | None = None, hint=lambda: "") -> None:
    """Wait until `ok()`; fail naming `what` (and `hint()`) after `timeout_s` or as soon as one of
    `procs` (name -> Popen) exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, p in (procs or {}).items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) while waiting: {what}\n{hint()}")
        if ok():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout_s:.0f} s\n{hint()}")


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None)


class SlurmCluster:
    def __init__(self, root: Path, cpus: int = 8):
        self.root, self.cpus = root, cpus
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        self.ctld_port, self.d_port = _free_ports(2)
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        missing = [d for d in DAEMONS if _which(d) is None]
        if missing:
            raise RuntimeError(f"Slurm/munge not installed ({', '.join(missing)}); run scripts/ci/slurm.sh")
        r = self.root
        for d in ("munge", "state", "spool", "log", "gpu"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            (r / "gpu" / f"gpu{i}").touch()
        key = r / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}", "--force"], check=True,
                       capture_output=True)
        key.chmod(0o600)
        (r / "munge").chmod(0o700)
        self.procs["munged"] = subprocess.Popen(
            [_which("munged"), "--foreground", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={r / 'munge' / 'munged.pid'}", f"--log-file={r / 'log' / 'munged.log'}",
             f"--seed-file={r / 'munge' / 'seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")
        self.conf.write_text(self._slurm_conf())
        (r / "gres.conf").write_text(f"Name=gpu File={r / 'gpu'}/gpu[0-3]\n")
        self.start_ctld()
        self.start_daemon("slurmd")
        self._wait(self._node_idle, 40, "the node did not become idle")

    def start_ctld(self) -> None:
        self.start_daemon("slurmctld")
        self._wait(self._ctld_up, 30, "slurmctld did not answer")

    def start_daemon(self, name: str) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen([_which(name), "-D"], env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def stop_daemon(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def shutdown(self) -> None:
        if "slurmctld" in self.procs:
            self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            self.stop_daemon(name)

    def cancel_all(self, timeout_s: float = 60) -> None:
        """Cancel every job and wait until the queue is empty."""
        self.run("scancel", f"--user={getpass.getuser()}", check=False)
        deadline = time.monotonic() + timeout_s
        while self.run("squeue", "--noheader", check=False).strip() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_tail(self, n: int = 30) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            lines = f.read_text(errors="replace").splitlines()[-n:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # --- using it ----------------------------------------------------------------------
    def run(self, tool: str, *args: str, check: bool = True) -> str:
        done = subprocess.run([_which(tool), *args], env=self.env, capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def submit(self, script: Path, *args: str, comment: str = "", partition: str = "debug", gpus: int = 0,
               env: dict[str, str] | None = None, requeue: bool = True) -> str:
        opts = ["--parsable", f"--partition={partition}", f"--output={self.root / 'log' / 'job-%j.out'}",
                "--requeue" if requeue else "--no-requeue", f"--chdir={self.root}"]
        if comment:
            opts.append(f"--comment={comment}")
        if gpus:
            opts.append(f"--gres=gpu:{gpus}")
        exports = ",".join(["ALL", *(f"{k}={v}" for k, v in (env or {}).items())])
        opts.append(f"--export={exports}")
        cmd = " ".join(["exec", shutil.which("python3") or "python3", str(script), *args])
        return self.run("sbatch", *opts, f"--wrap={cmd}").strip().split(";")[0]

    def state(self, job_id: str) -> str:
        return self.run("squeue", "--noheader", "--jobs", job_id, "--format=%T", check=False).strip()

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout_s: float = 120) -> str:
        self._wait(lambda: self.state(job_id) in states, timeout_s, f"job {job_id} not in {states}")
        return self.state(job_id)

    def pids(self, job_id: str) -> list[int]:
        out = self.run("scontrol", "listpids", job_id, check=False)
        return [int(line.split()[0]) for line in out.splitlines()[1:] if line.split() and line.split()[0].isdigit()]

    @staticmethod
    def proc_state(pid: int) -> str:
        """The kernel's one-letter state of a process (T: stopped)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return "gone"
        return stat.rsplit(")", 1)[1].split()[0]

    # --- internals ---------------------------------------------------------------------
    def _ctld_up(self) -> bool:
        return subprocess.run([_which("scontrol"), "ping"], env=self.env, capture_output=True, text=True,
                              timeout=30).stdout.count("UP") > 0

    def _node_idle(self) -> bool:
        state = self.run("sinfo", "--noheader", "--format=%T", check=False)
        if "inval" in state or "drain" in state:
            self.run("scontrol", "update", "nodename=localhost", "state=resume", check=False)
        return "idle" in state or "mixed" in state or "alloc" in state

    def _wait(self, ok, timeout_s: float, what: str) -> None:
        wait_for(ok, timeout_s, what, self.procs, self.log_tail)

    def _slurm_conf(self) -> str:
        r = self.root
        return f"""\
ClusterName=gridflex-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.d_port}
SlurmUser={getpass.getuser()}
SlurmdUser={getpass.getuser()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire=5
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_interval=1,sched_min_interval=100000
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobRequeue=1
MessageTimeout=5
SlurmctldTimeout=10
SlurmdTimeout=60
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=flex Nodes=ALL MaxTime=INFINITE State=UP
"""


class SlurmSitePower:
    """What a site meter on a Slurm cluster would read: the power the jobs' curves give for the
    state Slurm shows them in now (running or suspended; a driver of its own that only reads),
    plus `other_w` that no job draws. A thread refreshes it every `period_s`; call it for the
    latest value (e.g. as `LiveMeter`'s register)."""

    def __init__(self, site, rules, other_w: float, period_s: float = 0.25):
        import threading

        from gridflex.drivers.slurm import SlurmDriver, SlurmSettings
        from gridflex.sim.curve_csv import builtin_curves

        self.driver = SlurmDriver(site, builtin_curves(), SlurmSettings(rules=rules))
        self.other_w, self.period_s = other_w, period_s
        self.power_w: float | None = None
        self.history: list[tuple[float, float]] = []  # (epoch s, W) of every reading
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slurm-site-power", daemon=True)
        self._thread.start()
        wait_for(lambda: self.power_w is not None, 30, f"no reading of the Slurm jobs' power ({self.error})")

    def _run(self) -> None:
        from gridflex.errors import DriverError

        while True:
            try:
                self.driver.discover()
                self.power_w = self.driver.read().site_power_w + self.other_w
                self.history.append((time.time(), self.power_w))
            except DriverError as e:  # e.g. slurmctld busy: the last value stays, as on a real meter
                self.error = str(e)
            if self._stop.wait(self.period_s):
                return

    def __call__(self) -> float:
        return self.power_w

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        cluster.shutdown()
        if require_slurm():
            pytest.fail(f"Slurm could not start (required under CI): {e}", pytrace=False)
        pytest.skip(f"Slurm could not start: {e}")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.shutdown()
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved
