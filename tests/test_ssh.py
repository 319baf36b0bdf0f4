"""Engines started over ssh, against a real sshd (tests/sshd.py) on loopback.

One ssh session per host starts that host's engines; the connection info travels inside the
session; stopping the cluster, killing ``ssh`` and killing this side's keeper all leave no
engine running, checked by pid.  These tests fail, never skip, without OpenSSH.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import alive, ipar, wait_until
from sshd import SSHServer, running_sshd
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets import error, paths
from ipar_widgets.cluster.discovery import find_cluster
from ipar_widgets.cluster.launcher import find_launcher_class
from ipar_widgets.cluster.sshlauncher import SSHEngineSetLauncher, SSHHostLauncher, parse_host
from ipar_widgets.server import operations

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def ssh_config(server: SSHServer, engines: dict[str, object]) -> Config:
    c = Config()
    c.SSHEngineSetLauncher.engines = engines
    c.SSHEngineSetLauncher.ssh_args = server.ssh_args()
    c.SSHEngineSetLauncher.remote_python = sys.executable
    return c


def far_end_pids(launcher: SSHEngineSetLauncher) -> list[int]:
    """The pids sshhost.py reported for the engines it started, from the session output."""
    found = re.findall(r"started \d+ engine\(s\) on \S+: ([\d ]+)", launcher.get_output())
    return [int(p) for line in found for p in line.split()]


def processes_of(launcher: SSHEngineSetLauncher) -> list[int]:
    """This side's keeper and ssh client pids of every host session."""
    pids = []
    for host in launcher.hosts.values():
        assert host.process_pid is not None
        pids.append(host.process_pid)
        pids += [c.pid for c in psutil.Process(host.process_pid).children(recursive=True)]
    return pids


def test_host_specs_are_parsed() -> None:
    assert parse_host("node1") == ("", "node1", None)
    assert parse_host("user@node2:2222") == ("user", "node2", 2222)
    assert parse_host("127.0.0.1:22") == ("", "127.0.0.1", 22)
    assert find_launcher_class("ssh", "EngineSet") is SSHEngineSetLauncher
    assert find_launcher_class(
        "ipyparallel.cluster.launcher.SSHEngineSetLauncher", "EngineSet"
    ) is (SSHEngineSetLauncher)


class SSHCluster:
    """A 2-engine cluster over ssh: its Cluster, Client, launcher, and pids on both sides."""

    def __init__(self, cluster: ipp.Cluster, rc: ipp.Client, launcher: SSHEngineSetLauncher):
        self.cluster, self.rc, self.launcher = cluster, rc, launcher
        self.pids: list[int] = rc[:].apply_sync(os.getpid)
        self.local = processes_of(launcher)


@pytest.fixture
def ssh_cluster(sshd: SSHServer, profile: str) -> Iterator[SSHCluster]:
    """Stopped at the end, also when the test fails; leftovers by pid are killed."""
    c = ssh_config(sshd, {sshd.host: 2})
    cluster = ipp.Cluster(engines="ssh", profile=profile, cluster_id="", config=c)
    pids: list[int] = []
    try:
        rc = cluster.start_and_connect_sync()
        [launcher] = cluster.engine_sets.values()
        assert isinstance(launcher, SSHEngineSetLauncher)
        made = SSHCluster(cluster, rc, launcher)
        pids = made.pids + made.local
        yield made
        rc.close()
    finally:
        cluster.stop_cluster_sync()
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)


def test_one_session_per_host_starts_its_engines_and_stop_ends_them(
    sshd: SSHServer, profile: str, ssh_cluster: SSHCluster
) -> None:
    cluster, rc, launcher = ssh_cluster.cluster, ssh_cluster.rc, ssh_cluster.launcher
    pids, local = ssh_cluster.pids, ssh_cluster.local
    assert list(launcher.hosts) == [sshd.host]  # one session for both engines
    assert sorted(rc.ids) == [0, 1]
    assert sorted(pids) == sorted(far_end_pids(launcher))
    # they run under sshd (a login on the server), not as children of this side's processes
    via = rc[:].apply_sync(lambda: __import__("os").environ.get("SSH_CONNECTION", ""))
    assert all(v.split()[2:] == ["127.0.0.1", str(sshd.port)] for v in via), via
    for pid in pids:
        ancestors = {p.pid for p in psutil.Process(pid).parents()}
        assert sshd.proc.pid in ancestors and not ancestors & set(local)
    # the key came inside the session, not on any command line
    key = paths.read_json(Path(cluster._data["engine_file"]))["key"]  # type: ignore[index]
    assert all(key not in " ".join(psutil.Process(p).cmdline()) for p in pids + local)
    assert launcher.status_text() == "1/1 ssh sessions open"
    # what the JupyterLab panel gets for the cluster
    info = find_cluster(profile, "")
    assert info is not None
    [set_id] = cluster.engine_sets
    assert operations.cluster_json(info)["engine_sets"] == [
        {
            "id": set_id,
            "launcher": "SSHEngineSetLauncher",
            "n": 2,
            "registered": 2,
            "status": "1/1 ssh sessions open",
        }
    ]
    cluster.stop_cluster_sync()
    wait_until(lambda: not alive(pids + local), 15, what="engines and ssh sessions to end")


@pytest.mark.parametrize("victim", ["ssh", "keeper"])
def test_killing_this_side_leaves_no_engine_on_the_host(
    ssh_cluster: SSHCluster, victim: str
) -> None:
    rc, pids = ssh_cluster.rc, ssh_cluster.pids
    [host] = ssh_cluster.launcher.hosts.values()
    keeper = psutil.Process(host.process_pid)
    [ssh] = [p for p in keeper.children() if p.name() == "ssh"]
    (ssh if victim == "ssh" else keeper).send_signal(signal.SIGKILL)
    wait_until(lambda: not alive(pids), 15, what=f"the engines to stop after {victim} died")
    wait_until(lambda: rc.ids == [], 15, what="the controller to see them go")


def test_a_host_that_refuses_the_login_fails_at_once_with_ssh_s_words(
    sshd: SSHServer, profile: str, tmp_path: Path
) -> None:
    c = ssh_config(sshd, {sshd.host: 1})
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    args = sshd.ssh_args()
    args[args.index(str(sshd.client_key))] = str(stranger)
    c.SSHEngineSetLauncher.ssh_args = args
    cluster = ipp.Cluster(engines="ssh", profile=profile, cluster_id="", config=c)
    try:
        with pytest.raises(error.EngineStartFailed) as info:
            cluster.start_and_connect_sync()
        text = str(info.value)
        assert "Permission denied (publickey)" in text
        assert f"{sshd.host}: ssh session ended (exit code 255)" in text
    finally:
        cluster.stop_cluster_sync()


def test_an_engine_that_cannot_reach_the_controller_says_so_through_the_launcher(
    sshd: SSHServer, tmp_path: Path
) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
    dead = port.getsockname()[1]
    ports = {"engine": dead, "iopub": dead}
    info = {"key": "k", "ip": "127.0.0.1", "location": "127.0.0.1", "ports": ports}
    launcher = SSHEngineSetLauncher(
        engines={sshd.host: 1},
        ssh_args=sshd.ssh_args(),
        remote_python=sys.executable,
        engine_args=["--registration-timeout=1"],
        work_dir=str(tmp_path),
        environment={paths.CONNECTION_INFO_VARIABLE: json.dumps(info)},
    )
    try:
        launcher.start()
        wait_until(lambda: launcher.state == "after", 30, what="the session to end")
        text = launcher.failure()
        host = socket.gethostname()
        assert (
            f"cannot reach controller at tcp://127.0.0.1:{dead} from host {host} "
            "(tried for 1 s)" in text
        ), text
        assert f"{sshd.host}: ssh session ended (exit code 2)" in text
    finally:
        launcher.stop()
        port.close()


def test_ipar_start_over_ssh_with_the_profile_s_config_and_the_loopback_rule(
    sshd: SSHServer, profile: str
) -> None:
    profile_dir = paths.profile_dir(profile, create=True)
    config = profile_dir / "ipcluster_config.py"
    # a host that is not this machine's loopback: a controller on 127.0.0.1 is refused
    config.write_text("c.SSHEngineSetLauncher.engines = {'node1.example': 2}\n")
    refused = ipar("start", "-n", "2", "--engines", "ssh", "--profile", profile, check=False)
    assert refused.returncode == 1
    assert "cannot reach a controller listening on the loopback address 127.0.0.1" in refused.stderr
    assert "ipar start --ip '*'" in refused.stderr
    assert not paths.cluster_file(profile_dir).exists()  # nothing was started
    config.write_text(
        f"c.SSHEngineSetLauncher.engines = {{{sshd.host!r}: 2}}\n"
        f"c.SSHEngineSetLauncher.ssh_args = {sshd.ssh_args()!r}\n"
        f"c.SSHEngineSetLauncher.remote_python = {sys.executable!r}\n"
    )
    pids: list[int] = []
    try:
        started = ipar("start", "--engines", "ssh", "--profile", profile, check=False)
        assert started.returncode == 0, started.stderr
        # the wait's lines (stderr is no terminal: whole lines), the set's ssh sessions in
        # each; the last says it ended, once
        waited = started.stderr.splitlines()
        assert all(line.startswith("engines: ") for line in waited), waited
        assert re.fullmatch(
            r"engines: 2/2 registered, \d+\.\d s; \S+: 2/2 engines registered "
            r"\(1/1 ssh sessions open\)",
            waited[-1],
        ), waited
        assert sum("2/2 engines registered" in line for line in waited) == 1, waited
        rc = ipp.Client(profile=profile)
        pids = rc[:].apply_sync(os.getpid)
        assert len(pids) == 2
        listed = ipar("list").stdout
        assert re.search(
            rf"  {profile}: engine set \S+: SSHEngineSetLauncher, 2 engine\(s\), "
            r"1/1 ssh sessions open, 2/2 registered\n",
            listed,
        ), listed
        rc.close()
        assert ipar("stop", "--profile", profile).returncode == 0
        wait_until(lambda: not alive(pids), 15, what="the ssh engines to stop")
    finally:
        ipar("stop", "--profile", profile, check=False)
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)


def test_the_set_is_described_for_another_process() -> None:
    host = SSHHostLauncher(hostname="node1", user="me", port="2222", n=3)
    assert host.location == "me@node1:2222"
    assert host.args == [
        sys.executable,
        "-m",
        "ipar_widgets.cluster.sshlink",
        "ssh",
        *host.ssh_args,
        "-p",
        "2222",
        "-l",
        "me",
        "node1",
        "python3 -m ipar_widgets.cluster.sshhost 3",
    ]
    again = SSHHostLauncher.from_dict(host.to_dict())
    assert isinstance(again, SSHHostLauncher)
    assert (again.hostname, again.user, again.port, again.n) == ("node1", "me", "2222", 3)


def test_dry_run_prints_each_host_s_session_and_starts_nothing(profile: str) -> None:
    profile_dir = paths.profile_dir(profile, create=True)
    (profile_dir / "ipcluster_config.py").write_text(
        "c.SSHEngineSetLauncher.engines = {'node1.example': 2, 'me@node2.example:2222': 3}\n"
    )
    shown = ipar("start", "--dry-run", "--engines", "ssh", "--ip", "*", "--profile", profile)
    first, second = shown.stdout.strip().splitlines()  # one ssh session per host
    assert first.endswith(" node1.example 'python3 -m ipar_widgets.cluster.sshhost 2'")
    assert second.endswith(
        " -p 2222 -l me node2.example 'python3 -m ipar_widgets.cluster.sshhost 3'"
    )
    assert not paths.cluster_file(profile_dir).exists()
    refused = ipar("start", "--dry-run", "--engines", "ssh", "--profile", profile, check=False)
    assert refused.returncode == 1 and "--ip" in refused.stderr
