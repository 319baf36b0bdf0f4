"""Lists of message frames as one blob, for the task database: ``count, (length, bytes)*``.

A record keeps signed frames exactly as they travelled (their signature covers the bytes),
so the database stores them the same way: a 4-byte count, then each frame as an 8-byte
length and its bytes, all little-endian.  A list of messages (a task's outputs) is the
same format one level up: a count, then each message's packed frames as one length-prefixed
item.  Nothing here decodes a frame.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..protocol.wire import Frame

__all__ = [
    "frame_pieces",
    "pack_frames",
    "unpack_frames",
    "pack_messages",
    "unpack_messages",
    "BadBlob",
]

_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")


class BadBlob(ValueError):
    """A blob that is not packed frames (a damaged database row)."""


def frame_pieces(frames: Sequence[Frame]) -> tuple[list[Frame | bytes], int]:
    """The pieces of a message's packed blob, in order, and its total size: a writer may
    put them into the blob one by one instead of joining them (a 50 MB result is then
    never copied into one bytes object)."""
    parts: list[Frame | bytes] = [_COUNT.pack(len(frames))]
    total = _COUNT.size
    length = _LEN.pack
    for frame in frames:
        # bytes and zmq Frames: len is their size; a memoryview may be of wider items
        if type(frame) is memoryview:
            if frame.ndim != 1 or frame.itemsize != 1:
                frame = frame.cast("B")
            n = frame.nbytes
        else:
            n = len(frame)
        parts.append(length(n))
        parts.append(frame)
        total += _LEN.size + n
    return parts, total


def pack_frames(frames: Sequence[Frame]) -> bytes:
    """One blob for a message's frames (bytes, zmq Frames or buffers)."""
    return b"".join(frame_pieces(frames)[0])  # type: ignore[arg-type]  # Frames are buffers


def unpack_frames(blob: bytes) -> list[bytes]:
    """The frames :func:`pack_frames` packed, as bytes."""
    try:
        (count,) = _COUNT.unpack_from(blob, 0)
        pos = _COUNT.size
        frames = []
        for _ in range(count):
            (n,) = _LEN.unpack_from(blob, pos)
            pos += _LEN.size
            if pos + n > len(blob):
                raise BadBlob(f"a frame of {n} bytes runs past the end of a {len(blob)}-byte blob")
            frames.append(bytes(blob[pos : pos + n]))
            pos += n
    except struct.error as exc:
        raise BadBlob(f"not a blob of packed frames: {exc}") from None
    return frames


def pack_messages(messages: Sequence[Sequence[Frame]]) -> bytes:
    """One blob for several messages' frames (a task's outputs)."""
    return pack_frames([pack_frames(m) for m in messages])


def unpack_messages(blob: bytes) -> list[list[bytes]]:
    """The messages :func:`pack_messages` packed."""
    return [unpack_frames(item) for item in unpack_frames(blob)]
