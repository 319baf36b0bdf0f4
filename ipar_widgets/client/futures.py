"""Waiting for futures that are not ours: what ``Client.wait`` does with a
:class:`concurrent.futures.Future`, an :class:`asyncio.Future` or anything else that has
``add_done_callback`` (ipyparallel waits for those alongside its own tasks).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from .waiting import timeout_of

__all__ = ["is_future", "split_futures", "wait_for_futures"]


def is_future(obj: object) -> bool:
    """Whether ``obj`` looks like a future (ipyparallel's test: it has ``add_done_callback``)."""
    return callable(getattr(obj, "add_done_callback", None))


def split_futures(jobs: Any) -> tuple[Any, list[Any]]:
    """``jobs`` as ``Client.wait`` takes them, split into what names tasks (msg_ids, history
    indices, AsyncResults: None still means every outstanding task) and other futures."""
    from .asyncresult import AsyncResult

    if jobs is None or isinstance(jobs, (str, int, AsyncResult)):
        return jobs, []
    if is_future(jobs):
        return [], [jobs]
    if not isinstance(jobs, Iterable):
        return jobs, []  # the caller's error message names it
    named: list[Any] = []
    futures: list[Any] = []
    for job in jobs:
        if is_future(job) and not isinstance(job, AsyncResult):
            futures.append(job)
        else:
            named.append(job)
    return named, futures


def _is_done(future: Any) -> bool:
    done = getattr(future, "done", None)
    return bool(done()) if callable(done) else False


def _check_asyncio(future: Any) -> None:
    """An asyncio future completes in its event loop's thread, through that loop: waiting for
    it from the loop's own thread, or while the loop does not run, would never end, so say so
    instead of hanging."""
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        raise RuntimeError(
            "Client.wait cannot block the thread whose event loop must complete this asyncio "
            "future (it would wait forever); use `await future` (or `await ar` for an "
            "AsyncResult) in the coroutine instead"
        )
    if not loop.is_running():
        raise RuntimeError(
            "Client.wait was given an asyncio future whose event loop is not running, so "
            "nothing can complete it; run the loop (in another thread) or wait for the "
            "future inside it"
        )


def wait_for_futures(futures: Iterable[Any], timeout: float | None) -> bool:
    """Wait until every future is done (True) or ``timeout`` seconds pass (False; None or
    negative: no limit).  Each future's own done callback wakes the wait: nothing polls."""
    pending = [f for f in futures if not _is_done(f)]
    if not pending:
        return True
    for future in pending:
        if asyncio.isfuture(future):
            _check_asyncio(future)
    remaining = len(pending)
    lock = threading.Lock()
    all_done = threading.Event()

    def one_done(_: Any) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            if remaining == 0:
                all_done.set()

    for future in pending:
        if asyncio.isfuture(future):
            # asyncio futures are not thread-safe: register in their loop's thread
            future.get_loop().call_soon_threadsafe(future.add_done_callback, one_done)
        else:
            future.add_done_callback(one_done)
    return all_done.wait(timeout_of(timeout))
