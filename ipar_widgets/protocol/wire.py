"""Signed Jupyter wire messages: building, signing, verifying and splitting multipart frames.

Every message between clients, the controller and engines uses the Jupyter wire format::

    [routing frames..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]

where the signature is the hex HMAC-SHA256 of the four JSON parts, keyed with the cluster's
shared key.  jupyter_client's ``Session`` reads and writes exactly this format (engines use it
for everything the IPython kernel sends), but it also parses every date with dateutil and keeps
a replay history, which costs more than the transport itself; this module is the lean codec
used on the hot paths of the controller and the client.  Dates stay ISO strings until someone
asks for a ``datetime`` (:func:`parse_date`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, cast

import orjson
import zmq

DELIM = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.4"

#: one frame of a multipart message: bytes as received for the small parts, zero-copy zmq
#: Frames (or any buffer) for the payload
Frame = bytes | zmq.Frame | memoryview
#: the sockets of every process (pyzmq's Socket is generic in what recv_string decodes to)
Socket = zmq.Socket[bytes]

# pyzmq's low-level send and get, below its Python conveniences; their stubs are overloads
# on literal flags, which a flag computed per frame does not match
_base_send = cast(Callable[[Socket, Frame, int, bool, bool], object], zmq.backend.Socket.send)
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_COPY_THRESHOLD = zmq.COPY_THRESHOLD


def send_frames(sock: Socket, frames: Sequence[Frame], noblock: bool = False) -> None:
    """``sock.send_multipart(frames)`` without pyzmq's per-frame Python conveniences.

    pyzmq's ``send_multipart`` costs about 20 us for a Jupyter message here, ten times the
    sends themselves; this is the hot path of every process.  Small frames are copied (cheaper
    than tracking them), large ones and zmq Frames are sent without a copy.
    """
    base = _NOBLOCK if noblock else 0
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        flags = base if i == last else base | _SNDMORE
        if isinstance(frame, bytes):
            _base_send(sock, frame, flags, len(frame) < _COPY_THRESHOLD, False)
        elif isinstance(frame, zmq.Frame):
            _base_send(sock, frame, flags, False, False)
        else:
            view = memoryview(frame)
            _base_send(sock, view, flags, view.nbytes < _COPY_THRESHOLD, False)


def send_frames_tracked(sock: Socket, frames: Sequence[Frame]) -> list[zmq.MessageTracker]:
    """:func:`send_frames` for ``track=True``: the frames sent without a copy are tracked,
    and their trackers returned; each is done once zmq no longer needs the frame's memory
    (small frames are copied: nothing to track)."""
    trackers: list[zmq.MessageTracker] = []
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        flags = 0 if i == last else _SNDMORE
        if isinstance(frame, zmq.Frame):
            _base_send(sock, frame, flags, False, False)
            if frame.tracker is not None:
                trackers.append(frame.tracker)
            continue
        data: bytes | memoryview = frame if isinstance(frame, bytes) else memoryview(frame)
        size = len(data) if isinstance(data, bytes) else data.nbytes
        if size < _COPY_THRESHOLD:
            _base_send(sock, data, flags, True, False)
        else:
            tracker = _base_send(sock, data, flags, False, True)
            assert isinstance(tracker, zmq.MessageTracker)
            trackers.append(tracker)
    return trackers


_base_get = cast(Callable[[Socket, int], int], zmq.backend.Socket.get)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_base_recv = cast(Callable[[Socket, int, bool, bool], zmq.Frame], zmq.backend.Socket.recv)


def recv_frames(sock: Socket, noblock: bool = False) -> list[Frame]:
    """``sock.recv_multipart()`` for a Jupyter message, cheaply and without copying buffers.

    Every frame is received as a zmq Frame, because a Frame carries its "more" flag: asking
    the socket for ``RCVMORE`` instead costs an enum conversion per frame in pyzmq, which made
    receiving the most expensive step of the controller.  The routing frames, the delimiter
    and the four JSON parts are small and needed as bytes; everything after them (the
    buffers, possibly huge) stays a zero-copy Frame.

    With ``noblock``, raises ``zmq.Again`` when no message waits (the frames of a multipart
    message arrive together, so only the first one can be missing).
    """
    frames: list[Frame] = []
    copy_left = -1  # frames still to turn into bytes after the delimiter; -1 until it is seen
    flags = _NOBLOCK if noblock else 0
    while True:
        frame = _base_recv(sock, flags, False, False)
        if copy_left:
            data = frame.bytes
            if copy_left > 0:
                copy_left -= 1
            elif data == DELIM:
                copy_left = 5  # signature + header, parent, metadata, content
            frames.append(data)
        else:
            frames.append(frame)
        if not frame.more:
            return frames


def socket_events(sock: Socket) -> int:
    """The socket's ``EVENTS`` as a plain int (pyzmq's ``sock.EVENTS`` builds an enum flag)."""
    return _base_get(sock, _EVENTS)


def readable(sock: Socket) -> bool:
    """Whether a message waits on ``sock`` (cheaper than a non-blocking recv that raises)."""
    return bool(_base_get(sock, _EVENTS) & _POLLIN)


_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


class HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the key's two padded blocks hashed once, up front.

    Each signature then costs two copies of a prepared hash and two small updates, about
    half of ``hmac.digest(key, data, "sha256")``, which looks the digest up by name and
    re-derives the padded key on every call.  Every message is signed or verified twice on
    its way, so this is on the path of every task.
    """

    BLOCK = 64  # SHA-256's block size in bytes

    def __init__(self, key: bytes):
        if len(key) > self.BLOCK:
            key = hashlib.sha256(key).digest()
        block = key.ljust(self.BLOCK, b"\0")
        self._inner = hashlib.sha256(block.translate(_INNER_PAD))
        self._outer = hashlib.sha256(block.translate(_OUTER_PAD))

    def hexdigest(self, parts: Sequence[Frame]) -> bytes:
        """The hex signature of the concatenated ``parts``, as ASCII bytes."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)  # type: ignore[arg-type]  # a zmq.Frame is a buffer too
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode()


def waiting_messages(sock: Socket, limit: int) -> Iterator[list[Frame]]:
    """The messages waiting on ``sock``, at most ``limit`` of them (so one busy socket cannot
    starve the others), for a caller whose poll just said that one waits: only the later ones
    cost a question to the socket."""
    for i in range(limit):
        if i and not readable(sock):
            return
        try:
            yield recv_frames(sock, noblock=True)
        except zmq.Again:
            return


class InvalidMessage(ValueError):
    """A multipart message that is not a well-formed, correctly signed Jupyter message."""


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


def utcnow_iso() -> str:
    """The current UTC time in the ISO 8601 form Jupyter messages carry."""
    return datetime.now(timezone.utc).isoformat()


def parse_date(value: str | datetime | None) -> datetime | None:
    """Parse an ISO 8601 date from a message (``Z`` suffix accepted) into an aware datetime."""
    if value is None or isinstance(value, datetime):
        return value
    if value.endswith("Z"):  # jupyter_client writes UTC as "Z", which 3.10 cannot parse
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} object is not JSON serializable")


_EMPTY_DICT = b"{}"
# orjson (de)serializes a message part several times faster than the json module, which
# matters because every message is packed or unpacked in each process it crosses.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def pack(obj: dict[str, Any] | None) -> bytes:
    """Encode one JSON part of a message."""
    if not obj:
        return _EMPTY_DICT
    try:
        return orjson.dumps(obj, default=_json_default, option=_ORJSON_OPTIONS)
    except TypeError:
        # what orjson refuses (integers beyond 64 bits, say) the json module may still take
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default).encode(
            "utf8", "surrogateescape"
        )


def unpack(data: Frame) -> dict[str, Any]:
    """Decode one JSON part of a message."""
    if isinstance(data, zmq.Frame):
        data = data.bytes
    if data == _EMPTY_DICT:
        return {}
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"a JSON part of the message does not decode: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(
            f"expected a JSON object in a message part, found {type(obj).__name__}"
        )
    return obj


def as_bytes(frame: Frame) -> bytes:
    """The bytes of a frame received with ``copy=False`` (or already bytes)."""
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    return bytes(frame)


def split_routing(frames: Sequence[Frame]) -> tuple[list[bytes], int]:
    """Return the routing frames before the delimiter and the delimiter's index.

    Raises :class:`InvalidMessage` when there is no delimiter.
    """
    idents: list[bytes] = []
    for i, frame in enumerate(frames):
        raw = as_bytes(frame)
        if raw == DELIM:
            return idents, i
        idents.append(raw)
    raise InvalidMessage("no <IDS|MSG> delimiter in the message")


class Message:
    """One decoded message; JSON parts are dicts, buffers stay zero-copy frames."""

    __slots__ = ("idents", "header", "parent_header", "metadata", "content", "buffers", "frames")

    def __init__(
        self,
        idents: list[bytes],
        header: dict[str, Any],
        parent_header: dict[str, Any],
        metadata: dict[str, Any],
        content: dict[str, Any],
        buffers: list[Frame],
        frames: list[Frame] | None = None,
    ) -> None:
        self.idents = idents
        self.header = header
        self.parent_header = parent_header
        self.metadata = metadata
        self.content = content
        self.buffers = buffers
        #: the signed frames from the delimiter on, for forwarding a message unchanged
        self.frames = frames

    @property
    def msg_id(self) -> str:
        return str(self.header.get("msg_id", ""))

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))

    @property
    def parent_id(self) -> str | None:
        return self.parent_header.get("msg_id")

    def as_dict(self) -> dict[str, Any]:
        """The nested dict form jupyter_client uses (``msg["header"]``, ``msg["content"]``...)."""
        return {
            "header": self.header,
            "parent_header": self.parent_header,
            "metadata": self.metadata,
            "content": self.content,
            "buffers": self.buffers,
            "msg_id": self.msg_id,
            "msg_type": self.msg_type,
        }

    def __repr__(self) -> str:
        return f"<Message {self.msg_type} {self.msg_id}>"


class Wire:
    """Signs, builds and verifies messages for one session (one client, controller or engine).

    ``key`` is the shared HMAC key of the cluster; an empty key disables signing, as in
    jupyter_client, but clusters started by ipar_widgets always have one.
    """

    def __init__(self, key: bytes, *, session: str | None = None, username: str | None = None):
        self.key = key
        self.signing = bool(key)  # an empty key means unsigned messages, as in jupyter_client
        self.session = session or str(uuid.uuid4())
        self.username = username or os.environ.get("USER", "username")
        self._counter = itertools.count()
        self._id_prefix = f"{self.session[:8]}{os.getpid():x}"
        self._hmac = HmacSha256(key)

    # -- building -----------------------------------------------------------------------------
    def new_msg_id(self) -> str:
        """A message id unique to this session, cheaper than a fresh UUID per message."""
        return f"{self._id_prefix}_{next(self._counter)}"

    def header(
        self, msg_type: str, msg_id: str | None = None, date: str | None = None
    ) -> dict[str, Any]:
        return {
            "msg_id": msg_id or self.new_msg_id(),
            "msg_type": msg_type,
            "username": self.username,
            "session": self.session,
            "date": date or utcnow_iso(),
            "version": PROTOCOL_VERSION,
        }

    def sign(self, parts: Sequence[Frame]) -> bytes:
        if not self.signing:
            return b""
        return self._hmac.hexdigest(parts)

    def build(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        *,
        parent: dict[str, Any] | Frame | None = None,
        metadata: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        idents: Sequence[bytes] = (),
        buffers: Sequence[Frame] = (),
    ) -> tuple[dict[str, Any], list[Frame]]:
        """Return ``(header, frames)`` ready for ``send_multipart``.

        ``parent`` may be the request's header frame as received (bytes or a zmq Frame): a
        reply then carries it as it came, without decoding and encoding it again.
        """
        header = header or self.header(msg_type)
        parent_part = (
            pack(parent) if parent is None or isinstance(parent, dict) else as_bytes(parent)
        )
        parts = [pack(header), parent_part, pack(metadata), pack(content)]
        frames: list[Frame] = [*idents, DELIM, self.sign(parts), *parts, *buffers]
        return header, frames

    # -- reading ------------------------------------------------------------------------------
    def verify(self, frames: Sequence[Frame], start: int) -> bool:
        """Check the signature of a message whose signature frame is at ``start``."""
        if not self.signing:
            return True
        if len(frames) < start + 5:
            return False
        signature = as_bytes(frames[start])
        if not signature:
            return False
        return hmac.compare_digest(signature, self.sign(frames[start + 1 : start + 5]))

    def decode(self, frames: Sequence[Frame], *, content: bool = True) -> Message:
        """Split, verify and decode a multipart message; raise InvalidMessage if it is not one."""
        idents, delim = split_routing(frames)
        if len(frames) < delim + 6:
            raise InvalidMessage(
                f"expected at least 6 frames after the routing frames, found {len(frames) - delim}"
            )
        if not self.verify(frames, delim + 1):
            raise InvalidMessage("missing or invalid HMAC signature")
        try:
            header = unpack(frames[delim + 2])
            parent = unpack(frames[delim + 3])
            metadata = unpack(frames[delim + 4])
            body = unpack(frames[delim + 5]) if content else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidMessage(f"a JSON part of the message does not decode: {exc}") from exc
        if "msg_type" not in header or "msg_id" not in header:
            raise InvalidMessage("the header has no msg_type or msg_id")
        return Message(
            idents,
            header,
            parent,
            metadata,
            body,
            list(frames[delim + 6 :]),
            list(frames[delim:]),
        )
