"""The task records as a database: the seam the controller's record queries go through.

:class:`TaskStore` is what ``db_request``, ``history_request``, ``purge_request`` and
``resubmit_request`` (see :mod:`.queries`) ask of the records; nothing else reads them that
way, and the client only ever sees the messages.  :class:`MemoryTaskStore` answers from the
router's own records (:class:`~.records.RecordStore`), which the routing path keeps anyway,
so keeping a queryable record costs that path nothing.  Another store (a database on disk)
implements the same protocol, taking the checked :class:`~.taskquery.Query` and translating
its conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from ..protocol.wire import Frame
from .recordfields import RecordFields, safe_date
from .records import RecordStore, TaskRecord
from .taskquery import Query

__all__ = ["TaskStore", "MemoryTaskStore"]

#: where records without a submission date sort in the history: first
_NO_DATE = datetime.min.replace(tzinfo=timezone.utc)


class TaskStore(Protocol):
    """Task records by msg_id, with ipyparallel's fields (``protocol/taskfields.py``)."""

    def find_records(self, query: Query, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The records that match ``query``, oldest first, each with ``keys`` (which start
        with ``msg_id``); buffer fields are lists of frames, dates aware datetimes."""
        ...

    def get_history(self) -> list[str]:
        """Every msg_id, ordered by submission time."""
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


class MemoryTaskStore:
    """A :class:`TaskStore` over the controller's records in memory."""

    def __init__(
        self,
        records: RecordStore,
        uuid_of: Callable[[int | None], str | None],
        result_frames: Callable[[TaskRecord], list[Frame]],
    ) -> None:
        self.records = records
        #: an engine id's uuid, also of engines that left
        self.uuid_of = uuid_of
        #: a finished record's reply frames with any shared-memory segment read back in
        self.result_frames = result_frames

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
        found = []
        fields = tuple(keys)
        for rec in self._candidates(query):
            view = RecordFields(rec, self.uuid_of)
            if query.matches(view):
                values = view.as_dict(fields)
                if values.get("result_buffers") and rec.segments:
                    values["result_buffers"] = self.result_frames(rec)[6:]
                found.append(values)
        return found

    def get_history(self) -> list[str]:
        records = list(self.records)  # arrival order breaks ties between equal dates
        records.sort(key=lambda r: safe_date(r.submitted) or _NO_DATE)
        return [r.msg_id for r in records]

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

    def load_unfinished(self) -> list[TaskRecord]:
        return []  # nothing outlives the controller's memory

    def load_engines(self) -> list[dict[str, object]]:
        return []
