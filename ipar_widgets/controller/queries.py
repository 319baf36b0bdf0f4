"""Answers to the questions and commands clients send the controller itself (routing frame ``b"c"``).

Each handler takes the controller, the asking client's identity, the request header and its
content, and replies with ``<name>_reply``.  A bad request gets an error reply that says what
was expected and what was found; it never stops the controller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .records import ABORTED, FINISHED

if TYPE_CHECKING:
    from .hub import Controller

log = logging.getLogger("ipar_widgets.controller")

Handler = Callable[["Controller", bytes, dict[str, Any], dict[str, Any]], None]
_handlers: dict[str, Handler] = {}


class BadRequest(ValueError):
    """A request the controller cannot act on; its text is sent back to the client."""


class NoRecord(KeyError):
    """A request names tasks the controller has no record of; the client raises it as
    :class:`~ipar_widgets.error.NoSuchTask` (a KeyError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such task"


def handler(msg_type: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the answer to ``msg_type``."""

    def register(f: Handler) -> Handler:
        _handlers[msg_type] = f
        return f

    return register


def handle(ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]) -> None:
    """Answer one request to the controller; a bad or unknown one gets an error reply."""
    msg_type = header["msg_type"]
    f = _handlers.get(msg_type)
    reply_type = msg_type.replace("_request", "_reply")
    if f is None:
        ctl.reply(
            client,
            reply_type,
            _error(
                f"unknown request type {msg_type!r}; expected one of {', '.join(sorted(_handlers))}"
            ),
            header,
        )
        return
    try:
        f(ctl, client, header, content)
    except BadRequest as exc:
        ctl.reply(client, reply_type, _error(str(exc)), header)
    except NoRecord as exc:
        ctl.reply(client, reply_type, _error(str(exc), "KeyError"), header)
    except Exception as exc:
        log.exception("error answering %s", msg_type)
        ctl.reply(client, reply_type, _error(f"{type(exc).__name__}: {exc}"), header)


def _error(text: str, ename: str = "ValueError") -> dict[str, Any]:
    return {"status": "error", "ename": ename, "evalue": text, "origin": "cluster"}


def _engine_ids(ctl: Controller, content: dict[str, Any], key: str = "targets") -> list[int]:
    targets = content.get(key)
    if targets is None:
        return ctl.engines.ids
    if isinstance(targets, int) and not isinstance(targets, bool):
        targets = [targets]
    if not isinstance(targets, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in targets
    ):
        raise BadRequest(f"'{key}' must be an engine id or a list of them, found {targets!r}")
    return targets


def msg_ids_in(content: dict[str, Any]) -> list[str]:
    """The request's ``msg_ids``: a list of message ids, or BadRequest."""
    ids = content.get("msg_ids")
    if not isinstance(ids, list) or not all(isinstance(m, str) for m in ids):
        raise BadRequest(f"'msg_ids' must be a list of message ids, found {ids!r}")
    return ids


@handler("connection_request")
def _connection(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    if content.get("shm") is True and ctl.segments.area is not None:
        ctl.segments.local_clients.add(client)  # it found the area's marker: same host
    ctl.reply(
        client,
        "connection_reply",
        {
            "status": "ok",
            "engines": {str(e.id): e.uuid for e in ctl.engines},
            # which engine set (launcher) each engine came from: Cluster's repr counts them
            "engine_sets": {str(e.id): e.engine_set for e in ctl.engines if e.engine_set},
        },
        header,
    )


@handler("status_request")
def _status(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    ctl.reply(client, "status_reply", {"status": "ok", **ctl.status()}, header)


@handler("queue_request")
def _queue(ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]) -> None:
    verbose = bool(content.get("verbose"))
    engines: dict[str, Any] = {}
    for engine_id in _engine_ids(ctl, content):
        engine = ctl.engines.by_id.get(engine_id)
        if engine is None:
            raise BadRequest(ctl.unknown_engine(engine_id))
        queued = list(engine.outstanding)
        tasks = [m for m in queued if (r := ctl.records.get(m)) is not None and r.balanced]
        balanced = set(tasks)
        direct = [m for m in queued if m not in balanced]
        engines[str(engine_id)] = {
            "queue": direct if verbose else len(direct),
            "tasks": tasks if verbose else len(tasks),
            "completed": engine.completed + engine.failed,
        }
    unassigned = [rec.msg_id for rec in ctl.balancer.unassigned()]
    ctl.reply(
        client,
        "queue_reply",
        {
            "status": "ok",
            "engines": engines,
            "unassigned": unassigned if verbose else len(unassigned),
        },
        header,
    )


@handler("segments_mapped")
def _segments_mapped(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    """A client has mapped a result's shared-memory segments (no answer)."""
    msg_id = content.get("msg_id")
    if isinstance(msg_id, str):
        ctl.segments.mapped(msg_id, ctl.records.get(msg_id))


@handler("abort_request")
def _abort(ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]) -> None:
    """Abort tasks that have not started: those waiting in the controller at once, those queued
    on an engine by telling the engine (it answers them as aborted when it reaches them)."""
    wanted = set(msg_ids_in(content))
    aborted = []
    for waiting in ctl.balancer.abort(wanted):
        ctl.fail_task(
            waiting,
            "TaskAborted",
            f"task {waiting.msg_id} was aborted before it started",
            status=ABORTED,
        )
        aborted.append(waiting.msg_id)
    on_engines: dict[int, list[str]] = {}
    for msg_id in wanted - set(aborted):
        rec = ctl.records.get(msg_id)
        if rec is None or rec.status in FINISHED or rec.engine_id is None:
            continue
        on_engines.setdefault(rec.engine_id, []).append(msg_id)
    for engine_id, ids in on_engines.items():
        engine = ctl.engines.by_id.get(engine_id)
        if engine is None:
            continue
        ctl.send_control(engine, "abort_request", {"msg_ids": ids})
    ctl.reply(
        client,
        "abort_reply",
        {
            "status": "ok",
            "aborted": aborted,
            "on_engines": {str(k): v for k, v in on_engines.items()},
        },
        header,
    )


@handler("shutdown_request")
def _shutdown(
    ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]
) -> None:
    if content.get("hub"):
        ctl.begin_shutdown(client, header)  # replies once everything has stopped
        return
    stopped = []
    for engine_id in _engine_ids(ctl, content):
        engine = ctl.engines.by_id.get(engine_id)
        if engine is None:
            raise BadRequest(ctl.unknown_engine(engine_id))
        ctl.stop_engine(engine)
        stopped.append(engine_id)
    ctl.reply(client, "shutdown_reply", {"status": "ok", "stopped": stopped}, header)


@handler("spawn_request")
def _spawn(ctl: Controller, client: bytes, header: dict[str, Any], content: dict[str, Any]) -> None:
    n = content.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 1024:
        raise BadRequest(f"'n' must be a whole number of engines from 1 to 1024, found {n!r}")
    if ctl.launcher is None:
        raise BadRequest("this controller was started without a local engine launcher")
    if ctl.stopping:
        raise BadRequest("the cluster is shutting down")
    launched = ctl.start_engines(n)
    # what a Cluster needs to watch, signal and read the output of the engines it asked for
    processes = [
        {"seq": e.seq, "uuid": e.uuid, "pid": e.pid, "log": str(e.log_path)}
        for e in ctl.launcher.engines.values()
        if e.seq in launched
    ]
    ctl.reply(
        client,
        "spawn_reply",
        {
            "status": "ok",
            "launched": launched,
            "processes": processes,
            "requested": ctl.requested_engines,
        },
        header,
    )


# the handlers of the record queries register themselves (result, history, db, purge, resubmit)
from . import recordqueries  # noqa: E402,F401
