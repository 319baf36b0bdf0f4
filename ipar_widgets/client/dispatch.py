"""What the client does with each message from the controller: task replies become results
(or errors) in the ledger, answers settle the requests that wait for them, outputs go into
their task's metadata and to listeners, and cluster notices keep the engine table current.

It runs in the client's I/O thread, and in a waiting thread for the replies that come to its
own socket (see ``submission.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..error import CompositeError, NoSuchTask, RemoteError, unwrap_exception
from ..protocol import serialize
from ..protocol.routing import (
    CONTROLLER,
    CONTROLLER_TOPIC,
    EVERYONE,
    REPLAY_TOPIC,
    engine_id_of_topic,
)
from ..protocol.sharedmem import SharedArea, SharedMemoryError
from ..protocol.wire import Frame, InvalidMessage, Message, Wire, as_bytes, parse_date, utcnow
from .deaths import DeathBook
from .executereply import ExecuteReply
from .ledger import TaskLedger
from .metadata import Metadata
from .targets import EngineTable
from .transfer import ReplySizes

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger("ipar_widgets.client")

__all__ = ["Inbound", "OutputListener"]

#: ``listener(engine_id, msg_id, msg_type, content)``, for every output and cluster notice
OutputListener = Callable[[int | None, str | None, str, dict[str, Any]], None]


class Inbound:
    """Handles the messages a client receives; see the module docstring."""

    transport: Transport  # set by the Client once its transport exists (it calls us)

    def __init__(
        self, wire: Wire, ledger: TaskLedger, engines: EngineTable, shared: SharedArea | None
    ) -> None:
        self.wire = wire
        self.ledger = ledger
        self.engines = engines
        self.shared = shared
        #: msg_id of a request -> the future its answer settles
        self.queries: dict[str, Future[Message]] = {}
        self.output_listeners: list[OutputListener] = []
        #: how the engines that died died (the notices' records): Client.engine_deaths
        self.deaths = DeathBook()
        #: sizes of the latest large replies: what a pull's progress display counts
        self.reply_sizes = ReplySizes()

    # -- the reply socket ---------------------------------------------------------------------------
    def on_reply(self, frames: list[Frame]) -> str | None:
        """Handle one message on a reply socket; return the msg_id a task reply answers."""
        try:
            msg = self.wire.decode(frames)
        except InvalidMessage as exc:
            log.warning("dropped a message from the controller: %s", exc)
            return None
        if msg.msg_type in ("apply_reply", "execute_reply"):
            return self._on_task_reply(msg)
        if msg.msg_type == "broadcast_reply":
            return self._on_broadcast_reply(msg)
        future = self.queries.pop(msg.parent_header.get("msg_id", ""), None)
        if future is not None and not future.done():
            future.set_result(msg)
        return None

    def _on_task_reply(self, msg: Message) -> str | None:
        msg_id = msg.parent_header.get("msg_id")
        if not isinstance(msg_id, str):
            return None
        md = self.ledger.metadata_for(msg_id)
        if md["received"] is not None and msg_id not in self.ledger.outstanding:
            return None  # a reply sent again after a reconnection: it was handled already
        rmd = msg.metadata
        content = msg.content
        status = content.get("status", "ok")
        engine_id = rmd.get("engine_id")
        # one dict.update for the known keys: Metadata's checked __setitem__ costs a Python
        # call per key, on the I/O thread's path of every result
        dict.update(
            md,
            engine_id=engine_id,
            engine_uuid=self.engines.uuid_of(engine_id) or md["engine_uuid"],
            status=status,
            started=parse_date(rmd.get("started")),
            completed=parse_date(rmd.get("completed")),
            received=utcnow(),
        )
        if status == "ok":
            if msg.msg_type == "execute_reply":
                result: Any = ExecuteReply(msg_id, content, md)
            else:
                try:
                    buffers = self._result_buffers(msg_id, msg)
                    self.reply_sizes.note(msg_id, buffers)
                    result = serialize.loads(buffers)
                except Exception as exc:
                    result = RemoteError(
                        type(exc).__name__,
                        f"the result could not be unpickled on the client: {exc}",
                        "",
                        {"engine_id": engine_id, "method": "apply"},
                    )
        else:
            result = unwrap_exception(content)
            if "death" in content:  # its engine died: the record may beat the notice here
                self.deaths.died(content)
            if msg.msg_type == "execute_reply" and md["error"] is None:
                md["error"] = content
        if self.ledger.hold_for_outputs(msg_id, result, int(rmd.get("outputs") or 0)):
            if threading.current_thread() is not self.transport.thread:
                self.transport.wake()  # so the I/O thread keeps the grace's deadline
            return msg_id
        self.ledger.complete(msg_id, result)
        return msg_id

    def _on_broadcast_reply(self, msg: Message) -> str | None:
        """The one answer of a coalescing broadcast: every engine's result, in the order of
        the engines it was sent to (see ``controller/broadcast.py``)."""
        msg_id = msg.parent_header.get("msg_id")
        if not isinstance(msg_id, str):
            return None
        rmd = msg.metadata
        parts = rmd.get("parts") or []
        errors = msg.content.get("parts") or [None] * len(parts)
        mapped = [str(p["msg_id"]) for p in parts if p.get("shm")]
        try:
            buffers = self._result_buffers(msg_id, msg, mapped)
        except Exception as exc:  # a segment that cannot be mapped fails every part
            buffers = []
            errors = [{"ename": type(exc).__name__, "evalue": str(exc), "engine_info": {}}] * len(
                parts
            )
        values: list[Any] = []
        pos = 0
        for part, error in zip(parts, errors):
            n = int(part.get("buffers") or 0)
            if part.get("status") == "ok" and error is None:
                try:
                    values.append(serialize.loads(buffers[pos : pos + n]))
                except Exception as exc:
                    values.append(
                        RemoteError(
                            type(exc).__name__,
                            f"the result could not be unpickled on the client: {exc}",
                            "",
                            {"engine_id": part.get("engine_id"), "method": "apply"},
                        )
                    )
            else:
                values.append(unwrap_exception(error or {"ename": "EngineError"}))
            pos += n
        engine_ids = [p.get("engine_id") for p in parts]
        md = self.ledger.metadata_for(msg_id)
        dict.update(
            md,
            engine_id=engine_ids,
            engine_uuid=[self.engines.uuid_of(e) for e in engine_ids],
            status=rmd.get("status", "ok"),
            started=parse_date(rmd.get("started")),
            completed=parse_date(rmd.get("completed")),
            received=utcnow(),
        )
        result = _gathered(values)
        if self.ledger.hold_for_outputs(msg_id, result, int(rmd.get("outputs") or 0)):
            if threading.current_thread() is not self.transport.thread:
                self.transport.wake()
            return msg_id
        self.ledger.complete(msg_id, result)
        return msg_id

    def _result_buffers(
        self, msg_id: str, msg: Message, mapped: list[str] | None = None
    ) -> list[Frame]:
        """A reply's buffers, with those the engine put in shared memory mapped in place.
        The controller is then told the results of ``mapped`` (default: ``msg_id``) are."""
        segments = msg.metadata.get("shm")
        if not segments:
            return msg.buffers
        try:
            if self.shared is None:
                raise SharedMemoryError(
                    f"the result is in shared memory segments {segments!r}, but this client "
                    "does not share /dev/shm with the controller"
                )
            return self.shared.attach(msg.buffers, segments)
        finally:
            # the controller keeps the files until every receiver has mapped them
            for done in [msg_id] if mapped is None else mapped:
                _, frames = self.wire.build(
                    "segments_mapped", {"msg_id": done}, idents=[CONTROLLER]
                )
                self.transport.send(frames)

    # -- the notify socket --------------------------------------------------------------------------
    def on_notify(self, frames: list[Frame]) -> None:
        """An output of a task, or a notice about the cluster."""
        topic = as_bytes(frames[0]) if len(frames) else b""
        try:
            msg = self.wire.decode(frames)
        except InvalidMessage as exc:
            log.warning("dropped a notice from the controller: %s", exc)
            return
        if topic == CONTROLLER_TOPIC:
            self._on_cluster_notice(msg)
            return
        engine_id = engine_id_of_topic(topic)
        msg_id = msg.parent_header.get("msg_id")
        content = msg.content
        msg_type = msg.msg_type
        md = self.ledger.metadata.get(msg_id) if isinstance(msg_id, str) else None
        if md is None and self.ledger.part_of and isinstance(msg_id, str):
            # one engine's output of a coalescing broadcast: it belongs to the whole
            msg_id = self.ledger.part_of.get(msg_id, msg_id)
            md = self.ledger.metadata.get(msg_id)
        if md is None and isinstance(msg_id, str) and not topic.startswith(EVERYONE):
            # addressed to this client: a task it sent and has not noted yet (a waiting
            # thread sends first and notes after, and a busy machine may run the whole task
            # in between); the note fills in the same metadata
            md = self.ledger.metadata_for(msg_id)
        if md is not None:
            if md["engine_id"] is None and engine_id is not None:
                md["engine_id"] = engine_id  # a balanced task shows where it runs by its output
            apply_output(md, msg_type, content, msg.buffers)
        self._tell_listeners(engine_id, msg_id, msg_type, content)
        if md is not None and isinstance(msg_id, str):
            self.ledger.output_arrived(msg_id)

    def _on_cluster_notice(self, msg: Message) -> None:
        content = msg.content
        if msg.msg_type == "engine_registered":
            self.engines.registered(
                int(content["engine_id"]),
                str(content.get("uuid", "")),
                str(content.get("engine_set") or ""),
            )
            if isinstance(content.get("replaces"), int):
                self.deaths.replaced(content["replaces"], int(content["engine_id"]))
        elif msg.msg_type == "engine_unregistered":
            self.deaths.died(content)  # before the table: a reader of rc.ids finds it there
            self.engines.unregistered([int(content["engine_id"])])
        elif msg.msg_type == "engine_replacement_failed":
            self.deaths.replacement_failed(int(content["engine_id"]), str(content.get("error")))
        self._tell_listeners(None, None, msg.msg_type, content)

    def _tell_listeners(
        self, engine_id: int | None, msg_id: Any, msg_type: str, content: dict[str, Any]
    ) -> None:
        for listener in list(self.output_listeners):
            try:
                listener(engine_id, msg_id if isinstance(msg_id, str) else None, msg_type, content)
            except Exception:
                log.exception("error in an output listener")

    # -- records fetched from the controller --------------------------------------------------------
    def replay(
        self,
        msg_ids: list[str],
        answer: Message,
        *,
        resuming: bool = False,
        on_unknown: Callable[[str], None] | None = None,
    ) -> None:
        """Handle the controller's records of tasks (a ``result_reply``: each task's reply and
        outputs, as the engines signed them) as if they arrived now; tasks still running
        are outstanding, and their reply will come as usual (the request asked for it).

        ``resuming``: catching up after the connection came back (reconnect.py): outputs
        this client already had are skipped.  ``on_unknown`` is called for a task the
        controller has no record of (without it: NoSuchTask).
        """
        frames = list(answer.buffers)
        records = answer.content["results"]
        pos = 0
        for msg_id in msg_ids:
            entry = records.get(msg_id, {"status": "unknown"})
            if entry["status"] == "unknown":
                if on_unknown is not None:
                    on_unknown(msg_id)
                    continue
                why = entry.get("why") or (
                    "never submitted to this cluster, or purged, or dropped to keep the "
                    "records within record_limit"
                )
                raise NoSuchTask(
                    f"the controller has no record of task {msg_id!r} ({why}); "
                    "rc.hub_history() lists the tasks it has"
                )
            md = self.ledger.metadata_for(msg_id)
            if md["submitted"] is None:
                md["submitted"] = parse_date(entry.get("submitted"))
            messages = []
            for n in entry.get("frames", []):
                messages.append(frames[pos : pos + n])
                pos += n
            if resuming and msg_id not in self.ledger.outstanding:
                continue  # its reply came meanwhile
            self.ledger.outstanding.add(msg_id)
            reply, outputs = (messages[0], messages[1:]) if entry.get("reply") else (None, messages)
            if resuming:
                outputs = outputs[self.ledger.outputs_seen(msg_id) :]
            for output in outputs:
                self.on_notify([REPLAY_TOPIC, *output])
            if reply is None:
                continue
            self.on_reply(list(reply))
            # received: when the controller got the reply, not now (wall_time and the
            # timeline tell of the task, not of when it was looked up)
            received = parse_date(entry.get("received"))
            if received is not None:
                md["received"] = received


def _gathered(values: list[Any]) -> Any:
    """The result of a coalescing broadcast: the list of its engines' values, or, when some
    failed, the error to raise (TaskAborted and the like as they are; remote errors as one
    CompositeError, as a DirectView's result would raise them)."""
    failures = [v for v in values if isinstance(v, BaseException)]
    if not failures:
        return values
    for failure in failures:
        if not isinstance(failure, RemoteError):
            return failure
    flat: list[RemoteError] = []
    for failure in failures:
        assert isinstance(failure, RemoteError)
        flat.extend(failure.elist if isinstance(failure, CompositeError) else [failure])
    return CompositeError("one or more exceptions raised in: apply", flat)


def apply_output(
    md: Metadata, msg_type: str, content: dict[str, Any], buffers: Sequence[Frame] = ()
) -> None:
    """Record one output message of a task in its metadata."""
    if msg_type == "stream":
        name = content.get("name", "stdout")
        if name in ("stdout", "stderr"):
            md[name] = md[name] + content.get("text", "")
    elif msg_type == "display_data":
        md["outputs"].append(content)
    elif msg_type == "update_display_data":
        # replace the display it updates (same display_id), as a notebook would
        display_id = (content.get("transient") or {}).get("display_id")
        for i, shown in enumerate(md["outputs"]):
            if (
                display_id is not None
                and (shown.get("transient") or {}).get("display_id") == display_id
            ):
                md["outputs"][i] = {
                    **shown,
                    "data": content.get("data", {}),
                    "metadata": content.get("metadata", {}),
                }
    elif msg_type == "execute_result":
        md["execute_result"] = content
    elif msg_type == "error":
        md["error"] = content
    elif msg_type == "execute_input":
        md["execute_input"] = content.get("code")
    elif msg_type == "clear_output":
        md["stdout"] = ""
        md["stderr"] = ""
        md["outputs"] = []
    elif msg_type == "data_message":
        # ``publish_data`` on the engine: the dict is pickled in the buffers
        try:
            data = serialize.loads(buffers)
        except Exception as exc:
            log.warning("dropped published data of task %s: %s", md["msg_id"], exc)
            return
        if isinstance(data, dict):
            md["data"].update(data)
