"""Broadcast requests: one message from a client, one task for each of its engines (routing
frames ``b"m<ids>"`` and ``b"g<ids>"``, see ``protocol/routing.py``).

The client sends a BroadcastView's call once, however many engines it targets; the fan-out
happens here, on the controller's host, instead of N sends from the client.  Each engine's
part becomes an ordinary direct task: its own record and msg_id (``part_msg_id``), the
request signed again under that msg_id (the buffers, usually most of the bytes, are shared
by every part), its place in the engine's queue.  Liveness, abort, ``queue_status``,
``get_result`` and the outputs therefore treat a part like any task sent to one engine.

A *gathered* broadcast (a coalescing BroadcastView) keeps a :class:`Gather`: the parts'
replies are collected instead of being sent on, and when the last one is in (or failed:
a dead engine, an abort), the client gets one ``broadcast_reply``: a signed message whose
metadata lists each part (engine, status, times, outputs, how many buffers) in the order
the client named the engines, whose content carries the error content of each part that
failed, and whose buffers are every part's result buffers, one part after the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.routing import BroadcastRoute, client_of, part_msg_id
from ..protocol.wire import DELIM, Frame, InvalidMessage, pack
from .records import TaskRecord

if TYPE_CHECKING:
    from .router import Router

__all__ = ["Broadcaster", "Gather", "BROADCAST_REPLY"]

#: the message type of a gathered broadcast's one answer
BROADCAST_REPLY = "broadcast_reply"

#: what a finished part left: its record, its reply's metadata and content, its buffers
_Part = tuple[TaskRecord, dict[str, Any], dict[str, Any], list[Frame]]


class Gather:
    """The parts of one gathered broadcast, and their replies as they come."""

    __slots__ = ("msg_id", "reply_to", "parent", "engine_ids", "parts", "pending")

    def __init__(
        self, msg_id: str, reply_to: bytes, parent: Frame, engine_ids: tuple[int, ...]
    ) -> None:
        self.msg_id = msg_id
        #: where the one answer goes (the client, or its waiting thread's socket)
        self.reply_to = reply_to
        #: the request's header frame as it came: the answer's parent
        self.parent = parent
        self.engine_ids = engine_ids
        #: part msg_id -> what it left once finished (None until then), in the client's order
        self.parts: dict[str, _Part | None] = {
            part_msg_id(msg_id, engine_id): None for engine_id in engine_ids
        }
        self.pending = len(engine_ids)


class Broadcaster:
    """Fans broadcast requests out to their engines and answers gathered ones once."""

    def __init__(self, router: Router) -> None:
        self.router = router
        #: gathered broadcasts not yet answered, by the request's msg_id
        self.gathers: dict[str, Gather] = {}

    def submit(
        self,
        client: bytes,
        route: BroadcastRoute,
        header: dict[str, Any],
        signed: list[Frame],
        reply_to: bytes,
    ) -> None:
        """One task per engine of ``route`` for the request ``signed`` (its frames from the
        delimiter on, as the client signed them)."""
        router = self.router
        msg_type = header["msg_type"]
        if msg_type != "apply_request" and (route.gathered or msg_type != "execute_request"):
            raise InvalidMessage(
                f"a {'gathered ' if route.gathered else ''}broadcast must be an apply_request"
                f"{'' if route.gathered else ' or an execute_request'}, found {msg_type!r}"
            )
        msg_id = header["msg_id"]
        part_ids = [part_msg_id(msg_id, engine_id) for engine_id in route.engine_ids]
        if msg_id in self.gathers or any(p in router.records for p in part_ids):
            raise InvalidMessage(f"a broadcast with msg_id {msg_id!r} was already submitted")
        gather = Gather(msg_id, reply_to, signed[2], route.engine_ids) if route.gathered else None
        parent, metadata, content, buffers = signed[3], signed[4], signed[5], signed[6:]
        date = str(header.get("date", ""))
        parts: list[tuple[int, TaskRecord]] = []
        for engine_id, part_id in zip(route.engine_ids, part_ids):
            signed_parts = [pack({**header, "msg_id": part_id}), parent, metadata, content]
            rec = TaskRecord(part_id, client, msg_type, date)
            rec.reply_to = reply_to
            rec.request = [DELIM, router.wire.sign(signed_parts), *signed_parts, *buffers]
            rec.gather = gather
            router.records.add(rec)
            router.note(rec)
            parts.append((engine_id, rec))
        router.counts["submitted"] += len(parts)
        router.segments.note_broadcast_request([rec for _, rec in parts], metadata)
        if gather is not None:
            self.gathers[msg_id] = gather
        for engine_id, rec in parts:
            router.dispatch_direct(rec, engine_id)

    def part_finished(
        self,
        rec: TaskRecord,
        metadata: dict[str, Any],
        content: dict[str, Any],
        buffers: list[Frame],
    ) -> None:
        """One part of a gathered broadcast finished (replied, or failed by the cluster);
        the last one sends the answer."""
        gather = rec.gather
        if gather is None or gather.parts.get(rec.msg_id, True) is not None:
            return  # not a part of one, or already counted
        gather.parts[rec.msg_id] = (rec, metadata, content, buffers)
        gather.pending -= 1
        if gather.pending == 0:
            self._answer(gather)

    def _answer(self, gather: Gather) -> None:
        router = self.router
        self.gathers.pop(gather.msg_id, None)
        finished = [part for part in gather.parts.values() if part is not None]
        described: list[dict[str, Any]] = []
        errors: list[dict[str, Any] | None] = []
        buffers: list[Frame] = []
        shm: list[list[Any]] = []
        outputs = 0
        statuses = set()
        for engine_id, (rec, metadata, content, part_buffers) in zip(gather.engine_ids, finished):
            status = str(metadata.get("status") or content.get("status", "error"))
            statuses.add(status)
            part: dict[str, Any] = {
                "msg_id": rec.msg_id,
                "engine_id": engine_id,
                "status": status,
                "started": metadata.get("started"),
                "completed": metadata.get("completed"),
                "outputs": int(metadata.get("outputs") or 0),
                "buffers": len(part_buffers),
            }
            segments = metadata.get("shm")
            if isinstance(segments, list) and segments:
                # buffer indices count from the first buffer of the whole answer
                shm.extend([s[0] + len(buffers), s[1], s[2]] for s in segments)
                part["shm"] = True
            outputs += part["outputs"]
            described.append(part)
            errors.append(None if status == "ok" else content)
            buffers.extend(part_buffers)
        overall = "ok" if statuses == {"ok"} else "error" if "error" in statuses else "aborted"
        started = [p["started"] for p in described if p["started"]]
        completed = [p["completed"] for p in described if p["completed"]]
        answer_md: dict[str, Any] = {
            "status": overall,
            "engine_id": list(gather.engine_ids),
            "started": min(started) if started else None,
            "completed": max(completed) if completed else None,
            "outputs": outputs,
            "parts": described,
        }
        if shm:
            answer_md["shm"] = shm
        _, frames = router.wire.build(
            BROADCAST_REPLY,
            {"status": overall, "parts": errors},
            parent=gather.parent,
            metadata=answer_md,
            buffers=buffers,
        )
        holders = [rec for rec, _, _, _ in finished]
        frames = router.segments.gathered_reply_for(client_of(gather.reply_to), holders, frames)
        gather.parts.clear()  # the answer holds the buffers now; the records keep their replies
        router.answer(gather.reply_to, frames)
