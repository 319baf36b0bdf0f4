"""The controller's facade: it builds and wires the parts, binds the sockets and runs the loop.

Sockets (all bound by the controller; clients and engines connect)::

    client  ROUTER  <- clients' DEALER: tasks, controller queries; replies go back here
    notify  PUB     -> clients' SUB: engine outputs (topic: the submitting client) and
                       cluster notices (engines joining and leaving, shutdown)
    engine  ROUTER  <- engines' shell, control and heartbeat DEALERs (identities s:/c:/h:+uuid)
    iopub   SUB     <- engines' PUB: stdout, stderr, displays, results, errors

A client prefixes each request with one routing frame: ``b"b"`` (load-balanced task),
``b"d<id>"`` (task for engine id), ``b"k<id>"`` (control message for engine id) or ``b"c"``
(question for the controller).  Messages are forwarded with their original signature; every
message is verified before it is acted on, and one that is unsigned, wrongly signed or not a
well-formed message is dropped and logged.

Where things happen, one module each (all in one thread)::

    reactor.py    the poll loop and timers; drains sockets, counts dropped messages
    router.py     client requests, tasks to engines, replies, outputs, failing tasks
    scheduler.py  the load balancer: which engine a balanced task goes to, and when
    queries.py    answers to requests for the controller itself (b"c"); those about task
                  records in recordqueries.py, through the TaskStore of taskstore.py
    liveness.py   heartbeats, local engine processes, engines lost
    lifecycle.py  registration, starting and stopping engines, shutdown
    records.py, engines.py, segments.py   what the controller remembers
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import zmq

from ..protocol.sharedmem import SharedArea
from ..protocol.wire import Frame, Wire
from . import queries
from .engines import EngineRegistry, EngineState, cost_totals
from .launcher import LocalLauncher
from .lifecycle import Lifecycle
from .liveness import Liveness
from .reactor import Reactor
from .records import ERROR, RecordStore, TaskRecord
from .restarts import EngineRestarts
from .restore import RestorableStore, Restorer
from .router import Router
from .scheduler import LoadBalancer
from .segments import SegmentKeeper
from .taskstore import MemoryTaskStore, StoreParts, TaskStore

log = logging.getLogger("ipar_widgets.controller")

#: how often local engine processes are checked for having exited (seconds)
PROCESS_WATCH_PERIOD = 0.2


def _make_socket(context: zmq.Context[zmq.Socket[bytes]], kind: int) -> zmq.Socket[bytes]:
    sock = context.socket(kind)
    sock.linger = 1000
    sock.sndhwm = 0
    sock.rcvhwm = 0
    if kind == zmq.ROUTER:
        sock.router_mandatory = 1  # an unreachable peer is an error, not a silent drop
        # a peer reconnecting with its identity (after a network outage the controller did
        # not notice) takes the identity over instead of being turned away
        sock.router_handover = 1
    return sock


class Controller:
    """Routes tasks between clients and engines; see the module docstring for the sockets.

    The public methods here are the seam :mod:`.queries` and :mod:`.app` use; the parts
    (``router``, ``liveness``, ``lifecycle``, ``reactor``) are wired to each other here.
    """

    def __init__(
        self,
        key: bytes,
        *,
        ip: str = "127.0.0.1",
        heartbeat_period: float = 0.5,
        heartbeat_timeout: float = 5.0,
        record_limit: int = 100_000,
        record_size_limit: int = 1 << 30,
        hwm: int = 1,
        pipeline_threshold: float = 0.005,
        pipeline_depth: int = 3,
        shutdown_grace: float = 5.0,
        rejoin_timeout: float = 10.0,
        launcher: LocalLauncher | None = None,
        shared_area: SharedArea | None = None,
        task_store: TaskStore | None = None,
        restart_engines: bool = False,
        max_engine_restarts: int = 3,
    ) -> None:
        self.key = key
        self.ip = ip
        self.heartbeat_period = heartbeat_period
        self.launcher = launcher
        self.started_at = time.time()
        self.ports: dict[str, int] = {}
        self.wire = Wire(key, session="controller")
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.engines = EngineRegistry()
        self.segments = SegmentKeeper(shared_area, self.wire)
        self.records = RecordStore(record_limit, record_size_limit, self.segments.record_removed)
        #: the records as a database: what db_query, hub_history, get_result, purges and
        #: resubmits read, and where the router notes each change of a record
        self.tasks: TaskStore = task_store if task_store is not None else MemoryTaskStore()
        self.tasks.attach(
            StoreParts(
                self.records, self.engines.uuid_of, self.segments, self.wire, self.pause_tasks
            )
        )
        self.engines.on_register = self.tasks.engine_registered
        self.engines.on_unregister = self.tasks.engine_left
        # the sockets exist from here on; bind() gives them their ports
        self.client = _make_socket(self.context, zmq.ROUTER)
        self.notify = _make_socket(self.context, zmq.PUB)
        self.engine = _make_socket(self.context, zmq.ROUTER)
        self.iopub = _make_socket(self.context, zmq.SUB)
        self.iopub.subscribe(b"")

        self.reactor = Reactor()
        self.router = Router(
            self.wire,
            self.engines,
            self.records,
            self.segments,
            client=self.client,
            engine=self.engine,
            notify=self.notify,
            note=self.tasks.note,
        )
        self.balancer = LoadBalancer(
            self.engines,
            self.records,
            self.router.send_task,
            self.router.fail_task,
            hwm,
            pipeline_threshold,
            pipeline_depth,
        )
        self.lifecycle = Lifecycle(
            self.router,
            self.reactor,
            self.balancer,
            self.engines,
            self.records,
            self.segments,
            self.wire,
            launcher=launcher,
            heartbeat_period=heartbeat_period,
            shutdown_grace=shutdown_grace,
            context=self.context,
            sockets=(self.client, self.notify, self.engine, self.iopub),
        )
        self.liveness = Liveness(
            self.router,
            self.lifecycle,
            self.balancer,
            self.engines,
            self.records,
            launcher=launcher,
            heartbeat_timeout=heartbeat_timeout,
            shutdown_grace=shutdown_grace,
        )
        self.restorer = Restorer(
            self.router,
            self.balancer,
            self.engines,
            self.records,
            self.wire,
            self.reactor,
            engine_lost=self.liveness.engine_lost,
            rejoin_timeout=rejoin_timeout,
        )
        self.lifecycle.restorer = self.restorer
        self.liveness.restorer = self.restorer
        #: replaces local engines that died, when asked to (restarts.py)
        self.restarts = EngineRestarts(
            launcher, self.engines, enabled=restart_engines, max_restarts=max_engine_restarts
        )
        self.lifecycle.restarts = self.liveness.restarts = self.restarts
        self.router.connect(
            self.balancer,
            register_engine=self.lifecycle.register,
            engine_synced=self.restorer.synced,
            engine_lost=self.liveness.engine_lost,
            answer_query=partial(queries.handle, self),
        )

    # -- setup ------------------------------------------------------------------------------------
    def bind(self, ports: dict[str, int] | None = None) -> dict[str, int]:
        """Bind the four sockets to ``ports`` (a restored controller takes its predecessor's)
        or to random ports of ``ip``; return the ports by socket name."""
        bind_ip = "*" if self.ip in ("0.0.0.0", "*", "") else self.ip
        for name, sock in (
            ("client", self.client),
            ("notify", self.notify),
            ("engine", self.engine),
            ("iopub", self.iopub),
        ):
            if ports is not None:
                sock.bind(f"tcp://{bind_ip}:{ports[name]}")
                self.ports[name] = ports[name]
            else:
                self.ports[name] = sock.bind_to_random_port(f"tcp://{bind_ip}")
        return dict(self.ports)

    def restore(self, store: RestorableStore) -> tuple[int, int]:
        """Take back a dead controller's engines and unfinished tasks from its task database
        (see restore.py); return how many engines are awaited and tasks restored."""
        return self.restorer.restore(store)

    def abandon_previous(self) -> int:
        """Started without --restore: abort what a controller that died left unfinished in
        the task database (see restore.py); return how many tasks."""
        return self.restorer.abandon(self.tasks, self.tasks.engine_left)

    @property
    def restoring(self) -> bool:
        """Whether a restored controller still waits for its engines to rejoin."""
        return self.restorer.active

    def when_restored(self, call: Callable[[], None]) -> None:
        """Run ``call`` once the restore is over (at once when there is none)."""
        self.restorer.defer(call)

    def connection_info(self) -> dict[str, Any]:
        """What connection files carry besides the ports: key, transport, addresses."""
        location = self.ip
        if self.ip in ("0.0.0.0", "*", ""):
            location = socket.gethostname()
        return {
            "key": self.key.decode(),
            "signature_scheme": "hmac-sha256",
            "transport": "tcp",
            "ip": self.ip if self.ip not in ("*", "") else "0.0.0.0",
            "location": location,
        }

    def install_signal_handlers(self) -> None:
        """Shut down on SIGTERM, SIGINT and SIGHUP."""
        self.lifecycle.install_signal_handlers()

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until shut down, then close the sockets."""
        reactor = self.reactor
        # outputs before replies: a task's output is relayed before its result when both wait
        reactor.add_reader(self.iopub, "iopub", self.router.on_iopub)
        reactor.add_reader(self.engine, "engine", self.router.on_engine)
        reactor.add_reader(self.client, "client", self.router.on_client)
        reactor.every(self.heartbeat_period, self.liveness.heartbeat)
        reactor.every(PROCESS_WATCH_PERIOD, self.liveness.watch_processes)
        reactor.every(self.tasks.tick_period, self.tasks.tick)
        try:
            reactor.run(self.balancer)
        finally:  # also when the loop failed: engines killed, sockets closed
            self.lifecycle.close()

    def pause_tasks(self, reason: str) -> None:
        """Hold tasks in the controller while ``reason`` (the task store is behind); hand
        out what was held once it is ''."""
        if reason == self.balancer.paused:
            return
        was_paused = bool(self.balancer.paused)
        self.balancer.paused = self.router.paused = reason
        if reason:
            if not was_paused:
                log.warning("tasks wait in the controller: %s", reason)
            return
        log.info("the task database caught up: handing out tasks again")
        for engine in list(self.engines):
            if not engine.rejoining:
                self.router.send_held(engine)
        self.balancer.dispatch()

    # -- the seam queries.py uses -----------------------------------------------------------------
    def reply(
        self,
        client: bytes,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any],
        buffers: list[Frame] | None = None,
    ) -> None:
        """Answer a client's request (``parent`` is its header) with a signed message."""
        self.router.reply(client, msg_type, content, parent, buffers)

    def unknown_engine(self, engine_id: int) -> str:
        """The error text for a request naming an engine id that is not registered."""
        return self.router.unknown_engine(engine_id)

    def fail_task(self, rec: TaskRecord, ename: str, evalue: str, status: str = ERROR) -> None:
        """Finish a task with an error of the cluster's (``ename: evalue``) and answer its
        client and watchers; a task already finished is left alone."""
        self.router.fail_task(rec, ename, evalue, status)

    def submit_task(
        self, client: bytes, engine_id: int | None, header: dict[str, Any], signed: list[Frame]
    ) -> None:
        """Submit a request the controller built (``[DELIM, signature, header, parent,
        metadata, content, *buffers]``) as ``client``'s: for engine ``engine_id``, or (None)
        load-balanced."""
        self.router.submit_built(client, engine_id, header, signed)

    def send_control(self, engine: EngineState, msg_type: str, content: dict[str, Any]) -> bool:
        """Send the controller's own control message to an engine (its answer is dropped);
        False when the engine's control socket is not connected."""
        return self.router.send_control(engine, msg_type, content)

    def start_engines(self, n: int) -> list[int]:
        """Start ``n`` engines on this host; RuntimeError without a launcher."""
        return self.lifecycle.start_engines(n)

    def stop_engine(self, engine: EngineState) -> None:
        """Ask an engine to exit; a local one is killed if it has not after the grace period."""
        self.lifecycle.stop_engine(engine)

    def begin_shutdown(
        self, client: bytes | None = None, parent: dict[str, Any] | None = None
    ) -> None:
        """Stop the cluster; ``client`` is answered (to ``parent``) once it has stopped."""
        self.lifecycle.begin_shutdown(client, parent)

    @property
    def requested_engines(self) -> int:
        """Engines asked for and not stopped since."""
        return self.lifecycle.requested_engines

    @property
    def stopping(self) -> bool:
        """Whether the cluster is shutting down."""
        return self.lifecycle.stopping

    # -- facts ------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The cluster's state, for ``ipar list``, clients and the JupyterLab panel."""
        running = sum(1 for e in self.engines if e.outstanding)
        pending = self.balancer.pending
        in_flight = sum(len(e.outstanding) for e in self.engines)
        counts = self.router.counts
        now = time.monotonic()
        engines = []
        for e in sorted(self.engines, key=lambda e: e.id):
            info = e.info()
            info["state"] = "busy" if e.outstanding else "idle"
            info["busy_for"] = round(now - e.busy_since, 3) if e.busy_since is not None else None
            engines.append(info)
        return {
            "pid": os.getpid(),
            "started": self.started_at,
            "uptime": time.time() - self.started_at,
            "engines_registered": len(self.engines),
            "engines_requested": self.requested_engines,
            "engines_starting": self.launcher.pending() if self.launcher else 0,
            "engines": engines,
            "costs": cost_totals(engines),  # CPU and memory of all engines (engine/usage.py)
            "launch_failures": self.launcher.failures[-10:] if self.launcher else [],
            "unregistered": self.engines.unregistered[-20:],
            "tasks": {
                "pending": pending,
                "running": running,
                "queued_on_engines": in_flight - running,
                "done": counts["ok"],
                "failed": counts["error"],
                "aborted": counts["aborted"],
                "submitted": counts["submitted"],
            },
            "records": len(self.records),
            "task_store": self.tasks.describe(),
            "record_bytes": self.records.nbytes,
            "dropped_messages": self.reactor.dropped,
            "stopping": self.stopping,
        }
