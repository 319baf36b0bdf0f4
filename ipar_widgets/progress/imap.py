"""The tasks of an ``imap``, gathered as they are submitted, for the progress displays.

``LoadBalancedView.imap`` submits one task per input as the caller iterates, so there is no
AsyncResult for the whole job.  :class:`TaskStream` is the iterator ``imap`` returns: it
yields the same results, and it keeps the tasks submitted so far in the few fields a
:class:`~ipar_widgets.progress.snapshot.ProgressTracker` reads, so ``it.display()`` shows the
live widget over them.  The total is known when the inputs have a length; otherwise it is
the number submitted so far.  Cancel aborts the submitted tasks that have not started (the
iteration then raises TaskAborted, or yields it with ``return_exceptions``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED
from typing import Any

__all__ = ["TaskStream"]


def _known_length(sequences: tuple[Any, ...]) -> int | None:
    lengths = []
    for seq in sequences:
        try:
            lengths.append(len(seq))
        except TypeError:
            continue
    return min(lengths) if lengths else None


class TaskStream(Iterator[Any]):
    """An ``imap``'s results (iterate it) and its tasks so far (show them)."""

    def __init__(self, client: Any, fname: str, sequences: tuple[Any, ...]) -> None:
        self._client = client
        self._fname = fname
        self._total = _known_length(sequences)
        self.msg_ids: list[str] = []
        self._metadata: list[Any] = []
        self._results: dict[str, Any] = {}
        self._arrival: list[str] = []
        self._chunk_sizes: dict[str, int] = {}
        self._cond = threading.Condition()
        self._results_iter: Iterator[Any] | None = None
        self._exhausted = False
        self._done_callbacks: list[Callable[[TaskStream], None]] = []

    # -- fed by imap ------------------------------------------------------------------------------
    def attach(self, results: Iterator[Any]) -> TaskStream:
        self._results_iter = results
        return self

    def add(self, ar: Any) -> None:
        """A task imap just submitted."""
        with self._cond:
            # metadata first: a tracker in another thread reads msg_ids, then metadata
            self._metadata.extend(ar._metadata)
            self.msg_ids.extend(ar.msg_ids)
        ar.add_done_callback(self._on_done)

    def _on_done(self, ar: Any) -> None:
        with self._cond:
            for msg_id in ar.msg_ids:
                if msg_id not in self._results:
                    self._results[msg_id] = ar._results[msg_id]
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

    # -- read like an AsyncResult --------------------------------------------------------------------
    def __len__(self) -> int:
        return self._total if self._total is not None else len(self.msg_ids)

    def ready(self) -> bool:
        """True once the inputs are used up and every task has finished."""
        return self._exhausted and len(self._results) == len(self.msg_ids)

    def _predicate(self, return_when: Any = ALL_COMPLETED) -> Callable[[], bool]:
        return self.ready

    def add_done_callback(self, fn: Callable[[TaskStream], None]) -> None:
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
        from ..widgets.progress import display_progress

        display_progress(self)

    def __repr__(self) -> str:
        return f"<TaskStream({self._fname}): {len(self._results)}/{len(self)} finished>"
