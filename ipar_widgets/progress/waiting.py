"""The one waiting loop behind every interactive wait (terminal and widget).

It blocks on the job's condition variable, so it wakes the moment a result arrives, and calls
``tick`` at most every ``interval`` seconds while it waits.  The displays differ only in their
``tick`` and in what they do when the wait ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_ticking", "deadline_of"]


def deadline_of(timeout: float | None) -> float | None:
    """A monotonic deadline from ipyparallel's timeout convention (None or < 0: no limit)."""
    if timeout is None or timeout < 0:
        return None
    return time.monotonic() + timeout


def wait_ticking(
    ar: Any,
    condition: Callable[[], bool],
    *,
    interval: float,
    deadline: float | None,
    tick: Callable[[], None] | None = None,
) -> bool:
    """Wait until ``condition()`` holds or ``deadline`` passes; True if it holds.

    ``tick()`` runs before the first wait and then whenever ``interval`` seconds passed
    without ``condition`` becoming true; results arriving in between do not call it, so a
    display costs at most one refresh per interval however fast tasks finish.
    """
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if tick is not None and now >= next_tick:
            tick()
            next_tick = now + interval
        with ar._cond:
            if condition():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            wake = next_tick if tick is not None else now + interval
            if deadline is not None:
                wake = min(wake, deadline)
            ar._eager_waiters += 1  # woken at each result, not only when the job is done
            try:
                ar._cond.wait(max(0.0, wake - now))
            finally:
                ar._eager_waiters -= 1
