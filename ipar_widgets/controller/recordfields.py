"""A task record's fields as ipyparallel names them, read from what the controller keeps.

The router keeps each task's signed frames (request, reply, outputs) and a few facts; it
decodes nothing it does not route by.  :class:`RecordFields` decodes on demand, field by
field and once per record, so a query that tests ``msg_id`` or ``submitted`` never unpacks a
header.  Values are what a client receives: JSON values, dates as aware datetimes (sent as
ISO strings), buffers as lists of frames.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..protocol.taskfields import FIELDS
from ..protocol.wire import Frame, InvalidMessage, parse_date, unpack
from .records import TaskRecord

__all__ = ["RecordFields", "safe_date"]

# positions in a message's frames from the delimiter on: [DELIM, signature, header, parent,
# metadata, content, *buffers]
_HEADER, _METADATA, _CONTENT, _BUFFERS = 2, 4, 5, 6


def safe_date(value: object) -> datetime | None:
    """An ISO date from a message as an aware datetime; None when absent or malformed (a
    client's header may carry anything)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_date(value)
    except ValueError:
        return None


def _part(frames: list[Frame] | None, index: int) -> dict[str, Any] | None:
    if frames is None or len(frames) <= index:
        return None
    try:
        return unpack(frames[index])
    except InvalidMessage:
        return None


class RecordFields:
    """The fields of one record, each computed when first asked for."""

    def __init__(
        self,
        rec: TaskRecord,
        uuid_of: Callable[[int | None], str | None],
        known: dict[str, Any] | None = None,
    ) -> None:
        self.rec = rec
        self.uuid_of = uuid_of
        #: values already known (a database row's columns), not computed from the record
        self._cache: dict[str, Any] = known if known is not None else {}
        self._io: dict[str, Any] | None = None

    def __call__(self, field: str) -> Any:
        """The value of ``field`` (one of :data:`~ipar_widgets.protocol.taskfields.FIELDS`)."""
        cache = self._cache
        try:
            return cache[field]
        except KeyError:
            value = cache[field] = _GETTERS[field](self)
            return value

    def as_dict(self, fields: tuple[str, ...]) -> dict[str, Any]:
        return {f: self(f) for f in fields}

    # -- the request --------------------------------------------------------------------------------
    def _msg_id(self) -> str:
        return self.rec.msg_id

    def _header(self) -> dict[str, Any] | None:
        return _part(self.rec.request, _HEADER)

    def _metadata(self) -> dict[str, Any] | None:
        return _part(self.rec.request, _METADATA)

    def _content(self) -> dict[str, Any] | None:
        return _part(self.rec.request, _CONTENT)

    def _buffers(self) -> list[Frame]:
        request = self.rec.request
        return list(request[_BUFFERS:]) if request is not None else []

    def _submitted(self) -> datetime | None:
        return safe_date(self.rec.submitted)

    def _client_uuid(self) -> str:
        return self.rec.client.decode("utf8", "replace")

    def _queue(self) -> str:
        return "task" if self.rec.balanced else "mux"

    def _label(self) -> Any:
        metadata = self("metadata")
        return metadata.get("label") if metadata else None

    def _resubmitted(self) -> str | None:
        return getattr(self.rec, "resubmitted", None)

    # -- where and when it ran ------------------------------------------------------------------------
    def _engine_uuid(self) -> str | None:
        return self.uuid_of(self.rec.engine_id)

    def _engine_id(self) -> int | None:
        return self.rec.engine_id

    def _started(self) -> datetime | None:
        return safe_date(self.rec.started)

    def _completed(self) -> datetime | None:
        return safe_date(self.rec.completed) if self.rec.finished else None

    def _received(self) -> datetime | None:
        received = getattr(self.rec, "received", None)
        return None if received is None else datetime.fromtimestamp(received, timezone.utc)

    # -- the reply ------------------------------------------------------------------------------------
    def _reply(self) -> list[Frame] | None:
        return self.rec.reply if self.rec.finished else None

    def _result_header(self) -> dict[str, Any] | None:
        return _part(self._reply(), _HEADER)

    def _result_metadata(self) -> dict[str, Any] | None:
        return _part(self._reply(), _METADATA)

    def _result_content(self) -> dict[str, Any] | None:
        return _part(self._reply(), _CONTENT)

    def _result_buffers(self) -> list[Frame] | None:
        reply = self._reply()
        return list(reply[_BUFFERS:]) if reply is not None else None

    # -- the outputs ----------------------------------------------------------------------------------
    def _outputs(self) -> dict[str, Any]:
        """stdout, stderr and the last execute_input, execute_result and error output."""
        if self._io is None:
            io: dict[str, Any] = {
                "stdout": "",
                "stderr": "",
                "execute_input": None,
                "execute_result": None,
                "error": None,
            }
            for frames in self.rec.outputs:
                header = _part(frames, _HEADER) or {}
                content = _part(frames, _CONTENT) or {}
                kind = header.get("msg_type")
                if kind == "stream" and content.get("name") in ("stdout", "stderr"):
                    io[content["name"]] += str(content.get("text", ""))
                elif kind == "execute_input":
                    io["execute_input"] = content.get("code")
                elif kind in ("execute_result", "error"):
                    io[kind] = content
            self._io = io
        return self._io

    def _stdout(self) -> str:
        return str(self._outputs()["stdout"])

    def _stderr(self) -> str:
        return str(self._outputs()["stderr"])

    def _execute_input(self) -> Any:
        return self._outputs()["execute_input"]

    def _execute_result(self) -> Any:
        return self._outputs()["execute_result"]

    def _error(self) -> Any:
        return self._outputs()["error"]


#: field -> the method that computes it (looked up once here, not by name per call)
_GETTERS: dict[str, Callable[[RecordFields], Any]] = {
    field: getattr(RecordFields, "_" + field) for field in FIELDS
}
