"""Handles on a launcher's process: ``launcher.process`` answers ``pid``, ``is_running()``,
``poll()`` and ``wait(timeout)`` whether this Python process started it or found it again.

ipyparallel's launchers hold a ``psutil`` process there, and code written for them calls
``cluster.controller.process.is_running()``; these two classes give the same answers without
making psutil a dependency.  :class:`ChildProcess` is our child (its exit code is known);
:class:`AttachedProcess` is a process another Python process started (``Cluster.from_dict``,
``Cluster.from_file``): it can be watched and signalled, but its exit code is unknown.
"""

from __future__ import annotations

import os
import subprocess
import time

from ..processes import pid_alive

__all__ = ["AttachedProcess", "ChildProcess"]


class ChildProcess(subprocess.Popen[bytes]):
    """A ``subprocess.Popen`` that also answers ``is_running()``, as a psutil process does."""

    def is_running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.poll() is None


class AttachedProcess:
    """A process this one did not start, known by its pid."""

    #: seconds between checks while waiting for the process to end
    poll_interval = 0.05

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: its exit code is never known here (only its parent learns it)
        self.returncode: int | None = None

    def __repr__(self) -> str:
        return f"<AttachedProcess pid={self.pid} {'running' if self.is_running() else 'gone'}>"

    def is_running(self) -> bool:
        """Whether a process with this pid still exists."""
        return pid_alive(self.pid)

    def poll(self) -> int | None:
        """None while it runs; afterwards -1, since the exit code of another process's child
        cannot be learned."""
        return None if self.is_running() else -1

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the process is gone; ``subprocess.TimeoutExpired`` after ``timeout``
        seconds.  Returns None: the exit code is unknown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_running():
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0.0)
            time.sleep(self.poll_interval)
        return None

    def send_signal(self, sig: int) -> None:
        """Send ``sig``; nothing happens if the process is already gone."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
