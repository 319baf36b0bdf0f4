"""The controller started elsewhere: over ssh (a real sshd on loopback, tests/sshd.py) and as
a Slurm job (a real single-node Slurm, tests/schedulers.py).

The controller announces its connection info on its own output and this side writes the
connection files, so the "remote" profile directory (the ssh host's) and the local one are
kept apart, and the test checks that the remote side never had a client or cluster file.
Liveness and stop go through the launcher: every test ends by looking for the processes
(controller, engines, ssh sessions) by their command lines or ``SLURM_JOB_ID``.  These tests
fail, never skip, without OpenSSH; the Slurm one fails in CI and skips elsewhere only without
root or the packages.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import alive, ipar, wait_until
from schedulers import SlurmCluster, processes_with, running_slurm
from sshd import SSHServer, running_sshd
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets import error, paths
from ipar_widgets.cluster.batch import SlurmControllerLauncher
from ipar_widgets.cluster.discovery import STALE, find_cluster
from ipar_widgets.cluster.launcher import find_launcher_class
from ipar_widgets.cluster.sshlauncher import SSHControllerLauncher

pytestmark = pytest.mark.timeout(180)

PYTHON = os.path.basename(sys.executable)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def remote_dir(profile: str) -> Path:
    """The profile directory "on the ssh host": apart from this side's (no shared files),
    under the session's directory so its leak check sees the processes that name it."""
    return Path(os.environ["IPYTHONDIR"]).parent / "remote-host" / f"profile_{profile}"


def ssh_settings(server: SSHServer, remote: Path) -> dict[str, object]:
    return {
        "location": server.host,
        "ssh_args": server.ssh_args(),
        "remote_python": sys.executable,
        "remote_profile_dir": str(remote),
    }


def ssh_config(server: SSHServer, remote: Path) -> Config:
    c = Config()
    for name, value in ssh_settings(server, remote).items():
        setattr(c.SSHControllerLauncher, name, value)
    return c


def processes_naming(directory: Path) -> list[int]:
    """Live processes whose command line names ``directory``: the controller and engines
    there, the far end of the session, and this side's keeper and ssh client."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(directory) in cmd:
            found.append(proc.pid)
    return [pid for pid in found if pid != os.getpid()]


def kill_leftovers(directory: Path) -> None:
    for pid in processes_naming(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_launchers_are_found_by_name_and_a_remote_loopback_is_refused(profile: str) -> None:
    assert find_launcher_class("ssh", "Controller") is SSHControllerLauncher
    assert find_launcher_class("slurm", "Controller") is SlurmControllerLauncher
    c = Config()
    c.SSHControllerLauncher.location = "me@node1.example:2222"
    cluster = ipp.Cluster(controller="ssh", n=0, profile=profile, cluster_id="", config=c)
    launcher = cluster._controller_launcher()
    assert isinstance(launcher, SSHControllerLauncher)
    assert (launcher.user, launcher.hostname, launcher.port) == ("me", "node1.example", "2222")
    assert launcher.needs_routable_address()
    # the host's own profile of this name: no --profile-dir of this side goes there
    remote = launcher.remote_command()
    assert remote[:4] == ["python3", "-m", "ipar_widgets.cluster.sshhost", "--controller"]
    assert f"--profile={profile}" in remote and "--announce" in remote
    assert not any(a.startswith("--profile-dir=") for a in remote)
    with pytest.raises(error.ClusterError) as refused:
        cluster.start_controller_sync()
    assert "loopback address 127.0.0.1" in str(refused.value)
    assert "Cluster(controller_ip='*')" in str(refused.value)
    assert not paths.cluster_file(paths.profile_dir(profile)).exists()  # nothing started
    # the command line says which flag
    profile_dir = paths.profile_dir(profile, create=True)
    (profile_dir / "ipcluster_config.py").write_text(
        "c.SSHControllerLauncher.hostname = 'node1.example'\n"
    )
    cli = ipar("start", "--controller", "ssh", "-n", "1", "--profile", profile, check=False)
    assert cli.returncode == 1 and "ipar start --ip '*'" in cli.stderr, cli.stderr
    unknown = ipar("start", "--controller", "nosuch", "--profile", profile, check=False)
    assert unknown.returncode == 1 and "unknown Controller launcher 'nosuch'" in unknown.stderr


def test_a_controller_over_ssh_runs_its_engines_there_and_stop_leaves_nothing(
    sshd: SSHServer, profile: str, remote_dir: Path
) -> None:
    cluster = ipp.Cluster(
        controller="ssh", n=2, profile=profile, cluster_id="", config=ssh_config(sshd, remote_dir)
    )
    local = paths.profile_dir(profile)
    try:
        rc = cluster.start_and_connect_sync()
        assert rc[:].apply_sync(lambda x: 2 * x, 21) == [42, 42]
        # the controller and its engines run under sshd (logged in over the session)
        via = rc[:].apply_sync(lambda: __import__("os").environ.get("SSH_CONNECTION", ""))
        assert all(v.split()[2:] == ["127.0.0.1", str(sshd.port)] for v in via), via
        data = paths.read_json(paths.cluster_file(local))
        entry = data["controller_launcher"]
        assert entry["launcher"] == "ipar_widgets.cluster.sshlauncher.SSHControllerLauncher"
        assert entry["hostname"] == "127.0.0.1" and entry["port"] == str(sshd.port)
        assert data["controller_host"] == socket.gethostname() and "pgid" not in data
        # this side wrote the connection files; the host never had a client or cluster file
        assert paths.client_file(local).exists() and paths.engine_file(local).exists()
        assert paths.engine_file(remote_dir).exists()
        assert not paths.client_file(remote_dir).exists()
        assert not paths.cluster_file(remote_dir).exists()
        key = paths.read_json(paths.client_file(local))["key"]
        pids = processes_naming(remote_dir)
        controller_pid = data["controller_pid"]
        assert controller_pid in pids and all(p in pids for p in rc[:].apply_sync(os.getpid))
        assert all(key not in " ".join(psutil.Process(p).cmdline()) for p in pids)
        launcher = cluster.controller
        assert isinstance(launcher, SSHControllerLauncher)
        assert key not in Path(launcher.output_file).read_text()  # the session's stderr only
        listed = json.loads(ipar("list", "--json").stdout)
        [mine] = [c for c in listed if c["profile"] == profile]
        assert mine["state"] == "running" and mine["engines_registered"] == 2
        assert mine["controller_host"] == socket.gethostname()
        table = ipar("list", "--profile", profile).stdout
        assert f"{controller_pid}@{socket.gethostname()}" in table, table
        # another process attaches to it through the cluster file
        again = ipp.Cluster.from_file(profile=profile)
        assert isinstance(again.controller, SSHControllerLauncher) and again._running()
        # a pid that is not alive here (as another host's would be) makes no one here think
        # the controller is gone: clients, ipar list and Cluster ask it or its launcher
        gone = subprocess.Popen(["true"])
        gone.wait()
        paths.write_private_json(paths.cluster_file(local), {**data, "controller_pid": gone.pid})
        other = ipp.Client(profile=profile)
        assert other[:].apply_sync(lambda: 1) == [1, 1]
        other.close()
        info = find_cluster(profile)
        assert info is not None and info.state == "running"
        assert ipp.Cluster.from_file(profile=profile)._running()
        rc.close()
        cluster.stop_cluster_sync()
        wait_until(lambda: not processes_naming(remote_dir), 30, what="the cluster's processes")
        assert not paths.cluster_file(local).exists() and not paths.client_file(local).exists()
        assert find_cluster(profile) is None
    finally:
        cluster.stop_cluster_sync()
        kill_leftovers(remote_dir)


def test_ipar_start_and_stop_with_the_controller_over_ssh(
    sshd: SSHServer, profile: str, remote_dir: Path
) -> None:
    profile_dir = paths.profile_dir(profile, create=True)
    lines = [
        f"c.SSHControllerLauncher.{k} = {v!r}" for k, v in ssh_settings(sshd, remote_dir).items()
    ]
    (profile_dir / "ipcluster_config.py").write_text("\n".join(lines) + "\n")
    try:
        started = ipar("start", "--controller", "ssh", "-n", "2", "--profile", profile)
        assert f"@{socket.gethostname()}, ssh)" in started.stdout, started.stdout
        # the controller outlives the command that started it: its session is kept apart
        info = find_cluster(profile)
        assert info is not None and info.state == "running" and info.engines_registered == 2
        rc = ipp.Client(profile=profile)
        rc.wait_for_engines(2, timeout=30)
        assert rc[:].apply_sync(lambda: 7) == [7, 7]
        rc.close()
        assert processes_naming(remote_dir)
        stopped = ipar("stop", "--profile", profile)
        assert "Stopped the cluster" in stopped.stdout, stopped.stdout
        wait_until(lambda: not processes_naming(remote_dir), 30, what="the cluster's processes")
        assert not paths.cluster_file(profile_dir).exists()
    finally:
        ipar("stop", "--profile", profile, check=False)
        kill_leftovers(remote_dir)


def test_engines_over_ssh_for_a_controller_over_ssh(
    sshd: SSHServer, profile: str, remote_dir: Path
) -> None:
    c = ssh_config(sshd, remote_dir)
    c.SSHEngineSetLauncher.engines = {sshd.host: 2}
    c.SSHEngineSetLauncher.ssh_args = sshd.ssh_args()
    c.SSHEngineSetLauncher.remote_python = sys.executable
    cluster = ipp.Cluster(controller="ssh", engines="ssh", profile=profile, cluster_id="", config=c)
    pids: list[int] = []
    try:
        rc = cluster.start_and_connect_sync()
        pids = rc[:].apply_sync(os.getpid)
        assert len(pids) == 2 and rc[:].apply_sync(lambda: 3) == [3, 3]
        # they got the connection info this side wrote from the announcement
        [launcher] = cluster.engine_sets.values()
        assert launcher.status_text() == "1/1 ssh sessions open"
        rc.close()
        cluster.stop_cluster_sync()
        wait_until(lambda: not alive(pids), 30, what="the ssh engines to stop")
        wait_until(lambda: not processes_naming(remote_dir), 30, what="the controller to stop")
    finally:
        cluster.stop_cluster_sync()
        kill_leftovers(remote_dir)
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("victim", ["keeper", "ssh"])
def test_the_session_is_the_controller_s_lifeline(
    sshd: SSHServer, profile: str, remote_dir: Path, victim: str
) -> None:
    cluster = ipp.Cluster(
        controller="ssh", n=1, profile=profile, cluster_id="", config=ssh_config(sshd, remote_dir)
    )
    try:
        rc = cluster.start_and_connect_sync()
        [engine_pid] = rc[:].apply_sync(os.getpid)
        rc.close()
        controller = cluster.controller
        assert isinstance(controller, SSHControllerLauncher) and controller.process_pid
        keeper = psutil.Process(controller.process_pid)
        [ssh] = [p for p in keeper.children() if p.name() == "ssh"]
        far = [p for p in processes_naming(remote_dir) if p not in (keeper.pid, ssh.pid)]
        assert engine_pid in far and len(far) >= 3  # sshhost, the controller, its engine
        (keeper if victim == "keeper" else ssh).send_signal(signal.SIGKILL)
        wait_until(lambda: not processes_naming(remote_dir), 30, what="the far end to stop")
        wait_until(lambda: not cluster._running(), 10, what="the cluster to see it")
        info = find_cluster(profile, query=False)
        assert info is not None and info.state == STALE
        cluster.stop_cluster_sync()  # cleans the files of a controller that is gone
        assert not paths.cluster_file(paths.profile_dir(profile)).exists()
    finally:
        cluster.stop_cluster_sync()
        kill_leftovers(remote_dir)


def test_a_host_that_refuses_the_login_fails_the_start_at_once_with_ssh_s_words(
    sshd: SSHServer, profile: str, remote_dir: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30
    )
    c = ssh_config(sshd, remote_dir)
    args = sshd.ssh_args()
    args[args.index(str(sshd.client_key))] = str(stranger)
    c.SSHControllerLauncher.ssh_args = args
    cluster = ipp.Cluster(controller="ssh", n=1, profile=profile, cluster_id="", config=c)
    try:
        with pytest.raises(error.ClusterError) as failed:
            cluster.start_controller_sync()
        text = str(failed.value)
        assert "SSHControllerLauncher ended (exited with code 255)" in text, text
        assert "Permission denied (publickey)" in text
        assert cluster.controller is None and not cluster._running()
        assert not paths.cluster_file(paths.profile_dir(profile)).exists()
        assert not processes_naming(remote_dir)
    finally:
        cluster.stop_cluster_sync()
        kill_leftovers(remote_dir)


# -- the controller as a Slurm job ------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with running_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def test_a_controller_as_a_slurm_job_runs_its_engines_in_the_job_and_stop_cancels_it(
    slurm: SlurmCluster, profile: str
) -> None:
    c = Config()
    c.SlurmControllerLauncher.controller_on_this_host = True  # a single-node Slurm
    c.SlurmControllerLauncher.timelimit = "10:00"
    c.SlurmControllerLauncher.poll_interval = 0.2
    c.SlurmControllerLauncher.queue = slurm.partition
    cluster = ipp.Cluster(controller="slurm", n=2, profile=profile, cluster_id="", config=c)
    job = ""
    try:
        rc = cluster.start_and_connect_sync()
        controller = cluster.controller
        assert isinstance(controller, SlurmControllerLauncher)
        job = controller.job_id
        assert controller.status_text() == "RUNNING"
        assert rc[:].apply_sync(lambda x: x + 1, 1) == [2, 2]
        in_job = processes_with(PYTHON, f"SLURM_JOB_ID={job}")
        data = paths.read_json(paths.cluster_file(paths.profile_dir(profile)))
        assert data["controller_pid"] in in_job
        assert all(p in in_job for p in rc[:].apply_sync(os.getpid))  # started in the job
        assert data["controller_launcher"]["job_id"] == job
        # the job's output (the announcement, with the key) is readable by its owner only
        [output] = controller.output_paths()
        assert output.parent == paths.profile_dir(profile) / "security"
        assert (output.parent.stat().st_mode & 0o777) == 0o700
        info = find_cluster(profile)
        assert info is not None and info.state == "running" and info.engines_registered == 2
        rc.close()
        cluster.stop_cluster_sync()
        wait_until(
            lambda: not processes_with(PYTHON, f"SLURM_JOB_ID={job}"), 30, what="the job's python"
        )
        wait_until(
            lambda: not slurm.run("squeue", "-h", "-j", job).stdout.strip(), 30, 0.1, "the job"
        )
        assert find_cluster(profile) is None
    finally:
        cluster.stop_cluster_sync()
        if job:
            slurm.run("scancel", job)
            wait_until(
                lambda: not processes_with(PYTHON, f"SLURM_JOB_ID={job}"), 30, what="job processes"
            )
