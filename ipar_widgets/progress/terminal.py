"""Progress in a terminal: one line redrawn in place on a TTY, sparse lines in logs."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from .snapshot import Snapshot


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def status_line(snap: Snapshot) -> str:
    """``f: 12/40 done, 1 failed, 3.2 s elapsed, about 5 s left (4-7 s), 3.7/s``"""
    parts = [f"{snap.fname}: {snap.finished}/{snap.total} done"]
    if snap.failed:
        parts.append(f"{snap.failed} failed")
    parts.append(f"{format_seconds(snap.elapsed)} elapsed")
    if snap.eta is not None and not snap.ready:
        low, likely, high = snap.eta
        parts.append(f"about {format_seconds(likely)} left ({format_seconds(low)}-{format_seconds(high)})")
    if snap.rate is not None:
        parts.append(f"{snap.rate:.1f}/s")
    return ", ".join(parts)


def summary_line(snap: Snapshot, wall: float | None) -> str:
    """``done: 40/40 tasks (0 failed); serial 16.1 s, wall 4.2 s, speedup 3.8x``"""
    text = f"{snap.fname}: {snap.finished}/{snap.total} tasks done ({snap.failed} failed)"
    if wall is not None:
        text += f"; serial {format_seconds(snap.serial_time)}, wall {format_seconds(wall)}"
        if wall > 0 and snap.serial_time > 0:
            text += f", speedup {snap.serial_time / wall:.1f}x"
    return text


class TerminalDisplay:
    """Writes progress to a stream: redrawn in place on a TTY, else a line every few seconds
    or every tenth of the work."""

    def __init__(self, stream: IO[str] | None = None, every: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self._last_emit = 0.0
        self._last_decile = -1
        self._width = 0

    def update(self, snap: Snapshot) -> None:
        line = status_line(snap)
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._width = len(line)
            return
        now = time.monotonic()
        decile = int(snap.fraction * 10)
        if decile > self._last_decile or now - self._last_emit >= self.every:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_emit = now
            self._last_decile = decile

    def finish(self, snap: Snapshot, wall: float | None) -> None:
        if self.tty:
            self.stream.write("\r" + " " * self._width + "\r")
        self.stream.write(summary_line(snap, wall) + "\n")
        self.stream.flush()

    def close(self, *exc: Any) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
