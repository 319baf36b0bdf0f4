"""Progress of a blocking ``push``/``scatter``/``pull``/``gather`` that moves large data.

When is it shown: a blocking call whose values' serialized size is at least
:attr:`TransferProgress.min_bytes` (8 MB by default; for ``pull``/``gather``: once that much
has come back) and that is still moving after :attr:`TransferProgress.after` seconds (1 s).
Where: the widget in a notebook, a line on stderr in a terminal
(:func:`~ipar_widgets.client.frontend.transfer_display`).

What the bytes are (``progress/transfer.py`` says it for the displays): the serialized size
of each engine's message, the buffers its values became, counted when that engine's part is
done (its reply has arrived): the count moves per engine, and never counts bytes still on
their way.  Replies' sizes come from :class:`ReplySizes`, which the client's dispatch feeds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import zmq
from traitlets import Bool, Float, Int

from ..protocol.wire import Frame
from . import frontend
from .settings import SessionSettings
from .waiting import wait_until

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

__all__ = ["TransferProgress", "ReplySizes", "frames_size", "wait_showing_transfer"]

#: seconds between two refreshes of a transfer's display
TICK = 0.1


class TransferProgress(SessionSettings):
    """When large data moves, show how much has (``TransferProgress.instance()``)."""

    enabled = Bool(
        True,
        config=True,
        help="Show the progress of blocking push, scatter, pull and gather calls that move "
        "large data (a widget in a notebook, a line on stderr in a terminal).",
    )
    min_bytes = Int(
        8_000_000,
        min=0,
        config=True,
        help="Bytes (serialized size of the values moved, all engines together) from which a "
        "blocking push/scatter shows its progress; a pull/gather shows it once that many "
        "have come back.  Default 8 MB.",
    )
    after = Float(
        1.0,
        min=0.0,
        config=True,
        help="Seconds a large transfer must be still moving before its progress appears "
        "(quick ones show nothing).  Default 1 s.",
    )


def frames_size(frames: Sequence[Frame]) -> int:
    """Bytes of frames (bytes, buffers, zmq Frames)."""
    total = 0
    for frame in frames:
        if isinstance(frame, bytes):
            total += len(frame)
        elif isinstance(frame, zmq.Frame):
            total += memoryview(frame.buffer).nbytes
        else:
            total += frame.nbytes
    return total


class ReplySizes:
    """The sizes of the latest large replies (their buffers, after any shared-memory
    mapping), by msg_id: what a pull's display counts.  Bounded: a transfer reads its
    replies' sizes while it waits, so only recent ones are ever asked for."""

    #: replies smaller than this are not recorded (nothing to show for them)
    RECORD_MIN = 64_000
    #: how many sizes are kept
    KEEP = 4096

    def __init__(self) -> None:
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, msg_id: str, buffers: Sequence[Frame]) -> None:
        """A reply arrived (called on the client's I/O path: cheap)."""
        if not buffers:
            return
        size = frames_size(buffers)
        if size < self.RECORD_MIN:
            return
        with self._lock:
            self._sizes[msg_id] = size
            while len(self._sizes) > self.KEEP:
                self._sizes.popitem(last=False)

    def size_of(self, msg_id: str) -> int:
        """The recorded size (0: small, or not arrived)."""
        with self._lock:
            return self._sizes.get(msg_id, 0)


#: what a transfer reports: (what, bytes done, bytes in all or None, engines done, engines
#: in all, seconds since the call)
Progress = tuple[str, int, "int | None", int, int, float]


class TransferDisplay(Protocol):
    """What shows a transfer (the progress layer's tracker, feeding the widget or the line)."""

    def update(self, progress: Progress) -> None: ...

    def finish(self, progress: Progress, outcome: str) -> None: ...


def wait_showing_transfer(
    ar: AsyncResult,
    what: str,
    sizes_out: Sequence[int] | None,
    replies: ReplySizes,
    *,
    settings: TransferProgress | None = None,
) -> Any:
    """Wait for ``ar`` (the tasks of one push/scatter/pull/gather, one per engine) and return
    ``ar.get()``, showing the bytes moved once the rule in the module docstring says so.

    ``sizes_out``: the serialized size of each task's message, in ``ar.msg_ids`` order (for
    data sent); None for data coming back (its size is known as each reply arrives).
    """
    settings = settings or TransferProgress.instance()
    total = sum(sizes_out) if sizes_out is not None else None
    if not settings.enabled or (total is not None and total < settings.min_bytes):
        return ar.get()
    msg_ids = list(ar.msg_ids)
    start = time.monotonic()
    shown: list[TransferDisplay] = []

    def snapshot() -> Progress:
        arrived = {m for m, _ in ar.arrived_since(0)}
        if sizes_out is not None:
            done = sum(size for m, size in zip(msg_ids, sizes_out, strict=True) if m in arrived)
        else:
            done = sum(replies.size_of(m) for m in arrived)
        return (what, done, total, len(arrived), len(msg_ids), time.monotonic() - start)

    def tick() -> None:
        if time.monotonic() - start < settings.after:
            return
        snap = snapshot()
        if not shown:
            if total is None and snap[1] < settings.min_bytes:
                return  # what comes back is not known to be large yet
            display = frontend.transfer_display()
            if display is None:
                return
            shown.append(display)
        shown[0].update(snap)

    try:
        wait_until(ar, ar.ready, tick=tick, interval=TICK)
    except BaseException as exc:
        if shown:
            shown[0].finish(snapshot(), type(exc).__name__)
        raise
    if shown:
        ok = ar.successful()
        shown[0].finish(snapshot(), "done" if ok else "failed")
    return ar.get()
