"""The controller's message routing: client requests in, tasks to engines, replies and outputs
back to the clients waiting for them.

This is the per-message path of the whole cluster, and it is measured: every task crosses
:meth:`Router.on_client` once and :meth:`Router.on_engine` once, and each of its outputs
crosses :meth:`Router.on_iopub`.  Keep calls and attribute chains off it; what a handler
uses is an attribute of the router itself.

Here a request is verified, recorded and handed to its engine (directly, or through the load
balancer); a reply is recorded and answered to the task's client and every watcher; a task
the cluster cannot finish (a dead engine, an abort, a timeout, an impossible dependency) is
failed with an error reply written here, or retried when it allows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..protocol.routing import (
    CONTROL_PREFIX,
    CONTROLLER,
    CONTROLLER_IDENTITY,
    CONTROLLER_TOPIC,
    EVERYONE,
    SENDER_SUFFIX,
    SHELL_PREFIX,
    BroadcastRoute,
    client_of,
    parse_route,
    topic_for,
)
from ..protocol.wire import (
    DELIM,
    Frame,
    InvalidMessage,
    Wire,
    as_bytes,
    send_frames,
    unpack,
    utcnow_iso,
)
from .broadcast import Broadcaster
from .engines import EngineRegistry, EngineState
from .records import ERROR, FINISHED, RUNNING, RecordStore, TaskRecord, frames_size
from .scheduler import LoadBalancer
from .segments import SegmentKeeper

log = logging.getLogger("ipar_widgets.controller")

TASK_TYPES = frozenset({"apply_request", "execute_request"})
#: Jupyter comm messages from a notebook to an engine's widgets: passed to its shell, no record
COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
REPLY_TYPES = {"apply_request": "apply_reply", "execute_request": "execute_reply"}

#: a registration request from an engine's shell socket, or a rejoin from its control socket:
#: (identity, header, content, buffers)
RegisterEngine = Callable[[bytes, dict[str, Any], dict[str, Any], list[Frame]], None]
#: the answer to a rejoined engine's sync marker: (engine, the marker's msg_id)
EngineSynced = Callable[[EngineState, str], None]
#: an engine that can no longer be reached, and why
EngineLost = Callable[[EngineState, str], None]
#: a request to the controller itself: (client, header, content)
AnswerQuery = Callable[[bytes, dict[str, Any], dict[str, Any]], None]


class Router:
    """Routes tasks, replies and outputs between the client, engine and notify sockets."""

    def __init__(
        self,
        wire: Wire,
        engines: EngineRegistry,
        records: RecordStore,
        segments: SegmentKeeper,
        *,
        client: zmq.Socket[bytes],
        engine: zmq.Socket[bytes],
        notify: zmq.Socket[bytes],
        note: Callable[[TaskRecord], None],
    ) -> None:
        self.wire = wire
        self.engines = engines
        self.records = records
        self.segments = segments
        self.client = client
        self.engine = engine
        self.notify = notify
        #: the task store's record of a change (a deque append at most: see taskstore.py)
        self.note = note
        #: tasks by outcome since the controller started (``ipar list``, the panel)
        self.counts = {"submitted": 0, "ok": 0, "error": 0, "aborted": 0}
        #: a restored controller records replies to tasks it has no record of (restore.py)
        self.adopt_unrecorded = False
        #: why tasks for engines are held in the controller for now ('' when they are not):
        #: the task database is behind (see Controller.check_store)
        self.paused = ""
        #: a restored controller's engines may still be rejoining (restore.py): a direct task
        #: for an engine id it does not know yet waits for that engine, or for the end of the
        #: rejoin; True when the call was taken (to run then), False when no rejoin is on
        self.hold_for_engine: Callable[[int, Callable[[], None]], bool] = lambda _id, _call: False
        #: fans broadcast requests out, and answers gathered ones once
        self.broadcaster = Broadcaster(self)
        # Set by connect(): the balancer, liveness and lifecycle all need the router first.
        self.balancer: LoadBalancer
        self.register_engine: RegisterEngine
        self.engine_synced: EngineSynced
        self.engine_lost: EngineLost
        self.answer_query: AnswerQuery

    def connect(
        self,
        balancer: LoadBalancer,
        *,
        register_engine: RegisterEngine,
        engine_synced: EngineSynced,
        engine_lost: EngineLost,
        answer_query: AnswerQuery,
    ) -> None:
        """Name who gets what the router does not handle itself: balanced tasks, engines'
        registrations, engines found unreachable, and requests to the controller."""
        self.balancer = balancer
        self.register_engine = register_engine
        self.engine_synced = engine_synced
        self.engine_lost = engine_lost
        self.answer_query = answer_query

    # -- sending ----------------------------------------------------------------------------------
    def send(self, sock: zmq.Socket[bytes], frames: list[Frame]) -> bool:
        """Send on a ROUTER socket; False when the peer ``frames[0]`` names is not connected."""
        try:
            send_frames(sock, frames)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return False
            raise

    def send_to_engine(self, frames: list[Frame]) -> bool:
        """Send on the engine port; ``frames[0]`` is the engine socket's identity."""
        return self.send(self.engine, frames)

    def send_held(self, engine: EngineState) -> None:
        """Send the tasks held for ``engine`` (see :meth:`send_task`), in their order."""
        held, engine.held = engine.held, []
        for msg_id in held:
            rec = self.records.get(msg_id)
            if rec is not None and not rec.finished and rec.request is not None:
                request = self.segments.request_for(rec, engine.shm)
                self.send(self.engine, [engine.shell, rec.reply_to, *request])

    def send_control(self, engine: EngineState, msg_type: str, content: dict[str, Any]) -> bool:
        """Send a control message of the controller's own (abort, shutdown) to an engine's
        control socket; False when that socket is not connected.  The engine answers it
        to ``CONTROLLER_IDENTITY``, which no client has: the answer is dropped."""
        _, frames = self.wire.build(msg_type, content, idents=[engine.control, CONTROLLER_IDENTITY])
        return self.send(self.engine, frames)

    def answer(self, receiver: bytes, frames: list[Frame]) -> None:
        """Send a task's reply; one for a waiting thread whose socket is gone (it stopped
        waiting, and its client closed that socket) goes to the client's own socket."""
        if not self.send(self.client, [receiver, *frames]) and receiver != client_of(receiver):
            self.send(self.client, [client_of(receiver), *frames])

    def reply(
        self,
        client: bytes,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any],
        buffers: list[Frame] | None = None,
    ) -> None:
        """Answer a client's request with a message the controller signs."""
        _, frames = self.wire.build(
            msg_type, content, parent=parent, idents=[client], buffers=buffers or ()
        )
        self.send(self.client, frames)

    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        """Tell every client about the cluster (engines joining/leaving, shutdown)."""
        _, frames = self.wire.build(msg_type, content, idents=[CONTROLLER_TOPIC])
        self.notify.send_multipart(frames)

    def send_task(self, rec: TaskRecord, engine: EngineState) -> bool:
        """Hand a task to an engine's shell socket; False when that socket is not connected."""
        if engine.rejoining or self.paused:
            # restored and not connected yet: sent once it rejoins (restore.py); or the task
            # database is behind: sent once it caught up (Controller.check_store)
            engine.held.append(rec.msg_id)
        else:
            request = self.segments.request_for(rec, engine.shm)
            # the engine sends its reply back with this identity in front: the reply's receiver
            if not self.send(self.engine, [engine.shell, rec.reply_to, *request]):
                return False
        now = time.monotonic()
        rec.engine_id = engine.id
        rec.status = RUNNING
        rec.dispatched = now
        if not engine.outstanding:
            engine.busy_since = now
        engine.outstanding[rec.msg_id] = None
        self.note(rec)
        return True

    # -- clients ----------------------------------------------------------------------------------
    def on_client(self, frames: list[Frame]) -> None:
        """A message on the client port: a task, a control message or a query."""
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
            self.answer_query(client, header, content)
        elif route.kind == "control":
            assert route.engine_id is not None
            self._forward_control(client, route.engine_id, header, frames[delim:])
        elif route.kind == "broadcast":
            assert isinstance(route, BroadcastRoute)
            self.broadcaster.submit(client, route, header, frames[delim:], reply_to)
        else:
            self._submit(client, route.engine_id, header, frames[delim:], reply_to)

    def _submit(
        self,
        client: bytes,
        engine_id: int | None,
        header: dict[str, Any],
        signed: list[Frame],
        reply_to: bytes,
    ) -> None:
        """A task for engine ``engine_id``, or (None) for the load balancer."""
        msg_type = header["msg_type"]
        if msg_type in COMM_TYPES and engine_id is not None:
            self._forward_comm(client, engine_id, signed)
            return
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
        self.note(rec)
        self.counts["submitted"] += 1
        if engine_id is None:
            rec.balanced = True
            self.balancer.submit(rec, unpack(signed[4]))
            return
        self.dispatch_direct(rec, engine_id)

    def dispatch_direct(self, rec: TaskRecord, engine_id: int) -> None:
        """Send a recorded task to engine ``engine_id``, or fail it when there is none (what
        :meth:`_submit` does too, and the parts of a broadcast).  An engine id not registered
        is an error, unless a restored controller still waits for engines to rejoin."""
        engine = self.engines.by_id.get(engine_id)
        if engine is None:
            if not self.hold_for_engine(engine_id, lambda: self.dispatch_direct(rec, engine_id)):
                self.fail_task(rec, "EngineError", self.unknown_engine(engine_id))
        elif not self.send_task(rec, engine):
            self._unreachable(rec, engine)

    def _unreachable(self, rec: TaskRecord, engine: EngineState) -> None:
        """The engine's shell socket is gone: the engine is lost, and so is the task that
        could not be handed to it (it was never among the engine's outstanding tasks)."""
        self.engine_lost(engine, "its shell socket is not connected")
        if not rec.finished:
            self.fail_task(
                rec,
                "EngineError",
                f"engine {engine.id} could not be reached for task {rec.msg_id}",
            )

    def _forward_comm(self, client: bytes, engine_id: int, signed: list[Frame]) -> None:
        """A notebook's answer to an engine's widget (a click...): to the engine's shell, in
        order with its tasks.  Nobody waits for a reply; for a gone engine it is dropped."""
        engine = self.engines.by_id.get(engine_id)
        if engine is None or not self.send(self.engine, [engine.shell, client, *signed]):
            log.info("dropped a comm message for engine %s: %s", engine_id, "not registered")

    def submit_built(
        self, client: bytes, engine_id: int | None, header: dict[str, Any], signed: list[Frame]
    ) -> None:
        """Submit a request the controller built itself (a resubmitted task) as if ``client``
        had sent it: for engine ``engine_id``, or (None) for the load balancer.  Its reply
        and outputs go to that client."""
        self._submit(client, engine_id, header, signed, client)

    def unknown_engine(self, engine_id: int) -> str:
        """The error text for a request naming an engine id that is not registered."""
        ids = ", ".join(map(str, self.engines.ids)) or "none"
        return f"engine {engine_id} is not registered (registered engines: {ids})"

    def _forward_control(
        self, client: bytes, engine_id: int, header: dict[str, Any], signed: list[Frame]
    ) -> None:
        engine = self.engines.by_id.get(engine_id)
        if engine is None or not self.send(self.engine, [engine.control, client, *signed]):
            reply_type = header["msg_type"].replace("_request", "_reply")
            # a listed engine whose socket is gone: its process ended, the heartbeat has not
            # said so yet
            reason = (
                self.unknown_engine(engine_id)
                if engine is None
                else f"engine {engine_id}'s control connection is closed"
            )
            self.reply(
                client,
                reply_type,
                {
                    "status": "error",
                    "ename": "EngineError",
                    "evalue": reason,
                    "engine_info": {"engine_id": engine_id},
                },
                header,
            )

    # -- engines ----------------------------------------------------------------------------------
    def on_engine(self, frames: list[Frame]) -> None:
        """A message on the engine port: a heartbeat, a registration, a task's or a control
        message's reply."""
        ident = as_bytes(frames[0])
        engine = self.engines.by_ident.get(ident)
        if engine is not None and ident == engine.heartbeat:
            # what liveness reads: the engine answered a ping (kept here, it is the hot case)
            engine.last_pong = time.monotonic()
            engine.answered = True
            return
        # [ident, (client,) DELIM, signature, header, parent, metadata, content, buffers...]
        delim = 1 if as_bytes(frames[1]) == DELIM else 2
        if len(frames) < delim + 6 or as_bytes(frames[delim]) != DELIM:
            raise InvalidMessage("expected [identity, (client,) <IDS|MSG>, ...] from an engine")
        if not self.wire.verify(frames, delim + 1):
            raise InvalidMessage("missing or invalid HMAC signature")
        if delim == 1:  # from the engine itself: a registration, a rejoin, a usage report
            header = unpack(frames[delim + 2])
            msg_type = header.get("msg_type")
            if msg_type == "engine_usage":
                # its CPU and memory (engine/usage.py); one from an engine that left is dropped
                if engine is not None and ident == engine.usage:
                    engine.note_sample(unpack(frames[delim + 5]))
                return
            if msg_type == "registration_request" and (
                ident.startswith(SHELL_PREFIX) or ident.startswith(CONTROL_PREFIX)
            ):
                self.register_engine(ident, header, unpack(frames[delim + 5]), frames[delim + 6 :])
                return
        if engine is None:
            raise InvalidMessage(f"message from an unregistered engine identity {ident[:40]!r}")
        if delim != 2:
            raise InvalidMessage("an engine reply without the client's identity")
        client = as_bytes(frames[1])
        if ident == engine.shell:
            if client == CONTROLLER_IDENTITY:  # the answer to a rejoin's sync marker
                self.engine_synced(engine, str(unpack(frames[5]).get("msg_id", "")))
                return
            self._on_task_reply(engine, client, frames)
        else:  # control replies go straight back to whoever asked
            self.send(self.client, [client, *frames[2:]])

    def _on_task_reply(self, engine: EngineState, client: bytes, frames: list[Frame]) -> None:
        # [ident, client, DELIM, signature, header, parent, metadata, content, buffers...]
        parent = unpack(frames[5])
        metadata = unpack(frames[6])
        # the engine copies the reply's status into its metadata: the content (an error's
        # name and traceback) only needs decoding when the task did not succeed
        content = {"status": "ok"} if metadata.get("status") == "ok" else unpack(frames[7])
        msg_id = parent.get("msg_id")
        if isinstance(msg_id, str):
            rec = self.records.get(msg_id)
            if rec is None and self.adopt_unrecorded:
                rec = self._adopt(msg_id, client, parent, engine)
            if msg_id in engine.outstanding:
                del engine.outstanding[msg_id]
                engine.busy_since = time.monotonic() if engine.outstanding else None
        else:  # not a reply to any task of ours (and maybe not even hashable)
            rec = None
        status = content.get("status", "ok")
        if status == "ok":
            engine.completed += 1
        elif status == "error":
            engine.failed += 1
        finished = False
        if rec is not None and not rec.finished:
            if rec.balanced and status == "error" and self._retry(rec, engine, content):
                return
            finished = True
            rec.status = status if status in FINISHED else ERROR
            rec.engine_id = engine.id  # also for a reply a restored controller had not sent
            rec.started = metadata.get("started")
            rec.completed = metadata.get("completed")
            rec.received = time.time()
            rec.reply = frames[2:]
            self.segments.release_request(rec)
            nbytes = frames_size(frames[8:]) + self.segments.note_result(rec, metadata)
            self.counts[rec.status] += 1
            reply = frames[2:]
            gather = rec.gather
            # a gathered broadcast's part answers its client with the other parts, at the end
            for receiver in (client, *rec.watchers) if gather is None else rec.watchers:
                self.answer(receiver, self.segments.reply_for(client_of(receiver), rec, reply))
            if gather is not None:
                self.broadcaster.part_finished(rec, metadata, content, frames[8:])
            # after sending: culling must know who has yet to map the result's segments
            # after sending: culling must know who has yet to map the result's segments.  The
            # record keeps the request (db_query, resubmit): its content and buffers count too.
            if rec.request is not None:
                nbytes += frames_size(rec.request[5:])
            self.records.account(rec, nbytes)
        else:  # a late reply (its task failed meanwhile) or one without a record
            reply = self.segments.late_reply(frames[2:], metadata)
            if rec is None:
                receivers: tuple[bytes, ...] | list[bytes] = (client,)
            elif rec.gather is None:
                receivers = (client, *rec.watchers)
            else:  # the gathered answer already told the client
                receivers = rec.watchers
            for receiver in receivers:
                self.answer(receiver, reply)
        if rec is not None:
            self.balancer.task_finished(rec)
            if finished:  # last: a store without a database drops the record here
                self.note(rec)
        else:
            self.balancer.dispatch()

    def _adopt(
        self, msg_id: str, client: bytes, parent: dict[str, Any], engine: EngineState
    ) -> TaskRecord | None:
        """A restored controller's record for a reply to a task it never heard of (the dead
        controller had not saved it yet): the task ran, so its result is kept and found by
        the client catching up, instead of the task counting as lost."""
        if msg_id in self.records or self.records.lookup(msg_id) is not None:
            return None  # finished and saved: a reply sent again
        msg_type = str(parent.get("msg_type", "apply_request"))
        rec = TaskRecord(msg_id, client_of(client), msg_type, str(parent.get("date", "")))
        rec.reply_to = client
        rec.engine_id = engine.id
        rec.status = RUNNING
        self.records.add(rec)
        log.info(
            "recorded task %s, which the dead controller had not saved, from its reply", msg_id
        )
        return rec

    def _retry(self, rec: TaskRecord, engine: EngineState, content: dict[str, Any]) -> bool:
        """Resubmit a failed balanced task when it allows retries or its dependency was unmet."""
        if content.get("ename") == "UnmetDependency":
            self.balancer.resubmit(rec, engine.id)
            return True
        if rec.retries > 0 and not self.balancer.can_retry_elsewhere(rec, engine.id):
            log.info(
                "task %s failed on engine %d and on every other engine it may use; not retried",
                rec.msg_id,
                engine.id,
            )
        elif rec.retries > 0:
            rec.retries -= 1
            log.info(
                "task %s failed on engine %d; retrying (%d left)",
                rec.msg_id,
                engine.id,
                rec.retries,
            )
            self.balancer.resubmit(rec, engine.id)
            return True
        return False

    def fail_task(
        self,
        rec: TaskRecord,
        ename: str,
        evalue: str,
        status: str = ERROR,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Finish a task with an error the cluster produced (dead engine, abort, timeout...);
        ``extra`` goes into the error's content (a dead engine's ``death`` record)."""
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
        if extra:
            content.update(extra)
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
        rec.received = time.time()
        rec.reply = frames
        self.segments.release_request(rec)
        self.counts[status] += 1
        gather = rec.gather
        for client in (rec.reply_to, *rec.watchers) if gather is None else rec.watchers:
            self.answer(client, frames)
        if gather is not None:
            self.broadcaster.part_finished(rec, metadata, content, [])
        if rec.request is not None:  # kept with the record, as for a task that ran
            self.records.account(rec, frames_size(rec.request[5:]))
        self.balancer.task_finished(rec)
        self.note(rec)

    # -- outputs ----------------------------------------------------------------------------------
    def on_iopub(self, frames: list[Frame]) -> None:
        """An engine's output: recorded with its task and relayed to the task's client and
        watchers (or to everyone, when no record names it)."""
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
                rec.outputs.append(frames[1:])
            else:
                rec.outputs = [frames[1:]]
            self.records.account(rec, frames_size(frames[2:]))
            if rec.status in FINISHED:  # an output after the reply: saved again (rare)
                self.note(rec)
            prefix = rec.client
        else:
            prefix = EVERYONE
        send_frames(self.notify, [topic_for(prefix, topic), *frames[1:]])
        if rec is not None:
            for watcher in rec.watchers:
                send_frames(self.notify, [topic_for(watcher, topic), *frames[1:]])
