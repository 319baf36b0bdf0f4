"""Real batch schedulers for the batch launchers' tests: single-node Slurm and SGE, and a
Slurm whose nodes are simulated hosts (network namespaces, tests/netns.py).

Each daemon runs in the foreground as a child of the test process (``munged -F``,
``slurmctld -D``, ``slurmd -D``; ``sge_qmaster`` and ``sge_execd`` with ``SGE_ND=1``, which
keeps them from forking away), so the fixture knows their pids, stops exactly them and reaps
them, also when a test failed.  Their state stays out of the machine's own configuration:

* Slurm reads a ``slurm.conf`` generated in a temporary directory, named by ``SLURM_CONF``
  (set for the test process while the cluster runs), with its own ports, state, spool and
  PMIx directories there; ``/etc/slurm`` is not touched.
* SGE gets a cell of its own (``$SGE_ROOT/<cell>``, initialised with Debian's
  ``init_cluster``) with its own ports and spool directories, named by ``SGE_CELL`` and
  ``SGE_QMASTER_PORT``/``SGE_EXECD_PORT``; the ``default`` cell and ``/var/spool/gridengine``
  are left as the package made them.  Both are removed at the end.

Job processes that a daemon left behind (a hung ``slurmstepd``, an ``sge_shepherd``) are found
by the environment they inherited from our daemon (our ``SLURM_CONF`` / ``SGE_CELL``), never
by name alone: pids wrap quickly here, and another cluster may run on the same machine.

A test process killed outright (SIGKILL) runs no teardown.  Its Slurm daemons and munged get
SIGTERM from the kernel then (PR_SET_PDEATHSIG); SGE's daemons change user and lose that, so
every daemon carries its owner (pid and start time) in its environment, each cell records
it, and the next start sweeps away daemons and cells whose owner is gone.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netns import address, in_host, require_namespaces

MUNGED = "/usr/sbin/munged"
MUNGE_SOCKET_DIR = Path("/run/munge")
SLURM_BINARIES = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "sbatch", "srun", "squeue", "scancel")
SGE_ROOT = Path("/var/lib/gridengine")
INIT_CLUSTER = "/usr/share/gridengine/scripts/init_cluster"
SGE_BINARIES = ("/usr/sbin/sge_qmaster", "/usr/sbin/sge_execd", "qsub", "qstat", "qdel", "qconf")
SGE_ADMIN = "sgeadmin"


# -- requirements ----------------------------------------------------------------------------


def require_system(what: str, binaries: Sequence[str], install: str) -> None:
    """Fail in CI, skip elsewhere, when the daemons cannot run here: they need root and
    the binaries of ``install`` (which ``.ci/system-packages`` installs)."""
    reason = ""
    if os.geteuid() != 0:
        reason = f"a real {what} needs root (its daemons switch users and own /run/munge)"
    else:
        missing = [b for b in binaries if shutil.which(b) is None]
        if missing:
            reason = f"{what} is not installed (missing {', '.join(missing)}): install {install}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def fail(message: str) -> None:
    """A daemon that does not come up is a failure, in CI and elsewhere."""
    pytest.fail(message, pytrace=False)


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def running(pid: int) -> bool:
    """Alive and not a zombie (PID 1 here reaps orphans late or never)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes_with(program: str | None, environ_entry: str, *more: str) -> list[int]:
    """Live processes running ``program`` (the basename of argv[0], before any ``:``; None:
    any program) whose environment holds ``environ_entry`` and every one of ``more``
    (``NAME=value``): the children of one cluster, or of one job (a job id alone is not
    unique when another cluster runs on the machine: add its ``SLURM_CONF``)."""
    wanted = {e.encode() for e in (environ_entry, *more)}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        if program is not None:
            argv0 = _read(f"/proc/{entry}/cmdline").split(b"\0", 1)[0].split(b":", 1)[0]
            if os.path.basename(argv0.decode(errors="replace")) != program:
                continue
        if wanted <= set(_read(f"/proc/{entry}/environ").split(b"\0")) and running(int(entry)):
            found.append(int(entry))
    return found


def kill_checked(pids: Sequence[int], program: str, environ_entry: str) -> list[int]:
    """SIGKILL those of ``pids`` that still are ``program`` with ``environ_entry`` (a pid
    may have been reused since it was listed); returns the ones killed."""
    killed = []
    for pid in pids:
        if pid in processes_with(program, environ_entry):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` for at most ``timeout`` seconds; whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


#: set in every daemon's environment (and so in its jobs'): which test process owns it
OWNER_VARIABLE = "IPAR_TEST_SCHEDULER_OWNER"


def _start_time(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""  # field 22 of proc(5): start time


def owner_token(pid: int | None = None) -> str:
    """``pid:start-time`` of the test process: unlike a pid alone, never reused."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid)}"


def owner_alive(token: str) -> bool:
    pid, _, started = token.partition(":")
    return pid.isdigit() and running(int(pid)) and _start_time(int(pid)) == started


def _environ_value(pid: int, name: str) -> str | None:
    prefix = name.encode() + b"="
    for entry in _read(f"/proc/{pid}/environ").split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child must not import
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the daemon's child process: SIGTERM when the test process dies, even by SIGKILL
    (a daemon that changes its own user, as SGE's do, loses this)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


#: what a test process that was killed (no teardown ran) can leave running
DAEMON_PROGRAMS = (
    "slurmctld",
    "slurmd",
    "slurmstepd",
    "sge_qmaster",
    "sge_execd",
    "sge_shepherd",
)


def sweep_orphans() -> list[str]:
    """Kill daemons (and job steps) whose owning test process is gone, and remove the SGE
    cells such a process made; a live owner's are left alone.  Returns what was removed."""
    removed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv0 = _read(f"/proc/{entry}/cmdline").split(b"\0", 1)[0].split(b":", 1)[0]
        program = os.path.basename(argv0.decode(errors="replace"))
        if program not in DAEMON_PROGRAMS:
            continue
        token = _environ_value(int(entry), OWNER_VARIABLE)
        if token is not None and not owner_alive(token):
            try:
                os.kill(int(entry), signal.SIGKILL)
                removed.append(f"{program} (pid {entry})")
            except ProcessLookupError:
                pass
    for cell in SGE_ROOT.glob("ipar-*"):
        token = _read(str(cell / "common" / "ipar-owner")).decode().strip()
        if owner_alive(token) or not token and _recent(cell):
            continue
        spool = _spool_of(cell)
        shutil.rmtree(cell, ignore_errors=True)
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
        removed.append(f"SGE cell {cell.name}")
    return removed


def _recent(path: Path) -> bool:
    """Made in the last minute: a cell whose owner file is not written yet."""
    try:
        return time.time() - path.stat().st_mtime < 60
    except OSError:
        return False


def _spool_of(cell: Path) -> Path | None:
    """The spool directory the cell's bootstrap names, if it is one of ours."""
    text = _read(str(cell / "common" / "bootstrap")).decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("qmaster_spool_dir"):
            spool = Path(line.split()[1]).parent
            if spool.name.startswith("ipar-sge-") and spool.parent == Path(tempfile.gettempdir()):
                return spool
    return None


@dataclass
class Daemon:
    """One daemon started by the fixture, in the foreground, with its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> Daemon:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**(os.environ if env is None else env), OWNER_VARIABLE: owner_token()},
                start_new_session=True,  # a ^C to pytest is not a signal to the daemon
                user=user,
                group=user,
                extra_groups=[] if user else None,
                preexec_fn=_die_with_parent,
            )
        return cls(name, proc, log)

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def output(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float) -> float:
        """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL; the seconds it took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return time.monotonic() - started


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment (so the launchers under test and their
    commands see the cluster), and restore what was there before."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield


# -- munge -----------------------------------------------------------------------------------


def munge_answers() -> bool:
    """Whether a munged serves the default socket (``munge -n`` asks it for a credential)."""
    try:
        done = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def running_munged(directory: Path) -> Iterator[Daemon | None]:
    """A munged for Slurm's authentication: the one already running (reused, never
    stopped), or our own ``munged -F`` as user munge (yielded, and stopped at the end).
    The package made ``/etc/munge/munge.key``."""
    if munge_answers():
        yield None
        return
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    munge_user = pwd.getpwnam("munge")
    os.chown(MUNGE_SOCKET_DIR, munge_user.pw_uid, munge_user.pw_gid)
    daemon = Daemon.start("munged", [MUNGED, "-F"], directory / "munged.out", user="munge")
    try:
        if not wait_for(lambda: munge_answers() or daemon.exited(), 15):
            fail(f"munged did not answer within 15 s:\n{daemon.output()}")
        if daemon.exited():
            if munge_answers():  # another munged started at the same moment: use it
                yield None
                return
            fail(f"munged exited with {daemon.proc.returncode}:\n{daemon.output()}")
        yield daemon
    finally:
        daemon.stop(grace=10)


# -- Slurm -----------------------------------------------------------------------------------


@dataclass
class SlurmCluster:
    """A running Slurm: its generated configuration and its daemons.  ``wrapper`` is the
    command prefix under which Slurm's commands reach slurmctld: none on this host, a
    simulated host's network namespace for ``running_slurm_multinode``."""

    directory: Path
    conf: Path
    nodes: tuple[str, ...]
    partition: str
    cpus: int  # of each node
    wrapper: tuple[str, ...] = ()
    daemons: list[Daemon] = field(default_factory=list)
    startup_seconds: float = 0.0
    munged_reused: bool = False

    @property
    def node(self) -> str:
        return self.nodes[0]

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster (``SLURM_CONF`` set), output as text."""
        return subprocess.run(
            [*self.wrapper, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )

    def logs(self, lines: int = 30) -> str:
        """The daemons' own logs, then what their wrappers printed (a failed mount, say)."""
        log = self.directory / "log"
        parts = [
            f"--- {path.name} ---\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in [log / "slurmctld.log", *sorted(log.glob("slurmd-*.log"))]
            if path.exists()
        ]
        parts += [f"--- {d.name} (output) ---\n{d.output(lines)}" for d in self.daemons]
        return "\n".join(parts)

    def job_ids(self) -> list[str]:
        listed = self.run("squeue", "-h", "-o", "%i")
        return listed.stdout.split()

    def node_states(self) -> dict[str, str]:
        """Each node's state as sinfo shows it (``idle``, ``idle*`` when not responding...)."""
        listed = self.run("sinfo", "-h", "-N", "-o", "%N %T", timeout=15).stdout
        return dict(line.split(None, 1) for line in listed.splitlines() if len(line.split()) == 2)

    def node_state(self) -> str:
        """``idle`` when every node is; otherwise the states seen, comma-separated."""
        states = self.node_states()
        if set(states) != set(self.nodes):
            return ",".join(sorted(states.values())) or "unknown"
        return ",".join(sorted(set(states.values())))


def slurm_conf(
    directory: Path,
    controller: tuple[str, str],
    nodes: dict[str, str],
    cpus: int,
    ctld_port: int,
    slurmd_port: int,
) -> str:
    """The configuration (recipe §6.1: proctrack/linuxproc and task/none, so no cgroups; no
    accounting; jobs scheduled at once; finished jobs kept 30 s).  ``controller`` is
    slurmctld's (name, address), ``nodes`` maps node names to addresses.  What a slurmd
    writes is named by its node (``%n``), so nodes that share this disk keep apart."""
    node_lines = "".join(
        f"NodeName={name} NodeAddr={addr} CPUs={cpus} RealMemory=1000 State=UNKNOWN\n"
        for name, addr in nodes.items()
    )
    return f"""\
ClusterName=ipartest
SlurmctldHost={controller[0]}({controller[1]})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool-%n
SlurmctldPidFile={directory}/run/slurmctld.pid
SlurmdPidFile={directory}/run/slurmd-%n.pid
SlurmctldLogFile={directory}/log/slurmctld.log
SlurmdLogFile={directory}/log/slurmd-%n.log
TmpFS={directory}/tmp
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
KillWait=5
MinJobAge=30
{node_lines}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def require_slurm() -> None:
    require_system(
        "Slurm", [*SLURM_BINARIES, MUNGED, "munge"], "slurmctld slurmd slurm-client munge"
    )


@contextmanager
def running_slurm(directory: Path, ready_timeout: float = 60) -> Iterator[SlurmCluster]:
    """munged (or the running one), then ``slurmctld -D`` and ``slurmd -D`` on this host;
    yields once the node is ``idle``.  At the end every job is cancelled, the daemons
    stopped by pid, and any slurmstepd of this cluster left behind is killed."""
    require_slurm()
    cpus = os.cpu_count() or 1  # slurmd drains a node configured above what it has
    with _running_slurm(
        directory,
        controller=("localhost", "127.0.0.1"),
        nodes={"localhost": "127.0.0.1"},
        cpus=cpus,
        wrappers={},
        client_wrapper=(),
        ready_timeout=ready_timeout,
    ) as cluster:
        yield cluster


def as_host(
    prefix: str, i: int, hostname: str, binds: Sequence[tuple[Path, Path]] = (), shm: bool = False
) -> list[str]:
    """The command prefix that runs a program as simulated host ``i``: in its network
    namespace (``nsenter``, not ``ip netns exec``, which remounts /sys and so breaks
    slurmd), with a hostname of its own and a mount namespace where each ``(source,
    target)`` of ``binds`` is bind-mounted and, with ``shm``, ``/dev/shm`` is a tmpfs of its
    own.  No ``--fork``: the shell execs the program, so the pid the caller started is the
    program's (signals reach it; PR_SET_PDEATHSIG survives the execs)."""
    steps = [f"hostname {shlex.quote(hostname)}"]
    steps += [f"mount --bind {shlex.quote(str(s))} {shlex.quote(str(t))}" for s, t in binds]
    if shm:
        steps.append("mount -t tmpfs tmpfs /dev/shm")
    script = " && ".join([*steps, 'exec "$0" "$@"'])
    return [*in_host(prefix, i), "unshare", "--uts", "--mount", "--", "sh", "-c", script]


@contextmanager
def running_slurm_multinode(
    directory: Path, prefix: str, nodes: int = 2, ready_timeout: float = 60
) -> Iterator[SlurmCluster]:
    """Slurm across the simulated hosts ``<prefix>1..nodes`` that the caller made with
    ``netns.hosts`` (recipe §8.4): slurmctld on host 1 (hostname h1, 10.99.0.1), and the
    slurmd of node ``k`` (``-N node<k>``, 1 CPU, 10.99.0.k) on host ``k`` (hostname h<k>).

    Each slurmd gets a TmpFS directory of its own (bind-mounted over the configured one in
    its mount namespace), or the nodes' PMIx directories collide on the shared disk.  Every
    node but node1 also gets a ``/dev/shm`` of its own; node1 shares host 1's with the
    controller a test runs there.  Slurm's commands must run on one of the hosts too: the
    subnet exists only there (``cluster.run`` uses host 1).  One munged in the machine's
    own namespaces serves every host, its socket being a file."""
    require_namespaces()
    require_slurm()
    names = {f"node{k}": address(k) for k in range(1, nodes + 1)}
    wrappers = {"slurmctld": as_host(prefix, 1, "h1")}
    for k in range(1, nodes + 1):
        private_tmp = directory / f"tmp-node{k}"
        private_tmp.mkdir(parents=True, exist_ok=True)
        wrappers[f"node{k}"] = as_host(
            prefix, k, f"h{k}", binds=[(private_tmp, directory / "tmp")], shm=k != 1
        )
    with _running_slurm(
        directory,
        controller=("h1", address(1)),
        nodes=names,
        cpus=1,
        wrappers=wrappers,
        client_wrapper=tuple(in_host(prefix, 1)),
        ready_timeout=ready_timeout,
    ) as cluster:
        yield cluster


@contextmanager
def _running_slurm(
    directory: Path,
    *,
    controller: tuple[str, str],
    nodes: dict[str, str],
    cpus: int,
    wrappers: dict[str, list[str]],
    client_wrapper: tuple[str, ...],
    ready_timeout: float,
) -> Iterator[SlurmCluster]:
    """What both fixtures share: the configuration written, munged, ``slurmctld -D`` and
    one ``slurmd -D -N <node>`` per node, each started under ``wrappers[name]`` (the
    daemon's node, or ``slurmctld``; nothing when absent); yields once every node is
    ``idle``, with ``SLURM_CONF`` set in this process; stops it all at the end."""
    sweep_orphans()  # daemons of a test process that was killed before its teardown
    for sub in ("state", "run", "log", "tmp", *(f"spool-{n}" for n in nodes)):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    conf = directory / "slurm.conf"
    conf.write_text(slurm_conf(directory, controller, nodes, cpus, free_port(), free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(directory, conf, tuple(nodes), "debug", cpus, client_wrapper)
    started = time.monotonic()
    with running_munged(directory) as munged:
        cluster.munged_reused = munged is None
        try:
            ctld = ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(conf)]
            daemons = [("slurmctld", [*wrappers.get("slurmctld", []), *ctld])]
            for node in nodes:
                slurmd = ["/usr/sbin/slurmd", "-D", "-N", node, "-f", str(conf)]
                daemons.append((f"slurmd {node}", [*wrappers.get(node, []), *slurmd]))
            for name, argv in daemons:
                out = directory / f"{name.replace(' ', '-')}.out"
                cluster.daemons.append(Daemon.start(name, argv, out, env))

            def ready() -> bool:
                return any(d.exited() for d in cluster.daemons) or cluster.node_state() == "idle"

            if not wait_for(ready, ready_timeout, interval=0.1) or any(
                d.exited() for d in cluster.daemons
            ):
                exits = ", ".join(f"{d.name}: {d.proc.poll()}" for d in cluster.daemons)
                fail(
                    f"Slurm's nodes did not become idle within {ready_timeout} s "
                    f"(states {cluster.node_states()!r}; exit codes {exits}):\n{cluster.logs()}"
                )
            cluster.startup_seconds = time.monotonic() - started
            with environment(cluster.env):
                yield cluster
        finally:
            _stop_slurm(cluster)


def _stop_slurm(cluster: SlurmCluster) -> None:
    marker = f"SLURM_CONF={cluster.conf}"
    ctld = cluster.daemons[0] if cluster.daemons else None
    if ctld is not None and not ctld.exited():
        jobs = cluster.job_ids()
        if jobs:
            cluster.run("scancel", *jobs)
            wait_for(lambda: not cluster.job_ids(), 15, interval=0.1)
    for daemon in reversed(cluster.daemons):  # the slurmds first, then slurmctld
        daemon.stop(grace=15)
    # a slurmstepd that hung (recipe 6.3) outlives slurmd; it carries our SLURM_CONF
    kill_checked(processes_with("slurmstepd", marker), "slurmstepd", marker)


# -- SGE -------------------------------------------------------------------------------------


@dataclass
class SGECluster:
    """A running single-node SGE cell: where it lives and its daemons."""

    cell: str
    spool: Path
    host: str
    qmaster_port: int
    execd_port: int
    slots: int
    daemons: list[Daemon] = field(default_factory=list)
    startup_seconds: float = 0.0
    shutdown_seconds: float = 0.0

    @property
    def cell_dir(self) -> Path:
        return SGE_ROOT / self.cell

    @property
    def env(self) -> dict[str, str]:
        return {
            "SGE_ROOT": str(SGE_ROOT),
            "SGE_CELL": self.cell,
            "SGE_QMASTER_PORT": str(self.qmaster_port),
            "SGE_EXECD_PORT": str(self.execd_port),
        }

    def run(self, *argv: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
        """An SGE command against this cell, output as text."""
        return subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env, **env},
        )

    def check(self, *argv: str) -> str:
        done = self.run(*argv)
        if done.returncode != 0:
            fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def job_ids(self) -> list[str]:
        listed = self.run("qstat", "-u", "*")
        return sorted({line.split()[0] for line in listed.stdout.splitlines()[2:] if line.strip()})

    def queue_ready(self) -> bool:
        """The exec host reports (``qhost`` has its CPU count) and ``all.q@host`` is in no
        alarm/unknown/disabled state (``qstat -f`` shows no state letters)."""
        hosts = self.run("qhost", "-h", self.host, timeout=15).stdout.splitlines()
        reported = any(line.split()[:1] == [self.host] and line.split()[2] != "-" for line in hosts)
        queues = self.run("qstat", "-f", "-q", f"all.q@{self.host}", timeout=15).stdout
        line = next((q for q in queues.splitlines() if q.startswith("all.q@")), "")
        return reported and len(line.split()) == 5  # name, qtype, slots, load, arch: no states

    def logs(self) -> str:
        parts = [f"--- {d.name} ---\n{d.output()}" for d in self.daemons]
        for messages in sorted(self.spool.rglob("messages")):
            lines = messages.read_text(errors="replace").splitlines()[-20:]
            parts.append(f"--- {messages} ---\n" + "\n".join(lines))
        return "\n".join(parts)


def _sge_files(cluster: SGECluster, directory: Path) -> dict[str, str]:
    """The configuration files the cell is set up from (recipe §7: exec host, host group, a
    complete queue, and the 3 fixes)."""
    host, spool = cluster.host, cluster.spool
    queue = {
        "qname": "all.q",
        "hostlist": "@allhosts",
        "seq_no": "0",
        # the load here is far above any threshold: the queue would stay in alarm state
        "load_thresholds": "NONE",
        "suspend_thresholds": "NONE",
        "nsuspend": "1",
        "suspend_interval": "00:05:00",
        "priority": "0",
        "min_cpu_interval": "00:05:00",
        "processors": "UNDEFINED",
        "qtype": "BATCH INTERACTIVE",
        "ckpt_list": "NONE",
        "pe_list": "NONE",
        "rerun": "FALSE",
        "slots": str(cluster.slots),
        "tmpdir": str(spool / "tmp"),
        "shell": "/bin/sh",
        "prolog": "NONE",
        "epilog": "NONE",
        "shell_start_mode": "posix_compliant",
        "starter_method": "NONE",
        "suspend_method": "NONE",
        "resume_method": "NONE",
        "terminate_method": "NONE",
        "notify": "00:00:60",
        "owner_list": "NONE",
        "user_lists": "NONE",
        "xuser_lists": "NONE",
        "subordinate_list": "NONE",
        "complex_values": "NONE",
        "projects": "NONE",
        "xprojects": "NONE",
        "calendar": "NONE",
        "initial_state": "default",
        **{
            f"{kind}_{limit}": "INFINITY"
            for limit in ("rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem")
            for kind in ("s", "h")
        },
    }
    exechost = {
        "hostname": host,
        **dict.fromkeys(
            (
                "load_scaling",
                "complex_values",
                "user_lists",
                "xuser_lists",
                "projects",
                "xprojects",
                "usage_scaling",
                "report_variables",
            ),
            "NONE",
        ),
    }
    return {
        "queue": "".join(f"{key} {value}\n" for key, value in queue.items()),
        "exechost": "".join(f"{key} {value}\n" for key, value in exechost.items()),
        "hostgroup": f"group_name @allhosts\nhostlist {host}\n",
    }


def _edit_config(text: str, changes: dict[str, str]) -> str:
    """``qconf -sconf``/``-ssconf`` output with the values of ``changes`` replaced."""
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key = line.split(None, 1)[0] if line.strip() else ""
        lines.append(f"{key} {changes[key]}" if key in changes else line)
    return "\n".join(lines) + "\n"


@contextmanager
def running_sge(directory: Path, ready_timeout: float = 60) -> Iterator[SGECluster]:
    """A fresh SGE cell with ``sge_qmaster`` and ``sge_execd`` in the foreground; yields
    once the queue on this host takes jobs.  At the end every job is deleted, execd and
    qmaster (which needs ~10 s) are stopped, shepherds left behind killed, and the cell's
    directories removed."""
    require_system(
        "SGE", [*SGE_BINARIES, INIT_CLUSTER], "gridengine-master gridengine-exec gridengine-client"
    )
    sweep_orphans()  # daemons and cells of a test process killed before its teardown
    admin = pwd.getpwnam(SGE_ADMIN)
    # sgeadmin must reach the spool: pytest's temporary directories are private to root
    spool = Path(tempfile.mkdtemp(prefix="ipar-sge-"))
    spool.chmod(0o755)
    cell = f"ipar-{os.getpid()}-{secrets.token_hex(3)}"
    cluster = SGECluster(
        cell, spool, socket.gethostname(), free_port(), free_port(), os.cpu_count() or 1
    )
    started = time.monotonic()
    try:
        common = cluster.cell_dir / "common"
        common.mkdir(parents=True)
        (common / "ipar-owner").write_text(owner_token() + "\n")  # for sweep_orphans
        for sub in ("qmaster", "spooldb", "execd", "tmp"):
            (spool / sub).mkdir()
        (spool / "tmp").chmod(0o1777)
        bootstrap = Path("/usr/share/gridengine/default-bootstrap").read_text()
        bootstrap = bootstrap.replace("/var/spool/gridengine", str(spool))
        (common / "bootstrap").write_text(bootstrap)
        # fix 1: /etc/hosts names 127.0.0.1 "localhost" first; make it this host's alias
        (common / "host_aliases").write_text(f"{cluster.host} localhost\n")
        (common / "act_qmaster").write_text(cluster.host + "\n")
        for path in (cluster.cell_dir, common, *common.iterdir(), spool, *spool.iterdir()):
            os.chown(path, admin.pw_uid, admin.pw_gid)
        init = subprocess.run(
            [
                "runuser",
                "-u",
                SGE_ADMIN,
                "--",
                INIT_CLUSTER,
                str(SGE_ROOT),
                cell,
                str(spool / "spooldb"),
                SGE_ADMIN,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if init.returncode != 0:
            fail(f"init_cluster failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        env = {**os.environ, **cluster.env, "SGE_ND": "1"}  # SGE_ND: do not daemonize
        qmaster = Daemon.start(
            "sge_qmaster", ["/usr/sbin/sge_qmaster"], directory / "sge_qmaster.out", env
        )
        cluster.daemons.append(qmaster)
        if (
            not wait_for(
                lambda: qmaster.exited() or cluster.run("qconf", "-sh").returncode == 0,
                ready_timeout,
                interval=0.1,
            )
            or qmaster.exited()
        ):
            fail(f"sge_qmaster did not answer qconf within {ready_timeout} s:\n{cluster.logs()}")
        files = _sge_files(cluster, directory)
        for name, text in files.items():
            (directory / f"sge-{name}.txt").write_text(text)
        cluster.check("qconf", "-as", cluster.host)
        cluster.check("qconf", "-Ae", str(directory / "sge-exechost.txt"))
        cluster.check("qconf", "-Ahgrp", str(directory / "sge-hostgroup.txt"))
        cluster.check("qconf", "-Aq", str(directory / "sge-queue.txt"))
        # fix 2: root may run jobs.  The gid range tags each job's processes; one distinct
        # from any other cell's on this machine, so an execd never takes another's job.
        low = 20000 + secrets.randbelow(400) * 100
        conf = _edit_config(
            cluster.check("qconf", "-sconf"),
            {
                "min_uid": "0",
                "min_gid": "0",
                "execd_spool_dir": str(spool / "execd"),
                "gid_range": f"{low}-{low + 99}",
                "mailer": "/bin/true",
                # execd reports (a deleted job's end among them) every second, not every 40 s
                "load_report_time": "00:00:01",
                # qacct knows a finished job at once, not after up to 15 s
                "reporting_params": "accounting=true reporting=false flush_time=00:00:01 "
                "joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00",
            },
        )
        (directory / "global").write_text(conf)  # -Mconf takes the name from the file's
        cluster.check("qconf", "-Mconf", str(directory / "global"))
        # fix 3: schedule every second, not every 15 s
        sched = _edit_config(cluster.check("qconf", "-ssconf"), {"schedule_interval": "0:0:1"})
        (directory / "sge-sched.txt").write_text(sched)
        cluster.check("qconf", "-Msconf", str(directory / "sge-sched.txt"))
        # execd only now: it caches the global configuration (fix 2) when it starts
        execd = Daemon.start("sge_execd", ["/usr/sbin/sge_execd"], directory / "sge_execd.out", env)
        cluster.daemons.append(execd)
        if (
            not wait_for(
                lambda: execd.exited() or cluster.queue_ready(), ready_timeout, interval=0.1
            )
            or execd.exited()
        ):
            fail(
                f"SGE's queue all.q@{cluster.host} was not ready within {ready_timeout} s "
                f"(qstat -f: {cluster.run('qstat', '-f').stdout!r}):\n{cluster.logs()}"
            )
        cluster.startup_seconds = time.monotonic() - started
        with environment(cluster.env):
            yield cluster
    finally:
        _stop_sge(cluster)


def _stop_sge(cluster: SGECluster) -> None:
    started = time.monotonic()
    marker = f"SGE_CELL={cluster.cell}"
    running_daemons = [d for d in cluster.daemons if not d.exited()]
    if len(running_daemons) == 2:
        jobs = cluster.job_ids()
        if jobs:
            cluster.run("qdel", "-f", *jobs)
            wait_for(lambda: not cluster.job_ids(), 15, interval=0.1)
    for daemon in reversed(cluster.daemons):  # execd, then qmaster (~10 s: "controlled shutdown")
        daemon.stop(grace=30)
    kill_checked(processes_with("sge_shepherd", marker), "sge_shepherd", marker)
    shutil.rmtree(cluster.cell_dir, ignore_errors=True)
    shutil.rmtree(cluster.spool, ignore_errors=True)
    cluster.shutdown_seconds = time.monotonic() - started
