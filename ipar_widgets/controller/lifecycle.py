"""How engines join and leave the cluster on purpose, and how the controller shuts down.

An engine joins by registering (a ``registration_request`` on its shell socket: it gets the
next id, and every client hears ``engine_registered``); engines on the controller's host are
started here too.  An engine leaves on purpose when a client stops it: it is asked to exit,
a local one is signalled and killed after the grace period.  (Engines that leave without
being asked are :mod:`.liveness`'s business.)  Shutting down stops every engine, aborts
every task still waiting in the controller, and answers the clients that asked for the
shutdown once the local engines have exited or the grace period is over.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

import zmq

from ..protocol.routing import control_identity, shell_identity
from ..protocol.wire import Frame, InvalidMessage, Wire
from .engines import EngineRegistry, EngineState
from .launcher import LocalLauncher
from .reactor import Reactor
from .records import ABORTED, RecordStore
from .restarts import EngineRestarts
from .restore import Restorer
from .router import Router
from .scheduler import LoadBalancer
from .segments import SegmentKeeper

log = logging.getLogger("ipar_widgets.controller")


class Lifecycle:
    """Registration, starting and stopping engines, shutdown and closing the sockets."""

    def __init__(
        self,
        router: Router,
        reactor: Reactor,
        balancer: LoadBalancer,
        engines: EngineRegistry,
        records: RecordStore,
        segments: SegmentKeeper,
        wire: Wire,
        *,
        launcher: LocalLauncher | None,
        heartbeat_period: float,
        shutdown_grace: float,
        context: zmq.Context[zmq.Socket[bytes]],
        sockets: tuple[zmq.Socket[bytes], ...],
    ) -> None:
        self.router = router
        self.reactor = reactor
        self.balancer = balancer
        self.engines = engines
        self.records = records
        self.segments = segments
        self.wire = wire
        self.launcher = launcher
        self.heartbeat_period = heartbeat_period
        self.shutdown_grace = shutdown_grace
        self.context = context
        self.sockets = sockets
        #: takes engines back after a lost connection or a restore (set by the Controller)
        self.restorer: Restorer
        #: replaces local engines that died (set by the Controller)
        self.restarts: EngineRestarts | None = None
        #: engines asked for (``ipar start --n``, ``Cluster.start_engines``) minus those stopped
        self.requested_engines = 0
        self._stopping_since: float | None = None
        self._shutdown_waiters: list[tuple[bytes, dict[str, Any]]] = []

    # -- joining ----------------------------------------------------------------------------------
    def register(
        self, ident: bytes, header: dict[str, Any], content: dict[str, Any], buffers: list[Frame]
    ) -> None:
        """Answer an engine's registration request with its id (a repeated request gets the
        same id again); an engine rejoining after a lost connection keeps its old id."""
        uuid = str(content.get("uuid", ""))
        rejoin = content.get("rejoin") is True
        if ident != (control_identity(uuid) if rejoin else shell_identity(uuid)):
            raise InvalidMessage("registration identity does not match its uuid")
        if self.stopping:
            return  # it will be told to stop with the others, or find no controller
        if uuid in self.engines.by_uuid:
            engine = self.engines.by_uuid[uuid]  # a repeated request, or a restored engine
        else:
            local = self.launcher.engines.get(uuid) if self.launcher else None
            # the id it asks for: its old one (a rejoin), or its MPI rank; given when free
            wanted = content.get("id")
            engine = self.engines.register(
                uuid,
                int(content.get("pid", 0)),
                str(content.get("hostname", "")),
                local is not None,
                engine_id=wanted
                if isinstance(wanted, int) and not isinstance(wanted, bool)
                else None,
            )
            engine.shm = content.get("shm") is True and self.segments.area is not None
            engine.engine_set = str(content.get("engine_set") or "")
            replaces = None
            if local is not None:
                local.engine_id = engine.id
                if self.restarts is not None:
                    replaces = self.restarts.registered(local, engine)
            log.info("engine %d registered (pid %s on %s)", engine.id, engine.pid, engine.hostname)
            notice: dict[str, Any] = {
                "engine_id": engine.id,
                "uuid": uuid,
                "pid": engine.pid,
                "hostname": engine.hostname,
                "engine_set": engine.engine_set,
            }
            if replaces is not None:  # started in place of a dead engine (restarts.py)
                notice["replaces"] = replaces
            self.router.publish("engine_registered", notice)
        _, frames = self.wire.build(
            "registration_reply",
            {"status": "ok", "id": engine.id, "heartbeat_period": self.heartbeat_period},
            parent=header,
            idents=[ident],
        )
        self.router.send_to_engine(frames)
        if rejoin:
            self.restorer.rejoined(engine, content, buffers)
        self.balancer.dispatch()

    # -- engines on this host ---------------------------------------------------------------------
    def start_engines(self, n: int) -> list[int]:
        """Start ``n`` engine processes on this host; return their launch numbers."""
        if self.launcher is None:
            raise RuntimeError("this controller does not start engines")
        self.requested_engines += n
        return [e.seq for e in self.launcher.start(n)]

    def stop_engine(self, engine: EngineState) -> None:
        """Ask an engine to exit; a local one is killed if it has not after the grace period."""
        self.router.send_control(engine, "shutdown_request", {"restart": False})
        if self.launcher is not None:
            local = self.launcher.by_engine_id(engine.id)
            if local is not None:
                local.stop_requested = time.monotonic()
                self.launcher.signal(local, signal.SIGTERM)
        self.requested_engines = max(0, self.requested_engines - 1)
        self._engine_gone_on_purpose(engine)

    def _engine_gone_on_purpose(self, engine: EngineState) -> None:
        self.engines.unregister(engine, "stopped")
        for msg_id in list(engine.outstanding):
            rec = self.records.get(msg_id)
            if rec is not None and not rec.finished:
                self.router.fail_task(
                    rec,
                    "EngineError",
                    f"engine {engine.id} was stopped while it held task {msg_id}",
                )
        engine.outstanding.clear()
        self.router.publish("engine_unregistered", {"engine_id": engine.id, "reason": "stopped"})

    # -- shutdown ---------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """Whether the cluster is shutting down."""
        return self._stopping_since is not None

    def begin_shutdown(
        self, client: bytes | None = None, parent: dict[str, Any] | None = None
    ) -> None:
        """Stop every engine and abort waiting tasks; ``client`` (with its request's header
        ``parent``) is answered once everything has stopped."""
        if client is not None and parent is not None:
            self._shutdown_waiters.append((client, parent))
        if self._stopping_since is not None:
            return
        log.info("shutting down: stopping %d engine(s)", len(self.engines))
        self._stopping_since = time.monotonic()
        self.router.publish("shutdown_notice", {"reason": "shutdown requested"})
        for engine in list(self.engines):
            self.stop_engine(engine)
        for rec in self.balancer.abort({r.msg_id for r in self.balancer.unassigned()}):
            self.router.fail_task(
                rec, "TaskAborted", "the cluster is shutting down", status=ABORTED
            )
        if self.launcher is not None:
            for local in self.launcher.engines.values():
                if local.stop_requested is None:
                    local.stop_requested = time.monotonic()
                    self.launcher.signal(local, signal.SIGTERM)
        self.finish_shutdown_if_done()

    def finish_shutdown_if_done(self) -> None:
        """Once the local engines have exited (or were given time enough), answer whoever
        asked for the shutdown and end the poll loop."""
        assert self._stopping_since is not None
        remaining = len(self.launcher.engines) if self.launcher else 0
        overdue = time.monotonic() - self._stopping_since > self.shutdown_grace + 2
        if remaining and not overdue:
            return
        for client, parent in self._shutdown_waiters:
            self.router.reply(client, "shutdown_reply", {"status": "ok"}, parent)
        self.reactor.stop()

    def close(self) -> None:
        """Kill what is left of the local engines, close the sockets, end the zmq context."""
        if self.launcher is not None:
            for local in list(self.launcher.engines.values()):
                self.launcher.signal(local, signal.SIGKILL)
                try:
                    local.popen.wait(5)
                except Exception:
                    pass
        for sock in self.sockets:
            sock.close(linger=500)
        self.context.term()

    # -- signals ----------------------------------------------------------------------------------
    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM, SIGINT or SIGHUP: shut down, from the poll loop (not the signal handler)."""
        log.info("received signal %d", signum)
        self.reactor.call_later(0, self.begin_shutdown)

    def install_signal_handlers(self) -> None:
        """Shut down on SIGTERM, SIGINT and SIGHUP."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.handle_signal)
