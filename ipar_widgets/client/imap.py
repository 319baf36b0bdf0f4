"""The tasks of an ``imap``, gathered as they are submitted: a job the displays can show.

``LoadBalancedView.imap`` submits one task per input as the caller iterates, so there is no
AsyncResult for the whole job.  :class:`TaskStream` is the iterator ``imap`` returns: it
yields the same results, and it is a :class:`~ipar_widgets.client.job.Job` over the tasks
submitted so far, so ``it.display()`` shows the live widget over them.  The total is known
when the inputs have a length; otherwise it is the number submitted so far.  ``cancel()``
stops reading the inputs (as ipyparallel's ``LazyMapIterator.cancel``); the widget's Cancel
button also aborts the submitted tasks that have not started (the iteration then raises
TaskAborted, or yields it with ``return_exceptions``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import frontend
from .job import ArrivalLog, JobClient
from .metadata import Metadata
from .waiting import timeout_of

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

__all__ = ["TaskStream"]


def _known_length(sequences: tuple[Any, ...]) -> int | None:
    lengths = []
    for seq in sequences:
        try:
            lengths.append(len(seq))
        except TypeError:
            continue
    return min(lengths) if lengths else None


class TaskStream(ArrivalLog, Iterator[Any]):
    """An ``imap``'s results (iterate it) and its tasks so far (show them)."""

    def __init__(self, client: JobClient, fname: str, sequences: tuple[Any, ...]) -> None:
        self._client = client
        self._fname = fname
        self._total = _known_length(sequences)
        self.msg_ids: list[str] = []
        self._metadata: list[Metadata] = []
        self._results: dict[str, Any] = {}
        self._arrival: list[str] = []
        self._cond = threading.Condition()
        self._results_iter: Iterator[Any] | None = None
        self._exhausted = False
        self._cancelled = False
        self._done_callbacks: list[Callable[[Any], object]] = []

    # -- fed by imap ------------------------------------------------------------------------------
    def attach(self, results: Iterator[Any]) -> TaskStream:
        self._results_iter = results
        return self

    def add(self, ar: AsyncResult) -> None:
        """A task imap just submitted."""
        with self._cond:
            # metadata first: a tracker in another thread reads msg_ids, then metadata
            self._metadata.extend(ar.task_metadata)
            self.msg_ids.extend(ar.msg_ids)
        ar.add_done_callback(self._on_done)

    def _on_done(self, ar: Any) -> None:
        with self._cond:
            for msg_id, value in ar.arrived_since(0):
                if msg_id not in self._results:
                    self._results[msg_id] = value
                    self._arrival.append(msg_id)
            self._cond.notify_all()
        self._maybe_done()

    # -- the iterator -------------------------------------------------------------------------------
    def __next__(self) -> Any:
        assert self._results_iter is not None
        try:
            return next(self._results_iter)
        except StopIteration:
            with self._cond:
                self._exhausted = True
                self._total = len(self.msg_ids)
                self._cond.notify_all()
            self._maybe_done()
            raise

    def __iter__(self) -> TaskStream:
        return self

    def cancel(self) -> None:
        """Stop reading the inputs: no task is submitted after this.  Tasks already submitted
        run on; iterating further yields their results, then stops."""
        with self._cond:
            self._cancelled = True
            self._exhausted = True
            self._total = len(self.msg_ids)
            self._cond.notify_all()
        self._maybe_done()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    # -- the Job seam (the rest is ArrivalLog's) ---------------------------------------------------
    @property
    def client(self) -> JobClient:
        return self._client

    def __len__(self) -> int:
        return self._total if self._total is not None else len(self.msg_ids)

    def ready(self) -> bool:
        """True once the inputs are used up and every task has finished."""
        return self._exhausted and len(self._results) == len(self.msg_ids)

    def wait_for_change(
        self, timeout: float | None, since: int | None = None, *, every_result: bool = True
    ) -> int:
        """See :meth:`Job.wait_for_change`; each task's end wakes it (a stream's tasks come
        one at a time, so there is no per-task wake-up to spare)."""
        with self._cond:
            seen = len(self._arrival) if since is None else since
            self._cond.wait_for(
                lambda: len(self._arrival) > seen or self.ready(), timeout_of(timeout)
            )
            return len(self._arrival)

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        self._done_callbacks.append(fn)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if not self.ready():
            return
        callbacks, self._done_callbacks = self._done_callbacks, []
        for fn in callbacks:
            fn(self)

    def display(self) -> None:
        """Show the live progress widget over this imap's tasks (in a notebook); it follows
        the iteration and shows the final state when the inputs are used up."""
        frontend.display_progress(self)

    def __repr__(self) -> str:
        return f"<TaskStream({self._fname}): {len(self._results)}/{len(self)} finished>"
