"""Controllers that run elsewhere (over ssh, as a batch job): their files, liveness and stop.

A controller on another host cannot write the connection files where this host's clients,
``ipar list`` and engine launchers look for them, and nothing here may assume a shared
filesystem.  So it is started with ``--announce`` and prints its connection info as one
line (its launcher reads it: the ssh session's stdout, the job's output file), and
:func:`write_files` writes the client, engine and cluster files here from it.  The cluster
file then records the launcher (``controller_launcher``: its class and ``to_dict``) and the
host (``controller_host``), so every process of this host judges the controller by its
launcher (the ssh session open, the job RUNNING) or by asking it, never by its pid, which is
another host's, and stops it by a shutdown request, then through the launcher (the session
closed, the job deleted): nothing here ever signals a remote pid.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import paths
from ..client.controlplane import ask_once
from ..error import ClusterError, ControllerRefused, NoAnswer
from ..processes import pid_alive
from .enginesets import launcher_path
from .launcher import BaseLauncher, ControllerLauncher, LauncherError, find_launcher_class

__all__ = [
    "LAUNCHER_ENTRY",
    "attach",
    "controller_alive",
    "is_remote",
    "stop",
    "wait_for_announcement",
    "where",
    "write_files",
]

#: the cluster file's entry describing the launcher of a controller that runs elsewhere
LAUNCHER_ENTRY = paths.REMOTE_CONTROLLER_ENTRY


def is_remote(cluster: dict[str, Any]) -> bool:
    """Whether the cluster file describes a controller started elsewhere (its pid is not
    this host's)."""
    return isinstance(cluster.get(LAUNCHER_ENTRY), dict)


def where(cluster: dict[str, Any]) -> str:
    """The controller's pid as ``ipar list`` shows it: ``123``, or ``123@node7`` elsewhere."""
    pid = cluster.get("controller_pid", "-")
    return f"{pid}@{cluster.get('controller_host', '?')}" if is_remote(cluster) else str(pid)


def wait_for_announcement(launcher: ControllerLauncher, timeout: float) -> dict[str, Any]:
    """Wait until the controller the launcher started announced its connection info.
    ClusterError at once if the launcher's process or job ends first (with what it printed),
    or after ``timeout`` seconds, not counting the time a batch job waits in its queue."""
    deadline = time.monotonic() + timeout
    while True:
        found = launcher.announcement()
        if found is not None:
            return found
        now = time.monotonic()
        if launcher.state == "after":
            raise ClusterError(
                f"the controller's {type(launcher).__name__} ended ({launcher.status_text()}) "
                f"before the controller announced itself; what it printed:\n{launcher.failure()}"
            )
        if launcher.pending():
            deadline = now + timeout
        if now > deadline:
            raise ClusterError(
                f"the controller started by {type(launcher).__name__} did not announce itself "
                f"within {timeout:g} s ({launcher.status_text()}); raise its announce_timeout "
                f"if the host is slow. What it printed so far:\n{launcher.failure()}"
            )
        time.sleep(0.05)


def write_files(
    profile: str,
    profile_path: Path,
    cluster_id: str,
    announced: dict[str, Any],
    launcher: BaseLauncher,
) -> dict[str, Any]:
    """Write the client, engine and cluster files here from what the controller announced,
    and return the cluster file's data (paths of this host, the launcher recorded)."""
    (profile_path / "security").mkdir(parents=True, exist_ok=True)
    (profile_path / "log").mkdir(exist_ok=True)
    client_path = paths.client_file(profile_path, cluster_id)
    engine_path = paths.engine_file(profile_path, cluster_id)
    paths.write_private_json(client_path, dict(announced["client"]))
    paths.write_private_json(engine_path, dict(announced["engine"]))
    cluster = {
        key: value
        for key, value in dict(announced["cluster"]).items()
        # process groups and shared memory of the other host: nothing here may touch them
        if key not in ("pgid", "engine_pgids", "shm")
    }
    cluster.update(
        profile=profile,
        profile_dir=str(profile_path),
        cluster_id=cluster_id,
        client_file=str(client_path),
        engine_file=str(engine_path),
        log_dir=str(profile_path / "log"),
        controller_host=str(cluster.get("controller_host") or "?"),
    )
    cluster[LAUNCHER_ENTRY] = {**launcher.to_dict(), "launcher": launcher_path(type(launcher))}
    paths.write_private_json(paths.cluster_file(profile_path, cluster_id), cluster)
    return cluster


def attach(cluster: dict[str, Any], **kwargs: Any) -> BaseLauncher:
    """A launcher watching the remote controller the cluster file records (ValueError for
    an unknown launcher class)."""
    entry = dict(cluster[LAUNCHER_ENTRY])
    cls = find_launcher_class(str(entry.get("launcher", "")), "Controller")
    return cls.from_dict(entry, **kwargs)


def controller_alive(cluster: dict[str, Any], launcher: BaseLauncher | None = None) -> bool:
    """Whether the cluster's controller still runs: its pid for one of this host; for one
    elsewhere, its launcher's state (``launcher``, or one attached to the record)."""
    if not is_remote(cluster):
        pid = cluster.get("controller_pid")
        return isinstance(pid, int) and pid_alive(pid)
    if launcher is None:
        try:
            launcher = attach(cluster)
        except (LauncherError, ValueError, OSError):
            return False
    return launcher.state == "running"


def stop(
    cluster: dict[str, Any],
    notes: list[str],
    grace: float = 10.0,
    launcher: BaseLauncher | None = None,
) -> None:
    """Stop a controller that runs elsewhere: a shutdown request (it stops its engines and
    exits, which ends its session or job), then the launcher's stop (the session closed, the
    job deleted) for whatever is left.  ``launcher``: the one watching it, if this process
    started it."""
    if launcher is None:
        try:
            launcher = attach(cluster)
        except (LauncherError, ValueError, OSError) as exc:
            notes.append(f"cannot watch the controller's launcher ({exc})")
    if launcher is None or launcher.state == "running":
        try:
            info = paths.read_json(Path(cluster["client_file"]))
            ask_once(info, "shutdown_request", {"hub": True}, timeout=grace)
        except (NoAnswer, ControllerRefused, OSError, ValueError) as exc:
            notes.append(f"the controller did not stop cleanly ({exc}); stopping its launcher")
        else:
            if launcher is not None:
                launcher.wait_for_stop(grace)
    if launcher is not None:
        try:
            launcher.stop()
        except (LauncherError, OSError) as exc:
            notes.append(f"the controller's {type(launcher).__name__} did not stop: {exc}")
