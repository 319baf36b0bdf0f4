"""Showing a job's progress: snapshots and their renderers (terminal here, widget and HTML in
:mod:`ipar_widgets.widgets`).

``wait_interactive`` picks the display: the live widget in a Jupyter kernel (``widget=``
overrides the detection, ``IPAR_NONINTERACTIVE=1`` forces text), the text display elsewhere.
Both wait in :func:`~ipar_widgets.progress.waiting.wait_ticking`.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ALL_COMPLETED
from typing import IO, TYPE_CHECKING, Any

from .snapshot import EngineRow, FirstError, ProgressTracker, Snapshot, take_snapshot
from .terminal import TerminalDisplay
from .waiting import deadline_of, wait_ticking

if TYPE_CHECKING:
    from ..client.asyncresult import AsyncResult

__all__ = [
    "wait_interactive",
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


def wait_interactive(
    ar: AsyncResult,
    interval: float | None = None,
    timeout: float | None = -1,
    widget: bool | None = None,
    return_when: Any = ALL_COMPLETED,
    stream: IO[str] | None = None,
) -> None:
    """Wait for ``ar`` while showing its progress; TimeoutError after ``timeout`` seconds.

    ``interval`` is the refresh period of the terminal display (default 0.1 s; the widget's
    refreshes are paced by the shared update loop).  ``return_when`` is a
    :mod:`concurrent.futures` constant.  ``stream`` is where the text display writes
    (default: ``sys.stdout``).
    """
    if widgets_wanted(widget):
        from ..widgets.progress import wait_with_widget

        wait_with_widget(ar, interval=interval, timeout=timeout, return_when=return_when)
        return
    wait_in_terminal(ar, interval=interval, timeout=timeout, return_when=return_when, stream=stream)


def wait_in_terminal(
    ar: AsyncResult,
    interval: float | None = None,
    timeout: float | None = -1,
    return_when: Any = ALL_COMPLETED,
    stream: IO[str] | None = None,
) -> None:
    """The text form of :func:`wait_interactive`."""
    interval = TERMINAL_INTERVAL if interval is None else max(0.01, float(interval))
    condition = ar._predicate(return_when)
    tracker = ProgressTracker(ar)
    display = TerminalDisplay(stream)
    try:
        finished = wait_ticking(
            ar,
            condition,
            interval=interval,
            deadline=deadline_of(timeout),
            tick=lambda: display.update(tracker.snapshot(per_engine=False)),
        )
    except KeyboardInterrupt:
        display.finish(tracker.snapshot(per_engine=False))
        raise
    display.finish(tracker.snapshot(per_engine=False))
    if not finished:
        raise TimeoutError(f"{ar._fname}: not done after {timeout} s")
