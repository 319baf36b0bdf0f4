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
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache
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

# a record's first write is usually its only one (see _write_queued): one row, whole
_COLUMNS = (
    "msg_id, arrival, msg_type, client, reply_to, balanced, engine_id, engine_uuid, status, "
    "submitted, started, completed, received, resubmitted, nbytes, label, request, reply, outputs"
)
_N_COLUMNS = _COLUMNS.count(",") + 1
_ON_CONFLICT = """
ON CONFLICT (msg_id) DO UPDATE SET engine_id = excluded.engine_id,
    engine_uuid = excluded.engine_uuid, status = excluded.status, started = excluded.started,
    completed = excluded.completed, received = excluded.received,
    resubmitted = excluded.resubmitted, nbytes = excluded.nbytes,
    reply = coalesce(excluded.reply, reply), outputs = coalesce(excluded.outputs, outputs)
"""
#: rows per INSERT statement.  sqlite3 lets other threads run while SQLite works, once per
#: statement: with one row per statement the routing thread and this one would hand the GIL
#: to each other for every row (each handover costs more than the row).
_ROWS_PER_INSERT = 64


@lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_sql(rows: int) -> str:
    values = ", ".join(["(" + ", ".join("?" * _N_COLUMNS) + ")"] * rows)
    # "WHERE true" tells the parser that ON CONFLICT belongs to the INSERT, not the SELECT
    return f"INSERT INTO tasks ({_COLUMNS}) SELECT * FROM (VALUES {values}) WHERE true" + (
        _ON_CONFLICT
    )


# a message column given as NULL is one that did not change since the last write
_UPDATE = """
UPDATE tasks SET engine_id = ?, engine_uuid = ?, status = ?, started = ?, completed = ?,
    received = ?, resubmitted = ?, nbytes = ?, reply = coalesce(?, reply),
    outputs = coalesce(?, outputs) WHERE msg_id = ?
"""
#: the kinds of messages of a task (the names of their files in blobfiles)
REQUEST, REPLY, OUTPUTS = 0, 1, 2
#: where a saved message's frames start: the delimiter and the signature are not kept (the
#: frames are signed again with the reading controller's key)
_SIGNED = 2


def to_us(value: datetime | str | None) -> int | None:
    """A date as whole microseconds since 1970 (exact, so dates sort and compare as
    integers); None for no date, a naive one or one that does not parse."""
    try:
        parsed = parse_date(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
        pending_delay: float,
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
        #: seconds an unfinished task's record waits before it is written unfinished
        self.pending_delay = pending_delay
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
        #: unfinished records never written, oldest first, until ``pending_delay`` passed
        self._pending: OrderedDict[str, TaskRecord] = OrderedDict()
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
            if stopping and not self.queue and not self._pending:
                return

    def _write_queued(self) -> None:
        queue = self.queue
        n = len(queue)
        if not n and not self._pending:
            return
        if n > self.warn_at and time.monotonic() - self._warned > 10:
            self._warned = time.monotonic()
            log.warning(
                "the task database writer is %d changes behind; records stay in memory until "
                "they are written",
                n,
            )
        items = [queue.popleft() for _ in range(n)]
        # A task first seen unfinished waits until it has been in the controller for
        # ``pending_delay`` seconds: most tasks finish within it, and are then written once,
        # whole, instead of at submission and again at their reply.  A flush (or closing)
        # writes everything.
        pending = self._pending
        postpone = not self._stopping and not any(isinstance(i, threading.Event) for i in items)
        records: dict[str, TaskRecord] = {}
        due = time.monotonic() - self.pending_delay if postpone else float("inf")
        while pending:  # oldest first: records are noted in the order tasks arrive
            msg_id, rec = next(iter(pending.items()))
            if rec.arrived > due:
                break
            pending.popitem(last=False)
            records[msg_id] = rec
        moved = list(records.values())
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
                        and getattr(item, "saved", None) is None
                        and msg_id not in records
                    ):
                        if msg_id not in pending:
                            pending[msg_id] = item
                    else:  # the last note wins: the record is read as it is now
                        pending.pop(msg_id, None)
                        records[msg_id] = item
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:  # a command runs after the records noted before it
                    self._write_records(records, saved)
                    records = {}
                    item(db)
            self._write_records(records, saved)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            # nothing was saved: note the records again for the next round (commands are not
            # retried: their callers were told already)
            queue.extendleft(reversed([*moved, *(i for i in items if type(i) is TaskRecord)]))
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

    def _message(self, msg_id: str, kind: int, frames: list[Frame]) -> bytes:
        """A message's column: its frames packed, or for a large message the marker of the
        file they were written to piece by piece (no copy of its buffers in memory)."""
        pieces, total = frame_pieces(frames[_SIGNED:])
        if total < LARGE or self.blob_files is None:
            return b"".join(pieces)  # type: ignore[arg-type]  # zmq Frames are buffers
        return self.blob_files.write(msg_id, kind, pieces)

    def _write_records(
        self, records: dict[str, TaskRecord], saved: list[tuple[TaskRecord, State]]
    ) -> None:
        if not records:
            return
        inserts = []
        updates = []
        message = self._message
        offset = self.arrival_offset
        for rec in records.values():
            # read the state first: if the router changes the record meanwhile, the state
            # differs from the record's and the router's next note writes it again
            state = current_state(rec)
            status, reply, segments, n_outputs, resubmitted = state
            finished = status in FINISHED
            msg_id = rec.msg_id
            before: State | None = getattr(rec, "saved", None)
            reply_column = outputs_column = None
            if (
                finished
                and reply is not None
                and (before is None or before[1] is not reply or before[2] is not segments)
            ):
                reply_column = message(msg_id, REPLY, self.reply_frames(rec, reply, segments))
            if n_outputs and (before is None or before[3] != n_outputs):
                outputs_column = pack_messages([m[_SIGNED:] for m in list(rec.outputs)[:n_outputs]])
                if len(outputs_column) >= LARGE and self.blob_files is not None:
                    outputs_column = self.blob_files.write(msg_id, OUTPUTS, [outputs_column])
            engine_id = rec.engine_id
            if before is None:
                request = rec.request
                inserts.append(
                    (
                        msg_id,
                        rec.arrived + offset,
                        rec.msg_type,
                        rec.client,
                        rec.reply_to,
                        int(rec.balanced),
                        engine_id,
                        self.uuid_of(engine_id),
                        status,
                        rec.submitted,
                        rec.started,
                        rec.completed if finished else None,
                        getattr(rec, "received", None),
                        resubmitted,
                        rec.nbytes,
                        _label(request),
                        None if request is None else message(msg_id, REQUEST, request),
                        reply_column,
                        outputs_column,
                    )
                )
            else:
                updates.append(
                    (
                        engine_id,
                        self.uuid_of(engine_id),
                        status,
                        rec.started,
                        rec.completed if finished else None,
                        getattr(rec, "received", None),
                        resubmitted,
                        rec.nbytes,
                        reply_column,
                        outputs_column,
                        msg_id,
                    )
                )
            saved.append((rec, state))
            if len(saved) % 64 == 0:
                time.sleep(0)  # let the routing thread have the GIL between chunks
        db = self.db
        for start in range(0, len(inserts), _ROWS_PER_INSERT):
            chunk = inserts[start : start + _ROWS_PER_INSERT]
            db.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])
        if updates:
            db.executemany(_UPDATE, updates)
