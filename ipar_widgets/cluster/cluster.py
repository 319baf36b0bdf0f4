"""``Cluster``: start, grow, connect to and stop a cluster from Python (ipyparallel's names).

Every operation has a blocking form (``start_cluster_sync``) and an awaitable one
(``start_cluster``); :func:`awaitable` makes the second from the first (it runs it in a
worker thread), so there is one implementation of each and they cannot drift apart.

A cluster is its controller (``cluster.controller``, a launcher) and its engine sets
(``cluster.engines``: engine-set id -> launcher), as in ipyparallel.  Local engines are
started by the controller itself; their set (:class:`~.localengines.ControllerEngineSet`)
knows their processes and logs.  Other launchers (``engines='mpi'``) run here and are also
recorded beside the cluster file (enginesets.py), so other processes can stop them.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import random
import string
import sys
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from traitlets import Any as TraitAny
from traitlets import (
    Bool,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    Union,
    default,
    validate,
)
from traitlets.config import Config, LoggingConfigurable

from .. import paths
from ..error import ClusterError, ClusterNotFound, EngineError
from ..processes import pid_alive
from . import control, enginesets, remotecontroller
from .launcher import (
    BaseLauncher,
    ControllerLauncher,
    LauncherError,
    LocalControllerLauncher,
    LocalEngineSetLauncher,
    LocalProcessLauncher,
    find_launcher_class,
)
from .localengines import ControllerEngineSet
from .processhandle import ChildProcess
from .profileconfig import load_profile_config

if TYPE_CHECKING:
    from ..client.client import Client

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")


def awaitable(
    blocking: Callable[Concatenate[C, P], R],
) -> Callable[Concatenate[C, P], Coroutine[Any, Any, R]]:
    """The awaitable twin of a blocking method (``start_cluster`` of ``start_cluster_sync``):
    it runs the blocking one in the event loop's default executor, with the same arguments."""

    async def twin(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(blocking, self, *args, **kwargs))

    name = blocking.__name__.removesuffix("_sync")
    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = f"Awaitable form of :meth:`{blocking.__name__}`, run in a worker thread."
    return twin


_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _stop_at_exit() -> None:
    for cluster in list(_live_clusters):
        if cluster.shutdown_atexit and cluster._owned:
            try:
                cluster.stop_cluster_sync()
            except Exception:
                pass


atexit.register(_stop_at_exit)


#: the levels the processes' ``--log-level`` takes, by number
_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def _random_id() -> str:
    return (
        f"{int(time.time())}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=4))}"
    )


def _class_path(cls: type) -> str:
    """The dotted path find_launcher_class reads back (to_dict / from_dict)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def _not_overridden(ours: list[str], given: list[str]) -> list[str]:
    """Our ``--name=value`` options that ``given`` does not set itself: an option the user
    passes (``controller_args=['--log-level=10']``) wins over the Cluster's, instead of the
    controller refusing the option twice."""
    names = {_option_name(arg) for arg in given if arg.startswith("--")}
    return [arg for arg in ours if _option_name(arg) not in names]


def _in_ipython_shell(parent: object) -> bool:
    """Whether ``parent`` is the running IPython shell (a Cluster made in a notebook or
    terminal session then logs to that session's stdout)."""
    if parent is None or "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and parent is shell


class Cluster(LoggingConfigurable):
    """A cluster: one controller and its engines, in an IPython profile.

    ``with Cluster(n=4) as rc:`` starts it, connects a Client, and stops everything at the
    end.  ``Cluster.from_file(profile=...)`` attaches to one started elsewhere (``ipar start``);
    ``Cluster.from_dict(cluster.to_dict())`` to one this or another process describes.
    """

    profile = Unicode("default", help="IPython profile the cluster's files go in.").tag(config=True)
    profile_dir = Unicode(
        help="Directory of the profile (default: $IPYTHONDIR/profile_<profile>)."
    ).tag(config=True)
    cluster_id = Unicode(help="Id of the cluster in its profile (default: a new random id).").tag(
        config=True
    )
    n = Integer(
        None, allow_none=True, help="Number of engines to start (default: the number of CPUs)."
    ).tag(config=True)
    controller_ip = Unicode(
        "127.0.0.1", help="Interface the controller binds ('0.0.0.0' for all)."
    ).tag(config=True)
    controller_args = List(Unicode(), help="Extra command-line arguments for the controller.").tag(
        config=True
    )
    engine_timeout = Float(
        60.0, help="Seconds to wait for engines to register in start_and_connect."
    ).tag(config=True)
    controller_timeout = Float(30.0, help="Seconds to wait for the controller to be ready.").tag(
        config=True
    )
    shutdown_atexit = Bool(
        True,
        help="Stop the cluster when this Python process exits, if it started it "
        "(from_dict sets it to False: the describing process owns the cluster).",
    ).tag(config=True)
    load_profile = Bool(
        True,
        help="Read the profile's ipcluster_config.py / ipcluster_config.json; values given "
        "directly (config=..., keyword arguments) win over the file's.",
    ).tag(config=True)
    log_level = Union(
        [Unicode(), Integer()],
        default_value="INFO",
        help="Log level of the cluster's processes: a name ('DEBUG') or, as in ipyparallel, "
        "a number (logging.DEBUG == 10).",
    ).tag(config=True)
    delay = Float(0.0, help="Unused; accepted for compatibility with ipyparallel.").tag(config=True)
    engine_launcher_class = TraitAny(
        "local",
        help="What starts the engines: 'local' (the controller starts them on this host), "
        "'mpi' (mpiexec; engine id = MPI rank), 'ssh' (one ssh session per host), "
        "a launcher class, or its import path (ipyparallel's paths too). Read back, it is the "
        "class. Cluster(engines=...) sets it.",
    ).tag(config=True)
    controller_launcher_class = TraitAny(
        "local",
        help="What starts the controller: 'local' (a process on this host), 'ssh' (on "
        "another host, c.SSHControllerLauncher.hostname), 'slurm' (a Slurm job; also 'sge', "
        "'pbs', 'lsf', 'htcondor'), a launcher class, or its import path; read back, it is the "
        "class. Cluster(controller=...) sets it. One elsewhere announces its connection info "
        "to this process, which writes the connection files here (no shared filesystem).",
    ).tag(config=True)
    replace_dead_engines = Bool(
        False,
        help="Start a new engine in place of a local engine that died (not one stopped on "
        "purpose), up to max_engine_restarts times; the progress widget's row of the dead "
        "engine says 'replaced by engine <id>'. Cluster(restart_engines=True) sets it (the "
        "name restart_engines is taken by the method that restarts engine sets).",
    ).tag(config=True)
    max_engine_restarts = Integer(
        3,
        help="Most dead engines replace_dead_engines replaces over the cluster's life.",
    ).tag(config=True)
    restore = Bool(
        False,
        help="Start the controller in the place of this profile's controller that died (its "
        "ports, key and unfinished tasks; its engines rejoin): ipar start --restore.",
    ).tag(config=True)

    @validate("log_level")
    def _check_log_level(self, proposal: Any) -> str:
        """A level name the processes' ``--log-level`` takes (numbers become names)."""
        value = proposal["value"]
        name = _LEVEL_NAMES.get(value, "") if isinstance(value, int) else str(value).upper()
        name = "WARN" if name == "WARNING" else name
        if name not in _LEVEL_NAMES.values():
            raise TraitError(
                "log_level must be a logging level name (DEBUG, INFO, WARN, ERROR, CRITICAL) "
                f"or number (logging.DEBUG == 10, ...), found {value!r}"
            )
        return name

    @validate("max_engine_restarts")
    def _check_max_engine_restarts(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(
                "Cluster.max_engine_restarts: expected a number of restarts (0 or more), "
                f"found {proposal['value']!r}"
            )
        return int(proposal["value"])

    @validate("engine_launcher_class")
    def _resolve_engine_launcher(self, proposal: Any) -> type[BaseLauncher]:
        """Names and import paths become the class, at once (an unknown one is refused
        here, not when engines start)."""
        return self._resolve_launcher(proposal["value"], "EngineSet")

    @validate("controller_launcher_class")
    def _resolve_controller_launcher(self, proposal: Any) -> type[BaseLauncher]:
        cls = self._resolve_launcher(proposal["value"], "Controller")
        elsewhere = issubclass(cls, ControllerLauncher) and cls.runs_elsewhere
        if not (issubclass(cls, LocalControllerLauncher) or elsewhere):
            raise TraitError(
                "a controller launcher must run the controller on this host (a "
                "LocalControllerLauncher) or elsewhere announcing its connection info (a "
                "ControllerLauncher with runs_elsewhere, such as 'ssh' or 'slurm'); found "
                f"{proposal['value']!r}"
            )
        return cls

    @staticmethod
    def _resolve_launcher(value: object, kind: str) -> type[BaseLauncher]:
        if isinstance(value, type):
            if not issubclass(value, BaseLauncher):
                raise TraitError(f"a {kind} launcher must subclass BaseLauncher, found {value!r}")
            return value
        return find_launcher_class(str(value), kind)

    @default("cluster_id")
    def _default_cluster_id(self) -> str:
        return _random_id()

    @default("profile_dir")
    def _default_profile_dir(self) -> str:
        return str(paths.profile_dir(self.profile))

    @default("log")
    def _default_log(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        """In an IPython session, a logger of its own writing to the session's stdout;
        else the parent's logger, or ``ipar_widgets.cluster.cluster.<cluster_id>``."""
        if _in_ipython_shell(self.parent):
            log = logging.getLogger(f"{__name__}.{self.cluster_id}")
            log.setLevel(logging.getLevelName(self.log_level))
            log.handlers = [logging.StreamHandler(sys.stdout)]
            log.propagate = False
            return log
        parent_log = getattr(self.parent, "log", None)
        if isinstance(parent_log, (logging.Logger, logging.LoggerAdapter)):
            return parent_log
        return logging.getLogger(f"{__name__}.{self.cluster_id}")

    # set in __init__; here too, so that a Cluster whose arguments were refused still has a repr
    _data: dict[str, Any] | None = None
    _owned = False
    controller: ControllerLauncher | None = None
    engines: dict[str, BaseLauncher] = {}  # noqa: RUF012 (replaced per instance in __init__)

    def __init__(self, **kwargs: Any) -> None:
        if "restart_engines" in kwargs:  # the method keeps the name: the trait has another
            wanted = kwargs.pop("restart_engines")
            if not isinstance(wanted, bool):
                raise TraitError(
                    "Cluster(restart_engines=...): expected True or False (replace local "
                    f"engines that die), found {wanted!r}"
                )
            kwargs["replace_dead_engines"] = wanted
        for key in ("engines", "controller"):
            chosen = kwargs.pop(key, None)
            if chosen is not None:
                kwargs.setdefault(f"{key.removesuffix('s')}_launcher_class", chosen)
        if kwargs.get("load_profile", True):
            self._merge_profile_config(kwargs)
        #: the controller's launcher while this object knows a running controller, else None
        self.controller = None
        #: the engine sets, by id: launchers (local ones: :class:`ControllerEngineSet`)
        self.engines = {}
        super().__init__(**kwargs)
        # validated here too: traits left at their default are not validated by traitlets
        self.engine_launcher_class = self.engine_launcher_class
        self.controller_launcher_class = self.controller_launcher_class
        paths.check_profile_name(self.profile)
        paths.check_cluster_id(self.cluster_id)
        self._data = None
        self._owned = False
        self._restoring = False
        self._client: Client | None = None
        _live_clusters.add(self)

    @staticmethod
    def _merge_profile_config(kwargs: dict[str, Any]) -> None:
        """Put the profile's ``ipcluster_config`` under the configuration given (which wins)."""
        if kwargs.get("profile_dir"):
            directory = Path(kwargs["profile_dir"])
        else:
            try:
                directory = paths.profile_dir(kwargs.get("profile") or "default")
            except ValueError:
                return  # a bad profile name: refused with its own message below
        from_profile = load_profile_config(directory)
        if not from_profile:
            return
        parent = kwargs.get("parent")
        given = kwargs.get("config") or getattr(parent, "config", None) or Config()
        merged = Config()
        merged.merge(from_profile)
        merged.merge(given)
        kwargs["config"] = merged

    def __repr__(self) -> str:
        fields = [f"cluster_id={self.cluster_id!r}"]
        profile_dir = self.profile_dir
        in_ipython_dir = Path(profile_dir).parent == paths.ipython_dir()
        if in_ipython_dir and Path(profile_dir).name.startswith("profile_"):
            fields.append(f"profile={Path(profile_dir).name.removeprefix('profile_')!r}")
        else:
            home = os.path.expanduser("~")
            if profile_dir.startswith(home + os.sep):
                profile_dir = "~" + profile_dir[len(home) :]
            fields.append(f"profile_dir={profile_dir!r}")
        if self.controller is not None:
            fields.append(f"controller=<{self.controller.state}>")
        if self.engines:
            fields.append(f"engine_sets={self._engine_sets_shown()}")
        return f"<{type(self).__name__}({', '.join(fields)})>"

    def _engine_sets_shown(self) -> list[str] | dict[str, str]:
        """The engine sets as the repr shows them: their ids, as ipyparallel does, when all
        are local; otherwise each with what its launcher last saw ("PENDING (Resources)",
        "RUNNING", "FAILED: ...") and, with a client connected, "k/N registered".  Nothing
        is asked of the scheduler or the controller here."""
        if all(self._is_local(la) for la in self.engines.values()):
            return list(self.engines)
        counts = self._client._engine_set_counts() if self._client is not None else None
        shown = {}
        for set_id, launcher in self.engines.items():
            text = launcher.status_text()
            if counts is not None:
                text += f", {counts.get(set_id, 0)}/{getattr(launcher, 'n', '?')} registered"
            shown[set_id] = text
        return shown

    @property
    def engine_sets(self) -> dict[str, BaseLauncher]:
        """The same dict as :attr:`engines` (this package's earlier name)."""
        return self.engines

    @property
    def engine_set(self) -> BaseLauncher | None:
        """The first engine set (most clusters have one), or None."""
        return next(iter(self.engines.values()), None)

    @property
    def _local_engines(self) -> bool:
        """Whether the controller starts the engines (else a launcher of this process)."""
        cls = self.engine_launcher_class
        return isinstance(cls, type) and issubclass(cls, LocalEngineSetLauncher)

    # -- files --------------------------------------------------------------------------------------
    @property
    def _profile_path(self) -> Path:
        return Path(self.profile_dir)

    @property
    def cluster_file(self) -> str:
        return str(paths.cluster_file(self._profile_path, self.cluster_id))

    @property
    def client_file(self) -> str:
        return str(paths.client_file(self._profile_path, self.cluster_id))

    @classmethod
    def from_file(
        cls,
        cluster_file: str | None = None,
        *,
        profile: str | None = None,
        profile_dir: str | None = None,
        cluster_id: str = "",
        **kwargs: Any,
    ) -> Cluster:
        """Attach to a running cluster by its cluster file, or by profile and cluster id."""
        if cluster_file is None:
            base = Path(profile_dir) if profile_dir else paths.profile_dir(profile or "default")
            path = paths.cluster_file(base, cluster_id)
        else:
            path = Path(cluster_file)
        if not path.exists():
            where = f"profile {profile or 'default'!r}" if cluster_file is None else str(path)
            raise ClusterNotFound(
                f"No cluster file for {where} (looked for {path}); start one with: "
                f"ipar start --profile {profile or 'default'}"
            )
        data = paths.read_json(path)
        kwargs.setdefault("load_profile", False)
        cluster = cls(
            profile=data["profile"],
            profile_dir=data["profile_dir"],
            cluster_id=data.get("cluster_id", ""),
            n=data.get("n"),
            **kwargs,
        )
        cluster._data = data
        pid = data.get("controller_pid")
        if remotecontroller.is_remote(data):  # elsewhere: watched through its launcher
            try:
                attached = remotecontroller.attach(data, parent=cluster)
            except (ValueError, OSError) as exc:
                cluster.log.warning("the controller's launcher: %s", exc)
            else:
                if isinstance(attached, ControllerLauncher) and attached.state == "running":
                    cluster.controller = attached
        elif isinstance(pid, int) and pid_alive(pid):
            cluster.controller = cluster._attached_controller(
                {"state": "running", "process_pid": pid}
            )
        for set_id, entry in enginesets.engine_sets(data).items():  # re-attach, to watch/stop
            try:
                launcher_class = find_launcher_class(str(entry.get("launcher", "")), "EngineSet")
            except ValueError as exc:
                cluster.log.warning("engine set %s: %s", set_id, exc)
                continue
            cluster.engines[set_id] = launcher_class.from_dict(entry)
        return cluster

    def _attached_controller(self, state: dict[str, Any]) -> ControllerLauncher:
        """A launcher watching a controller another Cluster object started."""
        controller_class = self.controller_launcher_class
        assert isinstance(controller_class, type) and issubclass(
            controller_class, ControllerLauncher
        )
        launcher = controller_class.from_dict(state, parent=self)
        assert isinstance(launcher, ControllerLauncher)
        return launcher

    # -- describing it, for another Python process --------------------------------------------------
    #: the settings :meth:`to_dict` carries
    _DESCRIBED = (
        "profile",
        "profile_dir",
        "cluster_id",
        "n",
        "controller_ip",
        "controller_args",
        "engine_timeout",
        "controller_timeout",
        "log_level",
    )

    def to_dict(self) -> dict[str, Any]:
        """This cluster in JSON: its settings, its controller's launcher and its engine sets.
        ``Cluster.from_dict`` of it (in any process of this host) can signal and stop them."""
        settings: dict[str, Any] = {name: getattr(self, name) for name in self._DESCRIBED}
        settings["engine_launcher_class"] = _class_path(self.engine_launcher_class)
        settings["controller_launcher_class"] = _class_path(self.controller_launcher_class)
        controller = None
        if self.controller is not None:
            controller = {
                "class": _class_path(type(self.controller)),
                "state": self.controller.to_dict(),
            }
        return {
            "cluster": settings,
            "controller": controller,
            "engines": {
                set_id: {"class": _class_path(type(launcher)), "state": launcher.to_dict()}
                for set_id, launcher in self.engines.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> Cluster:
        """The cluster :meth:`to_dict` described.  It does not own the cluster
        (``shutdown_atexit`` is False), but can stop it (``stop_cluster``)."""
        settings = {**d["cluster"], "shutdown_atexit": False, "load_profile": False, **kwargs}
        cluster = cls(**settings)
        cluster._data = cluster._read_cluster_file()
        controller = d.get("controller")
        if controller:
            cluster.controller = cluster._attached_controller(controller["state"])
        for set_id, entry in (d.get("engines") or {}).items():
            launcher_class = find_launcher_class(str(entry["class"]), "EngineSet")
            cluster.engines[set_id] = launcher_class.from_dict(entry["state"], parent=cluster)
        return cluster

    def _read_cluster_file(self) -> dict[str, Any] | None:
        path = paths.cluster_file(self._profile_path, self.cluster_id)
        try:
            return paths.read_json(path)
        except (OSError, ValueError):
            return None

    def _running(self) -> bool:
        if self._data is None:
            return False
        if remotecontroller.is_remote(self._data):  # its pid is another host's
            return remotecontroller.controller_alive(self._data, self.controller)
        return pid_alive(int(self._data["controller_pid"]))

    # -- starting -----------------------------------------------------------------------------------
    def restore_controller_sync(self) -> None:
        """Start a controller in the place of this cluster's controller that died: on its
        ports, with its key and the unfinished tasks of its task database; the engines still
        alive rejoin it with their ids, and connected clients carry on."""
        cls = self.controller_launcher_class
        if isinstance(cls, type) and issubclass(cls, ControllerLauncher) and cls.runs_elsewhere:
            raise ClusterError(
                f"restore replaces a controller of this host; this cluster's controller is "
                f"started by {cls.__name__} (elsewhere): start a new cluster instead"
            )
        process = getattr(self.controller, "process", None)
        if isinstance(process, ChildProcess) and self._wait_for_exit(process) is None:
            raise ClusterError(
                f"this cluster's controller (pid {process.pid}) is still running; restore "
                "replaces a controller that died"
            )
        self._restoring = True
        try:
            self._data = None
            self.controller = None
            self.start_controller_sync(0)
        finally:
            self._restoring = False

    @staticmethod
    def _wait_for_exit(proc: ChildProcess, timeout: float = 5.0) -> int | None:
        """The exit code of a controller that was killed, once it is reaped (None: it still
        runs after ``timeout`` seconds)."""
        try:
            return proc.wait(timeout)
        except Exception:
            return None

    def start_controller_sync(self, n: int = 0) -> None:
        """Start the controller (ClusterError, a RuntimeError, if it already runs); with
        ``n``, then ``n`` engines as a first engine set."""
        if self._data is not None and self._running():
            raise ClusterError(
                f"this cluster's controller is already running (pid {self._data['controller_pid']})"
            )
        path = paths.cluster_file(self._profile_path, self.cluster_id)
        if path.exists():
            try:
                found = paths.read_json(path)
            except (OSError, ValueError):
                found = {}
            if found and remotecontroller.controller_alive(found):
                raise ClusterError(
                    f"a cluster with id {self.cluster_id!r} is already running in profile "
                    f"{self.profile!r} (controller pid {remotecontroller.where(found)}); stop "
                    f"it first: ipar stop --profile {self.profile}"
                )
        (self._profile_path / "log").mkdir(parents=True, exist_ok=True)
        controller = self._controller_launcher()
        if controller.runs_elsewhere:
            self._start_controller_elsewhere(controller)
            if n:
                self.start_engines_sync(n)
            return
        assert isinstance(controller, LocalControllerLauncher)
        controller.start()
        process = controller.process
        assert isinstance(process, ChildProcess)
        self.controller = controller
        self._owned = True
        try:
            self._data = control.wait_for_cluster_file(
                self._profile_path, self.cluster_id, process, self.controller_timeout
            )
        except ClusterError:
            self.controller = None
            raise
        if n:
            self.start_engines_sync(n)

    def _start_controller_elsewhere(self, controller: ControllerLauncher) -> None:
        """Start a controller on another host (ssh, a batch job): refused at once if it
        would listen on loopback there; then wait for its announcement and write the
        connection files here from it.  Whatever fails, nothing is left running."""
        try:
            enginesets.check_reachable(controller, self.controller_ip)
        except LauncherError as exc:
            raise ClusterError(str(exc)) from None
        try:
            controller.start()
        except (LauncherError, OSError) as exc:
            raise ClusterError(f"the controller did not start: {exc}") from exc
        self.controller = controller
        self._owned = True
        timeout = float(getattr(controller, "announce_timeout", self.controller_timeout))
        try:
            announced = remotecontroller.wait_for_announcement(controller, timeout)
            self._data = remotecontroller.write_files(
                self.profile, self._profile_path, self.cluster_id, announced, controller
            )
        except BaseException:
            self.controller = None
            try:
                controller.stop()
            except (LauncherError, OSError) as exc:
                self.log.warning("the controller's launcher did not stop: %s", exc)
            raise

    def _controller_launcher(self) -> ControllerLauncher:
        """The launcher that runs this cluster's controller: its command is the launcher's
        ``controller_cmd``; its arguments the cluster's, then ``controller_args``.  One that
        runs elsewhere keeps its output (which holds the announced key, for a batch job) in
        the profile's private ``security`` directory."""
        controller_class = self.controller_launcher_class
        assert isinstance(controller_class, type) and issubclass(
            controller_class, ControllerLauncher
        )
        suffix = f"-{self.cluster_id}" if self.cluster_id else ""
        if issubclass(controller_class, LocalProcessLauncher):  # ssh too: stdout is a pipe
            where: dict[str, Any] = {
                "work_dir": self.profile_dir,
                "output_file": str(
                    paths.log_file(self._profile_path, "controller", self.cluster_id)
                ),
            }
        else:  # a batch job: its output file holds the announcement
            security = self._profile_path / "security"
            security.mkdir(parents=True, exist_ok=True)
            security.chmod(0o700)
            where = {"work_dir": str(security), "identifier": f"ipar-controller{suffix}"}
        launcher = controller_class(
            parent=self, profile_dir=self.profile_dir, cluster_id=self.cluster_id, **where
        )
        given = self._controller_args()
        ours = control.controller_options(
            self.profile, self._profile_path, self.cluster_id, 0, self.controller_ip, self.log_level
        )
        profile_dir = launcher.controller_profile_dir(self.profile_dir)
        ours = [
            a if not a.startswith("--profile-dir=") else f"--profile-dir={profile_dir}"
            for a in ours
            if profile_dir is not None or not a.startswith("--profile-dir=")
        ]
        launcher.controller_args = [
            *_not_overridden(ours, given),
            *given,
            *(f"--ControllerApp.engine_args={a}" for a in self._engine_args()),
            *(["--restore"] if self.restore or self._restoring else []),
            *(
                [
                    "--ControllerApp.replace_dead_engines=True",
                    f"--ControllerApp.max_engine_restarts={self.max_engine_restarts}",
                ]
                if self.replace_dead_engines
                else []
            ),
        ]
        return launcher

    def _engine_args(self) -> list[str]:
        """The engines' extra arguments, from the configuration of the engine launcher
        (``c.EngineLauncher.engine_args`` or a subclass's, as in ipyparallel)."""
        return list(LocalEngineSetLauncher(parent=self).engine_args)

    def _controller_args(self) -> list[str]:
        """``controller_args`` configured for the controller launcher, then the Cluster's."""
        controller_class = self.controller_launcher_class
        assert isinstance(controller_class, type) and issubclass(
            controller_class, ControllerLauncher
        )
        configured = list(controller_class(parent=self).controller_args)
        return configured + list(self.controller_args)

    def start_engines_sync(
        self, /, n: int | None = None, engine_set_id: str | None = None, **launcher_args: Any
    ) -> str:
        """Start ``n`` more engines (default: ``self.n``) as a new engine set and return its
        id (``engine_set_id``, or a new one); ``cluster.engines[id]`` is its launcher.  The
        engines register on their own (``rc.wait_for_engines``).

        Local engines are started by the controller.  Another launcher (``engines='mpi'``)
        runs here; ``launcher_args`` set its traits, as in ipyparallel:
        ``start_engines_sync(4, mpi_args=['--oversubscribe'])``."""
        data = self._require_running()
        n = self._engine_count(n)
        set_id = engine_set_id or _random_id()
        if set_id in self.engines:
            raise ValueError(
                f"this cluster already has an engine set {set_id!r}; choose another id "
                "or stop that set first"
            )
        if self._local_engines:
            if launcher_args:
                raise TypeError(
                    f"local engines take no launcher arguments, found {sorted(launcher_args)}"
                )
            local = ControllerEngineSet(
                parent=self,
                n=n,
                profile_dir=self.profile_dir,
                cluster_id=self.cluster_id,
                identifier=set_id,
            )
            local.client_file = str(data["client_file"])
            if remotecontroller.is_remote(data):  # started by the controller, over there
                local.controller_host = str(data.get("controller_host") or "?")
            local.start()
            self.engines[set_id] = local
            return set_id
        launcher_class = self.engine_launcher_class
        assert isinstance(launcher_class, type)
        set_id, launcher = enginesets.start_engine_set(
            data, launcher_class, n, parent=self, set_id=set_id, **launcher_args
        )
        self.engines[set_id] = launcher
        return set_id

    def start_cluster_sync(self, n: int | None = None) -> None:
        """Start the controller and ``n`` engines (default: ``self.n``) as one engine set."""
        n = self._engine_count(n)
        if not self._running():
            self.start_controller_sync(0)
        if n:
            self.start_engines_sync(n)

    def start_and_connect_sync(self, n: int | None = None, activate: bool = False) -> Client:
        """Start the cluster, connect a Client, wait for the engines; return the Client
        (``activate``: its ``%px`` magics become the session's)."""
        n = self._engine_count(n)
        self.start_cluster_sync(n)
        # activate=False: %px stays where it is (the first Client of a session still takes it)
        rc = self.connect_client_sync(rebind_magics=activate)
        try:
            self._wait_for_engines(rc, n, self.engine_timeout)
        except BaseException:
            rc.close()
            raise
        if activate:
            rc.activate()
        return rc

    def _wait_for_engines(self, rc: Client, n: int, timeout: float) -> None:
        """Wait until ``n`` engines registered: EngineStartFailed at once if an engine set's
        processes all end first, EnginesNotReady after ``timeout`` seconds.  While engines
        started elsewhere (a batch job, mpiexec, ssh) are awaited, a line on stderr tells
        each change: "0/64 engines registered; PENDING (Resources)".  In a notebook, or on a
        terminal, the wait's display shows it instead (per engine set: registered of those
        asked for, and the job state; see ``Client.wait_for_engines``)."""
        launchers = list(self.engines.values())
        if launchers:
            from ..client.waitprogress import EngineWaitReport

            local = all(self._is_local(la) for la in launchers)
            display = EngineWaitReport(rc, None, None)
            shown = False

            def look(count: int) -> None:
                nonlocal shown
                shown = display.update(count, n)

            def report(line: str) -> None:
                if not shown and not local:  # no display: a line at each change
                    self._report_progress(line)

            try:
                enginesets.wait_for_engine_sets(
                    lambda: len(rc.ids), n, launchers, timeout, report=report, on_look=look
                )
            except BaseException as exc:
                display.finish(exc)
                raise
            display.finish(None)
        rc.wait_for_engines(n, timeout=timeout, interactive=False)

    @staticmethod
    def _is_local(launcher: BaseLauncher) -> bool:
        return isinstance(launcher, (ControllerEngineSet, LocalEngineSetLauncher))

    def _report_progress(self, line: str) -> None:
        print(f"{self.cluster_id or self.profile}: {line}", file=sys.stderr, flush=True)

    def job_script(self, n: int | None = None, **launcher_args: Any) -> str:
        """What the engine launcher would run for ``n`` more engines (default: ``self.n``),
        starting nothing: a batch launcher's job script, the ``mpiexec`` line, one ssh line
        per host (``ipar start --dry-run`` prints the same).  ``launcher_args`` as for
        :meth:`start_engines_sync`.  The connection info is the engine file's while the
        controller runs, a placeholder before."""
        launcher_class = self.engine_launcher_class
        assert isinstance(launcher_class, type)
        if self._local_engines:
            raise ValueError(
                "local engines are started by the controller: there is no job script "
                "(choose a launcher: Cluster(engines='slurm'), 'sge', 'mpi', 'ssh', ...)"
            )
        where = {
            "profile_dir": self.profile_dir,
            "cluster_id": self.cluster_id,
            "ip": self.controller_ip,
        }
        running = self._data is not None and self._running()
        _, launcher = enginesets.prepare_engine_set(
            self._data if running and self._data is not None else where,
            launcher_class,
            self._engine_count(n),
            parent=self,
            connection=None if running else enginesets.CONNECTION_PLACEHOLDER,
            **launcher_args,
        )
        return launcher.preview()

    def check_engine_sets(self) -> None:
        """EngineError if this cluster has engine sets and every one of them has ended: no
        engine can register any more (``Client.wait_for_engines`` then stops waiting)."""
        launchers = list(self.engines.values())
        if launchers and all(launcher.state == "after" for launcher in launchers):
            said = "; ".join(
                f"{set_id}: {launcher.status_text()}" for set_id, launcher in self.engines.items()
            )
            raise EngineError(f"the cluster's engine sets have all stopped ({said})")

    def connect_client_sync(self, /, **client_kwargs: Any) -> Client:
        """A Client connected to this cluster (``rc.cluster`` is this Cluster)."""
        from ..client.client import Client

        self._require_running()
        rc = Client(
            url_file=self.client_file,
            profile=self.profile,
            cluster_id=self.cluster_id,
            cluster=self,
            **client_kwargs,
        )
        self._client = rc
        return rc

    def _engine_count(self, n: int | None) -> int:
        if n is None:
            n = self.n
        if n is None:
            n = os.cpu_count() or 1
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of engines must be a whole number >= 0, found {n!r}")
        return n

    def _require_running(self) -> dict[str, Any]:
        """The cluster file's data; ClusterError if the cluster is not running."""
        if self._data is None:
            self._data = self._read_cluster_file()
        if self._data is None or not self._running():
            raise ClusterError(
                f"the cluster {self.cluster_id!r} in profile {self.profile!r} is not running; "
                "start it with start_cluster_sync()"
            )
        return self._data

    def _engine_set(self, set_id: str) -> BaseLauncher:
        try:
            return self.engines[set_id]
        except KeyError:
            raise KeyError(
                f"no engine set {set_id!r} in this cluster (its engine sets: "
                f"{sorted(self.engines) or 'none'})"
            ) from None

    # -- stopping -----------------------------------------------------------------------------------
    def stop_engines_sync(self, engine_set_id: str | int | list[int] | None = None) -> None:
        """Stop an engine set (by its id; KeyError if there is none), or engines by id (an
        int or a list), or (default) every engine; the controller keeps running."""
        if isinstance(engine_set_id, str):
            self._stop_engine_set(engine_set_id)
            return
        data = self._require_running()
        if engine_set_id is None:
            for set_id in list(self.engines):
                self._stop_engine_set(set_id)
        content: dict[str, Any] = {}
        if engine_set_id is not None:
            ids = engine_set_id
            content["targets"] = [ids] if isinstance(ids, int) else list(ids)
        control.request(data, "shutdown_request", content, timeout=30)

    def _stop_engine_set(self, set_id: str) -> None:
        launcher = self._engine_set(set_id)
        del self.engines[set_id]
        data = self._data or self._read_cluster_file()
        notes: list[str] = []
        if data is not None and set_id in enginesets.engine_sets(data):
            enginesets.stop_engine_sets(data, notes, [set_id], live={set_id: launcher})
        launcher.stop()  # our child: reaped here (a second stop() does nothing)
        for note in notes:
            self.log.warning("%s", note)

    def stop_engine_sync(self, engine_id: int) -> None:
        """Stop one engine; the controller and the other engines go on."""
        self.stop_engines_sync([engine_id])

    def restart_engines_sync(self, engine_set_id: str | None = None) -> None:
        """Stop an engine set (default: every one) and start it again with as many new
        engines, under the same id.  (A non-local set restarts with the cluster's launcher
        configuration; ``start_engines`` arguments given the first time are not kept.)"""
        set_ids = [engine_set_id] if engine_set_id is not None else list(self.engines)
        for set_id in set_ids:
            n = int(getattr(self._engine_set(set_id), "n", 0) or 0)
            self._stop_engine_set(set_id)
            self.start_engines_sync(n, set_id)

    def stop_cluster_sync(self) -> None:
        """Stop the controller and every engine; no process of the cluster is left.
        Stopping a stopped cluster does nothing."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        data = self._data
        if data is None:
            data = self._read_cluster_file()
        if data:
            # the controller, its engines, the recorded engine sets
            control.stop_cluster(data, live=self.engines, controller=self.controller)
        for launcher in self.engines.values():
            launcher.stop()  # already signalled; this reaps our child
        self.engines.clear()
        if self.controller is not None:
            self.controller.stop()  # gone already; reaps our child (SIGKILL if it lingers)
            self.controller = None
        self._data = None
        self._owned = False

    stop_controller_sync = stop_cluster_sync

    def signal_engines_sync(
        self, signum: int | str, engine_set_id: str | int | list[int] | None = None
    ) -> None:
        """Send a signal (a number or a name such as ``'SIGINT'``) to the engines of an
        engine set (by its id), to engines by id, or (default) to every engine: SIGINT
        interrupts the task an engine runs."""
        if isinstance(engine_set_id, str):
            self._engine_set(engine_set_id).signal(signum)  # type: ignore[arg-type]
            return
        rc = self._client or self.connect_client_sync()
        rc.send_signal(signum, targets=engine_set_id)

    def signal_engine_sync(self, signum: int | str, engine_id: int) -> None:
        """Send a signal (a number or a name such as ``'SIGINT'``) to one engine."""
        self.signal_engines_sync(signum, [engine_id])

    # -- awaitable twins ----------------------------------------------------------------------------
    start_controller = awaitable(start_controller_sync)
    restore_controller = awaitable(restore_controller_sync)
    start_engines = awaitable(start_engines_sync)
    start_cluster = awaitable(start_cluster_sync)
    start_and_connect = awaitable(start_and_connect_sync)
    connect_client = awaitable(connect_client_sync)
    stop_engines = awaitable(stop_engines_sync)
    stop_engine = awaitable(stop_engine_sync)
    restart_engines = awaitable(restart_engines_sync)
    stop_cluster = awaitable(stop_cluster_sync)
    stop_controller = stop_cluster
    signal_engines = awaitable(signal_engines_sync)
    signal_engine = awaitable(signal_engine_sync)

    # -- context managers ---------------------------------------------------------------------------
    def __enter__(self) -> Client:
        return self.start_and_connect_sync()

    def __exit__(self, *exc: object) -> None:
        self.stop_cluster_sync()

    async def __aenter__(self) -> Client:
        return await self.start_and_connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_cluster()

    def __del__(self) -> None:
        if getattr(self, "_owned", False) and self.shutdown_atexit and self._running():
            try:
                self.stop_cluster_sync()
            except Exception:
                pass
