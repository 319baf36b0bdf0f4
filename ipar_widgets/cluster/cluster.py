"""``Cluster``: start, grow, connect to and stop a cluster from Python (ipyparallel's names).

Every operation has a blocking form (``start_cluster_sync``) and an awaitable one
(``start_cluster``); :func:`awaitable` makes the second from the first (it runs it in a
worker thread), so there is one implementation of each and they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import random
import string
import subprocess
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
from traitlets.config import LoggingConfigurable

from .. import paths
from ..error import ClusterError, ClusterNotFound
from ..processes import pid_alive
from . import control, enginesets
from .launcher import (
    BaseLauncher,
    LocalControllerLauncher,
    LocalEngineSetLauncher,
    find_launcher_class,
)

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


class Cluster(LoggingConfigurable):
    """A cluster: one controller and its engines, in an IPython profile.

    ``with Cluster(n=4) as rc:`` starts it, connects a Client, and stops everything at the
    end.  ``Cluster.from_file(profile=...)`` attaches to one started elsewhere (``ipar start``).
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
        True, help="Stop the cluster when this Python process exits, if it started it."
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
        "'mpi' (mpiexec; engine id = MPI rank), a launcher class, or its import path. "
        "Cluster(engines=...) sets it.",
    ).tag(config=True)
    controller_launcher_class = TraitAny(
        "local",
        help="What starts the controller: 'local' (a process on this host). "
        "Cluster(controller=...) sets it.",
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

    @default("cluster_id")
    def _default_cluster_id(self) -> str:
        return _random_id()

    @default("profile_dir")
    def _default_profile_dir(self) -> str:
        return str(paths.profile_dir(self.profile))

    # set in __init__; here too, so that a Cluster whose arguments were refused still has a repr
    _data: dict[str, Any] | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _owned = False

    def __init__(self, **kwargs: Any) -> None:
        for key in ("engines", "controller"):
            chosen = kwargs.pop(key, None)
            if chosen is not None:
                kwargs.setdefault(f"{key.removesuffix('s')}_launcher_class", chosen)
        super().__init__(**kwargs)
        self._launcher_class("EngineSet")  # a clear error for an unknown one, at once
        if not issubclass(self._launcher_class("Controller"), LocalControllerLauncher):
            raise TraitError(
                "this version starts the controller on this host only (controller='local'); "
                f"found {self.controller_launcher_class!r}"
            )
        paths.check_profile_name(self.profile)
        paths.check_cluster_id(self.cluster_id)
        self._proc: subprocess.Popen[bytes] | None = None
        self._data: dict[str, Any] | None = None
        self._owned = False
        self._restoring = False
        self._client: Client | None = None
        #: engine sets this object started with a launcher other than the controller's
        self.engine_sets: dict[str, BaseLauncher] = {}
        _live_clusters.add(self)

    def __repr__(self) -> str:
        state = "running" if self._running() else "not running"
        sets = f", engine_sets={list(self.engine_sets)}" if self.engine_sets else ""
        return (
            f"<Cluster(cluster_id={self.cluster_id!r}, profile={self.profile!r}, "
            f"controller={state}, n={self.n}{sets})>"
        )

    def _launcher_class(self, kind: str) -> type[BaseLauncher]:
        chosen = (
            self.engine_launcher_class if kind == "EngineSet" else self.controller_launcher_class
        )
        return chosen if isinstance(chosen, type) else find_launcher_class(str(chosen), kind)

    @property
    def _local_engines(self) -> bool:
        """Whether the controller starts the engines (else a launcher of this process)."""
        return issubclass(self._launcher_class("EngineSet"), LocalEngineSetLauncher)

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
        cluster = cls(
            profile=data["profile"],
            profile_dir=data["profile_dir"],
            cluster_id=data.get("cluster_id", ""),
            n=data.get("n"),
            **kwargs,
        )
        cluster._data = data
        for set_id, entry in enginesets.engine_sets(data).items():  # re-attach, to watch/stop
            try:
                launcher_class = find_launcher_class(str(entry.get("launcher", "")), "EngineSet")
            except ValueError as exc:
                cluster.log.warning("engine set %s: %s", set_id, exc)
                continue
            cluster.engine_sets[set_id] = launcher_class.from_dict(entry)
        return cluster

    def _read_cluster_file(self) -> dict[str, Any] | None:
        path = paths.cluster_file(self._profile_path, self.cluster_id)
        try:
            return paths.read_json(path)
        except (OSError, ValueError):
            return None

    def _running(self) -> bool:
        return self._data is not None and pid_alive(int(self._data["controller_pid"]))

    # -- starting -----------------------------------------------------------------------------------
    def restore_controller_sync(self) -> None:
        """Start a controller in the place of this cluster's controller that died: on its
        ports, with its key and the unfinished tasks of its task database; the engines still
        alive rejoin it with their ids, and connected clients carry on."""
        if self._proc is not None and self._wait_for_exit(self._proc) is None:
            raise ClusterError(
                f"this cluster's controller (pid {self._proc.pid}) is still running; restore "
                "replaces a controller that died"
            )
        self._restoring = True
        try:
            self._data = None
            self.start_controller_sync(0)
        finally:
            self._restoring = False

    @staticmethod
    def _wait_for_exit(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
        """The exit code of a controller that was killed, once it is reaped (None: it still
        runs after ``timeout`` seconds)."""
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def start_controller_sync(self, n: int = 0) -> None:
        """Start the controller (and ``n`` local engines with it)."""
        if self._data is not None and self._running():
            raise ClusterError(
                f"this cluster's controller is already running (pid {self._data['controller_pid']})"
            )
        path = paths.cluster_file(self._profile_path, self.cluster_id)
        if path.exists():
            try:
                pid = paths.read_json(path).get("controller_pid")
            except (OSError, ValueError):
                pid = None
            if isinstance(pid, int) and pid_alive(pid):
                raise ClusterError(
                    f"a cluster with id {self.cluster_id!r} is already running in profile "
                    f"{self.profile!r} (controller pid {pid})"
                )
        self._proc = control.launch_controller(
            self.profile,
            self.cluster_id,
            n,
            self.controller_ip,
            self.profile_dir,
            self._controller_args()
            + [f"--ControllerApp.engine_args={a}" for a in self._engine_args()]
            + (["--restore"] if self.restore or self._restoring else []),
            self.log_level,
        )
        self._owned = True
        self._data = control.wait_for_cluster_file(
            self._profile_path, self.cluster_id, self._proc, self.controller_timeout
        )

    def _engine_args(self) -> list[str]:
        """The engines' extra arguments, from the configuration of the engine launcher
        (``c.EngineLauncher.engine_args`` or a subclass's, as in ipyparallel)."""
        return list(LocalEngineSetLauncher(parent=self).engine_args)

    def _controller_args(self) -> list[str]:
        """``controller_args`` plus those configured for the controller launcher."""
        configured = list(LocalControllerLauncher(parent=self).controller_args)
        return configured + list(self.controller_args)

    def start_engines_sync(self, /, n: int | None = None, **launcher_args: Any) -> list[int] | str:
        """Start ``n`` more engines (they register on their own).  The controller starts
        local ones and their ids are returned; another launcher (``engines='mpi'``) starts
        an engine set, whose id is returned (``launcher_args`` set its traits, as in
        ipyparallel: ``start_engines_sync(4, mpi_args=['--oversubscribe'])``)."""
        data = self._require_running()
        n = self._engine_count(n)
        if self._local_engines:
            if launcher_args:
                raise TypeError(
                    f"local engines take no launcher arguments, found {sorted(launcher_args)}"
                )
            reply = control.request(data, "spawn_request", {"n": n}).content
            return list(reply["launched"])
        set_id, launcher = enginesets.start_engine_set(
            data, self._launcher_class("EngineSet"), n, parent=self, **launcher_args
        )
        self.engine_sets[set_id] = launcher
        return set_id

    def start_cluster_sync(self, n: int | None = None) -> None:
        """Start the controller and ``n`` engines (default: ``self.n``)."""
        n = self._engine_count(n)
        if self._running():
            self.start_engines_sync(n)
        elif self._local_engines:
            self.start_controller_sync(n)
        else:
            self.start_controller_sync(0)
            if n:
                self.start_engines_sync(n)

    def start_and_connect_sync(self, n: int | None = None, activate: bool = False) -> Client:
        """Start the cluster, connect a Client, wait for the engines; return the Client."""
        n = self._engine_count(n)
        self.start_cluster_sync(n)
        rc = self.connect_client_sync()
        try:
            if self.engine_sets:  # fail at once if a launcher's process ends first
                enginesets.wait_for_engine_sets(
                    lambda: len(rc.ids), n, list(self.engine_sets.values()), self.engine_timeout
                )
            rc.wait_for_engines(n, timeout=self.engine_timeout)
        except BaseException:
            rc.close()
            raise
        if activate:
            rc.activate()
        return rc

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

    # -- stopping -----------------------------------------------------------------------------------
    def stop_engines_sync(self, engine_ids: int | list[int] | str | None = None) -> None:
        """Stop the given engines (default: all), or the engine set of that id (a launcher's:
        through the controller, then the launcher); the controller keeps running."""
        data = self._require_running()
        if isinstance(engine_ids, str):
            self._stop_engine_set(data, engine_ids)
            return
        content: dict[str, Any] = {}
        if engine_ids is not None:
            content["targets"] = [engine_ids] if isinstance(engine_ids, int) else list(engine_ids)
        control.request(data, "shutdown_request", content, timeout=30)

    def _stop_engine_set(self, data: dict[str, Any], set_id: str) -> None:
        if set_id not in enginesets.engine_sets(data):
            raise ValueError(f"no engine set {set_id!r} in this cluster")
        launcher = self.engine_sets.pop(set_id, None)
        notes: list[str] = []
        enginesets.stop_engine_sets(data, notes, [set_id])
        if launcher is not None:
            launcher.stop()  # our child: reaped here
        for note in notes:
            self.log.warning("%s", note)

    def stop_engine_sync(self, engine_id: int) -> None:
        """Stop one engine; the controller and the other engines go on."""
        self.stop_engines_sync([engine_id])

    def stop_cluster_sync(self) -> None:
        """Stop the controller and every engine; no process of the cluster is left."""
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
            control.stop_cluster(data)  # the controller, its engines, the recorded engine sets
        for launcher in self.engine_sets.values():
            launcher.stop()  # already signalled; this reaps our child
        self.engine_sets.clear()
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
        self._data = None
        self._owned = False

    stop_controller_sync = stop_cluster_sync

    def signal_engines_sync(
        self, signum: int | str, engine_ids: int | list[int] | None = None
    ) -> None:
        """Send a signal (a number or a name such as ``'SIGINT'``) to engines (all of them by
        default): SIGINT interrupts the task an engine runs."""
        rc = self._client or self.connect_client_sync()
        rc.send_signal(signum, targets=engine_ids)

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
