"""BroadcastView: a DirectView whose calls leave the client once, however many engines they
target (``rc.broadcast_view()``, as in ipyparallel).

The client sends one message with a broadcast routing frame (``protocol/routing.py``); the
controller makes one task of it per engine (``controller/broadcast.py``).  Everything else is
DirectView's: a call with the same message for every engine (``apply``, ``execute``,
``push``, ``pull``, ``view['x']``, ``sync_imports``, ...) is broadcast, one whose message
differs per engine (``map``, ``scatter``, ``gather``) goes engine by engine as on a
DirectView, and so does a call aimed at one engine (``targets=3``).

A *coalescing* view (``is_coalescing=True``) also gets one reply for an ``apply`` (and
``push``, ``pull``...): its AsyncResult has one msg_id, its value is the list of the engines'
values in the order of the view's targets, and ``ar.engine_id`` / ``ar.engine_uuid`` are
lists.  ``execute`` is not coalesced (each engine's ExecuteReply comes on its own), as in
ipyparallel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.routing import broadcast_route, part_msg_id
from ..protocol.wire import Frame
from .asyncresult import AsyncResult
from .directview import DirectView
from .ledger import Submitted
from .targets import Targets

if TYPE_CHECKING:
    from .client import Client

__all__ = ["BroadcastView"]


class BroadcastView(DirectView):
    """A DirectView whose calls the controller fans out to the engines: one message from the
    client per call; with ``is_coalescing``, one reply per ``apply`` too."""

    _flag_names = DirectView._flag_names | {"is_coalescing"}

    def __init__(
        self,
        client: Client,
        targets: Targets = None,
        is_coalescing: bool = False,
        **flags: Any,
    ) -> None:
        #: whether an ``apply`` (``push``, ``pull``...) is answered once, for all engines
        self.is_coalescing = bool(is_coalescing)
        super().__init__(client, targets, **flags)

    def __repr__(self) -> str:
        return f"<BroadcastView {self.targets}>"

    def _send_to_engines(
        self,
        ids: list[int],
        msg_type: str,
        content: dict[str, Any],
        buffers: list[Frame],
        fname: str,
        single: bool,
        track: bool = False,
    ) -> AsyncResult:
        if single:  # aimed at one engine (targets=<id>): an ordinary direct task
            return super()._send_to_engines(ids, msg_type, content, buffers, fname, True, track)
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"a BroadcastView sends each engine one task, but its targets {ids} name an "
                "engine more than once; use a DirectView (rc[[...]]) to run it twice there"
            )
        gathered = self.is_coalescing and msg_type == "apply_request"
        client = self.client
        submitter = client._submitter
        msg_id, frames, note = submitter.build(
            broadcast_route(ids, gathered), msg_type, content, buffers
        )
        uuids = [client._engines.uuid_of(engine_id) for engine_id in ids]
        parts = [(part_msg_id(msg_id, engine_id), engine_id) for engine_id in ids]
        if gathered:
            ledger = client._ledger

            def make_result() -> AsyncResult:
                md = ledger.metadata_for(msg_id)
                md["engine_id"] = list(ids)
                md["engine_uuid"] = uuids
                ledger.note_gathered(msg_id, parts)
                return AsyncResult(client, [msg_id], fname, ids, single=True)

            return self._record(submitter.submit([frames], [note], make_result, track=track))
        notes = [
            Submitted(part_id, note.date, engine_id, uuid, note.metadata)
            for (part_id, engine_id), uuid in zip(parts, uuids)
        ]
        part_ids = [part_id for part_id, _ in parts]
        return self._record(
            submitter.submit(
                [frames],
                notes,
                lambda: AsyncResult(client, part_ids, fname, ids),
                track=track,
            )
        )
