"""Answers to the requests about task records: results, history, queries, purges, resubmits.

``result_request`` serves ``get_result`` from the records the router keeps, or from the task
store for those no longer in memory (the signed reply and outputs, replayed by the client as
if they arrived now).  ``db_request``,
``history_request``, ``purge_request`` and ``resubmit_request`` go through the controller's
:class:`~.taskstore.TaskStore`, with queries and key selections checked by
:mod:`.taskquery` first, whatever the store.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..protocol.taskfields import BUFFER_FIELDS
from ..protocol.wire import Frame, utcnow_iso
from .queries import BadRequest, NoRecord, handler, msg_ids_in
from .taskquery import BadQuery, parse_keys, parse_query

if TYPE_CHECKING:
    from .hub import Controller

#: what resubmit reads of each original task
_RESUBMIT_KEYS = ("msg_id", "header", "metadata", "content", "buffers", "queue", "engine_uuid")
_TASK_TYPES = frozenset({"apply_request", "execute_request"})


def _no_record(ctl: Controller, missing: list[str]) -> NoRecord:
    which = f"task {missing[0]!r}" if len(missing) == 1 else f"tasks {missing!r}"
    return NoRecord(
        f"the controller has no record of {which} ({ctl.tasks.missing()}); "
        "rc.hub_history() lists the tasks it has"
    )


@handler("result_request")
def _results(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    """Tasks' reply and output messages, exactly as the engines signed them; with ``watch``,
    the replies of those still running are forwarded to the asking client too.  A restored
    controller answers once its engines rejoined (they may bring replies its database did
    not have)."""
    if ctl.restoring:
        ctl.when_restored(lambda: _results(ctl, client, header, content))
        return
    results: dict[str, Any] = {}
    buffers: list[Frame] = []
    watch = bool(content.get("watch"))
    for msg_id in msg_ids_in(content):
        rec = ctl.records.get(msg_id)
        if rec is None:  # finished long ago, or before this controller started?
            rec = ctl.tasks.get_record(msg_id)
        if rec is None:
            results[msg_id] = {"status": "unknown", "why": ctl.tasks.missing()}
            continue
        entry = rec.summary()
        entry["reply"] = rec.finished and rec.reply is not None
        received = getattr(rec, "received", None)
        if entry["reply"] and received is not None:
            entry["received"] = datetime.fromtimestamp(received, timezone.utc).isoformat()
        messages = [rec.reply, *rec.outputs] if entry["reply"] else list(rec.outputs)
        if entry["reply"]:
            messages[0] = ctl.segments.reply_for(client, rec, messages[0])
        entry["frames"] = [len(frames) for frames in messages]
        for frames in messages:
            buffers.extend(frames)
        if watch and not rec.finished and client != rec.client and client not in rec.watchers:
            rec.watchers = [*rec.watchers, client]  # forward its reply and outputs here too
        results[msg_id] = entry
    ctl.reply(client, "result_reply", {"status": "ok", "results": results}, header, buffers)


@handler("history_request")
def _history(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    ctl.reply(client, "history_reply", {"status": "ok", "history": ctl.tasks.get_history()}, header)


@handler("db_request")
def _db_query(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    """Records matching a query: each a dict of the fields asked for; the buffer fields, when
    asked for by name, travel as frames (``buffer_lens``/``result_buffer_lens`` per record)."""
    try:
        query = parse_query(content.get("query", {}))
        keys = parse_keys(content.get("keys"))
    except BadQuery as exc:
        raise BadRequest(str(exc)) from None
    records = ctl.tasks.find_records(query, keys)
    buffers: list[Frame] = []
    lens: dict[str, list[int] | None] = {
        field: ([] if field in keys else None) for field in sorted(BUFFER_FIELDS)
    }
    for rec in records:
        for field, counts in lens.items():
            frames = rec.pop(field, None) or []
            if counts is not None:
                counts.append(len(frames))
                buffers.extend(frames)
    ctl.reply(
        client,
        "db_reply",
        {
            "status": "ok",
            "records": records,
            "buffer_lens": lens["buffers"],
            "result_buffer_lens": lens["result_buffers"],
        },
        header,
        buffers,
    )


def _engine_ids_in(content: dict[str, Any]) -> list[int]:
    ids = content.get("engine_ids") or []
    if not isinstance(ids, list) or not all(
        isinstance(e, int) and not isinstance(e, bool) for e in ids
    ):
        raise BadRequest(f"'engine_ids' must be a list of engine ids, found {ids!r}")
    return ids


@handler("purge_request")
def _purge(ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]) -> None:
    """Forget finished tasks: ``msg_ids`` (a list, or ``"all"``) and those of ``engine_ids``.
    Naming a task that has not finished is refused; msg_ids without a record are ignored
    (forgetting what is already gone is not an error)."""
    if content.get("msg_ids") == "all":
        purged = ctl.tasks.drop_finished(None)
    else:
        ids = msg_ids_in(content) if content.get("msg_ids") is not None else []
        engine_ids = _engine_ids_in(content)
        if not ids and not engine_ids:
            raise BadRequest("purge_request needs 'msg_ids' (a list, or 'all') or 'engine_ids'")
        unfinished = ctl.tasks.unfinished(ids)
        if unfinished:
            raise BadRequest(
                f"cannot forget task(s) {unfinished!r}: they have not finished; wait for them "
                "(or abort them) first"
            )
        purged = ctl.tasks.drop_finished(ids, engine_ids)
    ctl.reply(client, "purge_reply", {"status": "ok", "purged": purged}, header)


@handler("resubmit_request")
def _resubmit(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    """Run tasks again under new msg_ids, for the asking client (their replies and outputs go
    to it).  Each new request is the original's: its header with a new msg_id and date (the
    original header as its parent), its metadata (updated with ``metadata``), content and
    buffers.  A load-balanced task is balanced again; one sent to an engine goes to that
    engine, or is balanced if the engine has left.  Answers ``{"resubmitted": {old: new}}``
    before any of them is sent."""
    ids = list(dict.fromkeys(msg_ids_in(content)))
    extra = content.get("metadata") or {}
    if not isinstance(extra, dict):
        raise BadRequest(f"'metadata' must be a dict of task metadata, found {extra!r}")
    found = {
        r["msg_id"]: r
        for r in ctl.tasks.find_records(parse_query({"msg_id": {"$in": ids}}), _RESUBMIT_KEYS)
    }
    missing = [m for m in ids if m not in found]
    if missing:
        raise _no_record(ctl, missing)
    planned = []
    for msg_id in ids:
        original = found[msg_id]
        old_header = original["header"]
        if not old_header or old_header.get("msg_type") not in _TASK_TYPES:
            raise BadRequest(f"the record of task {msg_id!r} keeps no request to resubmit")
        metadata = {**(original["metadata"] or {}), **extra}
        if "shm" in metadata:
            raise BadRequest(
                f"task {msg_id!r} cannot be resubmitted: its arguments travelled through "
                "shared memory, whose files are removed as the task finishes; submit it again "
                "instead"
            )
        new_id = str(uuid.uuid4())
        new_header = {**old_header, "msg_id": new_id, "date": utcnow_iso()}
        _, frames = ctl.wire.build(
            old_header["msg_type"],
            original["content"] or {},
            parent=old_header,
            metadata=metadata,
            header=new_header,
            buffers=original["buffers"],
        )
        engine = None
        if original["queue"] != "task" and original["engine_uuid"] is not None:
            engine = ctl.engines.by_uuid.get(original["engine_uuid"])
        planned.append((msg_id, new_header, frames, None if engine is None else engine.id))
    ctl.reply(
        client,
        "resubmit_reply",
        {
            "status": "ok",
            "resubmitted": {old: h["msg_id"] for old, h, _, _ in planned},
            "submitted": {h["msg_id"]: h["date"] for _, h, _, _ in planned},
        },
        header,
    )
    for old, new_header, frames, engine_id in planned:
        ctl.tasks.set_resubmitted(old, new_header["msg_id"])
        ctl.submit_task(client, engine_id, new_header, frames)
