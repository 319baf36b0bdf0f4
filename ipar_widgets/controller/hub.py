"""The controller process: one poll loop that routes tasks, relays outputs and watches engines.

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
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..protocol.routing import (
    CONTROLLER,
    CONTROLLER_IDENTITY,
    CONTROLLER_TOPIC,
    EVERYONE,
    HEARTBEAT_PING,
    SENDER_SUFFIX,
    SHELL_PREFIX,
    client_of,
    parse_route,
    shell_identity,
    topic_for,
)
from ..protocol.sharedmem import SharedArea
from ..protocol.wire import (
    DELIM,
    InvalidMessage,
    Wire,
    as_bytes,
    send_frames,
    unpack,
    utcnow_iso,
    waiting_messages,
)
from . import queries
from .engines import EngineRegistry, EngineState
from .launcher import LocalLauncher
from .records import ABORTED, ERROR, FINISHED, RUNNING, RecordStore, TaskRecord, frames_size
from .scheduler import LoadBalancer
from .segments import SegmentKeeper

log = logging.getLogger("ipar_widgets.controller")

TASK_TYPES = frozenset({"apply_request", "execute_request"})
REPLY_TYPES = {"apply_request": "apply_reply", "execute_request": "execute_reply"}


class Controller:
    """Routes tasks between clients and engines; see the module docstring for the sockets."""

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
        launcher: LocalLauncher | None = None,
        shared_area: SharedArea | None = None,
    ) -> None:
        self.key = key
        self.ip = ip
        self.heartbeat_period = heartbeat_period
        self.heartbeat_timeout = heartbeat_timeout
        self.shutdown_grace = shutdown_grace
        self.launcher = launcher
        self.wire = Wire(key, session="controller")
        self.context = zmq.Context()
        self.engines = EngineRegistry()
        self.segments = SegmentKeeper(shared_area, self.wire)
        self.records = RecordStore(record_limit, record_size_limit, self.segments.record_removed)
        self.balancer = LoadBalancer(
            self.engines,
            self.records,
            self._send_task,
            self._fail_task,
            hwm,
            pipeline_threshold,
            pipeline_depth,
        )
        self.started_at = time.time()
        self.requested_engines = 0
        self.ports: dict[str, int] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._running = False
        self._stopping_since: float | None = None
        self._shutdown_waiters: list[tuple[bytes, dict[str, Any]]] = []
        self._dropped = 0
        self._last_drop_log: dict[tuple[str, str], float] = {}
        self.counts = {"submitted": 0, "ok": 0, "error": 0, "aborted": 0}

    # -- setup ------------------------------------------------------------------------------------
    def bind(self) -> dict[str, int]:
        ctx = self.context

        def make(kind: int, name: str) -> zmq.Socket[Any]:
            sock = ctx.socket(kind)
            sock.linger = 1000
            sock.sndhwm = 0
            sock.rcvhwm = 0
            if kind == zmq.ROUTER:
                sock.router_mandatory = 1  # an unreachable peer is an error, not a silent drop
            bind_ip = "*" if self.ip in ("0.0.0.0", "*", "") else self.ip
            self.ports[name] = sock.bind_to_random_port(f"tcp://{bind_ip}")
            return sock

        self.client = make(zmq.ROUTER, "client")
        self.notify = make(zmq.PUB, "notify")
        self.engine = make(zmq.ROUTER, "engine")
        self.iopub = make(zmq.SUB, "iopub")
        self.iopub.subscribe(b"")
        return dict(self.ports)

    def connection_info(self) -> dict[str, Any]:
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

    # -- timers -----------------------------------------------------------------------------------
    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._timer_seq, callback))

    def _every(self, period: float, callback: Callable[[], None]) -> None:
        def tick() -> None:
            try:
                callback()
            finally:
                if self._running:
                    self.call_later(period, tick)

        self.call_later(period, tick)

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until shut down."""
        self._running = True
        poller = zmq.Poller()
        # outputs before replies: a task's output is relayed before its result when both wait
        handlers = [
            (self.iopub, self._on_iopub),
            (self.engine, self._on_engine),
            (self.client, self._on_client),
        ]
        for sock, _ in handlers:
            poller.register(sock, zmq.POLLIN)
        self._every(self.heartbeat_period, self._heartbeat)
        self._every(0.2, self._watch_processes)
        while self._running:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic()) * 1000
            deadline = self.balancer.next_deadline()
            if deadline is not None:
                wait = max(0.0, deadline - time.monotonic()) * 1000
                timeout = wait if timeout is None else min(timeout, wait)
            try:
                events = dict(poller.poll(timeout))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:
                    continue
                raise
            for sock, handler in handlers:
                if sock in events:
                    self._drain(sock, handler)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback = heapq.heappop(self._timers)
                try:
                    callback()
                except Exception:
                    log.exception("error in a controller timer")
            if deadline is not None:
                self.balancer.expire(now)
        self._close()

    def _drain(self, sock: zmq.Socket[Any], handler: Callable[[list[Any]], None]) -> None:
        for frames in waiting_messages(sock, 256):
            try:
                handler(frames)
            except InvalidMessage as exc:
                self._drop(sock, str(exc))
            except Exception:
                log.exception("error handling a message; it was dropped")

    def _drop(self, sock: zmq.Socket[Any], why: str) -> None:
        self._dropped += 1
        name = {id(self.client): "client", id(self.engine): "engine", id(self.iopub): "iopub"}
        port = name.get(id(sock), "?")
        now = time.monotonic()
        # a flood of garbage must not flood the log: each kind of problem once a second
        if now - self._last_drop_log.get((port, why), 0.0) > 1.0:
            log.warning(
                "dropped a message on the %s port: %s (%d dropped so far)", port, why, self._dropped
            )
            self._last_drop_log[(port, why)] = now

    # -- sending ----------------------------------------------------------------------------------
    def _send(self, sock: zmq.Socket[Any], frames: list[Any]) -> bool:
        try:
            send_frames(sock, frames)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return False
            raise

    def _answer(self, receiver: bytes, frames: list[Any]) -> None:
        """Send a task's reply; one for a waiting thread whose socket is gone (it stopped
        waiting, and its client closed that socket) goes to the client's own socket."""
        if not self._send(self.client, [receiver, *frames]) and receiver != client_of(receiver):
            self._send(self.client, [client_of(receiver), *frames])

    def reply(
        self,
        client: bytes,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any],
        buffers: list[Any] | None = None,
    ) -> None:
        _, frames = self.wire.build(
            msg_type, content, parent=parent, idents=[client], buffers=buffers or ()
        )
        self._send(self.client, frames)

    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        """Tell every client about the cluster (engines joining/leaving, shutdown)."""
        _, frames = self.wire.build(msg_type, content, idents=[CONTROLLER_TOPIC])
        self.notify.send_multipart(frames)

    def _send_task(self, rec: TaskRecord, engine: EngineState) -> bool:
        request = self.segments.request_for(rec, engine.shm)
        # the engine sends its reply back with this identity in front: the reply's receiver
        if not self._send(self.engine, [engine.shell, rec.reply_to, *request]):
            return False
        now = time.monotonic()
        rec.engine_id = engine.id
        rec.status = RUNNING
        rec.dispatched = now
        if not engine.outstanding:
            engine.busy_since = now
        engine.outstanding[rec.msg_id] = None
        return True

    # -- clients ----------------------------------------------------------------------------------
    def _on_client(self, frames: list[Any]) -> None:
        sender = as_bytes(frames[0])
        client = client_of(sender)  # outputs go to the client's own identity ...
        # ... and so do answers, but for a waiting thread's socket, whose replies go back to it
        reply_to = client if sender.endswith(SENDER_SUFFIX) else sender
        frame = as_bytes(frames[1]) if len(frames) > 1 else b""
        delim = 2
        if frame == DELIM:  # a client that sent no routing frame talks to the controller
            frame, delim = CONTROLLER, 1
        elif len(frames) < 3 or as_bytes(frames[2]) != DELIM:
            raise InvalidMessage("expected [routing frame, <IDS|MSG>, ...] from a client")
        if not self.wire.verify(frames, delim + 1):
            raise InvalidMessage("missing or invalid HMAC signature")
        header = unpack(frames[delim + 2])
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str) or "msg_id" not in header:
            raise InvalidMessage("the header has no msg_type or msg_id")
        try:
            route = parse_route(frame)
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
        if route.kind == "controller":
            content = unpack(frames[delim + 5])
            queries.handle(self, client, header, content)
        elif route.kind == "control":
            assert route.engine_id is not None
            self._forward_control(client, route.engine_id, header, frames[delim:])
        else:
            self._submit(client, route.engine_id, header, frames[delim:], reply_to)

    def _submit(
        self,
        client: bytes,
        engine_id: int | None,
        header: dict[str, Any],
        signed: list[Any],
        reply_to: bytes,
    ) -> None:
        """A task for engine ``engine_id``, or (None) for the load balancer."""
        msg_type = header["msg_type"]
        if msg_type not in TASK_TYPES:
            raise InvalidMessage(f"expected apply_request or execute_request, found {msg_type!r}")
        msg_id = header["msg_id"]
        if msg_id in self.records:
            raise InvalidMessage(f"a task with msg_id {msg_id!r} was already submitted")
        rec = TaskRecord(msg_id, client, msg_type, str(header.get("date", "")))
        rec.reply_to = reply_to
        rec.request = signed
        self.segments.note_request(rec, signed[4])
        self.records.add(rec)
        self.counts["submitted"] += 1
        if engine_id is None:
            rec.balanced = True
            self.balancer.submit(rec, unpack(signed[4]))
            return
        engine = self.engines.by_id.get(engine_id)
        if engine is None:
            self._fail_task(rec, "EngineError", self._unknown_engine(engine_id))
        elif not self._send_task(rec, engine):
            self._engine_lost(engine, "its shell socket is not connected")

    def _unknown_engine(self, engine_id: int) -> str:
        ids = ", ".join(map(str, self.engines.ids)) or "none"
        return f"engine {engine_id} is not registered (registered engines: {ids})"

    def _forward_control(
        self, client: bytes, engine_id: int, header: dict[str, Any], signed: list[Any]
    ) -> None:
        engine = self.engines.by_id.get(engine_id)
        if engine is None or not self._send(self.engine, [engine.control, client, *signed]):
            reply_type = header["msg_type"].replace("_request", "_reply")
            self.reply(
                client,
                reply_type,
                {
                    "status": "error",
                    "ename": "EngineError",
                    "evalue": self._unknown_engine(engine_id),
                    "origin": "cluster",
                    "engine_info": {"engine_id": engine_id},
                },
                header,
            )

    # -- engines ----------------------------------------------------------------------------------
    def _on_engine(self, frames: list[Any]) -> None:
        ident = as_bytes(frames[0])
        engine = self.engines.by_ident.get(ident)
        if engine is not None and ident == engine.heartbeat:
            engine.last_pong = time.monotonic()
            engine.answered = True
            return
        # [ident, (client,) DELIM, signature, header, parent, metadata, content, buffers...]
        delim = 1 if as_bytes(frames[1]) == DELIM else 2
        if len(frames) < delim + 6 or as_bytes(frames[delim]) != DELIM:
            raise InvalidMessage("expected [identity, (client,) <IDS|MSG>, ...] from an engine")
        if not self.wire.verify(frames, delim + 1):
            raise InvalidMessage("missing or invalid HMAC signature")
        if engine is None:
            header = unpack(frames[delim + 2])
            if header.get("msg_type") == "registration_request" and ident.startswith(SHELL_PREFIX):
                self._register(ident, header, unpack(frames[delim + 5]))
                return
            raise InvalidMessage(f"message from an unregistered engine identity {ident[:40]!r}")
        if delim != 2:
            raise InvalidMessage("an engine reply without the client's identity")
        client = as_bytes(frames[1])
        if ident == engine.shell:
            self._on_task_reply(engine, client, frames)
        else:  # control replies go straight back to whoever asked
            self._send(self.client, [client, *frames[2:]])

    def _register(self, ident: bytes, header: dict[str, Any], content: dict[str, Any]) -> None:
        uuid = str(content.get("uuid", ""))
        if ident != shell_identity(uuid):
            raise InvalidMessage("registration identity does not match its uuid")
        if uuid in self.engines.by_uuid:
            engine = self.engines.by_uuid[uuid]  # a repeated request: answer it again
        else:
            local = self.launcher.engines.get(uuid) if self.launcher else None
            engine = self.engines.register(
                uuid,
                int(content.get("pid", 0)),
                str(content.get("hostname", "")),
                local is not None,
            )
            engine.shm = content.get("shm") is True and self.segments.area is not None
            if local is not None:
                local.engine_id = engine.id
            log.info("engine %d registered (pid %s on %s)", engine.id, engine.pid, engine.hostname)
            self.publish(
                "engine_registered",
                {
                    "engine_id": engine.id,
                    "uuid": uuid,
                    "pid": engine.pid,
                    "hostname": engine.hostname,
                },
            )
        _, frames = self.wire.build(
            "registration_reply",
            {"status": "ok", "id": engine.id, "heartbeat_period": self.heartbeat_period},
            parent=header,
            idents=[ident],
        )
        self._send(self.engine, frames)
        self.balancer.dispatch()

    def _on_task_reply(self, engine: EngineState, client: bytes, frames: list[Any]) -> None:
        # [ident, client, DELIM, signature, header, parent, metadata, content, buffers...]
        parent = unpack(frames[5])
        metadata = unpack(frames[6])
        # the engine copies the reply's status into its metadata: the content (an error's
        # name and traceback) only needs decoding when the task did not succeed
        content = {"status": "ok"} if metadata.get("status") == "ok" else unpack(frames[7])
        msg_id = parent.get("msg_id")
        rec = self.records.get(msg_id) if isinstance(msg_id, str) else None
        if msg_id in engine.outstanding:
            del engine.outstanding[msg_id]
            engine.busy_since = time.monotonic() if engine.outstanding else None
        status = content.get("status", "ok")
        if status == "ok":
            engine.completed += 1
        elif status == "error":
            engine.failed += 1
        if rec is not None and not rec.finished:
            if rec.balanced and status == "error" and self._retry(rec, engine, content):
                return
            rec.status = status if status in FINISHED else ERROR
            rec.started = metadata.get("started")
            rec.completed = metadata.get("completed")
            rec.reply = frames[2:]
            rec.request = None
            self.segments.release_request(rec)
            nbytes = frames_size(frames[8:]) + self.segments.note_result(rec, metadata)
            self.counts[rec.status] += 1
            reply = frames[2:]
            for receiver in (client, *rec.watchers):
                self._answer(receiver, self.segments.reply_for(client_of(receiver), rec, reply))
            # after sending: culling must know who has yet to map the result's segments
            self.records.account(rec, nbytes)
        else:  # a late reply (its task failed meanwhile) or one without a record
            reply = self.segments.late_reply(frames[2:], metadata)
            for receiver in (client, *(rec.watchers if rec is not None else ())):
                self._answer(receiver, reply)
        if rec is not None:
            self.balancer.task_finished(rec)
        else:
            self.balancer.dispatch()

    def _retry(self, rec: TaskRecord, engine: EngineState, content: dict[str, Any]) -> bool:
        """Resubmit a failed balanced task when it allows retries or its dependency was unmet."""
        if content.get("ename") == "UnmetDependency":
            self.balancer.resubmit(rec, engine.id, must_avoid=True)
            return True
        if rec.retries > 0:
            rec.retries -= 1
            log.info(
                "task %s failed on engine %d; retrying (%d left)",
                rec.msg_id,
                engine.id,
                rec.retries,
            )
            self.balancer.resubmit(rec, engine.id, must_avoid=False)
            return True
        return False

    def _fail_task(self, rec: TaskRecord, ename: str, evalue: str, status: str = ERROR) -> None:
        """Finish a task with an error the cluster produced (dead engine, abort, timeout...)."""
        if rec.finished:
            return
        parent: dict[str, Any] = {"msg_id": rec.msg_id, "msg_type": rec.msg_type}
        if rec.request is not None:
            try:
                parent = unpack(rec.request[2])
            except ValueError:
                pass
        now = utcnow_iso()
        method = "apply" if rec.msg_type == "apply_request" else "execute"
        content = {
            "status": status,
            "ename": ename,
            "evalue": evalue,
            "traceback": [f"{ename}: {evalue}"],
            "engine_info": {"engine_id": rec.engine_id, "method": method},
            "origin": "cluster",
        }
        metadata = {
            "engine_id": rec.engine_id,
            "status": status,
            "started": rec.started,
            "completed": now,
            "outputs": len(rec.outputs),
        }
        _, frames = self.wire.build(
            REPLY_TYPES.get(rec.msg_type, "apply_reply"), content, parent=parent, metadata=metadata
        )
        rec.status = status
        rec.completed = now
        rec.reply = frames
        rec.request = None
        self.segments.release_request(rec)
        self.counts[status] += 1
        for client in (rec.reply_to, *rec.watchers):
            self._answer(client, frames)
        self.balancer.task_finished(rec)

    def _on_iopub(self, frames: list[Any]) -> None:
        if len(frames) < 7 or as_bytes(frames[1]) != DELIM:
            raise InvalidMessage("expected [topic, <IDS|MSG>, ...] on the iopub port")
        if not self.wire.verify(frames, 2):
            raise InvalidMessage("missing or invalid HMAC signature")
        header = unpack(frames[3])
        if header.get("msg_type") == "status":
            return  # busy/idle: outputs are counted in each reply's metadata instead
        parent = unpack(frames[4])
        msg_id = parent.get("msg_id")
        rec = self.records.get(msg_id) if isinstance(msg_id, str) else None
        topic = as_bytes(frames[0])
        if rec is not None:
            if rec.outputs:
                rec.outputs.append(frames[1:])  # type: ignore[union-attr]
            else:
                rec.outputs = [frames[1:]]
            self.records.account(rec, frames_size(frames[2:]))
            prefix = rec.client
        else:
            prefix = EVERYONE
        send_frames(self.notify, [topic_for(prefix, topic), *frames[1:]])
        if rec is not None:
            for watcher in rec.watchers:
                send_frames(self.notify, [topic_for(watcher, topic), *frames[1:]])

    # -- liveness ---------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        now = time.monotonic()
        for engine in list(self.engines):
            if now - engine.last_pong > self.heartbeat_timeout:
                self._engine_lost(
                    engine, f"it did not answer heartbeats for {now - engine.last_pong:.1f} s"
                )
            elif (
                not self._send(self.engine, [engine.heartbeat, HEARTBEAT_PING]) and engine.answered
            ):
                self._engine_lost(engine, "its connection closed (the process died)")

    def _watch_processes(self) -> None:
        if self.launcher is None:
            return
        for local, code in self.launcher.reap():
            if local.engine_id is not None and local.engine_id in self.engines.by_id:
                self._engine_lost(
                    self.engines.by_id[local.engine_id],
                    f"its process (pid {local.pid}) exited with code {code}",
                )
            elif local.engine_id is None and local.stop_requested is None:
                log.error(
                    "engine process %d (pid %d) exited with code %d before registering; see %s",
                    local.seq,
                    local.pid,
                    code,
                    local.log_path,
                )
        self.launcher.kill_overdue(self.shutdown_grace)
        if self._stopping_since is not None:
            self._check_shutdown_done()

    def _engine_lost(self, engine: EngineState, reason: str) -> None:
        if engine.id not in self.engines.by_id:
            return
        log.warning("engine %d lost: %s", engine.id, reason)
        self.engines.unregister(engine, reason)
        for msg_id in list(engine.outstanding):
            rec = self.records.get(msg_id)
            if rec is None or rec.finished:
                continue
            if rec.balanced and rec.retries > 0:
                rec.retries -= 1
                rec.status = "pending"
                rec.dispatched = None
                self.balancer.resubmit(rec, engine.id, must_avoid=True)
                continue
            self._fail_task(
                rec, "EngineError", f"engine {engine.id} died while it held task {msg_id}: {reason}"
            )
        engine.outstanding.clear()
        if self.launcher is not None:
            local = self.launcher.by_engine_id(engine.id)
            if local is not None:
                self.launcher.signal(local, signal.SIGKILL)
        self.publish("engine_unregistered", {"engine_id": engine.id, "reason": reason})
        self.balancer.dispatch()

    # -- engines on this host -------------------------------------------------------------------------
    def start_engines(self, n: int) -> list[int]:
        if self.launcher is None:
            raise RuntimeError("this controller does not start engines")
        self.requested_engines += n
        return [e.seq for e in self.launcher.start(n)]

    def stop_engine(self, engine: EngineState) -> None:
        """Ask an engine to exit; a local one is killed if it has not after the grace period."""
        _, frames = self.wire.build(
            "shutdown_request", {"restart": False}, idents=[engine.control, CONTROLLER_IDENTITY]
        )
        self._send(self.engine, frames)
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
                self._fail_task(
                    rec,
                    "EngineError",
                    f"engine {engine.id} was stopped while it held task {msg_id}",
                )
        engine.outstanding.clear()
        self.publish("engine_unregistered", {"engine_id": engine.id, "reason": "stopped"})

    # -- shutdown ---------------------------------------------------------------------------------
    def begin_shutdown(
        self, client: bytes | None = None, parent: dict[str, Any] | None = None
    ) -> None:
        if client is not None and parent is not None:
            self._shutdown_waiters.append((client, parent))
        if self._stopping_since is not None:
            return
        log.info("shutting down: stopping %d engine(s)", len(self.engines))
        self._stopping_since = time.monotonic()
        self.publish("shutdown_notice", {"reason": "shutdown requested"})
        for engine in list(self.engines):
            self.stop_engine(engine)
        for rec in self.balancer.abort(
            {r.msg_id for r in self.balancer.queue}
            | {r.msg_id for lst in self.balancer.waiting.values() for r in lst}
        ):
            self._fail_task(rec, "TaskAborted", "the cluster is shutting down", status=ABORTED)
        if self.launcher is not None:
            for local in self.launcher.engines.values():
                if local.stop_requested is None:
                    local.stop_requested = time.monotonic()
                    self.launcher.signal(local, signal.SIGTERM)
        self._check_shutdown_done()

    def _check_shutdown_done(self) -> None:
        assert self._stopping_since is not None
        remaining = len(self.launcher.engines) if self.launcher else 0
        overdue = time.monotonic() - self._stopping_since > self.shutdown_grace + 2
        if remaining and not overdue:
            return
        for client, parent in self._shutdown_waiters:
            self.reply(client, "shutdown_reply", {"status": "ok"}, parent)
        self._running = False

    def _close(self) -> None:
        if self.launcher is not None:
            for local in list(self.launcher.engines.values()):
                self.launcher.signal(local, signal.SIGKILL)
                try:
                    local.popen.wait(5)
                except Exception:
                    pass
        for sock in (self.client, self.notify, self.engine, self.iopub):
            sock.close(linger=500)
        self.context.term()

    def handle_signal(self, signum: int, frame: Any) -> None:
        log.info("received signal %d", signum)
        self.call_later(0, self.begin_shutdown)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.handle_signal)

    # -- facts ------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The cluster's state, for ``ipar list``, clients and the JupyterLab panel."""
        running = sum(1 for e in self.engines if e.outstanding)
        pending = self.balancer.pending
        in_flight = sum(len(e.outstanding) for e in self.engines)
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
            "launch_failures": self.launcher.failures[-10:] if self.launcher else [],
            "unregistered": self.engines.unregistered[-20:],
            "tasks": {
                "pending": pending,
                "running": running,
                "queued_on_engines": in_flight - running,
                "done": self.counts["ok"],
                "failed": self.counts["error"],
                "aborted": self.counts["aborted"],
                "submitted": self.counts["submitted"],
            },
            "records": len(self.records),
            "record_bytes": self.records.nbytes,
            "dropped_messages": self._dropped,
            "stopping": self._stopping_since is not None,
        }
