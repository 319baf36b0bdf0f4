"""Several hosts, simulated: network namespaces (tests/netns.py) on one bridge.

The controller and the client run on host 1 (10.99.0.1); host 2 (10.99.0.2) runs a real
sshd with a hostname and a ``/dev/shm`` of its own, so its engines cannot map the
controller's shared memory and must get data in frames.  Engines reach host 2 over ssh, and
by ``mpiexec`` across both hosts (Open MPI starting its daemon on host 2 through that sshd).
A 2-node Slurm on hosts of its own (tests/schedulers.py: slurmctld and node1 on host 1,
node2 on host 2 with its own hostname and /dev/shm) runs one engine on each node.
Every namespace and daemon is removed at the end, also when the test fails; the engines'
processes are looked for by pid afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import alive, cluster_processes, wait_until
from netns import hosts, in_host, require_namespaces
from schedulers import SlurmCluster, processes_with, running_slurm_multinode
from sshd import SSHServer, running_sshd

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SSHServer]]:
    """Hosts 1 and 2 (prefix), with sshd on host 2 (hostname h2, its own /dev/shm)."""
    require_namespaces()
    prefix = f"ipt{os.getpid() % 100000}-"
    with hosts(prefix, 2):
        private = 'hostname h2; mount -t tmpfs tmpfs /dev/shm; exec "$0" "$@"'
        wrapper = [*in_host(prefix, 2), "unshare", "--uts", "--mount", "--fork", "--kill-child"]
        wrapper += ["sh", "-c", private]
        directory = tmp_path_factory.mktemp("sshd-h2")
        with running_sshd(directory, address="10.99.0.2", wrapper=wrapper) as server:
            yield prefix, server


def run_on_host_1(prefix: str, script: str, tmp_path: Path, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    """Run ``script`` with this Python on host 1; its last line of output is JSON."""
    path = tmp_path / "on_host_1.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [*in_host(prefix, 1), sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def remote_daemons() -> list[int]:
    """Open MPI daemons (and the ssh that started them) of the simulated subnet."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        line = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and "orted" in line and "10.99.0" in line:
            found.append(proc.info["pid"])
    return found


COMMON = """
import json, os, socket, sys
import numpy
import ipar_widgets as ipp
from traitlets.config import Config

@ipp.interactive
def total():
    return float(a.sum())

def report(rc, out):
    out["hosts"] = rc[:].apply_sync(socket.gethostname)
    out["pids"] = rc[:].apply_sync(os.getpid)
    a = numpy.arange(4_000_000, dtype=float)  # 32 MB: above the shared-memory threshold
    rc[:].push({"a": a}, block=True)
    out["sums"] = rc[:].apply_sync(total)
    out["expected"] = float(a.sum())
    out["shm"] = {str(e["id"]): e.get("shm") for e in rc.status()["engines"]}
"""


def test_engines_over_ssh_on_another_host_get_data_in_frames(
    two_hosts: tuple[str, SSHServer], profile: str, tmp_path: Path
) -> None:
    prefix, sshd = two_hosts
    script = (
        COMMON
        + f"""
c = Config()
c.SSHEngineSetLauncher.engines = {{{sshd.host!r}: 2}}
c.SSHEngineSetLauncher.ssh_args = {sshd.ssh_args()!r}
c.SSHEngineSetLauncher.remote_python = sys.executable
cluster = ipp.Cluster(engines="ssh", controller_ip="10.99.0.1", profile={profile!r},
                      cluster_id="", config=c)
out = {{}}
try:
    rc = cluster.start_and_connect_sync()
    report(rc, out)
    out["via"] = rc[:].apply_sync(lambda: __import__("os").environ["SSH_CONNECTION"])
    rc.close()
finally:
    cluster.stop_cluster_sync()
print(json.dumps(out))
"""
    )
    out: dict = {}  # type: ignore[type-arg]
    try:
        out = run_on_host_1(prefix, script, tmp_path)
        assert out["hosts"] == ["h2", "h2"]
        assert all(v.split()[0] == "10.99.0.1" and v.split()[2] == "10.99.0.2" for v in out["via"])
        assert out["sums"] == [out["expected"]] * 2
        assert out["shm"] == {"0": False, "1": False}  # h2's /dev/shm is not the controller's
        wait_until(lambda: not alive(out["pids"]), 15, what="h2's engines to stop")
    finally:
        for pid in alive(out.get("pids", [])):
            os.kill(pid, signal.SIGKILL)


def test_mpiexec_across_two_hosts_runs_one_engine_on_each(
    two_hosts: tuple[str, SSHServer], profile: str, tmp_path: Path
) -> None:
    prefix, sshd = two_hosts
    agent = " ".join(["ssh", "-p", str(sshd.port), *sshd.ssh_args()])
    mpi_args = [
        "--host", "10.99.0.1:1,10.99.0.2:1",
        "--mca", "btl", "tcp,self",
        "--mca", "btl_tcp_if_include", "10.99.0.0/24",
        "--mca", "oob_tcp_if_include", "10.99.0.0/24",
    ]  # fmt: skip
    script = (
        COMMON
        + f"""
os.environ["OMPI_MCA_plm_rsh_agent"] = {agent!r}
c = Config()
c.MPIEngineSetLauncher.mpi_args = {mpi_args!r}
cluster = ipp.Cluster(n=2, engines="mpi", controller_ip="10.99.0.1", profile={profile!r},
                      cluster_id="", config=c)
out = {{}}
try:
    rc = cluster.start_and_connect_sync()
    report(rc, out)
    out["ids"] = sorted(rc.ids)
    out["reduced"] = rc[:].apply_sync(ipp.interactive(lambda: MPI.COMM_WORLD.allreduce(1)))
    out["ranks"] = rc[:].apply_sync(ipp.interactive(lambda: MPI.COMM_WORLD.rank))
    rc.close()
finally:
    cluster.stop_cluster_sync()
print(json.dumps(out))
"""
    )
    out: dict = {}  # type: ignore[type-arg]
    try:
        out = run_on_host_1(prefix, script, tmp_path)
        assert out["ids"] == [0, 1] and out["ranks"] == [0, 1]  # engine id = rank
        assert out["hosts"][1] == "h2" and out["hosts"][0] != "h2"
        assert out["reduced"] == [2, 2]
        assert out["sums"] == [out["expected"]] * 2
        assert out["shm"]["1"] is False  # rank 1 is on h2
        wait_until(lambda: not alive(out["pids"]), 15, what="both ranks to stop")
        wait_until(lambda: not remote_daemons(), 15, what="h2's orted and its ssh to end")
    finally:
        for pid in alive(out.get("pids", [])):
            os.kill(pid, signal.SIGKILL)


# -- a 2-node Slurm across the hosts -------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SlurmCluster]]:
    """Hosts 1 and 2 of their own (no sshd: Slurm starts the engines), with slurmctld and
    node1's slurmd on host 1, node2's slurmd on host 2 (hostname h2, its own /dev/shm);
    ``SLURM_CONF`` is set for the test and the processes it starts."""
    require_namespaces()
    prefix = f"ips{os.getpid() % 100000}-"
    with hosts(prefix, 2):
        directory = tmp_path_factory.mktemp("slurm-mh")
        with running_slurm_multinode(directory, prefix, nodes=2) as slurm:
            yield prefix, slurm


def job_processes(slurm: SlurmCluster, job_id: str) -> list[int]:
    """Live processes of job ``job_id`` of this cluster, whatever they run (the batch
    script, srun, the engines), on any host: the namespaces share the pid namespace."""
    return processes_with(None, f"SLURM_JOB_ID={job_id}", f"SLURM_CONF={slurm.conf}")


@pytest.mark.timeout(60)
def test_srun_runs_one_mpi_task_on_each_simulated_node(
    slurm_hosts: tuple[str, SlurmCluster],
) -> None:
    """The fixture on its own, before any launcher: a step across both nodes, each task on
    its own host, joined by PMIx (the per-node TmpFS keeps their PMIx directories apart)."""
    _, slurm = slurm_hosts
    program = (
        "import os, socket; from mpi4py import MPI; w = MPI.COMM_WORLD; "
        "print(w.rank, os.environ['SLURMD_NODENAME'], socket.gethostname(), w.allreduce(1))"
    )
    srun = ["srun", "-N", "2", "-n", "2", "--mpi=pmix", sys.executable, "-c", program]
    done = slurm.run(*srun, timeout=30)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{slurm.logs()}"
    assert sorted(done.stdout.splitlines()) == ["0 node1 h1 2", "1 node2 h2 2"]


@pytest.mark.timeout(90)
def test_a_two_node_slurm_job_runs_one_engine_on_each_host_and_scancel_ends_it(
    slurm_hosts: tuple[str, SlurmCluster], profile: str, tmp_path: Path
) -> None:
    """n=2 engines as one job of 2 tasks on nodes of 1 CPU: Slurm must put one on each
    node.  The controller (run on host 1 by the client's process there) binds 10.99.0.1,
    the only address node2 can reach; node1 shares its /dev/shm, node2 gets data in
    frames.  Stopping the engine set runs scancel, and every process of the job ends."""
    prefix, slurm = slurm_hosts
    script = (
        COMMON
        + f"""
import time
c = Config()
c.SlurmEngineSetLauncher.queue = {slurm.partition!r}
c.SlurmEngineSetLauncher.timelimit = "10:00"
c.SlurmEngineSetLauncher.poll_interval = 0.2
c.SlurmEngineSetLauncher.mpi = True  # srun --mpi=pmix, engine id = rank
cluster = ipp.Cluster(n=2, engines="slurm", controller_ip="10.99.0.1", profile={profile!r},
                      cluster_id="", config=c)
out = {{}}
try:
    rc = cluster.start_and_connect_sync()
    [(set_id, launcher)] = cluster.engine_sets.items()
    out["job_id"] = launcher.job_id
    out["script"] = launcher.job_script()
    report(rc, out)
    out["ids"] = sorted(rc.ids)
    out["nodes"] = rc[:].apply_sync(lambda: __import__("os").environ["SLURMD_NODENAME"])
    out["ranks"] = rc[:].apply_sync(lambda: int(__import__("os").environ["SLURM_PROCID"]))
    out["marks"] = rc[:].apply_sync(
        lambda: [__import__("os").environ.get(k) for k in ("SLURM_JOB_ID", "SLURM_CONF")]
    )
    out["reduced"] = rc[:].apply_sync(ipp.interactive(lambda: MPI.COMM_WORLD.allreduce(1)))
    cluster.stop_engines_sync(set_id)  # the launcher's stop(): scancel
    out["status"] = launcher.status_text()
    # the controller notices the engines go by their heartbeat: bounded poll, no event
    deadline = time.monotonic() + 15
    while rc.ids and time.monotonic() < deadline:
        time.sleep(0.05)
    out["ids_after_stop"] = list(rc.ids)
    rc.close()
finally:
    cluster.stop_cluster_sync()
print(json.dumps(out))
"""
    )
    out: dict = {}  # type: ignore[type-arg]
    try:
        out = run_on_host_1(prefix, script, tmp_path, timeout=60)
        job = out["job_id"]
        assert "#SBATCH --ntasks=2" in out["script"] and "srun --mpi=pmix " in out["script"]
        assert out["ids"] == [0, 1] and out["ranks"] == [0, 1]
        assert out["nodes"] == ["node1", "node2"] and out["hosts"] == ["h1", "h2"]
        assert out["marks"] == [[job, str(slurm.conf)]] * 2  # what job_processes looks for
        assert out["reduced"] == [2, 2]
        assert out["sums"] == [out["expected"]] * 2
        assert out["shm"] == {"0": True, "1": False}  # only h1 shares the controller's /dev/shm
        assert out["status"].startswith("CANCELLED"), out["status"]
        assert out["ids_after_stop"] == []
        wait_until(lambda: not job_processes(slurm, job), 15, what="the job's processes to end")
        assert not alive(out["pids"])
        marker = f"SLURM_CONF={slurm.conf}"
        wait_until(lambda: not processes_with("slurmstepd", marker), 15, what="slurmstepd to end")
        assert not slurm.run("squeue", "-h", "-j", job).stdout.strip()
        assert "JobState=CANCELLED" in slurm.run("scontrol", "show", "job", job).stdout
    finally:  # the job's id is unknown if the script failed early: every job of ours
        jobs = slurm.job_ids()
        if jobs:
            slurm.run("scancel", *jobs)
        for pid in alive(out.get("pids", [])):
            os.kill(pid, signal.SIGKILL)
        # a script killed on its timeout leaves its controller (a session of its own)
        ours = f"--profile-dir={Path(os.environ['IPYTHONDIR']) / f'profile_{profile}'}"
        for proc in cluster_processes():
            try:
                if ours in proc.cmdline():
                    proc.kill()
            except psutil.Error:
                pass
