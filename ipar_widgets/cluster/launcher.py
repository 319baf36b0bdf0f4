"""Launchers: objects that start, watch, signal and stop the processes of a cluster.

ipyparallel's names (``ipyparallel.cluster.launcher``), so configuration written for it
(``c.EngineLauncher.engine_args = [...]``, ``c.LocalControllerLauncher.controller_args``)
and code that subclasses :class:`LocalProcessLauncher` keep working.

A launcher moves through three states: ``'before'`` (made, not started), ``'running'`` and
``'after'`` (its process exited or was stopped).  :meth:`BaseLauncher.to_dict` and
:meth:`BaseLauncher.from_dict` describe a running launcher in JSON, so another process (``ipar
list``, ``Cluster.from_file``) can watch and stop what this one started.

The controller starts its local engines itself (``controller/launcher.py``), and a
:class:`Cluster` reads the local launcher's configuration to pass it on.  Other engine
launchers (``mpi``: ``mpilauncher.py``) run in the process that asks for engines, and
``enginesets.py`` records them.  Launchers are found by name (``find_launcher_class``) among
these and the entry points ``ipar_widgets.engine_launchers`` /
``ipar_widgets.controller_launchers``, as ipyparallel finds its own.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Dict, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from .. import paths
from ..processes import pid_alive
from .processhandle import AttachedProcess, ChildProcess

__all__ = [
    "SIGKILL",
    "BaseLauncher",
    "ControllerLauncher",
    "EngineLauncher",
    "LauncherError",
    "LocalControllerLauncher",
    "LocalEngineLauncher",
    "LocalEngineSetLauncher",
    "LocalProcessLauncher",
    "ProcessStateError",
    "UnknownStatus",
    "find_launcher_class",
    "ipcontroller_cmd_argv",
    "ipengine_cmd_argv",
    "parse_announcement",
]

SIGKILL = signal.SIGKILL

#: the commands that run a controller and an engine with this Python
ipcontroller_cmd_argv = [sys.executable, "-m", "ipar_widgets.controller"]
ipengine_cmd_argv = [sys.executable, "-m", "ipar_widgets.engine"]

StopCallback = Callable[[dict[str, Any]], None]


class LauncherError(Exception):
    """A launcher could not do what it was asked."""


class ProcessStateError(LauncherError):
    """The launcher is in the wrong state for the request (e.g. started twice)."""


class UnknownStatus(LauncherError):
    """The launcher cannot tell what became of its process."""


class BaseLauncher(LoggingConfigurable):
    """What every launcher does: hold a command, go through before → running → after, tell
    ``on_stop`` callbacks how its process ended, and describe itself in JSON."""

    work_dir = Unicode(".", help="Directory the process starts in.").tag(config=True)
    profile_dir = Unicode("", help="Profile directory of the cluster the process belongs to.")
    cluster_id = Unicode("", help="Id of the cluster within its profile.")
    identifier = Unicode("", help="Name of this launcher within its cluster (for logs, JSON).")
    environment = Dict(
        help="Environment variables set for the process, on top of this process's own."
    ).tag(config=True)

    #: the JSON attributes :meth:`to_dict` writes and :meth:`from_dict` reads
    serialize_fields: ClassVar[tuple[str, ...]] = ("state", "process_pid", "stop_data")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = "before"
        self.process_pid: int | None = None
        self.stop_data: dict[str, Any] | None = None
        self._stop_callbacks: list[StopCallback] = []
        self._stopped = threading.Event()

    # -- the command ------------------------------------------------------------------------------
    @property
    def args(self) -> list[str]:
        """The command line (program and arguments) the launcher runs."""
        return self.find_args()

    def find_args(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must say what it runs (find_args)")

    @property
    def arg_str(self) -> str:
        return " ".join(self.args)

    # -- states -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot start processes")

    def stop(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot stop processes")

    def signal(self, sig: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot signal processes")

    def notify_start(self, data: Any) -> Any:
        """Called once the process started (``data``: its pid, or a job id)."""
        self.log.debug("%s started: %s", type(self).__name__, data)
        if isinstance(data, int):
            self.process_pid = data
        self.state = "running"
        return data

    def notify_stop(self, data: dict[str, Any]) -> dict[str, Any]:
        """Called once the process ended (``data``: at least ``exit_code`` and ``pid``)."""
        self.log.debug("%s stopped: %s", type(self).__name__, data)
        self.state = "after"
        self.stop_data = data
        callbacks, self._stop_callbacks = self._stop_callbacks, []
        for callback in callbacks:
            try:
                callback(data)
            except Exception:
                self.log.exception("error in a stop callback of %s", type(self).__name__)
        self._stopped.set()
        return data

    def on_stop(self, f: StopCallback) -> None:
        """Call ``f(stop_data)`` when the process ends (at once if it already has)."""
        if self.state == "after" and self.stop_data is not None:
            f(self.stop_data)
        else:
            self._stop_callbacks.append(f)

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Wait until the process ended; False if ``timeout`` seconds passed first."""
        return self._stopped.wait(timeout)

    def get_output(self, remove: bool = False) -> str:
        """What the process wrote (stdout and stderr), if the launcher keeps it."""
        return ""

    def failure(self) -> str:
        """What a process that ended too soon said about it: by default its last lines."""
        return "\n".join(self.get_output().strip().splitlines()[-20:])

    def preview(self) -> str:
        """What starting would run, for ``ipar start --dry-run``: the command line (a batch
        launcher shows the job script it would submit)."""
        return shlex.join(self.args)

    def ended_early(self) -> bool:
        """Whether what the launcher started ended (for a launcher of several processes: any
        of them), so waiting for its engines is pointless."""
        return self.state == "after"

    def needs_routable_address(self) -> bool:
        """Whether the engines run on other hosts, so a controller on loopback cannot be
        reached (``ipar start`` then refuses a loopback ``--ip``)."""
        return False

    def pending(self) -> bool:
        """Whether what this launcher started is still waiting for resources (a batch job in
        its queue): no registration timeout runs meanwhile.  Processes never wait."""
        return False

    def status_text(self) -> str:
        """One line for ``ipar list``, reprs and waits ("running (pid 123)"; batch launchers
        say "PENDING (Resources)", "RUNNING", "FAILED: ...")."""
        if self.state == "running" and self.process_pid is not None:
            return f"running (pid {self.process_pid})"
        if self.state == "after":
            code = (self.stop_data or {}).get("exit_code")
            return "stopped" if code in (0, None) else f"exited with code {code}"
        return self.state

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Enough to find the process again from another Python process."""
        return {name: getattr(self, name) for name in self.serialize_fields}

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> BaseLauncher:
        """A launcher that watches the process ``d`` (from :meth:`to_dict`) describes."""
        launcher = cls(**kwargs)
        for name in cls.serialize_fields:
            if name in d:
                setattr(launcher, name, d[name])
        return launcher


class LocalProcessLauncher(BaseLauncher):
    """Runs its command as a child process of this one, its output in ``output_file``."""

    cmd_and_args = List(Unicode(), help="The command line to run.").tag(config=True)
    output_file = Unicode(
        "", help="File the process's stdout and stderr go to (default: a file in work_dir)."
    ).tag(config=True)
    stop_timeout = Float(
        5.0, help="Seconds the process gets to exit after SIGTERM before it gets SIGKILL."
    ).tag(config=True)
    poll_interval = Float(
        0.1, help="Seconds between checks whether a process started elsewhere still runs."
    ).tag(config=True)

    serialize_fields: ClassVar[tuple[str, ...]] = (
        "state",
        "process_pid",
        "stop_data",
        "output_file",
        "cmd_and_args",
    )
    #: the process's stdout is a pipe (``self.process.stdout``) for the launcher to read, and
    #: only its stderr goes to ``output_file`` (a controller's announcement carries the key)
    capture_stdout: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: our child (``is_running()``, ``wait()``, as ipyparallel's psutil process), or a
        #: process found again by :meth:`from_dict`
        self.process: ChildProcess | AttachedProcess | None = None

    def find_args(self) -> list[str]:
        return list(self.cmd_and_args)

    def _output_path(self) -> Path:
        if self.output_file:
            return Path(self.output_file)
        name = self.identifier or f"{type(self).__name__}-{os.getpid()}-{id(self):x}"
        return Path(self.work_dir) / f"{name}.log"

    def start(self) -> None:
        if self.state != "before":
            raise ProcessStateError(
                f"{type(self).__name__} can start once; it is already {self.state!r} "
                "(make a new launcher to start another process)"
            )
        args = self.args
        if not args:
            raise LauncherError(f"{type(self).__name__} has no command to run (cmd_and_args)")
        path = self._output_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.output_file = str(path)
        self.cmd_and_args = list(args)  # recorded: another process checks the pid runs it
        with open(path, "ab") as out:
            self.process = ChildProcess(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture_stdout else out,
                stderr=out if self.capture_stdout else subprocess.STDOUT,
                cwd=self.work_dir,
                env={**os.environ, **self.environment},
                start_new_session=True,
            )
        self.notify_start(self.process.pid)
        threading.Thread(target=self._watch, name=f"watch-{self.process.pid}", daemon=True).start()

    def _watch(self) -> None:
        """Reap the child when it exits (or poll a process started by another launcher)."""
        if self.process is not None:
            code = self.process.wait()
            self.notify_stop({"exit_code": code, "pid": self.process.pid})
            return
        pid = self.process_pid
        while pid is not None and pid_alive(pid):
            time.sleep(self.poll_interval)
        self.notify_stop({"exit_code": None, "pid": pid})

    def poll(self) -> int | None:
        """The exit code, or None while the process runs (as ``Popen.poll``)."""
        if isinstance(self.process, ChildProcess):
            return self.process.poll()
        if self.stop_data is not None:
            code = self.stop_data.get("exit_code")
            return int(code) if code is not None else -1
        if self.process_pid is not None and pid_alive(self.process_pid):
            return None
        raise UnknownStatus(f"process {self.process_pid} is gone and its exit code is unknown")

    def signal(self, sig: int | str) -> None:
        if isinstance(sig, str):
            sig = int(signal.Signals[sig if sig.startswith("SIG") else "SIG" + sig])
        if self.state != "running" or self.process_pid is None:
            raise ProcessStateError(f"cannot signal a process that is {self.state!r}")
        try:
            os.kill(self.process_pid, sig)
        except ProcessLookupError:
            pass  # it exited meanwhile: the watcher reports how

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout`` seconds; returns once it exited (or
        after the kill when it was not our child)."""
        if self.state != "running":
            return
        self.signal(signal.SIGTERM)
        if isinstance(self.process, ChildProcess):
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.signal(SIGKILL)
                self.process.wait(self.stop_timeout)
            self.wait_for_stop(self.stop_timeout)
            return
        deadline = time.monotonic() + self.stop_timeout
        while self.process_pid is not None and pid_alive(self.process_pid):
            if time.monotonic() > deadline:
                self.signal(SIGKILL)
                break
            time.sleep(self.poll_interval)

    def get_output(self, remove: bool = False) -> str:
        if not self.output_file or not os.path.exists(self.output_file):
            return ""
        with open(self.output_file, errors="replace") as f:
            text = f.read()
        if remove:
            os.remove(self.output_file)
        return text

    def _runs_our_command(self) -> bool:
        """Whether ``process_pid`` still runs the recorded command (pids are reused)."""
        if self.process_pid is None or not pid_alive(self.process_pid):
            return False
        try:
            argv = Path(f"/proc/{self.process_pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc: trust the pid
        program = os.path.basename(self.cmd_and_args[0]) if self.cmd_and_args else ""
        return not program or os.path.basename(argv[0].decode(errors="replace")) == program

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> LocalProcessLauncher:
        launcher = super().from_dict(d, **kwargs)
        assert isinstance(launcher, LocalProcessLauncher)
        if launcher.state == "running" and not launcher._runs_our_command():
            launcher.notify_stop({"exit_code": None, "pid": launcher.process_pid})
        if launcher.state == "running" and launcher.process_pid is not None:
            launcher.process = AttachedProcess(launcher.process_pid)
            threading.Thread(target=launcher._watch, daemon=True).start()
        return launcher


def parse_announcement(text: str) -> dict[str, Any] | None:
    """The connection info a controller started with ``--announce`` printed (the last such
    line of ``text``): ``{"client": ..., "engine": ..., "cluster": ...}``, or None."""
    for line in reversed(text.splitlines()):
        if not line.startswith(paths.ANNOUNCE_PREFIX):
            continue
        try:
            payload = json.loads(line[len(paths.ANNOUNCE_PREFIX) :])
        except ValueError:
            continue  # cut short (the output file is still being written): the next look
        if isinstance(payload, dict) and all(
            isinstance(payload.get(part), dict) for part in ("client", "engine", "cluster")
        ):
            return payload
    return None


class ControllerLauncher(BaseLauncher):
    """What launches the controller: its command and extra arguments."""

    controller_cmd = List(
        Unicode(), list(ipcontroller_cmd_argv), help="The command that runs a controller."
    ).tag(config=True)
    controller_args = List(Unicode(), help="Extra command-line arguments for the controller.").tag(
        config=True
    )

    #: the controller runs elsewhere (another host, a batch job): it is started with
    #: ``--announce`` and :meth:`announcement` returns what it printed; the connection files
    #: are then written on this side (remotecontroller.py), and its liveness is this
    #: launcher's state, never a pid of this host
    runs_elsewhere: ClassVar[bool] = False

    def announcement(self) -> dict[str, Any] | None:
        """The connection info the controller announced so far (None: not yet, or a
        controller of this host, which writes its files itself)."""
        return None

    def controller_profile_dir(self, local: str) -> str | None:
        """The ``--profile-dir`` the controller gets (None: none, it uses its host's
        profile of the cluster's name); this host's profile directory by default."""
        return local


class EngineLauncher(BaseLauncher):
    """What launches engines: their command, extra arguments, and how many."""

    engine_cmd = List(
        Unicode(), list(ipengine_cmd_argv), help="The command that runs an engine."
    ).tag(config=True)
    engine_args = List(
        Unicode(),
        help="Extra command-line arguments for each engine (e.g. "
        "'--InteractiveShell.colors=nocolor').",
    ).tag(config=True)
    n = Integer(1, help="Number of engines this launcher starts.").tag(config=True)


class LocalControllerLauncher(LocalProcessLauncher, ControllerLauncher):
    """Runs the controller as a child process of this one."""

    def find_args(self) -> list[str]:
        return [*self.controller_cmd, *self.controller_args]


class LocalEngineLauncher(LocalProcessLauncher, EngineLauncher):
    """Runs one engine as a child process of this one."""

    def find_args(self) -> list[str]:
        return [*self.engine_cmd, *self.engine_args]


class LocalEngineSetLauncher(LocalEngineLauncher):
    """Local engines, ``n`` at a time.  In a :class:`Cluster`, the controller starts them
    (it watches their processes); this class carries their configuration to it."""


#: built-in launchers by name; the others are found through entry points
_BATCH = "ipar_widgets.cluster.batch"
_BATCH_SYSTEMS = ("Slurm", "SGE", "PBS", "LSF", "HTCondor")
_LAUNCHERS: dict[str, dict[str, str]] = {
    "EngineSet": {
        "local": "ipar_widgets.cluster.launcher.LocalEngineSetLauncher",
        "ipar": "ipar_widgets.cluster.launcher.LocalEngineSetLauncher",
        "mpi": "ipar_widgets.cluster.mpilauncher.MPIEngineSetLauncher",
        "mpiexec": "ipar_widgets.cluster.mpilauncher.MPIEngineSetLauncher",
        "ssh": "ipar_widgets.cluster.sshlauncher.SSHEngineSetLauncher",
        **{s.lower(): f"{_BATCH}.{s}EngineSetLauncher" for s in _BATCH_SYSTEMS},
    },
    "Controller": {
        "local": "ipar_widgets.cluster.launcher.LocalControllerLauncher",
        "ipar": "ipar_widgets.cluster.launcher.LocalControllerLauncher",
        "ssh": "ipar_widgets.cluster.sshlauncher.SSHControllerLauncher",
        **{s.lower(): f"{_BATCH}.{s}ControllerLauncher" for s in _BATCH_SYSTEMS},
    },
}
_ENTRY_POINT_GROUPS = {
    "EngineSet": "ipar_widgets.engine_launchers",
    "Controller": "ipar_widgets.controller_launchers",
}
#: ipyparallel's launcher names this version does not have
_NOT_YET = frozenset({"batch", "sshproxy", "winhpc"})
#: classes of other modules that this module's namespace also offers (ipyparallel has them all
#: in ``ipyparallel.cluster.launcher``)
_ELSEWHERE = {
    "MPILauncher": "ipar_widgets.cluster.mpilauncher",
    "MPIEngineSetLauncher": "ipar_widgets.cluster.mpilauncher",
    **{
        name: "ipar_widgets.cluster.sshlauncher"
        for name in ("SSHLauncher", "SSHEngineSetLauncher", "SSHControllerLauncher")
    },
    **{
        f"{system}{role}": _BATCH
        for system in _BATCH_SYSTEMS
        for role in ("Launcher", "EngineSetLauncher", "ControllerLauncher")
    },
    "BatchSystemLauncher": _BATCH,
}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load(path: str) -> type[BaseLauncher]:
    import importlib

    module_name, _, class_name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"no launcher class {path!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseLauncher)):
        raise ValueError(f"{path!r} is not a launcher class (a subclass of BaseLauncher)")
    return found


def _entry_points(kind: str) -> dict[str, str]:
    from importlib.metadata import entry_points

    return {
        ep.name.lower(): ep.value.replace(":", ".")
        for ep in entry_points(group=_ENTRY_POINT_GROUPS[kind])
    }


def find_launcher_class(name: str, kind: str) -> type[BaseLauncher]:
    """The launcher class ``name`` names for ``kind`` ('EngineSet' or 'Controller'): a name
    ('local', 'mpi', or one registered by a package in the entry-point group
    ``ipar_widgets.engine_launchers`` / ``ipar_widgets.controller_launchers``), a class name
    of this module (also with ipyparallel's module path), or a dotted import path."""
    # ipyparallel's kinds ("engine", "controller") too
    kind = {"engine": "EngineSet", "controller": "Controller"}.get(kind.lower(), kind)
    if kind not in _LAUNCHERS:
        raise ValueError(f"launcher kind must be 'EngineSet' or 'Controller', found {kind!r}")
    known = {**_entry_points(kind), **_LAUNCHERS[kind]}
    if name.lower() in known:
        return _load(known[name.lower()])
    short = name.rsplit(".", 1)[-1]
    here = globals().get(short)
    if isinstance(here, type) and issubclass(here, BaseLauncher):
        return here
    if short in _ELSEWHERE and (name == short or name.startswith("ipyparallel.")):
        return _load(f"{_ELSEWHERE[short]}.{short}")
    if "." in name:
        return _load(name)
    later = (
        f" (ipyparallel's {name!r} launcher is not in this version yet)"
        if (name.lower() in _NOT_YET)
        else ""
    )
    raise ValueError(f"unknown {kind} launcher {name!r}{later}; use one of {sorted(known)}")
