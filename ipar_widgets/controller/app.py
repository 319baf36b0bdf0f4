"""The controller process's entry point: configuration, files, engines, then the poll loop.

Run as ``python -m ipar_widgets.controller --profile-dir=... [--n=4]``; ``ipar start`` and
``Cluster`` start it in a session of its own and read the files it writes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, cast

from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, observe, validate
from traitlets.config import Application

from .. import paths
from .._version import __version__
from ..processes import pid_alive
from ..protocol.sharedmem import DEFAULT_DIRECTORY, DEFAULT_THRESHOLD, SharedArea
from .hub import Controller
from .launcher import LocalLauncher
from .sqlitestore import SQLiteTaskStore
from .stores import canonical_db_class, make_task_store
from .taskstore import TaskStoreError

log = logging.getLogger("ipar_widgets.controller")


class ControllerApp(Application):
    """The controller's configuration and start-up: writes the connection files, starts
    local engines, runs the :class:`~.hub.Controller` and cleans up after it."""

    name = "ipar-controller"
    description = "The controller of an ipar_widgets cluster: routes tasks, watches engines."
    version = __version__

    profile = Unicode("default", help="Name of the IPython profile the cluster belongs to.").tag(
        config=True
    )
    profile_dir = Unicode(
        help="Directory of the profile (default: $IPYTHONDIR/profile_<profile>)."
    ).tag(config=True)
    cluster_id = Unicode(
        "", help="Id of the cluster within its profile ('' for the default one)."
    ).tag(config=True)
    ip = Unicode(
        "127.0.0.1",
        help="Interface to bind; '0.0.0.0' (or '*') accepts engines and clients from any host.",
    ).tag(config=True)
    location = Unicode(
        "",
        help="Address written into connection files for others to connect to "
        "(default: the bound ip, or this host's name when binding all interfaces).",
    ).tag(config=True)
    n = Integer(0, help="Number of engines to start on this host right away.").tag(config=True)
    heartbeat_period = Float(0.5, help="Seconds between heartbeat pings to each engine.").tag(
        config=True
    )
    ping = Integer(
        None,
        allow_none=True,
        help="Heartbeat period in milliseconds, as ipyparallel's --ping (HeartMonitor.period); "
        "when set it overrides heartbeat_period.",
    ).tag(config=True)
    db_class = Unicode(
        "SQLiteDB",
        help="Where task records are kept. 'SQLiteDB' (also 'sqlite', or ipyparallel's "
        "'ipyparallel.controller.sqlitedb.SQLiteDB'; the default): in a SQLite file of the "
        "profile (SQLiteTaskStore.filename), where they survive the controller; memory keeps "
        "recent ones. 'DictDB' ('dict', 'memory', 'ipyparallel.controller.dictdb.DictDB'): in "
        "the controller's memory only, bounded by record_limit and record_size_limit. 'NoDB' "
        "('none', 'ipyparallel.controller.dictdb.NoDB'): only while a task is pending.",
    ).tag(config=True)
    heartbeat_timeout = Float(
        5.0, help="Seconds without a heartbeat answer after which an engine counts as dead."
    ).tag(config=True)
    record_limit = Integer(
        100_000, help="Most task records kept; past it the oldest finished ones are dropped."
    ).tag(config=True)
    record_size_limit = Integer(
        1 << 30,
        help="Most bytes of requests, results and outputs kept in task records (default 1 GiB).",
    ).tag(config=True)
    hwm = Integer(
        1,
        help="Most load-balanced tasks outstanding on one engine (0: no limit). 1 means a task "
        "goes to the first engine that becomes free.",
    ).tag(config=True)
    pipeline_threshold = Float(
        0.005,
        help="Seconds: when the last 16 load-balanced tasks each came back faster than this, "
        "an engine may hold pipeline_depth tasks more than hwm, so streams of tiny tasks do "
        "not wait for the round trip to the controller (0 turns it off).",
    ).tag(config=True)
    pipeline_depth = Integer(
        3,
        help="Tasks an engine may hold beyond hwm while load-balanced work is a stream of tiny "
        "tasks (see pipeline_threshold); none are queued behind a task that has run longer "
        "than pipeline_threshold.  0 turns pipelining off.",
    ).tag(config=True)
    shutdown_grace = Float(
        5.0, help="Seconds an engine gets to exit when stopped before it is killed."
    ).tag(config=True)
    shared_memory = Bool(
        True,
        help="Pass large buffers between processes on this host (clients, engines) through files "
        "in shared_memory_dir instead of through the sockets: one copy instead of four. Processes "
        "on other hosts always get them in frames.",
    ).tag(config=True)
    shared_memory_dir = Unicode(
        DEFAULT_DIRECTORY, help="Directory on a memory file system (tmpfs) for those files."
    ).tag(config=True)
    shared_memory_threshold = Integer(
        DEFAULT_THRESHOLD,
        help="Smallest buffer (bytes) passed through shared memory; smaller ones travel in frames.",
    ).tag(config=True)
    engine_log_level = Unicode("INFO", help="Log level of the engines this controller starts.").tag(
        config=True
    )
    engine_args = List(Unicode(), help="Extra command-line arguments for local engines.").tag(
        config=True
    )
    restore = Bool(
        False,
        help="Start in the place of a controller of this profile that died: on its ports, with "
        "its key, with the unfinished tasks of its task database; its engines rejoin with their "
        "ids (ipyparallel's --restore).  Needs the SQLite task store.",
    ).tag(config=True)
    announce = Bool(
        False,
        help="Print the connection info (the client and engine files' contents, this host and "
        "pid) as one JSON line on stdout, for a launcher that starts the controller on another "
        "host (ssh, a batch job) and writes the connection files on its own side, so no shared "
        "filesystem is needed.  The controller then writes only the engine file here (its own "
        "engines read it); stdout goes to stderr afterwards.",
    ).tag(config=True)
    rejoin_timeout = Float(
        10.0,
        help="Seconds a restored controller waits for its engines to rejoin; load balancing "
        "waits meanwhile (a task the dead controller sent may still be on its way).  An engine "
        "not back by then is lost: its tasks are retried elsewhere if they allow it, else failed.",
    ).tag(config=True)

    replace_dead_engines = Bool(
        False,
        help="Start a new engine in place of a local engine (one this controller started) "
        "that died without being asked to stop, up to max_engine_restarts times. "
        "Cluster(restart_engines=True) sets it.",
    ).tag(config=True)
    max_engine_restarts = Integer(
        3,
        help="Most replacements replace_dead_engines starts over the controller's life (a "
        "task that kills every engine it runs on must not restart them forever).",
    ).tag(config=True)

    aliases = {
        "profile": "ControllerApp.profile",
        "profile-dir": "ControllerApp.profile_dir",
        "cluster-id": "ControllerApp.cluster_id",
        "ip": "ControllerApp.ip",
        "location": "ControllerApp.location",
        "n": "ControllerApp.n",
        "hwm": "ControllerApp.hwm",
        "pipeline-threshold": "ControllerApp.pipeline_threshold",
        "pipeline-depth": "ControllerApp.pipeline_depth",
        "heartbeat-timeout": "ControllerApp.heartbeat_timeout",
        "shared-memory-threshold": "ControllerApp.shared_memory_threshold",
        "log-level": "Application.log_level",
        "engine-log-level": "ControllerApp.engine_log_level",
        "ping": "ControllerApp.ping",
    }
    flags = {
        **Application.flags,
        "sqlitedb": (
            {"ControllerApp": {"db_class": "SQLiteDB"}},
            "Keep task records in a SQLite file of the profile (the default; ipyparallel's "
            "--sqlitedb).",
        ),
        "dictdb": (
            {"ControllerApp": {"db_class": "DictDB"}},
            "Keep task records in the controller's memory (ipyparallel's --dictdb).",
        ),
        "nodb": (
            {"ControllerApp": {"db_class": "NoDB"}},
            "Keep task records only while their task is pending (ipyparallel's --nodb).",
        ),
        "announce": (
            {"ControllerApp": {"announce": True}},
            "Print the connection info as one JSON line on stdout (see ControllerApp.announce).",
        ),
        "restore": (
            {"ControllerApp": {"restore": True}},
            "Take the place of a controller of this profile that died (see ControllerApp.restore).",
        ),
    }
    classes = [SQLiteTaskStore]

    @validate("db_class")
    def _check_db_class(self, proposal: Any) -> str:
        try:
            return canonical_db_class(str(proposal["value"]))
        except ValueError as exc:
            raise TraitError(f"ControllerApp.db_class: {exc}") from None

    @observe("ping")
    def _ping_sets_period(self, change: Any) -> None:
        if change["new"] is not None:
            if change["new"] <= 0:
                raise TraitError(f"--ping: expected a positive number of ms, found {change['new']}")
            self.heartbeat_period = change["new"] / 1000

    @validate("max_engine_restarts")
    def _check_max_engine_restarts(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(
                "ControllerApp.max_engine_restarts: expected a number of restarts (0 or "
                f"more), found {proposal['value']!r}"
            )
        return int(proposal["value"])

    @default("profile_dir")
    def _default_profile_dir(self) -> str:
        return str(paths.profile_dir(self.profile))

    @default("log_format")
    def _default_log_format(self) -> str:
        return "%(asctime)s.%(msecs)03d [%(name)s] %(levelname)s %(message)s"

    def start(self) -> None:
        logging.basicConfig(
            # traitlets keeps the level as a number: a level name given is turned into one
            level=cast(int, self.log_level),
            format="%(asctime)s.%(msecs)03d [controller] %(levelname)s %(message)s",
            datefmt="%H:%M:%S",
            stream=sys.stderr,
        )
        profile_path = Path(self.profile_dir)
        profile_path.mkdir(parents=True, exist_ok=True)
        for sub in ("security", "log"):
            (profile_path / sub).mkdir(exist_ok=True)
        os.chmod(profile_path / "security", 0o700)
        cid = self.cluster_id
        client_path = paths.client_file(profile_path, cid)
        engine_path = paths.engine_file(profile_path, cid)
        cluster_path = paths.cluster_file(profile_path, cid)
        previous = self._previous_controller(cluster_path, engine_path) if self.restore else None
        key = previous.key if previous else secrets.token_hex(32).encode()
        try:  # before any port is bound or file written: a refused database stops us here
            store = make_task_store(self.db_class, profile_path, cid, parent=self)
        except TaskStoreError as exc:
            log.critical("cannot start the controller: %s", exc)
            self.exit(1)
        created = (
            SharedArea.create(self.shared_memory_dir, self.shared_memory_threshold)
            if self.shared_memory and not (previous and previous.shm_info)
            else None
        )
        area, area_info = created if created is not None else (None, None)
        if previous and previous.shm_info:  # the engines stage results in the old area
            area, area_info = SharedArea.join(previous.shm_info), previous.shm_info
            if area is None:
                area_info = None
        launcher = LocalLauncher(
            engine_path, profile_path / "log", cid, list(self.engine_args), self.engine_log_level
        )
        controller = Controller(
            key,
            ip=self.ip,
            heartbeat_period=self.heartbeat_period,
            heartbeat_timeout=self.heartbeat_timeout,
            record_limit=self.record_limit,
            record_size_limit=self.record_size_limit,
            hwm=self.hwm,
            pipeline_threshold=self.pipeline_threshold,
            pipeline_depth=self.pipeline_depth,
            shutdown_grace=self.shutdown_grace,
            rejoin_timeout=self.rejoin_timeout,
            launcher=launcher,
            shared_area=area,
            task_store=store,
            restart_engines=self.replace_dead_engines,
            max_engine_restarts=self.max_engine_restarts,
        )
        ports = controller.bind(previous.ports if previous else None)
        info: dict[str, Any] = controller.connection_info()
        if self.location:
            info["location"] = self.location
        if area_info is not None:
            info["shm"] = area_info
        client_info = {**info, "ports": {k: ports[k] for k in ("client", "notify")}}
        engine_info = {**info, "ports": {k: ports[k] for k in ("engine", "iopub")}}
        if not self.announce:
            paths.write_private_json(client_path, client_info)
        paths.write_private_json(engine_path, engine_info)
        cluster: dict[str, Any] = {
            "version": __version__,
            "profile": self.profile,
            "profile_dir": str(profile_path),
            "cluster_id": cid,
            "controller_pid": os.getpid(),
            "pgid": os.getpgid(0),
            "ip": info["ip"],
            "location": info["location"],
            "ports": ports,
            "started": time.time(),
            "n": self.n,
            "client_file": str(client_path),
            "engine_file": str(engine_path),
            "log_dir": str(profile_path / "log"),
            "shm": area.description() if area is not None else None,
            # process groups of engines a dead predecessor started: ipar stop ends them too
            "engine_pgids": previous.pgids if previous else [],
        }
        if self.announce:
            # the launcher writes the files on its side; here only our own engines need one
            self._announce(client_info, engine_info, cluster)
            written = [engine_path]
        else:
            paths.write_private_json(cluster_path, cluster)
            written = [client_path, engine_path, cluster_path]
        log.info("controller %s listening on %s, ports %s", __version__, info["ip"], ports)
        log.info("task records: %s", controller.tasks.describe())
        controller.install_signal_handlers()
        if self.restore:
            awaited, tasks = controller.restore(controller.tasks)
            log.info("restored: %d engine(s) to rejoin, %d unfinished task(s)", awaited, tasks)
        else:
            controller.abandon_previous()
        try:
            if self.n:
                controller.start_engines(self.n)
            controller.run()
        finally:
            # files go first: whoever waits for the cluster to stop watches them and the pid
            paths.remove_quietly(*written)
            controller.tasks.close()  # saves what is noted (reading segments), frees the file
            controller.segments.close()
            log.info("controller stopped")

    def _previous_controller(self, cluster_path: Path, engine_path: Path) -> Previous | None:
        """The dead controller's ports, key and process groups (None when it left no files:
        it stopped cleanly, and its engines with it)."""
        try:
            cluster = paths.read_json(cluster_path)
            engine_info = paths.read_json(engine_path)
        except (OSError, ValueError):
            log.warning(
                "--restore: no files of an earlier controller in %s; starting on new ports "
                "(the task database's records are kept either way)",
                cluster_path.parent,
            )
            return None
        pid = int(cluster.get("controller_pid") or 0)
        if pid and pid != os.getpid() and pid_alive(pid):
            raise SystemExit(
                f"--restore: the controller of this profile (pid {pid}) is still running; "
                f"restore replaces a controller that died. Stop it first (ipar stop)."
            )
        pgids = [int(p) for p in cluster.get("engine_pgids") or []]
        if cluster.get("pgid"):
            pgids.append(int(cluster["pgid"]))
        return Previous(
            ports={k: int(v) for k, v in cluster["ports"].items()},
            key=str(engine_info["key"]).encode(),
            shm_info=engine_info.get("shm"),
            pgids=sorted(set(pgids)),
        )

    @staticmethod
    def _announce(client: dict[str, Any], engine: dict[str, Any], cluster: dict[str, Any]) -> None:
        """The connection info, as one line on stdout: the launcher that started us on
        another host reads it there (an ssh session's output is private to it; a batch job's
        output file is readable by its owner only).  Afterwards stdout is stderr, so nothing
        else is ever written to a channel that carries the key."""
        payload = {
            "client": client,
            "engine": engine,
            "cluster": {**cluster, "controller_host": socket.gethostname()},
        }
        sys.stdout.write(paths.ANNOUNCE_PREFIX + json.dumps(payload) + "\n")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


class Previous(NamedTuple):
    """What a restored controller takes over from the one that died."""

    ports: dict[str, int]
    key: bytes
    shm_info: dict[str, Any] | None
    pgids: list[int]


def main(argv: list[str] | None = None) -> None:
    ControllerApp.launch_instance(argv)
