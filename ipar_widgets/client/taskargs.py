"""Short reprs of tasks' arguments, read back from the controller's task records.

The progress widget shows, for each group of failed tasks, what the first few of them were
called with.  Keeping a repr of every task's arguments at submission would cost the hot path
a ``repr`` per task for the rare job that fails, and holding the arguments themselves would
keep a job's whole input alive; so nothing is kept.  When a failure group is first shown,
the displays ask for those few tasks only: one ``db_request`` for their records' request
(its header, content, metadata and buffers: the pickled function and arguments), answered
by the controller from memory or its task database, then the arguments are unpickled and
repr'd here, in the thread that asked (never the kernel's main thread: see
``ProgressTracker.fetch_arguments``).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Sequence
from typing import Any

from ..protocol import serialize
from ..protocol.wire import Message
from .hubrecords import decode_records

__all__ = ["task_arguments", "describe_request", "ARGS_REPR_LENGTH"]

#: characters of one task's arguments' repr at most
ARGS_REPR_LENGTH = 200

#: asks the controller a question, with a time limit in seconds
AskWithin = Callable[..., Message]

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 8
_repr.maxlevel = 3


def _short(value: Any) -> str:
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a user's __repr__ may raise
        text = f"<{type(value).__name__} whose repr failed: {exc}>"
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= ARGS_REPR_LENGTH else text[: ARGS_REPR_LENGTH - 1] + "…"


def _map_calls(parts: Sequence[Any]) -> str:
    """A map chunk's calls: ``6`` for one call of one sequence, ``'a', 6`` for one call of
    two, ``[6, 7, 8]`` or ``[('a', 6), ('b', 7)]`` for several."""
    try:
        calls = list(zip(*parts)) if len(parts) > 1 else [(item,) for item in parts[0]]
    except Exception:  # not iterable as expected: show the parts as they are
        return ", ".join(_short(part) for part in parts)
    if len(calls) == 1:
        return ", ".join(_short(a) for a in calls[0])
    return _short([c[0] if len(c) == 1 else c for c in calls])


def describe_request(record: dict[str, Any]) -> str:
    """The arguments of one task record's request, as a short repr.  A map's chunk shows as
    its calls' arguments, an apply as ``args, key=value``, ``execute`` as its code;
    arguments that went through shared memory (gone once the task finished) or that cannot
    be unpickled here say so in ``<...>``."""
    header = record.get("header") or {}
    content = record.get("content") or {}
    if header.get("msg_type") == "execute_request":
        return _short(str(content.get("code", "")))
    if "shm" in (record.get("metadata") or {}):
        return "<not kept: the arguments went through shared memory>"
    buffers = record.get("buffers") or []
    n_fn = int(content.get("fn_frames", 1))
    try:
        args, kwargs = serialize.loads([bytes(b) for b in buffers[n_fn:]])
    except Exception as exc:  # a class this process cannot import, say
        return _cut(f"<the arguments cannot be unpickled here: {type(exc).__name__}: {exc}>")
    if content.get("map"):
        # a map's task is one chunk of each sequence: show the calls' arguments, not the
        # chunking (a chunk of range(12) is a range)
        return _cut(_map_calls(args))
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return _cut(", ".join(parts))


def task_arguments(ask: AskWithin, msg_ids: Sequence[str], timeout: float) -> dict[str, str | None]:
    """Each task's arguments' repr (None: the controller has no record of the task), from
    one question to the controller answered within ``timeout`` seconds (NoAnswer after
    it).  The few tasks' requests come whole, their buffers included."""
    wanted = list(dict.fromkeys(msg_ids))
    answer = ask(
        "db_request",
        {
            "query": {"msg_id": {"$in": wanted}},
            "keys": ["header", "content", "metadata", "buffers"],
        },
        timeout=timeout,
    )
    out: dict[str, str | None] = dict.fromkeys(wanted)
    for record in decode_records(answer):
        out[str(record["msg_id"])] = describe_request(record)
    return out
