"""``Cluster``: start, grow, connect to and stop a cluster from Python (ipyparallel's names).

Every operation has a blocking form (``start_cluster_sync``) and an awaitable one
(``start_cluster``); the awaitable one runs the blocking one in a worker thread, so there is
one implementation of each.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import string
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, HasTraits, Integer, List, Unicode, default

from .. import paths
from . import control

_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _stop_at_exit() -> None:
    for cluster in list(_live_clusters):
        if cluster.shutdown_atexit and cluster._owned:
            try:
                cluster.stop_cluster_sync()
            except Exception:
                pass


atexit.register(_stop_at_exit)


def _random_id() -> str:
    return (
        f"{int(time.time())}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=4))}"
    )


class Cluster(HasTraits):
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
    log_level = Unicode("INFO", help="Log level of the cluster's processes.").tag(config=True)
    delay = Float(0.0, help="Unused; accepted for compatibility with ipyparallel.").tag(config=True)

    @default("cluster_id")
    def _default_cluster_id(self) -> str:
        return _random_id()

    @default("profile_dir")
    def _default_profile_dir(self) -> str:
        return str(paths.profile_dir(self.profile))

    def __init__(self, **kwargs: Any) -> None:
        engines = kwargs.pop("engines", None)
        if engines not in (
            None,
            "local",
            "ipar",
            "ipyparallel.cluster.launcher.LocalEngineSetLauncher",
        ):
            raise ValueError(f"only local engines are supported, found engines={engines!r}")
        controller = kwargs.pop("controller", None)
        if controller not in (None, "local", "ipar"):
            raise ValueError(
                f"only a local controller is supported, found controller={controller!r}"
            )
        super().__init__(**kwargs)
        paths.check_profile_name(self.profile)
        paths.check_cluster_id(self.cluster_id)
        self._proc: subprocess.Popen[bytes] | None = None
        self._data: dict[str, Any] | None = None
        self._owned = False
        self._client: Any = None
        _live_clusters.add(self)

    def __repr__(self) -> str:
        state = "running" if self._running() else "not running"
        return (
            f"<Cluster(cluster_id={self.cluster_id!r}, profile={self.profile!r}, "
            f"controller={state}, n={self.n})>"
        )

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
            raise FileNotFoundError(
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
        return cluster

    def _read_cluster_file(self) -> dict[str, Any] | None:
        path = paths.cluster_file(self._profile_path, self.cluster_id)
        try:
            return paths.read_json(path)
        except (OSError, ValueError):
            return None

    def _running(self) -> bool:
        return self._data is not None and control.pid_alive(int(self._data["controller_pid"]))

    # -- starting -----------------------------------------------------------------------------------
    def start_controller_sync(self, n: int = 0) -> None:
        """Start the controller (and ``n`` local engines with it)."""
        if self._running():
            raise RuntimeError(
                f"this cluster's controller is already running (pid {self._data['controller_pid']})"
            )  # type: ignore[index]
        path = paths.cluster_file(self._profile_path, self.cluster_id)
        if path.exists():
            try:
                pid = paths.read_json(path).get("controller_pid")
            except (OSError, ValueError):
                pid = None
            if isinstance(pid, int) and control.pid_alive(pid):
                raise RuntimeError(
                    f"a cluster with id {self.cluster_id!r} is already running in profile "
                    f"{self.profile!r} (controller pid {pid})"
                )
        self._proc = control.launch_controller(
            self.profile,
            self.cluster_id,
            n,
            self.controller_ip,
            self.profile_dir,
            list(self.controller_args),
            self.log_level,
        )
        self._owned = True
        self._data = control.wait_for_cluster_file(
            self._profile_path, self.cluster_id, self._proc, self.controller_timeout
        )

    def start_engines_sync(self, n: int | None = None) -> list[int]:
        """Start ``n`` more engines on this host (they register on their own)."""
        self._require_running()
        n = self._engine_count(n)
        reply = control.request(self._data, "spawn_request", {"n": n}).content  # type: ignore[arg-type]
        return list(reply["launched"])

    def start_cluster_sync(self, n: int | None = None) -> None:
        """Start the controller and ``n`` engines (default: ``self.n``)."""
        n = self._engine_count(n)
        if self._running():
            self.start_engines_sync(n)
        else:
            self.start_controller_sync(n)

    def start_and_connect_sync(self, n: int | None = None, activate: bool = False) -> Any:
        """Start the cluster, connect a Client, wait for the engines; return the Client."""
        n = self._engine_count(n)
        self.start_cluster_sync(n)
        rc = self.connect_client_sync()
        try:
            rc.wait_for_engines(n, timeout=self.engine_timeout)
        except BaseException:
            rc.close()
            raise
        if activate:
            rc.activate()
        return rc

    def connect_client_sync(self, **client_kwargs: Any) -> Any:
        """A Client connected to this cluster."""
        from ..client.client import Client

        self._require_running()
        rc = Client(
            url_file=self.client_file,
            profile=self.profile,
            cluster_id=self.cluster_id,
            **client_kwargs,
        )
        rc._cluster = self
        self._client = rc
        return rc

    def _engine_count(self, n: int | None) -> int:
        if n is None:
            n = self.n
        if n is None:
            import os

            n = os.cpu_count() or 1
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of engines must be a whole number >= 0, found {n!r}")
        return n

    def _require_running(self) -> None:
        if self._data is None:
            self._data = self._read_cluster_file()
        if not self._running():
            raise RuntimeError(
                f"the cluster {self.cluster_id!r} in profile {self.profile!r} is not running; "
                "start it with start_cluster_sync()"
            )

    # -- stopping -----------------------------------------------------------------------------------
    def stop_engines_sync(self, engine_ids: Any = None) -> None:
        """Stop the given engines (default: all); the controller keeps running."""
        self._require_running()
        content: dict[str, Any] = {}
        if engine_ids is not None:
            content["targets"] = [engine_ids] if isinstance(engine_ids, int) else list(engine_ids)
        control.request(self._data, "shutdown_request", content, timeout=30)  # type: ignore[arg-type]

    def stop_engine_sync(self, engine_id: int) -> None:
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
            control.stop_cluster(data)
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

    def signal_engines_sync(self, signum: int, engine_ids: Any = None) -> None:
        """Send a signal to engines (e.g. SIGINT to interrupt what they run)."""
        rc = self._client or self.connect_client_sync()
        rc.send_signal(signum, targets=engine_ids)

    # -- awaitable twins ----------------------------------------------------------------------------
    async def _in_thread(self, method: str, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: getattr(self, method)(*args, **kwargs))

    async def start_controller(self, n: int = 0) -> None:
        return await self._in_thread("start_controller_sync", n)  # type: ignore[no-any-return]

    async def start_engines(self, n: int | None = None) -> list[int]:
        return await self._in_thread("start_engines_sync", n)  # type: ignore[no-any-return]

    async def start_cluster(self, n: int | None = None) -> None:
        return await self._in_thread("start_cluster_sync", n)  # type: ignore[no-any-return]

    async def start_and_connect(self, n: int | None = None, activate: bool = False) -> Any:
        return await self._in_thread("start_and_connect_sync", n, activate)

    async def connect_client(self, **kwargs: Any) -> Any:
        return await self._in_thread("connect_client_sync", **kwargs)

    async def stop_engines(self, engine_ids: Any = None) -> None:
        return await self._in_thread("stop_engines_sync", engine_ids)  # type: ignore[no-any-return]

    async def stop_engine(self, engine_id: int) -> None:
        return await self._in_thread("stop_engine_sync", engine_id)  # type: ignore[no-any-return]

    async def stop_cluster(self) -> None:
        return await self._in_thread("stop_cluster_sync")  # type: ignore[no-any-return]

    stop_controller = stop_cluster

    async def signal_engines(self, signum: int, engine_ids: Any = None) -> None:
        return await self._in_thread("signal_engines_sync", signum, engine_ids)  # type: ignore[no-any-return]

    # -- context managers ---------------------------------------------------------------------------
    def __enter__(self) -> Any:
        return self.start_and_connect_sync()

    def __exit__(self, *exc: Any) -> None:
        self.stop_cluster_sync()

    async def __aenter__(self) -> Any:
        return await self.start_and_connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop_cluster()

    def __del__(self) -> None:
        if getattr(self, "_owned", False) and self.shutdown_atexit and self._running():
            try:
                self.stop_cluster_sync()
            except Exception:
                pass
