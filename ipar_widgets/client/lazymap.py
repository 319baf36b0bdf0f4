"""The lazy map an executor returns (``executor.map``): inputs read as tasks finish, results
yielded in order.

:class:`LazyMapIterator` reads its inputs a batch at a time and keeps at most
``max_outstanding`` batches running (default: one per engine of the view), so it works on an
endless generator and never holds more inputs than it needs.  Submitting goes on in a thread
of its own whether or not anyone iterates, as ipyparallel's does (and as
``concurrent.futures`` maps do): ``with view.executor as ex: ex.map(f, xs)`` runs every ``f(x)``
before the ``with`` block ends.  ``imap`` makes it *paced*: ``max_outstanding`` then counts
the batches the iteration has not taken yet, so an endless input is read only as fast as the
caller consumes results.  :meth:`~LazyMapIterator.cancel` stops reading inputs; the
tasks already sent still run and are still yielded.

It is a :class:`~ipar_widgets.client.job.Job` over the tasks submitted so far, so
``display()`` shows the live progress widget, and ``jobs`` keeps each AsyncResult it made.
A batch is one task of ``chunksize`` inputs on a load-balanced view (one ``apply`` when
``chunksize`` is 1), and one part per engine on a DirectView (a DirectView's ``map`` of
``chunksize`` inputs per engine).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..error import TaskAborted
from . import frontend
from .growingjob import GrowingJob
from .waiting import deadline_of, timeout_of, wait_until

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .baseview import View

__all__ = ["LazyMapIterator"]

#: seconds between two looks at whether the client was closed while the feeding thread
#: waits for room (a closed client's tasks never finish, so nothing else would wake it)
_CLOSED_CHECK = 0.5


class _Batch:
    """One submission: its AsyncResult, and whether its value is a list of results (a map
    over several inputs) or the result of one call."""

    __slots__ = ("ar", "chunked", "error")

    def __init__(
        self, ar: AsyncResult | None, chunked: bool, error: BaseException | None = None
    ) -> None:
        self.ar = ar
        self.chunked = chunked
        #: reading an input, or submitting, failed here: the iteration raises it at this place
        self.error = error


class LazyMapIterator(GrowingJob, Iterator[Any]):
    """The results of ``fn`` over the inputs, in input order (or, with ``ordered=False``, as
    they finish); what ``executor.map`` returns.

    ``timeout`` (seconds from the call, None: no limit) bounds the whole iteration, as
    :meth:`concurrent.futures.Executor.map` does: ``next()`` raises TimeoutError once it
    passes.  With ``return_exceptions`` a failed call yields its exception instead of
    raising it.
    """

    def __init__(
        self,
        view: View,
        fn: Callable[..., Any],
        iterables: tuple[Any, ...],
        *,
        chunksize: int = 1,
        max_outstanding: int | str = "auto",
        ordered: bool = True,
        return_exceptions: bool = False,
        timeout: float | None = None,
        paced: bool = False,
    ) -> None:
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError(f"chunksize must be a whole number >= 1, found {chunksize!r}")
        from .directview import DirectView

        self._view = view
        self._fn = fn
        self._direct = isinstance(view, DirectView)
        engines = len(view)
        #: inputs per submission: a chunk per task, and on a DirectView a chunk per engine
        self._batch_size = chunksize * engines if self._direct else chunksize
        if max_outstanding == "auto":
            # a DirectView's batch already keeps every engine busy; a second one waits queued
            # on the engines, so they do not idle while the next batch is read and sent
            max_outstanding = 2 if self._direct else max(1, engines)
        if not isinstance(max_outstanding, int) or max_outstanding < 0:
            raise ValueError(
                f"max_outstanding must be 'auto' or a whole number >= 0 (0: no limit), "
                f"found {max_outstanding!r}"
            )
        self._limit = max_outstanding
        self.ordered = ordered
        self._return_exceptions = return_exceptions
        self._deadline = deadline_of(timeout)
        self._inputs = zip(*iterables)
        from .baseview import getname

        # the Job seam's state (GrowingJob's), and the feed's, under one condition
        super().__init__(getname(fn), view.client)
        self._total = self._known_length(iterables)
        #: held while inputs are read, so that no input is read once cancel() returns
        self._reading = threading.RLock()
        self._to_yield: deque[_Batch] = deque()  # ordered: submission order
        self._finished: deque[_Batch] = deque()  # unordered: completion order
        #: paced (imap): room is counted in batches the iteration has not taken yet, so a
        #: map over an endless generator that nobody iterates reads no further
        self._paced = paced
        self._untaken = 0
        self._feeding = True  # more submissions may come
        self._stopped = False  # cancel(), an aborted task, or an error: read no more inputs
        self._results_iter = self._iterate()
        # the first batch here, so a function that cannot be pickled fails at the call
        self._feed_one()
        if self._feeding:
            threading.Thread(target=self._feed, name="ipar-lazymap", daemon=True).start()
        else:
            self._maybe_done()

    @staticmethod
    def _known_length(iterables: tuple[Any, ...]) -> int | None:
        lengths = []
        for it in iterables:
            try:
                lengths.append(len(it))
            except TypeError:
                continue
        return min(lengths) if lengths else None

    # -- feeding (the first batch in the caller's thread, the rest in the feeding thread) -------
    def _submit(self, items: list[tuple[Any, ...]]) -> _Batch:
        if not self._direct and self._batch_size == 1:
            return _Batch(self._view.apply_async(self._fn, *items[0]), chunked=False)
        columns = [list(col) for col in zip(*items)]
        if self._direct:  # one part per engine
            return _Batch(self._view.map_async(self._fn, *columns), chunked=True)
        return _Batch(self._view.map_async(self._fn, *columns, chunksize=len(items)), chunked=True)

    def _feed_one(self) -> bool:
        """Read and submit one batch; False when there is nothing more to submit."""
        try:
            with self._reading:  # cancel() waits for a read under way, then none follows
                if self._stopped:
                    self._end_feeding()
                    return False
                items = list(itertools.islice(self._inputs, self._batch_size))
            if not items:
                self._end_feeding()
                return False
            batch = self._submit(items)
        except BaseException as exc:
            if not self.msg_ids:
                self._end_feeding()
                raise  # at the call: nothing was submitted, nothing to iterate
            self._fail(exc)
            return False
        ar = batch.ar
        assert ar is not None
        with self._cond:
            self.jobs.append(ar)
            # metadata before msg_ids: a display in another thread reads msg_ids first
            self._metadata.extend(ar.task_metadata)
            for msg_id in ar.msg_ids:
                self._sizes[msg_id] = ar.task_size(msg_id)
            self.msg_ids.extend(ar.msg_ids)
            self._in_flight += 1
            self._untaken += 1
            if self.ordered:
                self._to_yield.append(batch)
            self._cond.notify_all()
        ar.add_done_callback(lambda _: self._on_batch_done(batch))
        return True

    def _feed(self) -> None:
        while self._wait_for_room():
            if not self._feed_one():
                return
        self._end_feeding()

    def _wait_for_room(self) -> bool:
        """Block until another batch may be sent (True) or feeding must stop (False)."""
        with self._cond:
            while not self._stopped and self._limit and self._busy() >= self._limit:
                if self._view.client.closed:
                    self._stopped = True
                    break
                self._cond.wait(_CLOSED_CHECK)
            return not self._stopped

    def _busy(self) -> int:
        """Batches counted against ``max_outstanding`` (call with the condition)."""
        return self._untaken if self._paced else self._in_flight

    def _fail(self, exc: BaseException) -> None:
        """Reading an input or submitting failed: iteration raises ``exc`` at this place."""
        failed = _Batch(None, chunked=False, error=exc)
        with self._cond:
            self._stopped = True
            (self._to_yield if self.ordered else self._finished).append(failed)
        self._end_feeding()

    def _end_feeding(self) -> None:
        with self._cond:
            self._feeding = False
            if self._total is None or self._stopped:
                self._total = sum(self._sizes.values())
            self._cond.notify_all()
        self._maybe_done()

    def _on_batch_done(self, batch: _Batch) -> None:
        """A batch finished (in the client's I/O thread): record its results, make room."""
        ar = batch.ar
        assert ar is not None
        with self._cond:
            for msg_id, value in ar.arrived_since(0):
                if msg_id not in self._results:
                    self._results[msg_id] = value
                    self._arrival.append(msg_id)
                    if isinstance(value, TaskAborted):
                        self._stopped = True  # Cancel in the widget, or client.abort(...)
            self._in_flight -= 1
            if not self.ordered:
                self._finished.append(batch)
            self._cond.notify_all()
        self._maybe_done()

    # -- control ----------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Read no more inputs.  The tasks already sent still run; iterating yields their
        results, then stops.  (``client.abort(it.msg_ids)`` aborts those not started.)"""
        with self._reading, self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def cancelled(self) -> bool:
        """Whether the map stopped reading its inputs before their end."""
        return self._stopped

    def wait(self, timeout: float | None = -1) -> bool:
        """Wait until every input was submitted and every task finished (True), or
        ``timeout`` seconds passed (False; -1 or None: no limit)."""
        return wait_until(self, self.ready, timeout, every_result=False)

    def display(self) -> None:
        """Show the live progress widget over this map's tasks (text outside a notebook)."""
        frontend.display_progress(self)

    # -- the iterator -------------------------------------------------------------------------------
    def __iter__(self) -> LazyMapIterator:
        return self

    def __next__(self) -> Any:
        return next(self._results_iter)

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the map of {self._fname} did not finish within its timeout")
        return left

    def _next_batch(self) -> _Batch | None:
        """The next batch to yield from: in submission order, or the next to finish."""
        pending = self._to_yield if self.ordered else self._finished
        with self._cond:
            while not pending:
                if not self._feeding and (self.ordered or self._in_flight == 0):
                    return None
                self._cond.wait(timeout_of(self._remaining()))
            self._untaken -= 1
            self._cond.notify_all()  # a paced feed has room again
            return pending.popleft()

    def _iterate(self) -> Iterator[Any]:
        while (batch := self._next_batch()) is not None:
            if batch.error is not None:
                raise batch.error
            ar = batch.ar
            assert ar is not None
            left = self._remaining()
            if not ar.wait(-1 if left is None else left):
                self._remaining()  # raises TimeoutError
            arrived = dict(ar.arrived_since(0))
            for msg_id in ar.msg_ids:
                value = arrived[msg_id]
                if isinstance(value, BaseException):
                    if not self._return_exceptions:
                        raise value
                    # a failed chunk stands in for each of its inputs
                    yield from [value] * (self._sizes[msg_id] if batch.chunked else 1)
                elif batch.chunked:
                    yield from value
                else:
                    yield value

    # -- the Job seam (the rest is GrowingJob's) ---------------------------------------------------
    def __len__(self) -> int:
        """Inputs: all of them when their length is known, else those submitted so far."""
        with self._cond:
            return self._total if self._total is not None else sum(self._sizes.values())

    def ready(self) -> bool:
        """True once no more inputs will be submitted and every task has finished."""
        return not self._feeding and self._in_flight == 0

    def __repr__(self) -> str:
        state = "finished" if self.ready() else "running"
        if self._stopped:
            state += ", cancelled"
        done = len(self._results)
        return f"<LazyMapIterator({self._fname}): {done}/{len(self.msg_ids)} tasks {state}>"
