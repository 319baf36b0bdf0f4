"""Showing a job's progress: snapshots and their text renderer (the widget and HTML ones are
in :mod:`ipar_widgets.widgets`).

Everything here reads a job through :class:`~ipar_widgets.client.job.Job` alone.
``ar.wait_interactive()`` picks the display (``client/frontend.py``): the live widget in a
Jupyter kernel, :func:`wait_in_terminal` elsewhere.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ALL_COMPLETED
from typing import IO, Any

from ..client.job import Job, condition_for
from ..client.waiting import wait_until
from .snapshot import EngineRow, FirstError, ProgressTracker, Snapshot, take_snapshot
from .terminal import TerminalDisplay

__all__ = [
    "wait_in_terminal",
    "Snapshot",
    "EngineRow",
    "FirstError",
    "ProgressTracker",
    "take_snapshot",
    "in_kernel",
    "widgets_wanted",
]

#: seconds between refreshes of the terminal display when ``interval`` is not given
TERMINAL_INTERVAL = 0.1


def in_kernel() -> bool:
    """Whether we run in a Jupyter kernel whose frontend can show widgets."""
    if os.environ.get("IPAR_NONINTERACTIVE") == "1":
        return False
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def widgets_wanted(widget: bool | None) -> bool:
    """The display choice: ``IPAR_NONINTERACTIVE=1`` wins, then ``widget``, then detection."""
    if os.environ.get("IPAR_NONINTERACTIVE") == "1":
        return False
    return in_kernel() if widget is None else bool(widget)


def wait_in_terminal(
    job: Job,
    interval: float | None = None,
    timeout: float | None = -1,
    return_when: Any = ALL_COMPLETED,
    stream: IO[str] | None = None,
) -> None:
    """Wait for ``job`` while a text display (``stream``, default ``sys.stdout``) shows its
    progress every ``interval`` seconds (default 0.1); TimeoutError after ``timeout`` s."""
    interval = TERMINAL_INTERVAL if interval is None else max(0.01, float(interval))
    tracker = ProgressTracker(job)
    display = TerminalDisplay(stream)
    try:
        finished = wait_until(
            job,
            condition_for(job, return_when),
            timeout,
            tick=lambda: display.update(tracker.snapshot(per_engine=False)),
            interval=interval,
        )
    except KeyboardInterrupt:
        display.finish(tracker.snapshot(per_engine=False))
        raise
    display.finish(tracker.snapshot(per_engine=False))
    if not finished:
        raise TimeoutError(f"{job.name}: not done after {timeout} s")
