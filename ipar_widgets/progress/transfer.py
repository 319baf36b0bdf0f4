"""Moving large data (``push``, ``scatter`` to the engines; ``pull``, ``gather`` from them), as
the displays show it: an immutable snapshot in bytes, its text line, and the terminal display.

What the bytes are: the serialized size of the values (the buffers of each engine's message),
counted per engine when that engine's part is done: for ``push``/``scatter`` once the engine
has stored the values (its reply came back), for ``pull``/``gather`` once its reply has
arrived whole here.  So the count moves in steps of one engine's message; it never counts
bytes that are still on their way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .liveline import LiveLine
from .terminal import format_seconds

__all__ = [
    "TransferSnapshot",
    "TransferTracker",
    "TransferTerminal",
    "transfer_line",
    "format_bytes",
]


def format_bytes(n: float) -> str:
    """``512 B``, ``3.4 kB``, ``48.0 MB``, ``1.20 GB`` (powers of 1000, as network rates)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit, size in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < size * 1000 or unit == "GB":
            value = n / size
            return f"{value:.2f} {unit}" if unit == "GB" else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class TransferSnapshot:
    """One data transfer at one moment."""

    #: "push", "scatter" (to the engines), "pull", "gather" (from them)
    what: str
    bytes_done: int
    #: bytes of the whole transfer; None while unknown (what engines send back)
    bytes_total: int | None
    engines_done: int
    engines_total: int
    elapsed: float
    #: None while moving; "done", or what ended it (the error's class and text)
    outcome: str | None = None

    @property
    def outgoing(self) -> bool:
        return self.what in ("push", "scatter")

    @property
    def rate(self) -> float | None:
        """Bytes per second so far (None before the first engine's part is done)."""
        return self.bytes_done / self.elapsed if self.bytes_done and self.elapsed > 0 else None


def transfer_line(snap: TransferSnapshot) -> str:
    """``push: 16.0 MB of 32.0 MB delivered to 1/2 engines, 1.4 s, 11.4 MB/s``
    (``pull: 16.0 MB received from 1/2 engines, ...``)."""
    done = format_bytes(snap.bytes_done)
    if snap.bytes_total is not None:
        done += f" of {format_bytes(snap.bytes_total)}"
    verb = "delivered to" if snap.outgoing else "received from"
    parts = [
        f"{snap.what}: {done} {verb} {snap.engines_done}/{snap.engines_total} engines",
        format_seconds(snap.elapsed),
    ]
    if snap.rate is not None:
        parts.append(f"{format_bytes(snap.rate)}/s")
    line = ", ".join(parts)
    if snap.outcome is not None and snap.outcome != "done":
        line += f" [{snap.outcome}]"
    return line


class TransferTracker:
    """Makes snapshots from what a transfer reports (``client/transfer.py``: what, bytes
    done, bytes in all, engines done, engines in all, seconds) and hands each to ``show``,
    the last to ``finish``."""

    def __init__(
        self,
        show: Callable[[TransferSnapshot], None],
        finish: Callable[[TransferSnapshot], None],
    ) -> None:
        self._show = show
        self._finish = finish

    def update(self, progress: tuple[str, int, int | None, int, int, float]) -> None:
        self._show(TransferSnapshot(*progress))

    def finish(self, progress: tuple[str, int, int | None, int, int, float], outcome: str) -> None:
        self._finish(TransferSnapshot(*progress, outcome))


class TransferTerminal:
    """The transfer's line on a stream (default ``sys.stderr``): redrawn in place on a TTY,
    a line per engine done elsewhere."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._line = LiveLine(stream if stream is not None else sys.stderr)
        self.stream = self._line.stream
        self.tty = self._line.tty
        self._engines_done = -1

    def update(self, snap: TransferSnapshot) -> None:
        if self.tty:
            self._line.redraw(transfer_line(snap))
        elif snap.engines_done != self._engines_done:
            self._line.write(transfer_line(snap))
        self._engines_done = snap.engines_done

    def finish(self, snap: TransferSnapshot) -> None:
        self._line.clear()
        self._line.write(transfer_line(snap))
