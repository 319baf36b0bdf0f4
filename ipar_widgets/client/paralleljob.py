"""One joblib ``Parallel(...)`` call as one job: the batches the joblib backend submits for
it, gathered as they are sent, so one progress display follows the whole call.

joblib sends a call's work as many batches (each one ``apply`` of a callable holding
several ``delayed`` calls), and how many depends on its auto-batching, not on the user.
:class:`ParallelCallJob` is a :class:`~ipar_widgets.client.job.Job` that grows with each
batch (as a lazy map grows with each chunk): its items are joblib's tasks, a batch counts
as many as it carries, and it is over once the call has ended and its batches have
finished.

Cancel in a display acts through the job's client (:class:`~ipar_widgets.client.job.
JobClient`); the client this job hands out also marks the call cancelled, so the backend
sends none of the batches joblib dispatches after the click, and the call raises
:class:`~ipar_widgets.error.TaskAborted` saying it was cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .growingjob import GrowingJob
from .job import JobClient

if TYPE_CHECKING:
    from .asyncresult import AsyncResult, Jobs
    from .targets import Targets

__all__ = ["ParallelCallJob", "batch_size", "batch_name"]


def batch_size(batch: Any) -> int:
    """How many joblib tasks a batch carries (joblib's BatchedCalls has a length)."""
    try:
        return max(1, len(batch))
    except TypeError:
        return 1


def batch_name(batch: Any) -> str:
    """The name of the function a batch calls (through scikit-learn's wrapper, which keeps
    the wrapped function as ``.function``), or '' when the batch does not say."""
    items = getattr(batch, "items", None)
    if not items:
        return ""
    func = items[0][0]
    func = getattr(func, "function", func)
    from .baseview import getname

    return getname(func)


class _CallClient:
    """The job's client as a display sees it: the backend's client, whose ``abort`` also
    marks the call cancelled (the Cancel button of a display aborts through here)."""

    def __init__(self, client: JobClient, on_abort: Callable[[], None]) -> None:
        self._client = client
        self._on_abort = on_abort

    @property
    def ids(self) -> list[int]:
        return self._client.ids

    def abort(self, jobs: Jobs = None, targets: Targets = None, block: bool | None = None) -> None:
        self._on_abort()
        self._client.abort(jobs, targets=targets, block=block)

    def send_signal(
        self, sig: int | str, targets: Targets = None, block: bool | None = None
    ) -> None:
        self._client.send_signal(sig, targets=targets, block=block)

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        return self._client.status(timeout=timeout)

    @property
    def connection_note(self) -> str:
        return self._client.connection_note

    def __getattr__(self, name: str) -> Any:
        # whatever else a display asks of a client (how engines died, the tasks' arguments,
        # their stacks) is the backend's client's: the displays find it as they do there
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client, name)


class ParallelCallJob(GrowingJob):
    """The batches of one ``Parallel`` call, as one job (see the module docstring)."""

    def __init__(self, client: JobClient) -> None:
        super().__init__("Parallel", _CallClient(client, self.cancel))
        self._open = True  # the call may send more batches
        self._abandoned = False  # the connection closed: running batches will not report
        self._cancelled = False

    # -- the backend's side -----------------------------------------------------------------------
    def add(self, ar: AsyncResult, size: int, name: str = "") -> None:
        """A batch of ``size`` joblib tasks was sent as ``ar``."""
        with self._cond:
            if not self.jobs and name:
                self._fname = f"Parallel({name})"
            self.jobs.append(ar)
            # metadata before msg_ids: a display in another thread reads msg_ids first
            self._metadata.extend(ar.task_metadata)
            for msg_id in ar.msg_ids:
                self._sizes[msg_id] = size
            self.msg_ids.extend(ar.msg_ids)
            self._in_flight += 1
            self._cond.notify_all()
        ar.add_done_callback(lambda _: self._on_batch_done(ar))

    def _on_batch_done(self, ar: AsyncResult) -> None:
        with self._cond:
            for msg_id, value in ar.arrived_since(0):
                if msg_id not in self._results:
                    self._results[msg_id] = value
                    self._arrival.append(msg_id)
            self._in_flight -= 1
            self._cond.notify_all()
        self._maybe_done()

    def close(self, abandon: bool = False) -> None:
        """The call ended: no more batches.  The job is over once those sent have finished,
        or at once with ``abandon`` (the connection is closing: they will not report)."""
        with self._cond:
            self._open = False
            self._abandoned = self._abandoned or abandon
            self._cond.notify_all()
        self._maybe_done()

    def cancel(self) -> None:
        """Mark the call cancelled (the backend then sends no more of its batches)."""
        with self._cond:
            self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """Whether Cancel (or ``client.abort`` through :attr:`client`) was used on the call."""
        return self._cancelled

    def batches(self) -> tuple[int, int]:
        """(batches finished, batches sent), for messages."""
        with self._cond:
            return sum(1 for ar in self.jobs if ar.ready()), len(self.jobs)

    # -- the Job seam (the rest is GrowingJob's) ---------------------------------------------------
    def __len__(self) -> int:
        """joblib tasks sent so far (all of them once the call has ended)."""
        with self._cond:
            return sum(self._sizes.values())

    def ready(self) -> bool:
        """True once the call has ended and its batches have finished."""
        return not self._open and (self._in_flight == 0 or self._abandoned)

    def __repr__(self) -> str:
        state = "finished" if self.ready() else "running"
        if self._cancelled:
            state += ", cancelled"
        return f"<ParallelCallJob({self._fname}): {len(self._results)}/{len(self.msg_ids)} batches {state}>"
