"""Showing an AsyncResult's progress: snapshots and their renderers (terminal, widget, HTML)."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ALL_COMPLETED
from typing import TYPE_CHECKING, Any

from .snapshot import EngineRow, Snapshot, take_snapshot
from .terminal import TerminalDisplay

if TYPE_CHECKING:
    from ..client.asyncresult import AsyncResult

__all__ = ["wait_interactive", "Snapshot", "EngineRow", "take_snapshot", "in_kernel"]


def in_kernel() -> bool:
    """Whether we run in a Jupyter kernel whose frontend can show widgets."""
    if os.environ.get("IPAR_NONINTERACTIVE") == "1":
        return False
    shell = sys.modules.get("IPython") and __import__("IPython").get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def wait_interactive(ar: AsyncResult, interval: float | None = None, timeout: float | None = -1,
                     widget: bool | None = None, return_when: Any = ALL_COMPLETED,
                     stream: Any = None) -> None:
    """Wait for ``ar`` while showing its progress; TimeoutError after ``timeout`` seconds."""
    use_widget = in_kernel() if widget is None else bool(widget)
    if use_widget and os.environ.get("IPAR_NONINTERACTIVE") != "1":
        try:
            from ..widgets.progress import wait_with_widget
        except ImportError:
            pass
        else:
            wait_with_widget(ar, interval=interval, timeout=timeout, return_when=return_when)
            return
    interval = 0.1 if interval is None else max(0.01, interval)
    deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
    display = TerminalDisplay(stream)
    condition = ar._predicate(return_when)
    try:
        while True:
            display.update(take_snapshot(ar))
            if condition():
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                display.close()
                raise TimeoutError(f"{ar._fname}: not done after {timeout} s")
            with ar._cond:
                ar._cond.wait_for(condition, interval if remaining is None else min(interval, remaining))
    except KeyboardInterrupt:
        display.close()
        raise
    snap = take_snapshot(ar)
    wall = ar.wall_time if ar.ready() else None
    display.finish(snap, wall)
