"""The SQLite task store (``--sqlitedb``, the default): every record in one file of the profile.

Records are written by :class:`~.storewriter.StoreWriter`'s thread, never by the router.
Memory keeps the unfinished records and a window of recent finished ones; a finished record
leaves memory once the writer has saved it as it is (:func:`~.storewriter.is_durable`),
past ``keep_finished`` records or ``keep_bytes`` bytes, and its result segments are removed
then.  Reads answer from memory for the records there and from the file for the others:

- a query's conditions that SQL can test exactly as :mod:`.taskquery` does are a ``WHERE``
  clause that only narrows the rows read; every row read is then matched by
  :meth:`~.taskquery.Query.matches` like a record in memory, so both give the same answers;
- only the blobs the query and the keys need are read (a query for ``msg_id`` and dates
  reads no frames);
- frames read back are signed again with this controller's key (a record may be older than
  the controller, which has a new key after each ``ipar start``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from traitlets import Bool, Float, Integer, TraitError, Unicode, validate
from traitlets.config import Configurable

from ..protocol.wire import DELIM, Frame
from .blobfiles import BlobFiles
from .framepack import unpack_frames, unpack_messages
from .recordfields import RecordFields
from .records import FINISHED, TaskRecord
from .sqlitefile import StoreFileError, lock, open_checked
from .storewriter import OUTPUTS, REPLY, REQUEST, StoreWriter, is_durable, to_us
from .taskquery import Condition, Query
from .taskstore import MemoryTaskStore, StoreParts, TaskStoreError

if TYPE_CHECKING:
    from .engines import EngineState

__all__ = ["SQLiteTaskStore", "default_filename"]

log = logging.getLogger("ipar_widgets.controller")

#: query fields SQL can narrow on: field -> (column, kind); see _clause
_COLUMNS: dict[str, tuple[str, str]] = {
    "msg_id": ("msg_id", "text"),
    "engine_uuid": ("engine_uuid", "text"),
    "resubmitted": ("resubmitted", "text"),
    "queue": ("CASE WHEN balanced THEN 'task' ELSE 'mux' END", "text"),
    "submitted": ("submitted", "date"),
    "started": ("started", "date"),
    "completed": ("completed", "date"),
    "received": ("received", "epoch"),
    "label": ("label", "json"),
}
_ORDER_SQL = {"$lt": "<", "$gt": ">", "$lte": "<=", "$gte": ">="}
_MAX_PARAMS = 500  # per IN (...) list; longer lists are read in chunks or matched in Python
_REQUEST_FIELDS = frozenset({"header", "metadata", "content", "buffers"})
_REPLY_FIELDS = frozenset({"result_header", "result_metadata", "result_content", "result_buffers"})
_OUTPUT_FIELDS = frozenset({"stdout", "stderr", "execute_input", "execute_result", "error"})
_SCALARS = (
    "msg_id, arrival, msg_type, client, reply_to, balanced, engine_id, engine_uuid, status, "
    "submitted, started, completed, received, resubmitted, label, nbytes"
)
_MESSAGES = ("request", "reply", "outputs")  # the message columns, after the scalars
_ALL_MESSAGES = ", ".join(_MESSAGES)
_KINDS = (REQUEST, REPLY, OUTPUTS)  # their files' kinds (blobfiles)
#: records of at least this many bytes count towards max_unsaved_bytes (smaller ones are
#: saved faster than engines can make them)
_FOLLOWED = 64 << 10
_FINISHED_SQL = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(FINISHED)))


def default_filename(cluster_id: str) -> str:
    """The database's name in the profile directory: one per cluster id."""
    return f"tasks-{cluster_id}.sqlite" if cluster_id else "tasks.sqlite"


def _seconds(value: Any) -> int | None:
    """Whole seconds since 1970 of an aware datetime (None: not one)."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return int(value.timestamp() // 1)


def _date_clause(column: str, kind: str, op: str, value: Any) -> tuple[str, list[Any]] | None:
    """A test for a date column that passes every row whose date compares as ``op value``
    in Python (more rows may pass: each is then matched exactly).

    The dates are kept as the messages carried them, so the file has no exact integer for
    them; SQL compares whole seconds instead (``strftime('%s')`` reads the ISO forms,
    offsets and ``Z`` included), widened by one second each way.  A text SQLite cannot read
    as a date always passes.  ``received`` is a number of seconds already."""
    if op in ("$exists", "$ne") and (value is None or op == "$exists"):
        if op == "$ne" or value:
            return f"{column} IS NOT NULL", []  # Python finds a date only where one was saved
        return None  # and may find none where a text does not parse: no narrowing
    if op == "$eq" and value is None:
        return (f"{column} IS NULL", []) if kind == "epoch" else None
    seconds = _seconds(value)
    if seconds is None or op not in ("$eq", *_ORDER_SQL):
        return None
    if kind == "epoch":
        stamp = f"CAST({column} AS INTEGER)"
        unreadable = ""
    else:
        stamp = f"CAST(strftime('%s', {column}) AS INTEGER)"
        unreadable = f"{stamp} IS NULL OR "
    if op == "$eq":
        test, params = f"{stamp} BETWEEN ? AND ?", [seconds - 1, seconds + 1]
    elif op in ("$lt", "$lte"):
        test, params = f"{stamp} <= ?", [seconds + 1]
    else:
        test, params = f"{stamp} >= ?", [seconds - 1]
    return f"({column} IS NOT NULL AND ({unreadable}{test}))", params


def _clause(cond: Condition) -> tuple[str, list[Any]] | None:
    """A SQL test that every record ``cond`` matches passes, or None (no narrowing)."""
    column, kind = _COLUMNS.get(cond.field, ("", ""))
    if not column:
        return None
    op, value = cond.op, cond.value
    if kind in ("date", "epoch"):
        return _date_clause(column, kind, op, value)
    if op == "$exists":
        return f"{column} IS {'NOT ' if value else ''}NULL", []
    if op in ("$eq", "$ne"):
        if value is None:
            return f"{column} IS {'NOT ' if op == '$ne' else ''}NULL", []
        ok, param = _sql_value(kind, value)
        if not ok:
            return None
        return (f"{column} = ?" if op == "$eq" else f"{column} IS NOT ?"), [param]
    if op in _ORDER_SQL:
        ok, param = _sql_value(kind, value)
        return (f"{column} {_ORDER_SQL[op]} ?", [param]) if ok else None
    if op in ("$in", "$nin") and isinstance(value, list) and len(value) <= _MAX_PARAMS:
        with_none = None in value
        params = []
        for v in value:
            if v is None:
                continue
            ok, param = _sql_value(kind, v)
            if not ok:
                return None
            params.append(param)
        marks = ", ".join("?" * len(params))
        if op == "$in":
            tests = ([f"{column} IN ({marks})"] if params else []) + (
                [f"{column} IS NULL"] if with_none else []
            )
            return ("(" + " OR ".join(tests) + ")" if tests else "0"), params
        if not params:
            return (f"{column} IS NOT NULL", []) if with_none else None
        if with_none:
            return f"({column} IS NOT NULL AND {column} NOT IN ({marks}))", params
        return f"({column} IS NULL OR {column} NOT IN ({marks}))", params
    return None


def _sql_value(kind: str, value: Any) -> tuple[bool, Any]:
    """(whether SQL compares ``value`` as Python would, the parameter to pass)."""
    if kind == "text":
        return isinstance(value, str), value
    return isinstance(value, str), json.dumps(value)  # json: strings only


def _where(query: Query) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for cond in query.conditions:
        found = _clause(cond)
        if found is not None:
            clauses.append(found[0])
            params.extend(found[1])
    return clauses, params


class SQLiteTaskStore(Configurable):
    """Task records in a SQLite file, written off the routing path (see the module docstring)."""

    filename = Unicode(
        "",
        help="The task database file; a relative path is relative to the profile directory. "
        "Default: tasks.sqlite (tasks-<cluster_id>.sqlite for a cluster id) in the profile "
        "directory. One controller at a time writes a file (it is locked).",
    ).tag(config=True)
    commit_interval = Float(
        0.2,
        help="Seconds between the writer's commits: a record is durable within this many "
        "seconds of its reply (or of any change to it). At most 1.",
    ).tag(config=True)
    pending_delay = Float(
        0.2,
        help="Seconds a task may wait unfinished before its record is written: a task that "
        "finishes sooner is written once, whole (fewer writes: more throughput for long maps "
        "of short tasks). A task is known to a restored controller (ipar start --restore) "
        "once written: if the controller dies, the clients of tasks submitted less than this "
        "(plus commit_interval) before get TaskLost for them.",
    ).tag(config=True)
    keep_finished = Integer(
        1000,
        help="Finished records kept in memory once saved (the most recent ones); older ones "
        "are read back from the file when asked for. Unfinished records always stay.",
    ).tag(config=True)
    keep_bytes = Integer(
        64 << 20,
        help="Bytes of requests, results and outputs of finished records kept in memory once "
        "saved (default 64 MiB); past it the oldest leave memory.",
    ).tag(config=True)
    max_unsaved_bytes = Integer(
        128 << 20,
        help="Bytes of finished tasks' results the controller may hold before they are "
        "written (default 128 MiB). Past it, no task is handed to an engine until the writer "
        "has caught up: engines that produce results faster than the disk takes them wait, "
        "instead of the controller's memory growing.",
    ).tag(config=True)
    quick_check = Bool(
        True,
        help="Run SQLite's quick_check on the file at start (it reads the whole file: a damaged "
        "one is refused at start instead of failing a query later).",
    ).tag(config=True)
    backlog_warning = Integer(
        100_000,
        help="Changes waiting for the writer past which the controller logs a warning (the "
        "writer never blocks routing; records wait in memory instead).",
    ).tag(config=True)

    name = "SQLiteDB"
    note: Any  # the writer's deque.append, from attach() on

    @validate("pending_delay")
    def _check_delay(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 60:
            raise TraitError(
                f"SQLiteTaskStore.pending_delay: expected seconds in [0, 60], found {value!r}"
            )
        return value

    @validate("commit_interval")
    def _check_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 < value <= 1:
            raise TraitError(
                f"SQLiteTaskStore.commit_interval: expected seconds in (0, 1], found {value!r}"
            )
        return value

    def __init__(self, profile_dir: str | Path, cluster_id: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = self.filename or default_filename(cluster_id)
        self.path = (Path(profile_dir) / name).resolve()
        #: large messages, in files beside the database (blobfiles.py)
        self.blob_files = BlobFiles(self.path)
        self._lock: IO[str] | None = None
        self._db: sqlite3.Connection | None = None
        self._writer: StoreWriter | None = None
        #: a database-only change was queued: readers wait for the writer first
        self._dirty = False
        #: why tasks are held back ('' when they are not; see max_unsaved_bytes)
        self._behind = ""

    @property
    def tick_period(self) -> float:
        return self.commit_interval

    # -- start and stop ---------------------------------------------------------------------------
    def open(self) -> None:
        """Lock and check the file (TaskStoreError with the path and what to do)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = lock(self.path)
            write = open_checked(self.path, self.quick_check)
        except StoreFileError as exc:
            self._release()
            raise TaskStoreError(str(exc)) from None
        self._write_db = write
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self._db.row_factory = sqlite3.Row

    def attach(self, parts: StoreParts) -> None:
        if self._db is None:
            self.open()
        self.parts = parts
        self.records = parts.records
        self.memory = MemoryTaskStore()
        self.memory.attach(parts)
        self.arrival_offset = time.time() - time.monotonic()
        self._writer = StoreWriter(
            self._write_db,
            interval=self.commit_interval,
            pending_delay=self.pending_delay,
            warn_at=self.backlog_warning,
            uuid_of=parts.uuid_of,
            reply_frames=self._reply_frames,
            arrival_offset=self.arrival_offset,
            blob_files=self.blob_files,
        )
        self.note = self._writer.note
        records = parts.records
        # memory is bounded here (tick), by the saved finished records, not by scanning
        # the records (most of which may be unfinished: a map of 100,000 tasks)
        records.limit = records.size_limit = 1 << 62
        records.can_drop = is_durable
        records.recall = self._recall
        #: records holding _FOLLOWED bytes or more, until they are saved (max_unsaved_bytes)
        self._unsaved: dict[str, tuple[TaskRecord, int]] = {}
        self._unsaved_bytes = 0  # of the finished ones
        records.on_large = self._large
        records.large_at = _FOLLOWED
        #: saved finished records in memory, oldest first: msg_id -> (record, bytes)
        self._window: OrderedDict[str, tuple[TaskRecord, int]] = OrderedDict()
        self._window_bytes = 0

    def _reply_frames(self, rec: TaskRecord, reply: list[Frame], segments: Any) -> list[Frame]:
        # in the writer's thread: the segments are only removed once the record is saved
        return self.parts.segments.inline(reply) if segments else reply

    def flush(self, timeout: float = 10.0) -> bool:
        self._dirty = False
        return self._writer.flush(timeout) if self._writer is not None else True

    def close(self, timeout: float = 30.0) -> None:
        if self._writer is not None:
            if not self._writer.close(timeout):
                log.error(
                    "the task database writer did not finish within %g s; the last changes "
                    "may be missing from %s",
                    timeout,
                    self.path,
                )
            self._writer = None
        for db in (self._db, getattr(self, "_write_db", None)):
            if db is not None:
                db.close()
        self._db = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def tick(self) -> None:
        """Let the oldest saved finished records leave memory, past ``keep_finished``
        records or ``keep_bytes`` bytes (their segments go with them)."""
        if self._writer is None:
            return
        saved, window, records = self._writer.finished, self._window, self.records
        in_window = self._window_bytes
        get = records.get
        while saved:
            rec = saved.popleft()
            msg_id = rec.msg_id
            if get(msg_id) is rec:
                old = window.pop(msg_id, None)
                if old is not None:
                    in_window -= old[1]
                window[msg_id] = (rec, rec.nbytes)
                in_window += rec.nbytes
        kept = []
        keep_n, keep_bytes = self.keep_finished, self.keep_bytes  # traits: read once
        while window and (len(window) > keep_n or in_window > keep_bytes):
            msg_id, (rec, nbytes) = window.popitem(last=False)
            in_window -= nbytes
            if get(msg_id) is not rec or not is_durable(rec):
                continue  # purged meanwhile, or changed since saved: handed back once saved
            if rec.removable:
                records.remove(msg_id)
            else:
                kept.append((msg_id, rec, nbytes))  # a broadcast's part, waiting for the rest
        self._window_bytes = in_window
        for msg_id, rec, nbytes in kept:
            window[msg_id] = (rec, nbytes)
            self._window_bytes += nbytes
        if self._unsaved:
            self._forget_saved()

    def _large(self, rec: TaskRecord) -> None:
        """``rec`` holds _FOLLOWED bytes or more: count them while they are not saved."""
        old = self._unsaved.get(rec.msg_id)
        if old is not None and old[0] is rec:
            self._unsaved_bytes -= old[1]
        counted = rec.nbytes if rec.finished else 0  # a running task goes on, held or not
        self._unsaved[rec.msg_id] = (rec, counted)
        self._unsaved_bytes += counted
        if counted:
            self._check_backlog()  # at once: results may arrive faster than ticks

    def _forget_saved(self) -> None:
        records = self.records
        for msg_id, (rec, counted) in list(self._unsaved.items()):
            if records.get(msg_id) is not rec or is_durable(rec):
                del self._unsaved[msg_id]
                self._unsaved_bytes -= counted
        self._check_backlog()

    def _check_backlog(self) -> None:
        """Hold tasks in the controller while the large results not saved yet are past
        ``max_unsaved_bytes`` (StoreParts.pause)."""
        unsaved, limit = self._unsaved_bytes, self.max_unsaved_bytes
        behind = (
            f"{unsaved / 2**20:.0f} MiB of results are waiting to be written to {self.path}, "
            f"more than SQLiteTaskStore.max_unsaved_bytes ({limit / 2**20:.0f} MiB)"
            if unsaved > limit
            else ""
        )
        if behind != self._behind:
            self._behind = behind
            self.parts.pause(behind)

    def describe(self) -> dict[str, Any]:
        writer = self._writer
        return {
            "db_class": self.name,
            "path": str(self.path),
            "queued": len(writer.queue) if writer is not None else 0,
            "written": writer.written if writer is not None else 0,
            "paused": self._behind,
        }

    # -- reading rows -----------------------------------------------------------------------------
    def _read(self) -> sqlite3.Connection:
        assert self._db is not None, "the task store is not open"
        if self._dirty:
            self.flush()
        return self._db

    def _resign(self, frames: list[bytes]) -> list[Frame]:
        """Saved frames (from the header on) as received: signed with this controller's key."""
        return [DELIM, self.parts.wire.sign(frames[:4]), *frames]

    def _record(self, row: sqlite3.Row, signed: bool) -> TaskRecord:
        """A TaskRecord from a row (with the blobs the row has)."""
        rec = TaskRecord(row["msg_id"], row["client"], row["msg_type"], row["submitted"] or "")
        keys = row.keys()
        if "reply_to" in keys:
            rec.reply_to = row["reply_to"]
        rec.balanced = bool(row["balanced"])
        rec.engine_id = row["engine_id"]
        rec.status = row["status"]
        rec.started = row["started"]
        rec.completed = row["completed"]
        rec.arrived = row["arrival"] - self.arrival_offset
        rec.nbytes = row["nbytes"]
        if row["received"] is not None:
            rec.received = row["received"]
        if row["resubmitted"] is not None:
            rec.resubmitted = row["resubmitted"]
        sign = self._resign if signed else _unsigned
        blobs = self.blob_files.read
        if "request" in keys and row["request"] is not None:
            rec.request = sign(unpack_frames(blobs(row["request"])))
        if "reply" in keys and row["reply"] is not None:
            rec.reply = sign(unpack_frames(blobs(row["reply"])))
        if "outputs" in keys and row["outputs"] is not None:
            rec.outputs = [sign(m) for m in unpack_messages(blobs(row["outputs"]))]
        return rec

    def _rows(
        self, query: Query | None, blobs: Sequence[str], extra: str = ""
    ) -> Iterable[sqlite3.Row]:
        columns = ", ".join([_SCALARS, *blobs])
        clauses, params = _where(query) if query is not None else ([], [])
        if extra:
            clauses.append(extra)
        pinned = query.msg_ids if query is not None else None
        db = self._read()
        if pinned is not None and len(pinned) > _MAX_PARAMS:
            ids = sorted(pinned)
            for start in range(0, len(ids), _MAX_PARAMS):
                chunk = ids[start : start + _MAX_PARAMS]
                where = " AND ".join([f"msg_id IN ({', '.join('?' * len(chunk))})", *clauses])
                yield from db.execute(
                    f"SELECT {columns} FROM tasks WHERE {where}", [*chunk, *params]
                )
            return
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        yield from db.execute(f"SELECT {columns} FROM tasks{where} ORDER BY rowid", params)

    # -- TaskStore --------------------------------------------------------------------------------
    def find_records(self, query: Query, keys: Sequence[str]) -> list[dict[str, Any]]:
        offset = self.arrival_offset
        found = [
            (rec.arrived + offset, values)
            for rec, values in self.memory.find_in_memory(query, keys)
        ]
        wanted = query.fields | frozenset(keys)
        blobs = [
            blob
            for blob, fields in (
                ("request", _REQUEST_FIELDS),
                ("reply", _REPLY_FIELDS),
                ("outputs", _OUTPUT_FIELDS),
            )
            if wanted & fields
        ]
        in_memory = self.records
        fields = tuple(keys)
        for row in self._rows(query, blobs):
            if row["msg_id"] in in_memory:
                continue
            rec = self._record(row, signed=False)
            label = row["label"]
            known = {
                "engine_uuid": row["engine_uuid"],
                "label": None if label is None else json.loads(label),
            }
            view = RecordFields(rec, _no_uuid, known)
            if query.matches(view):
                found.append((row["arrival"], view.as_dict(fields)))
        found.sort(key=lambda item: item[0])
        return [values for _, values in found]

    def get_history(self) -> list[str]:
        offset = self.arrival_offset
        items: list[tuple[float, float, str]] = []
        no_date = float("-inf")
        for rec in self.records:
            us = to_us(rec.submitted)
            items.append((no_date if us is None else us, rec.arrived + offset, rec.msg_id))
        in_memory = self.records
        for msg_id, submitted, arrival in self._read().execute(
            "SELECT msg_id, submitted, arrival FROM tasks"
        ):
            if msg_id not in in_memory:
                us = to_us(submitted)
                items.append((no_date if us is None else us, arrival, msg_id))
        items.sort()
        return [msg_id for _, _, msg_id in items]

    def _fetch(self, msg_id: str, columns: str, signed: bool) -> TaskRecord | None:
        """The record of ``msg_id`` read from the file, with ``columns`` (None: no row)."""
        query = f"SELECT {columns} FROM tasks WHERE msg_id = ?"
        row = self._read().execute(query, (msg_id,)).fetchone()
        return None if row is None else self._record(row, signed=signed)

    def get_record(self, msg_id: str) -> TaskRecord | None:
        return self._fetch(msg_id, f"{_SCALARS}, {_ALL_MESSAGES}", signed=True)

    def _recall(self, msg_id: str) -> TaskRecord | None:
        return self._fetch(msg_id, _SCALARS, signed=False)

    def missing(self) -> str:
        return f"never submitted to this cluster, or purged (the records are in {self.path})"

    def unfinished(self, msg_ids: Iterable[str]) -> list[str]:
        # only tasks this controller is running: one left unfinished in the file by a
        # controller that died is not running anywhere, and may be forgotten
        return self.memory.unfinished(msg_ids)

    def drop_finished(self, msg_ids: Iterable[str] | None, engine_ids: Iterable[int] = ()) -> int:
        assert self._writer is not None
        ids = None if msg_ids is None else list(msg_ids)
        engines = list(engine_ids)
        purged = set(self.records.purge_ids(ids, engines))
        running = {rec.msg_id for rec in self.records}  # not finished, or kept by a broadcast
        uuids = [u for u in map(self.parts.uuid_of, engines) if u is not None]
        dropped: list[int] = [0]

        def delete(db: sqlite3.Connection) -> None:
            if ids is None and not engines:
                rows = db.execute(f"SELECT msg_id FROM tasks WHERE {_FINISHED_SQL}").fetchall()
            else:
                rows = []
                for start in range(0, len(ids or ()), _MAX_PARAMS):
                    chunk = (ids or [])[start : start + _MAX_PARAMS]
                    marks = ", ".join("?" * len(chunk))
                    rows += db.execute(
                        f"SELECT msg_id FROM tasks WHERE msg_id IN ({marks})", chunk
                    ).fetchall()
                if uuids:
                    marks = ", ".join("?" * len(uuids))
                    rows += db.execute(
                        f"SELECT msg_id FROM tasks WHERE engine_uuid IN ({marks}) "
                        f"AND {_FINISHED_SQL}",
                        uuids,
                    ).fetchall()
            doomed = {r[0] for r in rows} - running
            gone = [(m,) for m in doomed]
            db.executemany("DELETE FROM tasks WHERE msg_id = ?", gone)
            self.blob_files.remove(doomed, _KINDS)
            dropped[0] = len(doomed - purged)

        self._writer.command(delete)
        self.flush()
        return len(purged) + dropped[0]

    def set_resubmitted(self, msg_id: str, new_msg_id: str) -> None:
        rec = self.records.get(msg_id)
        if rec is not None:
            rec.resubmitted = new_msg_id
            self.note(rec)
            return
        assert self._writer is not None
        self._writer.command(
            lambda db: db.execute(
                "UPDATE tasks SET resubmitted = ? WHERE msg_id = ?", (new_msg_id, msg_id)
            )
        )
        self._dirty = True

    def engine_registered(self, engine: EngineState) -> None:
        assert self._writer is not None
        row = (engine.uuid, engine.id, engine.hostname, engine.pid, engine.registered_at)
        self._writer.command(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO engines (uuid, id, hostname, pid, registered) "
                "VALUES (?, ?, ?, ?, ?)",
                row,
            )
        )

    def engine_left(self, engine: EngineState, reason: str) -> None:
        assert self._writer is not None
        left = (time.time(), reason, engine.uuid)
        self._writer.command(
            lambda db: db.execute("UPDATE engines SET left_at = ?, reason = ? WHERE uuid = ?", left)
        )

    # -- restore ----------------------------------------------------------------------------------
    def load_unfinished(self) -> list[TaskRecord]:
        rows = self._read().execute(
            f"SELECT {_SCALARS}, {_ALL_MESSAGES} FROM tasks WHERE NOT {_FINISHED_SQL} ORDER BY rowid"
        )
        return [self._record(row, signed=True) for row in rows]

    def load_engines(self) -> list[dict[str, Any]]:
        rows = self._read().execute(
            "SELECT id, uuid, hostname, pid, registered, left_at, reason FROM engines "
            "ORDER BY registered"
        )
        return [
            {
                "id": r["id"],
                "uuid": r["uuid"],
                "hostname": r["hostname"],
                "pid": r["pid"],
                "registered": r["registered"],
                "left": r["left_at"],
                "reason": r["reason"],
            }
            for r in rows
        ]


def _unsigned(frames: list[bytes]) -> list[Frame]:
    """Saved frames in their place in a message, unsigned (for reading fields only)."""
    return [DELIM, b"", *frames]


def _no_uuid(engine_id: int | None) -> str | None:
    return None  # a row's engine_uuid is known (passed to RecordFields)
