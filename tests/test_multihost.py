"""Several hosts, simulated: network namespaces (tests/netns.py) on one bridge.

The controller and the client run on host 1 (10.99.0.1); host 2 (10.99.0.2) runs a real
sshd with a hostname and a ``/dev/shm`` of its own, so its engines cannot map the
controller's shared memory and must get data in frames.  Engines reach host 2 over ssh, and
by ``mpiexec`` across both hosts (Open MPI starting its daemon on host 2 through that sshd).
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
from conftest import alive, wait_until
from netns import hosts, in_host, require_namespaces
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
