"""The controller's side of shared-memory segments (see ``protocol/sharedmem.py``).

It decides, per receiver, whether a message may name segments (the receiver maps them) or must
carry the bytes in frames (the controller inlines them and signs the message again), and it
removes segment files once nobody can need them: a request's when its task finishes, a result's
when its record is dropped and every receiver it was sent to has mapped it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.sharedmem import SharedArea, SharedMemoryError, segment_bytes
from ..protocol.wire import DELIM, Frame, InvalidMessage, Wire, as_bytes, pack, unpack
from .records import TaskRecord

log = logging.getLogger("ipar_widgets.controller")

_SHM_KEY = b'"shm"'


def _names(metadata: dict[str, Any]) -> list[str]:
    segments = metadata.get("shm")
    if not isinstance(segments, list):
        return []
    return [s[1] for s in segments if isinstance(s, list) and len(s) == 3 and isinstance(s[1], str)]


class SegmentKeeper:
    """Tracks which clients can map segments and which segment files are still needed."""

    def __init__(self, area: SharedArea | None, wire: Wire) -> None:
        self.area = area
        self.wire = wire
        #: identities of clients on the controller's host (they said so when connecting)
        self.local_clients: set[bytes] = set()
        #: result segments of dropped records still being mapped: msg_id -> (names, readers)
        self._draining: dict[str, tuple[list[str] | tuple[()], int]] = {}
        #: a broadcast request's segments (by the first name) -> how many of its parts have
        #: not finished: the last one to finish removes the files
        self._shared_requests: dict[str, int] = {}

    # -- requests -----------------------------------------------------------------------------------
    def note_request(self, rec: TaskRecord, metadata_frame: Frame) -> None:
        """Remember the segments a request names (checked cheaply: most name none)."""
        # received messages carry their JSON parts as bytes (wire.recv_frames): no call then
        data = metadata_frame if isinstance(metadata_frame, bytes) else as_bytes(metadata_frame)
        if _SHM_KEY in data:
            rec.request_segments = _names(unpack(data))

    def note_broadcast_request(self, recs: list[TaskRecord], metadata_frame: Frame) -> None:
        """The parts of one broadcast share its request's segments: each engine on this host
        maps them, and the files stay until the last part finishes."""
        data = metadata_frame if isinstance(metadata_frame, bytes) else as_bytes(metadata_frame)
        if _SHM_KEY not in data:
            return
        names = _names(unpack(data))
        if not names or not recs:
            return
        for rec in recs:
            rec.request_segments = names
        self._shared_requests[names[0]] = len(recs)

    def request_for(self, rec: TaskRecord, engine_shares_memory: bool) -> list[Frame]:
        """The request frames to send an engine: segments inlined unless it maps them."""
        assert rec.request is not None
        if rec.request_segments and not engine_shares_memory:
            return self.inline(rec.request)
        return rec.request

    def release_request(self, rec: TaskRecord) -> None:
        """The task finished: its request's segments are mapped or no longer wanted."""
        names = rec.request_segments
        rec.request_segments = ()
        if not names:
            return
        if self._shared_requests and names[0] in self._shared_requests:
            left = self._shared_requests[names[0]] - 1
            if left > 0:  # other parts of the broadcast still need them
                self._shared_requests[names[0]] = left
                return
            del self._shared_requests[names[0]]
        if self.area is not None:
            self.area.unlink(names)

    # -- results ------------------------------------------------------------------------------------
    def note_result(self, rec: TaskRecord, metadata: dict[str, Any]) -> int:
        """Keep a reply's segments with its record; return their size in bytes."""
        if "shm" not in metadata:
            return 0
        rec.segments = _names(metadata)
        try:
            return segment_bytes(metadata["shm"])
        except (TypeError, ValueError):
            return 0

    def reply_for(self, client: bytes, rec: TaskRecord | None, frames: list[Frame]) -> list[Frame]:
        """The reply frames (from the delimiter on) to send ``client``."""
        if rec is None or not rec.segments:
            return frames
        if client in self.local_clients:
            rec.segment_readers += 1  # until it says it has mapped them
            return frames
        return self.inline(frames)

    def gathered_reply_for(
        self, client: bytes, recs: list[TaskRecord], frames: list[Frame]
    ) -> list[Frame]:
        """A gathered broadcast's answer (from the delimiter on) to send ``client``: as it is
        for a client that maps segments (each part with segments then waits for it to say
        so, under the part's msg_id), inlined for any other."""
        holders = [rec for rec in recs if rec.segments]
        if not holders:
            return frames
        if client in self.local_clients:
            for rec in holders:
                rec.segment_readers += 1
            return frames
        return self.inline(frames)

    def result_frames(self, rec: TaskRecord) -> list[Frame]:
        """A finished record's reply frames with its segments read back in (for a reader
        that maps nothing, such as a record query)."""
        assert rec.reply is not None
        return self.inline(rec.reply) if rec.segments else rec.reply

    def late_reply(self, frames: list[Frame], metadata: dict[str, Any]) -> list[Frame]:
        """A reply no record keeps: its segments go into frames and their files away."""
        if "shm" not in metadata:
            return frames
        inlined = self.inline(frames)
        self._unlink(_names(metadata))
        return inlined

    def mapped(self, msg_id: str, rec: TaskRecord | None) -> None:
        """A client has mapped the segments of ``msg_id``'s result."""
        if rec is not None and rec.segments:
            rec.segment_readers = max(0, rec.segment_readers - 1)
            return
        draining = self._draining.get(msg_id)
        if draining is not None:
            names, readers = draining
            if readers <= 1:  # that was the last one
                del self._draining[msg_id]
                self._unlink(names)
            else:
                self._draining[msg_id] = (names, readers - 1)

    def record_removed(self, rec: TaskRecord) -> None:
        """A record was dropped: remove its segments, or once their last reader maps them."""
        self.release_request(rec)
        if not rec.segments:
            return
        if rec.segment_readers > 0:
            self._draining[rec.msg_id] = (rec.segments, rec.segment_readers)
        else:
            self._unlink(rec.segments)
        rec.segments = ()

    # -- helpers ------------------------------------------------------------------------------------
    def inline(self, frames: list[Frame]) -> list[Frame]:
        """``[DELIM, signature, header, parent, metadata, content, *buffers]`` with each segment
        read back into its buffer frame, signed again.  On failure the frames go unchanged,
        and the receiver reports the segment it could not map."""
        try:
            if self.area is None:
                raise SharedMemoryError("this controller has no shared memory area")
            metadata = unpack(frames[4])
            buffers = list(frames[6:])
            for index, name, nbytes in metadata.pop("shm"):
                buffers[index] = self.area.read(name, int(nbytes))
        except (
            SharedMemoryError,
            InvalidMessage,
            KeyError,
            TypeError,
            ValueError,
            IndexError,
        ) as exc:
            log.error("cannot inline shared memory segments for a remote receiver: %s", exc)
            return frames
        parts = [frames[2], frames[3], pack(metadata), frames[5]]
        return [DELIM, self.wire.sign(parts), *parts, *buffers]

    def _unlink(self, names: list[str] | tuple[()]) -> None:
        if self.area is not None:
            self.area.unlink(names)

    def close(self) -> int:
        """Remove every file of the area (the cluster is stopping)."""
        self._draining.clear()
        return self.area.remove_all() if self.area is not None else 0
