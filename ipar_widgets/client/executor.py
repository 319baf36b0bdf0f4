"""A :class:`concurrent.futures.Executor` backed by a view (``view.executor``,
``rc.executor()``), so code written for executors runs on the cluster.

``submit`` is the view's ``apply_async`` (the future is the AsyncResult); ``map`` returns a
:class:`~ipar_widgets.client.lazymap.LazyMapIterator`, which reads the inputs as tasks finish.
``shutdown`` waits for what this executor submitted (it never stops engines).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from .job import unfinished
from .lazymap import LazyMapIterator

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .baseview import View

__all__ = ["ViewExecutor"]


class ViewExecutor(Executor):
    """Runs ``submit``/``map`` through a view; the futures are AsyncResults."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._lock = threading.Lock()
        #: what this executor submitted and is not over yet (shutdown waits for it)
        self._pending: list[AsyncResult | LazyMapIterator] = []

    @property
    def _max_workers(self) -> int:
        """How many tasks run at once: the view's engines (ipyparallel's attribute)."""
        return len(self.view)

    def _track(self, job: AsyncResult | LazyMapIterator) -> None:
        with self._lock:
            self._pending.append(job)

        def forget(_: Any) -> None:
            with self._lock:
                if job in self._pending:
                    self._pending.remove(job)

        job.add_done_callback(forget)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        """``view.apply_async(fn, *args, **kwargs)``: the AsyncResult is the Future."""
        ar = self.view.apply_async(fn, *args, **kwargs)
        self._track(ar)
        return ar

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> LazyMapIterator:
        """``fn`` over the inputs, results in order, as :meth:`Executor.map` promises.

        The inputs are read as tasks finish, at most one batch per engine ahead (so an
        endless generator works: ``cancel()`` the iterator to stop it); ``chunksize`` inputs
        go in one task; ``timeout`` (seconds from this call) bounds the iteration.
        """
        it = LazyMapIterator(self.view, fn, iterables, chunksize=chunksize, timeout=timeout)
        self._track(it)
        return it

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Wait (``wait=True``) until every task this executor submitted has finished, and
        each of its maps has read all its inputs.  ``cancel_futures=True`` first stops the
        maps reading inputs and aborts the tasks that have not started.  The engines keep
        running: a view's executor can be used again after it."""
        with self._lock:
            pending = list(self._pending)
        if cancel_futures:
            for job in pending:
                if isinstance(job, LazyMapIterator):
                    job.cancel()
            not_done = [m for job in pending for m in unfinished(job)]
            if not_done:
                self.view.client.abort(not_done)
        if wait:
            for job in pending:
                job.wait()
