"""The fields of a task record as ``db_request`` / ``db_reply`` name them (ipyparallel's names).

Client and controller both read this vocabulary: the controller checks queries and key
selections against it, the client turns the date fields of the records it receives back into
datetimes.  Every field is a JSON value except the buffer fields, which travel as frames.
"""

from __future__ import annotations

__all__ = [
    "FIELDS",
    "DATE_FIELDS",
    "HEADER_FIELDS",
    "BUFFER_FIELDS",
    "DEFAULT_FIELDS",
    "OPERATORS",
]

#: every field of a record, in the order ipyparallel's documentation lists them
FIELDS: tuple[str, ...] = (
    "msg_id",
    "header",  # the request's header (a dict)
    "metadata",  # the request's metadata
    "content",  # the request's content
    "buffers",  # the request's buffers (frames)
    "submitted",  # client clock: the request header's date
    "client_uuid",  # the submitting client's session
    "engine_uuid",  # the engine it was handed to (None until then)
    "engine_id",  # that engine's id (ours; not in DEFAULT_FIELDS, ipyparallel has no such field)
    "started",  # engine clock
    "completed",  # engine clock
    "resubmitted",  # msg_id of the task resubmitted from this one (the latest), or None
    "received",  # controller clock: when the reply reached the controller
    "result_header",
    "result_metadata",
    "result_content",
    "result_buffers",  # the reply's buffers (frames)
    "queue",  # "task" (load-balanced) or "mux" (for one engine)
    "execute_input",  # the code of an execute request
    "execute_result",  # the content of its execute_result output
    "error",  # the content of its error output
    "stdout",
    "stderr",
    "label",  # the request metadata's label
)

#: fields whose values are timezone-aware datetimes (ISO 8601 strings on the wire)
DATE_FIELDS = frozenset({"submitted", "started", "completed", "received"})

#: fields that are message headers, whose ``date`` is a datetime too
HEADER_FIELDS = frozenset({"header", "result_header"})

#: fields that are lists of frames: only sent when asked for by name
BUFFER_FIELDS = frozenset({"buffers", "result_buffers"})

#: what a query returns when it names no keys: ipyparallel's fields but the buffers
DEFAULT_FIELDS: tuple[str, ...] = tuple(
    f for f in FIELDS if f not in BUFFER_FIELDS and f != "engine_id"
)

#: the MongoDB-style operators a query may use, and what each means
OPERATORS: dict[str, str] = {
    "$lt": "less than",
    "$gt": "greater than",
    "$lte": "less than or equal to",
    "$gte": "greater than or equal to",
    "$eq": "equal to",
    "$ne": "not equal to",
    "$in": "one of a list",
    "$nin": "none of a list",
    "$exists": "true: is set, false: is None",
}
