"""Local engine sets: engines a ``Cluster`` asked its controller to start on this host.

The controller starts local engines itself (it is their parent and watches them), so the
``Cluster`` does not run them; it keeps, per request, a :class:`ControllerEngineSet` that
knows their pids and log files.  That is what ``cluster.engines[set_id]`` holds, as
ipyparallel's engine-set launchers: it reports the set's state (``on_stop`` once every
engine of it has exited), signals and stops its engines, and returns their output.

When the controller runs on another host (``controller_host``), its engines run there too:
their pids are that host's, so the set asks the controller which of them are registered
instead of looking at pids, and stops them by asking it, never by a signal from here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from ..error import ClusterError
from ..processes import pid_alive
from . import control
from .launcher import LocalEngineSetLauncher, ProcessStateError

__all__ = ["ControllerEngineSet"]


class ControllerEngineSet(LocalEngineSetLauncher):
    """``n`` engines the cluster's controller started at this set's request."""

    serialize_fields: ClassVar[tuple[str, ...]] = (
        "state",
        "stop_data",
        "n",
        "processes",
        "client_file",
        "controller_host",
    )

    #: seconds between checks whether the set's engines still run
    watch_interval: ClassVar[float] = 0.1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: the controller's connection file for clients (how this set reaches it)
        self.client_file = ""
        #: one entry per engine process: ``seq``, ``uuid``, ``pid``, ``log`` (its log file)
        self.processes: list[dict[str, Any]] = []
        #: the controller's host when it is not this one (then so are the engines)
        self.controller_host = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} n={self.n} {self.status_text()}>"

    def find_args(self) -> list[str]:
        return [*self.engine_cmd, *self.engine_args]

    # -- lifetime -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Ask the controller (through ``client_file``) to start ``n`` engines."""
        if self.state != "before":
            raise ProcessStateError(
                f"an engine set starts once; this one is already {self.state!r} "
                "(Cluster.start_engines makes a new one)"
            )
        if not self.client_file:
            raise ClusterError("a local engine set needs its cluster's client_file to start")
        reply = control.request({"client_file": self.client_file}, "spawn_request", {"n": self.n})
        self.processes = list(reply.content.get("processes") or [])
        self.notify_start([p["pid"] for p in self.processes])
        self._watch_in_background()

    def _watch_in_background(self) -> None:
        threading.Thread(target=self._watch, name="watch-engine-set", daemon=True).start()

    def _watch(self) -> None:
        """Report the set stopped once none of its engine processes runs any more (on
        another host: once stop() asked the controller to stop them)."""
        if self.controller_host:
            return
        while self.alive_pids():
            time.sleep(self.watch_interval)
        self.notify_stop({"exit_code": None, "pids": self.pids})

    @property
    def pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.processes]

    def alive_pids(self) -> list[int]:
        """The pids of the set's engines that still run (on another host: all of them while
        the set runs; only the controller there knows more)."""
        if self.controller_host:
            return self.pids if self.state == "running" else []
        return [pid for pid in self.pids if pid_alive(pid)]

    def status_text(self) -> str:
        if self.state == "running":
            return f"running ({len(self.alive_pids())} of {self.n} engine processes)"
        return super().status_text()

    def poll(self) -> int | None:
        """None while an engine of the set runs, else -1 (the controller has their codes)."""
        return None if self.alive_pids() else -1

    def signal(self, sig: int | str) -> None:
        """Send ``sig`` to each engine process of the set (they run on this host)."""
        if isinstance(sig, str):
            sig = int(signal.Signals[sig if sig.startswith("SIG") else "SIG" + sig])
        if self.state != "running":
            raise ProcessStateError(f"cannot signal an engine set that is {self.state!r}")
        if self.controller_host:
            raise ProcessStateError(
                f"this set's engines run on {self.controller_host}, the controller's host: "
                "signal them through the controller, with rc.send_signal(sig, targets=ids) or "
                "cluster.signal_engines_sync(sig, ids)"
            )
        for pid in self.alive_pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def engine_ids(self) -> list[int]:
        """The ids of the set's engines that are registered now (asks the controller)."""
        status = control.request({"client_file": self.client_file}, "status_request").content
        uuids = {p["uuid"] for p in self.processes}
        return [int(e["id"]) for e in status.get("engines", []) if e.get("uuid") in uuids]

    def stop(self) -> None:
        """Ask the controller to stop the set's engines, then SIGTERM (and after
        ``stop_timeout`` seconds SIGKILL) those still running; returns once all are gone."""
        if self.state != "running":
            return
        if Path(self.client_file).exists():
            try:
                ids = self.engine_ids()
                if ids:
                    control.request(
                        {"client_file": self.client_file},
                        "shutdown_request",
                        {"targets": ids},
                        timeout=30,
                    )
            except (ClusterError, OSError, ValueError) as exc:
                self.log.debug("engine set: the controller did not stop its engines: %s", exc)
        if self.controller_host:  # the controller there stops (or kills) them
            self.notify_stop({"exit_code": None, "pids": self.pids})
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + self.stop_timeout
            while self.alive_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.alive_pids():
                break
            self.signal(sig)
        self.wait_for_stop(self.stop_timeout)

    def get_output(self, remove: bool = False) -> str:
        """What the set's engines wrote to their logs, one after another."""
        parts = []
        for entry in self.processes:
            path = Path(str(entry.get("log", "")))
            try:
                parts.append(path.read_text(errors="replace"))
            except OSError:
                continue
            if remove:
                path.unlink(missing_ok=True)
        return "".join(parts)

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> ControllerEngineSet:
        launcher = cls(**kwargs)
        for name in cls.serialize_fields:
            if name in d:
                setattr(launcher, name, d[name])
        if launcher.state == "running":
            launcher._watch_in_background()
        return launcher
