"""Waiting for engines to register, as the displays show it: an immutable snapshot (per engine
set: registered of those asked for, and the batch job's state where its launcher has one),
its text line, and the terminal display that redraws it.

The client's wait (``rc.wait_for_engines``, and a cluster's start) reports what it learnt at
each look at the controller through :class:`EngineWaitTracker`; the text here and the widget
(:mod:`ipar_widgets.widgets.engines_wait`) are pure functions of the snapshots it makes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from .liveline import LiveLine
from .terminal import format_seconds

__all__ = [
    "EngineSetState",
    "EngineWaitSnapshot",
    "EngineWaitTracker",
    "EngineWaitTerminal",
    "wait_line",
    "set_text",
]

#: a log (stderr not a terminal) gets at most one line a second while the wait goes on
LOG_LINE_INTERVAL = 1.0


@dataclass(frozen=True)
class EngineSetState:
    """One engine set during the wait."""

    set_id: str
    registered: int
    #: engines the set was started with (None: not known here, e.g. no Cluster object)
    wanted: int | None
    #: what its launcher last saw ("PENDING (Resources)", "RUNNING", "running (pid 12)")
    job_state: str


@dataclass(frozen=True)
class EngineWaitSnapshot:
    """The wait at one moment."""

    registered: int
    wanted: int
    sets: tuple[EngineSetState, ...]
    elapsed: float
    #: None while waiting; "ready", or why the wait ended ("timed out", the error's text)
    outcome: str | None = None

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def ready(self) -> bool:
        return self.outcome == "ready"


def set_text(row: EngineSetState) -> str:
    """``default: 1/2 engines registered (PENDING (Resources))``"""
    wanted = "?" if row.wanted is None else str(row.wanted)
    text = f"{row.set_id}: {row.registered}/{wanted} engines registered"
    return text + (f" ({row.job_state})" if row.job_state else "")


def wait_line(snap: EngineWaitSnapshot, elapsed: bool = True) -> str:
    """``engines: 1/4 registered, 2.0 s; a: 1/2 engines registered (RUNNING); b: ...``
    (without the time when ``elapsed`` is False: what a log compares to skip repeats)."""
    head = f"engines: {snap.registered}/{snap.wanted} registered"
    if elapsed:
        head += f", {format_seconds(snap.elapsed)}"
    if snap.outcome is not None and not snap.ready:
        head += f" [{snap.outcome}]"
    return "; ".join([head, *(set_text(row) for row in snap.sets)])


#: one engine set as the client reports it: (set id, registered, asked for, job state)
SetReport = tuple[str, int, "int | None", str]


class EngineWaitTracker:
    """Makes snapshots from what the wait learnt, and hands each to ``show``."""

    def __init__(
        self,
        show: Callable[[EngineWaitSnapshot], None],
        finish: Callable[[EngineWaitSnapshot], None],
    ) -> None:
        self._show = show
        self._finish = finish
        self._start = time.monotonic()
        self.last: EngineWaitSnapshot | None = None

    def update(
        self, registered: int, wanted: int, sets: Sequence[SetReport], show: bool = True
    ) -> None:
        """What the latest look at the controller (and the launchers) said; ``show=False``
        only records it (the look that ended the wait: :meth:`finish` shows it)."""
        self.last = EngineWaitSnapshot(
            registered,
            wanted,
            tuple(EngineSetState(*row) for row in sets),
            time.monotonic() - self._start,
        )
        if show:
            self._show(self.last)

    def finish(self, outcome: str) -> None:
        """The wait ended: ``"ready"``, or what stopped it."""
        last = self.last or EngineWaitSnapshot(0, 0, (), 0.0)
        self.last = EngineWaitSnapshot(
            last.registered, last.wanted, last.sets, time.monotonic() - self._start, outcome
        )
        self._finish(self.last)


class EngineWaitTerminal:
    """The wait's line on a stream (default ``sys.stderr``): redrawn in place on a TTY.  In a
    log, a whole line when what it says changed, at most one a second (``interval``): a log
    gets no line per look at the controller, nor one per engine of a large cluster; a change
    held back shows at the next look after the second, and the end always has its line."""

    def __init__(self, stream: IO[str] | None = None, interval: float = LOG_LINE_INTERVAL) -> None:
        self._line = LiveLine(stream if stream is not None else sys.stderr)
        self.stream = self._line.stream
        self.tty = self._line.tty
        self._interval = interval
        self._last = ""
        self._last_at: float | None = None

    def update(self, snap: EngineWaitSnapshot) -> None:
        if self.tty:
            self._line.redraw(wait_line(snap))
            return
        key = wait_line(snap, elapsed=False)
        if key == self._last:
            return
        if self._last_at is not None and snap.elapsed - self._last_at < self._interval:
            return
        self._line.write(wait_line(snap))
        self._last, self._last_at = key, snap.elapsed

    def finish(self, snap: EngineWaitSnapshot) -> None:
        self._line.clear()
        self._line.write(wait_line(snap))
