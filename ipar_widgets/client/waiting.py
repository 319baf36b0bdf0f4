"""The one waiting loop: every wait on a job (``get``, ``wait``, iteration,
``wait_interactive`` in a terminal or a notebook, a blocking ``%px``) runs here.

It blocks in the job's :meth:`~ipar_widgets.client.job.Job.wait_for_change`, so it wakes the
moment a result arrives (or, waiting for a whole job, only when a task fails or the job
ends), and calls ``tick`` at most every ``interval`` seconds while it waits: the displays
differ only in their ``tick`` and in what they do when the wait ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .job import Job

__all__ = ["wait_until", "deadline_of", "timeout_of"]


def timeout_of(timeout: float | None) -> float | None:
    """ipyparallel's timeout convention: None or a negative number waits forever."""
    if timeout is None or timeout < 0:
        return None
    return float(timeout)


def deadline_of(timeout: float | None) -> float | None:
    """A monotonic deadline from a timeout in ipyparallel's convention (None: no limit)."""
    limit = timeout_of(timeout)
    return None if limit is None else time.monotonic() + limit


def wait_until(
    job: Job,
    condition: Callable[[], bool],
    timeout: float | None = None,
    *,
    every_result: bool = True,
    tick: Callable[[], None] | None = None,
    interval: float | None = None,
) -> bool:
    """Wait until ``condition()`` holds (True) or ``timeout`` seconds pass (False; None or
    negative: no limit).

    ``condition`` must turn true only when results arrive or the job ends (the wait sleeps
    until then); ``every_result=False`` says it can only turn true at a failure or at the
    end, which spares a thread waiting for a whole job a wake-up per task.  ``tick()`` runs
    before the first wait and then whenever ``interval`` seconds passed; results arriving in
    between do not call it, so a display costs at most one refresh per interval however
    fast tasks finish.  Without ``tick``, ``interval`` bounds each sleep instead.
    """
    if tick is None and condition():  # the common case of a get() after the job ended
        return True
    deadline = deadline_of(timeout)
    next_tick = time.monotonic()
    while True:
        seen = job.arrived_count()  # before the check: what arrives after it wakes the wait
        if tick is not None:
            now = time.monotonic()
            if now >= next_tick:
                tick()
                next_tick = now + (interval or 0.0)
        if condition():
            return True
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        wake = deadline
        if tick is not None:
            wake = next_tick if wake is None else min(wake, next_tick)
        elif interval is not None:
            wake = now + interval if wake is None else min(wake, now + interval)
        job.wait_for_change(
            None if wake is None else max(0.0, wake - now), seen, every_result=every_result
        )
