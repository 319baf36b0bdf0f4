"""Operations on a cluster from outside it: launch its controller, ask it things, stop it.

Shared by the ``ipar`` command, the ``Cluster`` API and the JupyterLab server extension, so
all three start and stop clusters the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from traitlets.config import Config, Configurable

from .. import paths
from ..client.controlplane import ask_once
from ..client.controlplane import wait_for_engines as wait_until_registered
from ..client.waitprogress import WaitDisplay, outcome_of
from ..controller.launcher import tail
from ..error import ClusterError, ControllerRefused, EngineStartFailed, NoAnswer
from ..processes import group_alive, pid_alive
from ..protocol.sharedmem import remove_area
from ..protocol.wire import Message
from . import enginesets, remotecontroller
from .launcher import BaseLauncher, LauncherError, LocalEngineSetLauncher, find_launcher_class

__all__ = [
    "ClusterError",
    "request",
    "launch_controller",
    "wait_for_cluster_file",
    "start_cluster",
    "wait_for_engines",
    "stop_cluster",
]

R = TypeVar("R")


def request(
    cluster: dict[str, Any],
    msg_type: str,
    content: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> Message:
    """Ask a cluster's controller one question over a short-lived connection (its answer,
    or ControllerRefused / NoAnswer)."""
    info = paths.read_json(Path(cluster["client_file"]))
    return ask_once(info, msg_type, content, timeout)


def controller_options(
    profile: str, profile_path: Path, cluster_id: str, n: int, ip: str, log_level: str
) -> list[str]:
    """The controller's command-line options for a cluster (a ``Cluster`` passes them to
    its controller launcher; :func:`launch_controller` runs them)."""
    return [
        f"--profile={profile}",
        f"--profile-dir={profile_path}",
        f"--cluster-id={cluster_id}",
        f"--n={n}",
        f"--ip={ip}",
        f"--log-level={log_level}",
    ]


def launch_controller(
    profile: str,
    cluster_id: str = "",
    n: int = 0,
    ip: str = "127.0.0.1",
    profile_dir: str | None = None,
    extra_args: list[str] | None = None,
    log_level: str = "INFO",
) -> subprocess.Popen[bytes]:
    """Start a controller in a session of its own (so Ctrl-C in a terminal does not reach
    it, and its process group holds the whole cluster)."""
    profile_path = Path(profile_dir) if profile_dir else paths.profile_dir(profile, create=True)
    (profile_path / "log").mkdir(parents=True, exist_ok=True)
    log_path = paths.log_file(profile_path, "controller", cluster_id)
    cmd = [
        sys.executable,
        "-m",
        "ipar_widgets.controller",
        *controller_options(profile, profile_path, cluster_id, n, ip, log_level),
        *(extra_args or []),
    ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def wait_for_cluster_file(
    profile_path: Path, cluster_id: str, proc: subprocess.Popen[bytes], timeout: float = 30.0
) -> dict[str, Any]:
    """Wait until the controller has bound its ports and written its files."""
    path = paths.cluster_file(profile_path, cluster_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                data = paths.read_json(path)
            except ValueError:
                data = {}
            if data.get("controller_pid") == proc.pid:
                return data
        code = proc.poll()
        if code is not None:
            log_path = paths.log_file(profile_path, "controller", cluster_id)
            raise ClusterError(
                f"the controller exited with code {code} before it was ready; the end of its log "
                f"({log_path}):\n{tail(log_path)}"
            )
        time.sleep(0.02)
    proc.kill()
    raise ClusterError(f"the controller did not start within {timeout:g} s")


def start_cluster(
    profile: str,
    cluster_id: str = "",
    n: int = 0,
    ip: str = "127.0.0.1",
    extra_args: list[str] | None = None,
    log_level: str = "INFO",
    engine_timeout: float = 60.0,
    engines: str = "local",
    config: Config | None = None,
    progress: WaitDisplay | None = None,
) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    """Start a controller and ``n`` engines; return once the engines registered.  The
    controller starts local ones; another launcher (``engines='mpi'``) starts them from this
    process as an engine set (enginesets.py).

    Returns the cluster file's data and the controller process (whoever started it reaps it).
    On failure nothing is left running and the error says why: ClusterError (the
    controller's log) or EngineStartFailed (the failing engine's log, or the launcher's
    output).  The ``ipar`` command and the JupyterLab server extension both start clusters
    through here.  ``config`` configures the engine launcher (``c.SSHEngineSetLauncher...``);
    ``progress`` shows the wait for the engines (the ``ipar`` command's line on stderr).
    """
    launcher_class = find_launcher_class(engines, "EngineSet")  # ValueError: unknown name
    local = issubclass(launcher_class, LocalEngineSetLauncher)
    if not local:  # refused before anything starts
        try:
            enginesets.check_reachable(launcher_class(config=config or Config()), ip)
        except LauncherError as exc:
            raise ClusterError(str(exc)) from None
    profile_path = paths.profile_dir(profile, create=True)
    proc = launch_controller(
        profile, cluster_id, n if local else 0, ip, extra_args=extra_args, log_level=log_level
    )
    try:
        data = wait_for_cluster_file(profile_path, cluster_id, proc)
        if local:
            wait_for_engines(data, n, engine_timeout, progress)
        elif n:
            add_engine_set(data, launcher_class, n, engine_timeout, config, progress)
    except (ClusterError, EngineStartFailed):
        _abandon(profile_path, cluster_id, proc)
        raise
    except (OSError, LauncherError) as exc:
        _abandon(profile_path, cluster_id, proc)
        raise ClusterError(str(exc)) from exc
    return data, proc


def add_engine_set(
    cluster: dict[str, Any],
    launcher_class: type[BaseLauncher],
    n: int,
    timeout: float,
    config: Config | None = None,
    progress: WaitDisplay | None = None,
) -> str:
    """Start ``n`` engines with a launcher other than the controller's, and wait until they
    registered (EngineStartFailed at once if the launcher's process ends first); returns
    the engine set's id.  ``progress`` shows the wait: the cluster's engines, and the new
    set's with its launcher's state ("PENDING (Resources)", "1/1 ssh sessions open")."""

    def registered() -> int:
        return int(request(cluster, "status_request").content["engines_registered"])

    before = registered()
    set_id, launcher = enginesets.start_engine_set(
        cluster, launcher_class, n, parent=Configurable(config=config or Config())
    )
    size = int(getattr(launcher, "n", n))
    wanted = before + size

    def show(count: int, look: bool = True) -> None:
        if progress is not None:
            row = (set_id, count - before, size, launcher.status_text())
            progress.update(count, wanted, [row], show=look)

    def wait() -> None:
        count = enginesets.wait_for_engine_sets(
            registered, wanted, [launcher], timeout, on_look=show
        )
        show(count, look=False)  # the count that ended the wait: finish() shows it

    _ending_shown(progress, wait)
    return set_id


def _ending_shown(progress: WaitDisplay | None, wait: Callable[[], R]) -> R:
    """Run ``wait``; then ``progress`` (if any) says how it ended: ready, or the error."""
    try:
        result = wait()
    except BaseException as exc:
        if progress is not None:
            progress.finish(outcome_of(exc))
        raise
    if progress is not None:
        progress.finish("ready")
    return result


def _abandon(profile_path: Path, cluster_id: str, proc: subprocess.Popen[bytes]) -> None:
    """Stop what a failed start left behind."""
    try:
        data = paths.read_json(paths.cluster_file(profile_path, cluster_id))
    except (OSError, ValueError):
        data = {}
    if data.get("controller_pid") == proc.pid:
        stop_cluster(data)
    else:
        proc.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def wait_for_engines(
    cluster: dict[str, Any], n: int, timeout: float, progress: WaitDisplay | None = None
) -> dict[str, Any]:
    """Wait until ``n`` engines registered; EngineStartFailed (with the failing engine's log)
    if one exits first, EnginesNotReady (with the end of the newest engine log) if time runs
    out.  ``progress`` shows the wait, the controller's engines as the set "local" (how many
    of its engine processes are still starting)."""

    def newest_log_tail() -> str:
        pattern = f"ipar-engine{'-' + cluster['cluster_id'] if cluster['cluster_id'] else ''}-*.log"
        logs = sorted(Path(cluster["log_dir"]).glob(pattern))
        return f"\nthe end of {logs[-1]}:\n{tail(logs[-1])}" if logs else ""

    def look() -> Mapping[str, Any]:
        # the look that ends the wait is recorded, not shown: finish() shows it
        status = request(cluster, "status_request").content
        if progress is not None:
            registered = int(status.get("engines_registered", 0))
            starting = int(status.get("engines_starting") or 0)
            row = ("local", registered, n, f"{starting} starting" if starting else "")
            progress.update(registered, n, [row], show=registered < n)
        return status

    status = _ending_shown(
        progress,
        lambda: wait_until_registered(
            look,
            n,
            timeout,
            lambda seconds: time.sleep(min(seconds, 0.05)),
            timeout_detail=newest_log_tail,
        ),
    )
    return dict(status)


def _end_group(pgid: int, notes: list[str]) -> None:
    """SIGTERM a process group, then SIGKILL what is left of it."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        if not group_alive(pgid):
            return
        if sig == signal.SIGKILL:
            notes.append(f"killed processes left in the cluster's process group {pgid}")
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)


def stop_cluster(
    cluster: dict[str, Any],
    grace: float = 10.0,
    live: Mapping[str, BaseLauncher] | None = None,
    controller: BaseLauncher | None = None,
) -> list[str]:
    """Stop every process of a cluster: ask the controller, then signal its process group
    if it does not finish in time (a controller elsewhere: stop it through its launcher,
    ``controller`` if this process started it).  Returns notes on what had to be forced.
    ``live``: the engine sets' launchers when this process started them (see
    ``stop_engine_sets``)."""
    notes: list[str] = []
    if remotecontroller.is_remote(cluster):
        # elsewhere: its pid and process groups are another host's; its launcher stops it
        remotecontroller.stop(cluster, notes, grace, controller)
        enginesets.stop_engine_sets(cluster, notes, live=live)
        _remove_files(cluster)
        return notes
    pid = int(cluster.get("controller_pid", 0))
    pgid = int(cluster.get("pgid", pid))
    if pid and pid_alive(pid):
        try:
            request(cluster, "shutdown_request", {"hub": True}, timeout=grace)
        except (NoAnswer, ControllerRefused, OSError, ValueError) as exc:
            notes.append(f"the controller did not stop cleanly ({exc}); stopping its processes")
        else:  # it answered once its engines were gone; give it a moment to exit
            deadline = time.monotonic() + 3
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
    # the controller's group, and those of engines a controller it replaced (--restore) started
    for group in dict.fromkeys([pgid, *(int(g) for g in cluster.get("engine_pgids") or [])]):
        _end_group(group, notes)
    # engines that launchers started (mpiexec ...), through their launchers
    enginesets.stop_engine_sets(cluster, notes, live=live)
    _remove_files(cluster)
    remove_area(cluster.get("shm"))  # shared-memory files a killed controller left behind
    return notes


def _remove_files(cluster: dict[str, Any]) -> None:
    profile_path = Path(cluster["profile_dir"])
    cid = cluster.get("cluster_id", "")
    paths.remove_quietly(
        paths.client_file(profile_path, cid),
        paths.engine_file(profile_path, cid),
        paths.cluster_file(profile_path, cid),
    )
