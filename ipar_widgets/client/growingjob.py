"""The part of the Job seam that the jobs which grow while they run share: a lazy map
(:mod:`.lazymap`, a batch per chunk of inputs) and a joblib call (:mod:`.paralleljob`, a batch
per ``apply`` joblib sends).  Both keep the same state (the results as they arrive, each
batch's items in ``_sizes``, every batch's AsyncResult in ``jobs``) under ``_cond``, are woken
at each batch's end, and call their done callbacks once :meth:`GrowingJob.ready`; each says
for itself when it is ready and how long it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .job import ArrivalLog, JobClient
from .metadata import Metadata
from .waiting import timeout_of

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

__all__ = ["GrowingJob"]


class GrowingJob(ArrivalLog):
    """A job of batches sent while it runs; subclasses define :meth:`ready`, and call
    :meth:`_maybe_done` at each batch's end."""

    def __init__(self, name: str, client: JobClient) -> None:
        self._fname = name
        self._client = client
        # the Job seam's state (ArrivalLog reads these) under one condition
        self._cond = threading.Condition()
        self.msg_ids: list[str] = []
        self._metadata: list[Metadata] = []
        self._results: dict[str, Any] = {}
        self._arrival: list[str] = []
        #: items (inputs, joblib tasks) each batch's msg_id carries
        self._sizes: dict[str, int] = {}
        #: every batch's AsyncResult, in submission order
        self.jobs: list[AsyncResult] = []
        #: batches sent and not finished
        self._in_flight = 0
        self._done_callbacks: list[Callable[[Any], object]] = []

    @property
    def client(self) -> JobClient:
        return self._client

    def task_size(self, msg_id: str) -> int:
        """Items one batch carries (a map's chunk size, a joblib batch's tasks)."""
        return self._sizes.get(msg_id, 1)

    def ready(self) -> bool:
        """True once no more batches will come and every batch has finished."""
        raise NotImplementedError

    def wait_for_change(
        self, timeout: float | None, since: int | None = None, *, every_result: bool = True
    ) -> int:
        """See :meth:`~ipar_widgets.client.job.Job.wait_for_change` (each batch's end, and
        the job's end, wake it)."""
        with self._cond:
            seen = len(self._arrival) if since is None else since
            self._cond.wait_for(
                lambda: len(self._arrival) > seen or self.ready(), timeout_of(timeout)
            )
            return len(self._arrival)

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(self)`` once the job is over (at once if it is)."""
        with self._cond:
            self._done_callbacks.append(fn)
        self._maybe_done()

    def _maybe_done(self) -> None:
        with self._cond:
            if not self.ready():
                return
            callbacks, self._done_callbacks = self._done_callbacks, []
        for fn in callbacks:
            fn(self)
