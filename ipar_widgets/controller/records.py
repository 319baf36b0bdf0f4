"""The controller's record of every task: who sent it, where it ran, when, and how it ended.

Records let any client, including one that connects later, look a task up by msg_id
(``Client.get_result``), query them (``Client.db_query``, through :mod:`.taskstore`) and
resubmit them, and feed ``queue_status`` and the activity view.  They are kept until purged,
bounded by a number of records and a number of bytes (the request's, the reply's and the
outputs'): past either bound the oldest finished records are dropped; unfinished ones never are.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..protocol.wire import Frame

if TYPE_CHECKING:
    from .broadcast import Gather

PENDING = "pending"  # waiting in the controller (load balancing, dependencies)
RUNNING = "running"  # handed to an engine, no reply yet
OK = "ok"
ERROR = "error"
ABORTED = "aborted"
FINISHED = frozenset({OK, ERROR, ABORTED})


class TaskRecord:
    """One request sent to an engine, and its outcome."""

    __slots__ = (
        "msg_id",
        "client",
        "reply_to",
        "msg_type",
        "balanced",
        "engine_id",
        "status",
        "submitted",
        "arrived",
        "dispatched",
        "started",
        "completed",
        "request",
        "reply",
        "outputs",
        "nbytes",
        "targets",
        "after",
        "follow",
        "retries",
        "deadline",
        "blacklist",
        "success",
        "failure",
        "dep_all",
        "watchers",
        "request_segments",
        "segments",
        "segment_readers",
        "gather",
        # Set only when they happen (read with getattr and a default): a record is made
        # for every task, and each store in __init__ is paid on every submit.
        "received",
        "resubmitted",
        "saved",
    )

    #: controller clock (``time.time()``) when the reply arrived or the cluster failed it
    received: float
    #: msg_id of the latest task resubmitted from this one
    resubmitted: str
    #: the state in which the task database last saved it (set by its writer thread only)
    saved: tuple[Any, ...]

    def __init__(self, msg_id: str, client: bytes, msg_type: str, submitted: str) -> None:
        self.msg_id = msg_id
        #: the client's identity (its outputs are published under it) and where its reply
        #: goes: the same, or the socket of the client's thread that waits for it
        self.client = client
        self.reply_to = client
        self.msg_type = msg_type
        self.balanced = False
        self.engine_id: int | None = None
        self.status = PENDING
        self.submitted = submitted  # client clock, ISO string from the request header
        self.arrived = time.monotonic()  # controller clock
        self.dispatched: float | None = None  # controller clock, when handed to the engine
        self.started: str | None = None  # engine clock, from the reply
        self.completed: str | None = None  # engine clock, from the reply
        self.request: list[Frame] | None = None  # signed frames, from the delimiter on
        self.reply: list[Frame] | None = None  # signed reply frames, for later clients
        # What most tasks never need starts as a shared empty value (a task record is made
        # for every message, so its construction is on the hot path).
        self.outputs: list[list[Frame]] | tuple[()] = ()  # signed iopub frames of this task
        self.nbytes = 0
        # load-balancing constraints
        self.targets: frozenset[int] | None = None
        self.after: list[str] | tuple[()] = ()
        self.follow: list[str] | tuple[()] = ()
        self.retries = 0
        self.deadline: float | None = None
        self.blacklist: set[int] | frozenset[int] = frozenset()
        self.success = True
        self.failure = False
        self.dep_all = True
        #: other clients that asked to be sent this task's reply and outputs
        self.watchers: list[bytes] | tuple[()] = ()
        #: shared-memory segments of the request (removed when the task finishes) and of the
        #: result (kept with the record), and how many receivers have yet to map the latter
        self.request_segments: list[str] | tuple[()] = ()
        self.segments: list[str] | tuple[()] = ()
        self.segment_readers = 0
        #: the coalescing broadcast this task is one engine's part of (its reply is kept
        #: for that broadcast's one answer instead of being sent to the client)
        self.gather: Gather | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def removable(self) -> bool:
        """Finished, and not a part of a gathered broadcast still waiting for its other
        parts (its answer will carry this part's result, and name its segments)."""
        return self.status in FINISHED and (self.gather is None or self.gather.pending == 0)

    @property
    def dependencies(self) -> list[str]:
        """The msg_ids of its ``after`` and then its ``follow`` dependencies."""
        return [*self.after, *self.follow]

    def summary(self) -> dict[str, Any]:
        """The JSON-able facts about this task that clients and the panel show."""
        return {
            "msg_id": self.msg_id,
            "msg_type": self.msg_type,
            "status": self.status,
            "engine_id": self.engine_id,
            "balanced": self.balanced,
            "submitted": self.submitted,
            "started": self.started,
            "completed": self.completed,
            "outputs": len(self.outputs),
        }


def frames_size(frames: Iterable[Frame]) -> int:
    """The bytes a received message's frames hold: each is bytes or a zmq Frame, whose
    ``len`` is its size in bytes.  (A plain loop: for the zero to three buffers of a
    typical message it costs half of ``sum(map(len, frames))``.)"""
    total = 0
    for f in frames:
        total += len(f)
    return total


class RecordStore:
    """Records by msg_id in arrival order, bounded by ``limit`` records and ``size_limit`` bytes.

    ``can_drop`` says whether a finished record may leave memory (with a task database: once
    it is saved there); ``recall`` finds a record that has left (a light one, for the
    dependencies of new tasks), or None.
    """

    def __init__(
        self,
        limit: int,
        size_limit: int,
        on_remove: Callable[[TaskRecord], None] | None = None,
        can_drop: Callable[[TaskRecord], bool] | None = None,
    ) -> None:
        self.limit = limit
        self.size_limit = size_limit
        #: called with each record dropped (culled or purged), to release what it holds
        self.on_remove = on_remove
        self.can_drop = can_drop
        self.recall: Callable[[str], TaskRecord | None] = _nothing
        #: called with a record once it holds ``large_at`` bytes or more (each time it grows
        #: past it), for a task database to follow what it has yet to save
        self.on_large: Callable[[TaskRecord], None] | None = None
        self.large_at = 1 << 62
        self._records: OrderedDict[str, TaskRecord] = OrderedDict()
        self._bytes = 0
        self.culled = 0
        # the sizes past which the next cull runs: raised after a cull that could not reach
        # its target (every record unfinished, or not yet saved), so a store over its bound
        # is not scanned on every new task
        self._cull_at_n = limit
        self._cull_at_bytes = size_limit

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._records

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(self._records.values())

    def get(self, msg_id: str) -> TaskRecord | None:
        return self._records.get(msg_id)

    def lookup(self, msg_id: str) -> TaskRecord | None:
        """The record of ``msg_id`` in memory, or one that left it (see ``recall``)."""
        rec = self._records.get(msg_id)
        return rec if rec is not None else self.recall(msg_id)

    def add(self, record: TaskRecord) -> None:
        self._records[record.msg_id] = record
        if len(self._records) > self._cull_at_n:
            self._cull()

    def account(self, record: TaskRecord, nbytes: int) -> None:
        """Count bytes a record now holds (its reply and outputs)."""
        record.nbytes += nbytes
        self._bytes += nbytes
        if record.nbytes >= self.large_at and self.on_large is not None:
            self.on_large(record)
        if self._bytes > self._cull_at_bytes:
            self._cull()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def cull(self) -> None:
        """Drop the oldest records that may go, if the store is past a bound (called from a
        timer: records become droppable when they are saved, not when they change)."""
        self._cull_at_n = self.limit
        self._cull_at_bytes = self.size_limit
        if len(self._records) > self.limit or self._bytes > self.size_limit:
            self._cull()

    def _cull(self) -> None:
        # Drop the oldest finished records until both bounds hold again, with some slack so
        # that a full store does not cull on every new task.
        target_n = int(self.limit * 0.9)
        target_bytes = int(self.size_limit * 0.9)
        can_drop = self.can_drop
        doomed = []
        n = len(self._records)
        size = self._bytes
        for msg_id, rec in self._records.items():
            if n <= target_n and size <= target_bytes:
                break
            if rec.removable and (can_drop is None or can_drop(rec)):
                doomed.append(msg_id)
                n -= 1
                size -= rec.nbytes
        for msg_id in doomed:
            self.remove(msg_id)
        self.culled += len(doomed)
        self._cull_at_n = max(self.limit, int(n * 1.25))
        self._cull_at_bytes = max(self.size_limit, int(size * 1.25))

    def remove(self, msg_id: str) -> TaskRecord | None:
        rec = self._records.pop(msg_id, None)
        if rec is not None:
            self._bytes -= rec.nbytes
            if self.on_remove is not None:
                self.on_remove(rec)
        return rec

    def purge(self, msg_ids: Iterable[str] | None = None, engine_ids: Iterable[int] = ()) -> int:
        """Forget finished records: the given ones, those of the given engines, or all."""
        return len(self.purge_ids(msg_ids, engine_ids))

    def purge_ids(
        self, msg_ids: Iterable[str] | None = None, engine_ids: Iterable[int] = ()
    ) -> list[str]:
        """:meth:`purge`, returning the msg_ids forgotten."""
        engines = set(engine_ids)
        if msg_ids is None and not engines:
            chosen = [m for m, r in self._records.items() if r.removable]
        else:
            wanted = set(msg_ids or ())
            chosen = [
                m
                for m, r in self._records.items()
                if r.removable and (m in wanted or r.engine_id in engines)
            ]
        for msg_id in chosen:
            self.remove(msg_id)
        return chosen


def _nothing(msg_id: str) -> TaskRecord | None:
    return None
