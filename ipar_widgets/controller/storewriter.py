"""The task database's writer: a thread that saves the records the router changed.

The router's part is one ``deque.append(rec)`` per change (submitted, handed to an engine,
finished, resubmitted), so routing never waits for the disk.  This thread wakes at least
every ``interval`` seconds, takes what was queued, keeps one entry per record, reads each
record's *current* state and writes the batch in one transaction.  The record is only read
here, except for ``saved``: the state it was saved in (see :func:`saved_state`), from which
the controller knows whether it may drop the record from memory.

Other database changes that must keep their order with the records' (purges, engines
joining and leaving) are queued as callables and run in the same transaction, in order.
A queued :class:`threading.Event` is set once everything queued before it is committed:
that is how :meth:`StoreWriter.flush` waits.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..protocol.wire import Frame, as_bytes, parse_date, unpack
from .blobfiles import LARGE, BlobFiles
from .framepack import frame_pieces, pack_messages
from .records import FINISHED, TaskRecord

log = logging.getLogger("ipar_widgets.controller")

__all__ = ["StoreWriter", "saved_state", "to_us"]

#: a change to the database other than a record's, run in the writer's transaction
Command = Callable[[sqlite3.Connection], object]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LABEL_KEY = b'"label"'

_INSERT = """
INSERT INTO tasks (msg_id, arrival, msg_type, client, reply_to, client_uuid, balanced, queue,
    engine_id, engine_uuid, status, submitted, submitted_us, started, started_us, completed,
    completed_us, received, received_us, resubmitted, nbytes, label)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (msg_id) DO UPDATE SET engine_id = excluded.engine_id,
    engine_uuid = excluded.engine_uuid, status = excluded.status, started = excluded.started,
    started_us = excluded.started_us, completed = excluded.completed,
    completed_us = excluded.completed_us, received = excluded.received,
    received_us = excluded.received_us, resubmitted = excluded.resubmitted,
    nbytes = excluded.nbytes
"""
_UPDATE = """
UPDATE tasks SET engine_id = ?, engine_uuid = ?, status = ?, started = ?, started_us = ?,
    completed = ?, completed_us = ?, received = ?, received_us = ?, resubmitted = ?,
    nbytes = ? WHERE msg_id = ?
"""
_FRAMES = "INSERT OR REPLACE INTO frames (msg_id, kind, data) VALUES (?, ?, ?)"
#: the kinds of rows of the frames table
REQUEST, REPLY, OUTPUTS = 0, 1, 2
#: frames of at least this many bytes are written into their blob piece by piece


def to_us(value: datetime | str | None) -> int | None:
    """A date as whole microseconds since 1970 (exact, so equality tests hold in SQL);
    None for no date, a naive one or one that does not parse."""
    try:
        parsed = parse_date(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _received_us(received: float | None) -> int | None:
    if received is None:
        return None
    return to_us(datetime.fromtimestamp(received, timezone.utc))


def _label(request: list[Frame] | None) -> str | None:
    if request is None or len(request) < 5:
        return None
    metadata = request[4]
    data = metadata if isinstance(metadata, bytes) else as_bytes(metadata)
    if _LABEL_KEY not in data:
        return None
    label = unpack(data).get("label")
    return None if label is None else json.dumps(label)  # queries compare JSON texts


#: what the writer read of a record: (status, reply, segments, number of outputs, resubmitted)
State = tuple[str, Any, Any, int, Any]


def current_state(rec: TaskRecord) -> State:
    return (
        rec.status,
        rec.reply,
        rec.segments,
        len(rec.outputs),
        getattr(rec, "resubmitted", None),
    )


def saved_state(rec: TaskRecord) -> State | None:
    """The state the writer last committed of ``rec`` (None: never)."""
    return getattr(rec, "saved", None)


def is_durable(rec: TaskRecord) -> bool:
    """Whether ``rec`` is finished and in the database as it is now (it may leave memory).
    Identity, not equality, for the reply and segments: they are replaced, never changed."""
    saved: State | None = getattr(rec, "saved", None)
    if saved is None or rec.status not in FINISHED or saved[0] != rec.status:
        return False
    return (
        saved[1] is rec.reply
        and saved[2] is rec.segments
        and saved[3] == len(rec.outputs)
        and saved[4] == getattr(rec, "resubmitted", None)
    )


class StoreWriter:
    """The queue of changes and the thread that writes them to ``db``."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        interval: float,
        warn_at: int,
        uuid_of: Callable[[int | None], str | None],
        reply_frames: Callable[[TaskRecord, list[Frame], Any], list[Frame]],
        arrival_offset: float,
        blob_files: BlobFiles | None = None,
    ) -> None:
        self.db = db
        #: where messages of LARGE bytes or more go, instead of into the database
        self.blob_files = blob_files
        self.interval = interval
        self.warn_at = warn_at
        self.uuid_of = uuid_of
        #: a reply's frames with its shared-memory segments read in: (record, reply, segments)
        self.reply_frames = reply_frames
        #: add to a record's ``arrived`` (monotonic) for the wall-clock time it arrived
        self.arrival_offset = arrival_offset
        self.queue: deque[Any] = deque()
        #: the router's hot path: note that a record changed
        self.note: Callable[[TaskRecord], None] = self.queue.append
        self._wake = threading.Event()
        self._stopping = False
        #: finished records as they are saved, for the controller's thread to consider
        #: dropping from memory (it takes them from the left)
        self.finished: deque[TaskRecord] = deque()
        #: records first seen unfinished in the last round, written in the next one
        self._postponed: dict[str, TaskRecord] = {}
        self._warned = 0.0
        self.batches = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="ipar-task-store", daemon=True)
        self._thread.start()

    # -- the controller's side --------------------------------------------------------------------
    def command(self, fn: Command) -> None:
        """Run ``fn(db)`` in the writer's next transaction, after the changes queued before."""
        self.queue.append(fn)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is committed; False if not within ``timeout``."""
        done = threading.Event()
        self.queue.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Write what is queued and stop the thread; False if it did not finish in time."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._write_queued()
            except Exception:  # never let the thread die: records stay in memory meanwhile
                log.exception("the task database writer failed; retrying")
                time.sleep(self.interval)
            if stopping and not self.queue and not self._postponed:
                return

    def _write_queued(self) -> None:
        queue = self.queue
        n = len(queue)
        if not n and not self._postponed:
            return
        if n > self.warn_at and time.monotonic() - self._warned > 10:
            self._warned = time.monotonic()
            log.warning(
                "the task database writer is %d changes behind; records stay in memory until "
                "they are written",
                n,
            )
        items = [queue.popleft() for _ in range(n)]
        # A task first seen unfinished waits one round: most tasks finish within it, and are
        # then written once, whole, instead of at submission and again at their reply.  So an
        # unfinished task is saved within two rounds, a finished one within one.  A flush
        # (or closing) writes everything.
        postponed, self._postponed = self._postponed, {}
        postpone = not self._stopping and not any(isinstance(i, threading.Event) for i in items)
        records: dict[str, TaskRecord] = dict(postponed)
        events: list[threading.Event] = []
        saved: list[tuple[TaskRecord, State]] = []
        db = self.db
        db.execute("BEGIN")
        try:
            for item in items:
                if type(item) is TaskRecord:
                    msg_id = item.msg_id
                    if (
                        postpone
                        and item.status not in FINISHED
                        and msg_id not in postponed
                        and getattr(item, "saved", None) is None
                    ):
                        self._postponed[msg_id] = item
                    else:  # the last note wins: the record is read as it is now
                        records[msg_id] = item
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:  # a command runs after the records noted before it
                    self._write_records(records, saved)
                    records = {}
                    item(db)
            for msg_id in self._postponed.keys() & records.keys():
                del self._postponed[msg_id]  # finished after its first note: written now
            self._write_records(records, saved)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            # nothing was saved: note the records again for the next round (commands are not
            # retried: their callers were told already)
            self._postponed.clear()
            queue.extendleft(
                reversed([*postponed.values(), *(i for i in items if type(i) is TaskRecord)])
            )
            for event in events:
                queue.append(event)
            raise
        finished = self.finished
        for rec, state in saved:
            rec.saved = state  # a slot set only here
            if state[0] in FINISHED:
                finished.append(rec)
        for event in events:
            event.set()
        self.batches += 1
        self.written += len(saved)

    def _put_frames(
        self, msg_id: str, kind: int, frames: list[Frame], small: list[tuple[str, int, bytes]]
    ) -> None:
        """Save one message's frames: a small one with the batch (``small``), a large one
        at once, piece by piece into a blob (no copy of its buffers in memory)."""
        pieces, total = frame_pieces(frames)
        if total < LARGE or self.blob_files is None:
            small.append((msg_id, kind, b"".join(pieces)))  # type: ignore[arg-type]
            return
        small.append((msg_id, kind, self.blob_files.write(msg_id, kind, pieces)))

    def _write_records(
        self, records: dict[str, TaskRecord], saved: list[tuple[TaskRecord, State]]
    ) -> None:
        if not records:
            return
        inserts = []
        updates = []
        frames: list[tuple[str, int, bytes]] = []
        for rec in records.values():
            # read the state first: if the router changes the record meanwhile, the state
            # differs from the record's and the router's next note writes it again
            state = current_state(rec)
            status, reply, segments, n_outputs, resubmitted = state
            finished = status in FINISHED
            received = getattr(rec, "received", None)
            engine_id = rec.engine_id
            msg_id = rec.msg_id
            scalars = (
                engine_id,
                self.uuid_of(engine_id),
                status,
                rec.started,
                to_us(rec.started),
                rec.completed if finished else None,
                to_us(rec.completed) if finished else None,
                received,
                _received_us(received),
                resubmitted,
                rec.nbytes,
            )
            before = saved_state(rec)
            changed = before is None or before[1] is not reply or before[2] is not segments
            if finished and reply is not None and changed:
                self._put_frames(msg_id, REPLY, self.reply_frames(rec, reply, segments), frames)
            if n_outputs and (before is None or before[3] != n_outputs):
                packed = pack_messages(list(rec.outputs)[:n_outputs])
                if len(packed) >= LARGE and self.blob_files is not None:
                    packed = self.blob_files.write(msg_id, OUTPUTS, [packed])
                frames.append((msg_id, OUTPUTS, packed))
            if before is None:
                request = rec.request
                if request is not None:
                    self._put_frames(msg_id, REQUEST, request, frames)
                inserts.append(
                    (
                        msg_id,
                        rec.arrived + self.arrival_offset,
                        rec.msg_type,
                        rec.client,
                        rec.reply_to,
                        rec.client.decode("utf8", "replace"),
                        int(rec.balanced),
                        "task" if rec.balanced else "mux",
                        *scalars[:3],
                        rec.submitted,
                        to_us(rec.submitted),
                        *scalars[3:],
                        _label(request),
                    )
                )
            else:
                updates.append((*scalars, msg_id))
            saved.append((rec, state))
            if len(saved) % 64 == 0:
                time.sleep(0)  # let the routing thread have the GIL between chunks
        db = self.db
        if inserts:
            db.executemany(_INSERT, inserts)
        if updates:
            db.executemany(_UPDATE, updates)
        if frames:
            db.executemany(_FRAMES, frames)
