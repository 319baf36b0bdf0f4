"""Progress in a terminal: one line redrawn in place on a TTY, sparse lines in logs.

We write this ourselves rather than use tqdm: the line shows an ETA *range*, failures and the
job's speedup, logs (CI, pipes) get a few whole lines instead of carriage-return frames, and
tqdm is not one of our dependencies.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from .failures import groups_line
from .liveline import LiveLine
from .snapshot import Snapshot

__all__ = [
    "TerminalDisplay",
    "format_seconds",
    "format_eta",
    "status_line",
    "summary_line",
    "failures_line",
]


def format_seconds(s: float) -> str:
    """``0.4 s``, ``12.0 s``, ``3m05s``, ``2h07m``."""
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_eta(eta: tuple[float, float, float]) -> str:
    """``about 12 s (9-15 s)``: the likely time left and its range, all to the precision the
    largest one deserves (an estimate shown to a tenth of a second claims too much)."""
    low, likely, high = eta
    if high < 10:
        lo, mid, hi = (f"{v:.1f}" for v in (low, likely, high))
    elif high < 60:
        lo, mid, hi = (f"{v:.0f}" for v in (low, likely, high))
    else:
        return f"about {format_seconds(likely)} ({format_seconds(low)}-{format_seconds(high)})"
    return f"about {mid} s ({lo}-{hi} s)"


def status_line(snap: Snapshot) -> str:
    """``f: 12/40 done, 1 failed, 3.2 s elapsed, about 5 s (4-7 s) left, 3.7/s``"""
    parts = [f"{snap.fname}: {snap.finished}/{snap.total} done"]
    if snap.failed:
        parts.append(f"{snap.failed} failed")
    if snap.aborted:
        parts.append(f"{snap.aborted} aborted")
    if snap.retried:
        parts.append(f"{snap.retried} retried")
    parts.append(f"{format_seconds(snap.elapsed)} elapsed")
    if snap.eta is not None and not snap.ready:
        parts.append(f"{format_eta(snap.eta)} left")
    if snap.rate is not None:
        parts.append(f"{snap.rate:.1f}/s")
    if snap.connection:
        parts.append(snap.connection)
    return ", ".join(parts)


def summary_line(snap: Snapshot) -> str:
    """``f: 40/40 tasks done (0 failed); serial 16.1 s, wall 4.2 s, speedup 3.8x``"""
    text = f"{snap.fname}: {snap.finished}/{snap.total} tasks done ({snap.failed} failed"
    text += f", {snap.aborted} aborted)" if snap.aborted else ")"
    wall = snap.wall_time if snap.wall_time is not None else snap.elapsed
    text += f"; serial {format_seconds(snap.serial_time)}, wall {format_seconds(wall)}"
    if snap.speedup is not None:
        text += f", speedup {snap.speedup:.1f}x"
    if not snap.ready:
        text += " (stopped waiting before the end)"
    return text


def failures_line(snap: Snapshot) -> str:
    """``failed: ValueError: bad input <n> ×37, MemoryError ×2`` ('' when nothing failed):
    the failure groups, most frequent first (progress/failures.py)."""
    if not snap.failure_groups:
        return ""
    return "failed: " + groups_line(snap.failure_groups)


class TerminalDisplay:
    """Writes progress to a stream (default: ``sys.stdout`` when created).

    On a TTY the status line is redrawn in place, cut to the terminal's width
    (:class:`~.liveline.LiveLine`).  Elsewhere a line is written at each tenth of the work,
    and at most every ``every`` seconds between.
    """

    def __init__(self, stream: IO[str] | None = None, every: float = 10.0) -> None:
        self._line = LiveLine(stream if stream is not None else sys.stdout)
        self.stream = self._line.stream
        self.tty = self._line.tty
        self.every = every
        self._last_emit = 0.0
        self._last_decile = -1
        self.lines = 0  # lines written (not counting redraws), for tests and benchmarks

    def update(self, snap: Snapshot) -> None:
        line = status_line(snap)
        if self.tty:
            self._line.redraw(line)
            return
        now = time.monotonic()
        decile = int(snap.fraction * 10)
        if decile > self._last_decile or now - self._last_emit >= self.every:
            self._line.write(line)
            self.lines += 1
            self._last_emit = now
            self._last_decile = decile

    def finish(self, snap: Snapshot) -> None:
        """Replace the live line with the summary."""
        self._line.clear()
        self._line.write(summary_line(snap))
        self.lines += 1
        failures = failures_line(snap)
        if failures:
            self._line.write(failures)
            self.lines += 1
