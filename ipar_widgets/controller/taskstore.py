"""The task records as a database: the seam between the router's records and where they are kept.

:class:`TaskStore` is what the record queries (``db_request``, ``history_request``,
``purge_request``, ``resubmit_request``, ``result_request``: see :mod:`.recordqueries`) ask
of the records, and what the router tells it: one ``note(rec)`` when a record changes.
Three stores implement it, chosen by ``ControllerApp.db_class`` (see :mod:`.stores`):

- :class:`MemoryTaskStore` (``DictDB``): the router's own records
  (:class:`~.records.RecordStore`), kept until purged or past their bounds;
- :class:`NoTaskStore` (``NoDB``): records only while their task is pending;
- :class:`~.sqlitestore.SQLiteTaskStore` (``SQLiteDB``, the default): every record in a
  SQLite file of the profile, written by a thread; memory keeps only recent ones.

A store is made first (its file is checked and locked before the controller binds a port)
and then attached to the controller's records (:meth:`TaskStore.attach`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol.wire import Wire
from .recordfields import RecordFields, safe_date
from .records import RecordStore, TaskRecord
from .taskquery import Query

if TYPE_CHECKING:
    from .engines import EngineState
    from .segments import SegmentKeeper

__all__ = ["StoreParts", "TaskStore", "TaskStoreError", "MemoryTaskStore", "NoTaskStore"]

#: where records without a submission date sort in the history: first
_NO_DATE = datetime.min.replace(tzinfo=timezone.utc)


class TaskStoreError(RuntimeError):
    """The task store cannot start (its file is locked, damaged, of another schema ...);
    the text says which file and what to do.  The controller exits with it."""


@dataclass(frozen=True)
class StoreParts:
    """What a store works with: the controller's records, engines' uuids, segments, wire."""

    records: RecordStore
    #: an engine id's uuid, also of engines that left
    uuid_of: Callable[[int | None], str | None]
    segments: SegmentKeeper
    wire: Wire
    #: hold tasks back in the controller, with why ('' to hand them out again): a store
    #: with more results to save than it allows calls it (results arrive only while engines
    #: have tasks, so holding tasks bounds them; see SQLiteTaskStore.max_unsaved_bytes)
    pause: Callable[[str], None] = field(default=lambda reason: None)


class TaskStore(Protocol):
    """Task records by msg_id, with ipyparallel's fields (``protocol/taskfields.py``)."""

    #: the router's hot path: ``rec`` was submitted, handed to an engine, finished or
    #: resubmitted (its outputs are saved with its reply)
    note: Callable[[TaskRecord], None]

    def attach(self, parts: StoreParts) -> None:
        """Start keeping the records of ``parts`` (once, before the first task)."""
        ...

    def find_records(self, query: Query, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The records that match ``query``, oldest first, each with ``keys`` (which start
        with ``msg_id``); buffer fields are lists of frames, dates aware datetimes."""
        ...

    def get_history(self) -> list[str]:
        """Every msg_id, ordered by submission time."""
        ...

    def get_record(self, msg_id: str) -> TaskRecord | None:
        """The whole record of a task that is no longer in memory (its frames signed anew
        with this controller's key), or None."""
        ...

    def missing(self) -> str:
        """Why a task may have no record, for the error a client sees."""
        ...

    def unfinished(self, msg_ids: Iterable[str]) -> list[str]:
        """Those of ``msg_ids`` whose task has not finished (in the order given)."""
        ...

    def drop_finished(self, msg_ids: Iterable[str] | None, engine_ids: Iterable[int] = ()) -> int:
        """Forget finished tasks: the given ones and those of the given engines, or (None and
        no engines) every one; return how many were forgotten."""
        ...

    def set_resubmitted(self, msg_id: str, new_msg_id: str) -> None:
        """Note that ``new_msg_id`` was resubmitted from ``msg_id`` (its ``resubmitted``)."""
        ...

    def engine_registered(self, engine: EngineState) -> None:
        """An engine joined (the database keeps a table of them)."""
        ...

    def engine_left(self, engine: EngineState, reason: str) -> None:
        """An engine left, on purpose or not."""
        ...

    def tick(self) -> None:
        """Called every ``tick_period`` seconds from the controller's loop (to let saved
        records leave memory)."""
        ...

    @property
    def tick_period(self) -> float:
        """Seconds between calls of :meth:`tick`."""
        ...

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every change noted so far is saved; False if not within ``timeout``."""
        ...

    def close(self, timeout: float = 30.0) -> None:
        """Save what is noted, stop writing, release the file (the controller is stopping)."""
        ...

    def load_unfinished(self) -> list[TaskRecord]:
        """Records saved while their task had not finished (for ``ipar start --restore``):
        ``msg_id, client, reply_to, msg_type, submitted, balanced, engine_id, status``, the
        request frames and the outputs so far.  Call before the first task is submitted."""
        ...

    def load_engines(self) -> list[dict[str, Any]]:
        """The engines the database saw: ``id, uuid, hostname, pid, registered, left``
        (``left`` a time, or None for one that had not left)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ``ipar list`` and the status request show of the store."""
        ...


class MemoryTaskStore:
    """A :class:`TaskStore` over the controller's records in memory (``--dictdb``)."""

    tick_period = 1.0
    name = "DictDB"

    def __init__(self) -> None:
        self.note: Callable[[TaskRecord], None] = _ignore

    def attach(self, parts: StoreParts) -> None:
        self.records = parts.records
        self.uuid_of = parts.uuid_of
        self.segments = parts.segments

    def _candidates(self, query: Query) -> list[TaskRecord]:
        """The records that may match, in arrival order: only those a condition on msg_id
        pins (looked up, not scanned for), else all."""
        pinned = query.msg_ids
        if pinned is None:
            return list(self.records)
        chosen = [r for r in map(self.records.get, pinned) if r is not None]
        chosen.sort(key=lambda r: r.arrived)
        return chosen

    def find_records(self, query: Query, keys: Sequence[str]) -> list[dict[str, Any]]:
        return [values for _, values in self.find_in_memory(query, keys)]

    def find_in_memory(
        self, query: Query, keys: Sequence[str]
    ) -> list[tuple[TaskRecord, dict[str, Any]]]:
        """:meth:`find_records` of the records in memory, each with its record."""
        found = []
        fields = tuple(keys)
        for rec in self._candidates(query):
            view = RecordFields(rec, self.uuid_of)
            if query.matches(view):
                values = view.as_dict(fields)
                if values.get("result_buffers") and rec.segments:
                    values["result_buffers"] = self.segments.result_frames(rec)[6:]
                found.append((rec, values))
        return found

    def get_history(self) -> list[str]:
        records = list(self.records)  # arrival order breaks ties between equal dates
        records.sort(key=lambda r: safe_date(r.submitted) or _NO_DATE)
        return [r.msg_id for r in records]

    def get_record(self, msg_id: str) -> TaskRecord | None:
        return None

    def missing(self) -> str:
        return (
            "never submitted to this cluster, or purged, or dropped to keep the records "
            "within record_limit (this controller keeps them in memory: --dictdb)"
        )

    def unfinished(self, msg_ids: Iterable[str]) -> list[str]:
        out = []
        for msg_id in msg_ids:
            rec = self.records.get(msg_id)
            if rec is not None and not rec.finished:
                out.append(msg_id)
        return out

    def drop_finished(self, msg_ids: Iterable[str] | None, engine_ids: Iterable[int] = ()) -> int:
        return self.records.purge(msg_ids, engine_ids)

    def set_resubmitted(self, msg_id: str, new_msg_id: str) -> None:
        rec = self.records.get(msg_id)
        if rec is not None:
            rec.resubmitted = new_msg_id
            self.note(rec)

    def engine_registered(self, engine: EngineState) -> None:
        pass

    def engine_left(self, engine: EngineState, reason: str) -> None:
        pass

    def tick(self) -> None:
        pass

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self, timeout: float = 30.0) -> None:
        pass

    def load_unfinished(self) -> list[TaskRecord]:
        return []

    def load_engines(self) -> list[dict[str, Any]]:
        return []

    def describe(self) -> dict[str, Any]:
        return {"db_class": self.name}


def _ignore(rec: TaskRecord) -> None:
    pass


class NoTaskStore(MemoryTaskStore):
    """Records only while their task is pending (``--nodb``): a finished record leaves
    memory as soon as its reply is answered, and its result segments with it.  Queries,
    the history and ``get_result`` see the pending tasks only."""

    tick_period = 0.5
    name = "NoDB"
    #: how many finished tasks' outcomes are remembered for the dependencies of later tasks
    RECALLED = 100_000

    def __init__(self) -> None:
        super().__init__()
        self.note = self._finished_goes
        #: msg_id -> (status, engine_id) of tasks that finished lately
        self._outcomes: OrderedDict[str, tuple[str, int | None]] = OrderedDict()

    def attach(self, parts: StoreParts) -> None:
        super().attach(parts)
        parts.records.on_remove = self._remember(parts.records.on_remove)
        parts.records.recall = self._recall

    def _remember(
        self, release: Callable[[TaskRecord], None] | None
    ) -> Callable[[TaskRecord], None]:
        outcomes = self._outcomes

        def removed(rec: TaskRecord) -> None:
            outcomes[rec.msg_id] = (rec.status, rec.engine_id)
            if len(outcomes) > self.RECALLED:
                outcomes.popitem(last=False)
            if release is not None:
                release(rec)

        return removed

    def _finished_goes(self, rec: TaskRecord) -> None:
        if rec.removable:
            self.records.remove(rec.msg_id)

    def _recall(self, msg_id: str) -> TaskRecord | None:
        outcome = self._outcomes.get(msg_id)
        if outcome is None:
            return None
        rec = TaskRecord(msg_id, b"", "apply_request", "")
        rec.status, rec.engine_id = outcome
        return rec

    def tick(self) -> None:
        # parts of a gathered broadcast become removable only when the last part finishes
        self.records.purge(None)

    def missing(self) -> str:
        return (
            "this controller keeps no records of finished tasks (it was started with "
            "--nodb); start the cluster with --sqlitedb (the default) or --dictdb to look "
            "up results later"
        )
