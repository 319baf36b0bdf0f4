"""AsyncResult and AsyncMapResult: the handle on work in flight.

An AsyncResult stands for one or more messages (msg_ids).  The client's I/O thread hands it
each result as it arrives (:meth:`AsyncResult._deliver`); everything that waits (``get``,
``wait``, iteration, ``wait_interactive``) goes through the one loop of :mod:`.waiting`,
which sleeps on the result's condition variable, so nothing polls.  It is also a
:class:`concurrent.futures.Future` (``result()``, ``add_done_callback``,
``concurrent.futures.wait``), awaitable, and a :class:`~ipar_widgets.client.job.Job`: what
the progress displays, widgets and magics read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Future
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import zmq

from ..error import CompositeError, RemoteError, TaskAborted
from ..protocol.wire import utcnow
from . import frontend
from .job import ArrivalLog, JobClient, ReturnWhen, condition_for, unfinished
from .metadata import METADATA_KEYS, Metadata
from .waiting import timeout_of, wait_until

if TYPE_CHECKING:
    from ..widgets.timeline import Timeline
    from .client import Client
    from .retry import RetryOutcome
    from .stacks import Stacks

__all__ = ["AsyncResult", "AsyncMapResult", "AsyncHubResult"]

#: the tracker of a send without ``track``: done from the start
_UNTRACKED = zmq.MessageTracker()
#: seconds a blocked wait on its own socket goes without looking at results the I/O thread
#: delivered (after a reconnection, replies come there instead)
_RECHECK = 1.0


class AsyncResult(ArrivalLog, Future[Any]):
    """The pending (or finished) result of one or more tasks."""

    _single_result: bool
    #: follows zmq's use of the memory of the frames sent without a copy (``track=True``);
    #: done from the start otherwise (ipyparallel's users read it either way)
    _tracker: zmq.MessageTracker = _UNTRACKED
    #: the results joined into this one (:meth:`join`): it is sent when they all are
    _parts: tuple[AsyncResult, ...] = ()

    def __init__(
        self,
        client: Client,
        msg_ids: Sequence[str],
        fname: str = "unknown",
        targets: Sequence[int] | int | None = None,
        *,
        owner: bool = True,
        return_exceptions: bool = False,
        single: bool | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self.msg_ids = list(msg_ids)
        self._fname = fname
        if isinstance(targets, int):
            self._targets: list[int] | None = [targets]
        else:
            self._targets = list(targets) if targets is not None else None
        # one value (not a list) for a single-engine view or a load-balanced apply
        self._single_result = isinstance(targets, int) if single is None else single
        self.owner = owner
        self._return_exceptions = return_exceptions
        self._cond = self._condition  # the Future's own condition: one lock for both roles
        self._results: dict[str, Any] = {}
        self._arrival: list[str] = []
        self._n_errors = 0
        #: how many results had arrived when the latest failure arrived (0: none failed)
        self._failed_at = 0
        #: threads waiting for single results (iteration, FIRST_COMPLETED); only they need a
        #: wake-up per result: waking a thread that waits for all of them costs two thread
        #: switches per task for nothing
        self._eager_waiters = 0
        self._sent = False
        #: the socket its replies come to, when the thread that sent it waits for them there
        self._waiter: zmq.Socket[bytes] | None = None
        self._waiter_thread: threading.Thread | None = None
        #: retry_failed: the results of the tasks it replaced, by msg_id (still in the
        #: arrival log the displays read), and the replacements (old, new) in order
        self._superseded: dict[str, Any] = {}
        self._replacements: list[tuple[str, str]] = []
        self._retry_callbacks: list[Callable[[AsyncResult], object]] = []
        ledger = client._ledger
        self._metadata = [ledger.metadata_for(m) for m in self.msg_ids]
        ledger.track(self)

    # -- delivery (the client's I/O thread) ---------------------------------------------------------
    def _deliver(self, msg_id: str, result: Any) -> None:
        with self._cond:
            if msg_id in self._results:
                return
            self._results[msg_id] = result
            self._arrival.append(msg_id)
            failed = isinstance(result, BaseException)
            if failed:
                self._n_errors += 1
                self._failed_at = len(self._arrival)
            complete = len(self._results) == len(self.msg_ids)
            if not complete and (failed or self._eager_waiters):  # failed: FIRST_EXCEPTION
                self._cond.notify_all()
        if complete:
            # last: the waiter, once woken, needs the GIL this thread holds until it returns
            self._finalize()

    def _finalize(self) -> None:
        """Settle the Future; setting its result (or exception) wakes every waiter."""
        if self.done():
            with self._cond:
                self._cond.notify_all()
            return
        try:
            value = self._collect(raise_errors=True)
        except BaseException as exc:
            self.set_exception(exc)
        else:
            self.set_result(value)

    def _set_sent(self) -> None:
        with self._cond:
            self._sent = True
            self._cond.notify_all()

    # -- the Job seam (what displays read; see job.py; the rest is ArrivalLog's) ------------------
    @property
    def client(self) -> JobClient:
        """The Client these tasks were submitted through."""
        return self._client

    def wait_for_change(
        self, timeout: float | None, since: int | None = None, *, every_result: bool = True
    ) -> int:
        """Block until more than ``since`` results have arrived (default: as many as now),
        every task has finished, or ``timeout`` seconds pass; return how many arrived.

        ``every_result=False``: only a failure or the end counts as a change, so a thread
        that waits for a whole job is not woken (two thread switches) once per task.  The
        thread that sent the tasks and waits for them receives their replies here, on its
        own socket (see ``submission.py``).
        """
        if self._waiter is not None and threading.current_thread() is self._waiter_thread:
            limit = timeout_of(timeout)
            self._receive_waited(None if limit is None else time.monotonic() + limit)
            return len(self._arrival)
        with self._cond:
            if since is None:
                since = len(self._arrival)
            if every_result:

                def changed() -> bool:
                    return len(self._arrival) > since or self.ready()

                self._eager_waiters += 1
                try:
                    self._cond.wait_for(changed, timeout_of(timeout))
                finally:
                    self._eager_waiters -= 1
            else:
                self._cond.wait_for(
                    lambda: self._failed_at > since or self.ready(), timeout_of(timeout)
                )
            return len(self._arrival)

    # -- assembling results ---------------------------------------------------------------------------
    def _raw(self) -> list[Any]:
        with self._cond:
            return [self._results[m] for m in self.msg_ids]

    def _reconstruct(self, raw: list[Any]) -> Any:
        if self._single_result:
            return raw[0]
        return raw

    def _collect(self, raise_errors: bool) -> Any:
        raw = self._raw()
        if raise_errors and self._n_errors:
            self._raise_errors(raw)
        return self._reconstruct(raw)

    def _raise_errors(self, raw: list[Any]) -> None:
        errors = [r for r in raw if isinstance(r, BaseException)]
        if not errors:
            return
        if self._single_result or (len(raw) == 1 and not isinstance(errors[0], RemoteError)):
            raise errors[0]
        remote = [e for e in errors if isinstance(e, RemoteError)]
        if len(remote) != len(errors):
            raise next(e for e in errors if not isinstance(e, RemoteError))
        flat: list[RemoteError] = []
        for err in remote:
            flat.extend(err.elist if isinstance(err, CompositeError) else [err])
        raise CompositeError(f"one or more exceptions raised in: {self._fname}", flat)

    # -- waiting ----------------------------------------------------------------------------------
    def _receive_waited(self, deadline: float | None) -> None:
        """Receive this result's replies on the waiter of the thread that sent it.

        Outputs still come through the I/O thread: a reply that arrives before its task's
        outputs is held there, and the wait on the condition that follows sees it complete.
        """
        sock, self._waiter = self._waiter, None
        if sock is None:
            return
        transport = self._client._transport
        pending = set(self.msg_ids)
        try:
            while pending:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    return
                # bounded: after a reconnection the I/O thread may deliver the results instead
                frames = transport.receive_waited(
                    sock, _RECHECK if timeout is None else min(timeout, _RECHECK)
                )
                if frames is None:
                    with self._cond:
                        pending.difference_update(self._results)
                    continue
                answered = self._client._dispatch.on_reply(frames)
                if answered is not None:
                    pending.discard(answered)
        finally:
            transport.end_wait(sock, complete=not pending)

    def _abandon_waiter(self) -> None:
        """The thread that sent this will not wait for it: the I/O thread takes the replies."""
        sock, self._waiter = self._waiter, None
        if sock is not None:
            self._client._transport.end_wait(sock, complete=False)

    def ready(self) -> bool:
        """Whether every task has finished."""
        return len(self._results) == len(self.msg_ids)

    def successful(self) -> bool:
        """Whether every task finished without error; an AssertionError if not yet finished."""
        if not self.ready():
            raise AssertionError("the result is not ready; call successful() once ready() is True")
        return self._n_errors == 0

    def wait(
        self, timeout: float | None = -1, return_when: ReturnWhen = None
    ) -> bool | tuple[set[AsyncResult], set[AsyncResult]]:
        """Wait until the tasks finish, or ``timeout`` seconds pass (-1 or None: no limit).

        Returns whether everything finished.  With ``return_when`` (a
        :mod:`concurrent.futures` constant) it returns ``(done, pending)``: sets of one-task
        AsyncResults, as :func:`concurrent.futures.wait` does.
        """
        wait_until(
            self,
            condition_for(self, return_when),
            timeout,
            every_result=return_when == FIRST_COMPLETED,
        )
        if return_when is None:
            return self.ready()
        parts = self.split()
        done = {p for p in parts if p.ready()}
        return done, set(parts) - done

    def get(
        self,
        timeout: float | None = -1,
        return_exceptions: bool | None = None,
        return_when: ReturnWhen = None,
    ) -> Any:
        """The result(s) once ready; raises TimeoutError if not ready within ``timeout`` s.

        An error in a task is raised (RemoteError, or CompositeError for several), unless
        ``return_exceptions`` is true, in which case exceptions take the place of results.
        With ``return_when=FIRST_EXCEPTION`` the first error is raised as soon as it arrives.
        """
        if return_exceptions is None:
            return_exceptions = self._return_exceptions
        if return_when == FIRST_EXCEPTION:
            condition: Callable[[], bool] = lambda: self._n_errors > 0 or self.ready()
        else:
            condition = self.ready
        wait_until(self, condition, timeout, every_result=False)
        if not self.ready():
            if self._n_errors and return_when == FIRST_EXCEPTION and not return_exceptions:
                with self._cond:
                    first = next(
                        r for m in self._arrival if isinstance(r := self._results[m], BaseException)
                    )
                raise first
            raise TimeoutError("Result not ready.")
        return self._collect(raise_errors=not return_exceptions)

    def get_dict(self, timeout: float | None = -1) -> dict[int, Any]:
        """The results keyed by engine id; ValueError if an engine ran more than one task."""
        value = self.get(timeout)
        raw = self._raw()
        engine_ids = [md["engine_id"] for md in self._metadata]
        if self._single_result and isinstance(engine_ids[0], list):
            # a coalescing broadcast: one task, whose value lists its engines' values
            engine_ids, raw = engine_ids[0], value
        out: dict[int, Any] = {}
        for engine_id, value in zip(engine_ids, raw):
            if engine_id in out:
                raise ValueError(
                    f"Cannot build dict, {engine_ids.count(engine_id)} jobs ran on engine #{engine_id}"
                )
            out[engine_id] = value
        return out

    @property
    def r(self) -> Any:
        """``get()``, as a property."""
        return self.get()

    @property
    def result_dict(self) -> dict[int, Any]:
        return self.get_dict()

    # Future interface: result() and exception() come from concurrent.futures.Future.
    def cancel(self) -> bool:
        """Abort the tasks that have not started; False if everything already finished."""
        if self.ready():
            return False
        self.abort()
        return True

    def cancelled(self) -> bool:
        with self._cond:
            return any(isinstance(r, TaskAborted) for r in self._results.values())

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()

    # -- sending ----------------------------------------------------------------------------------
    @property
    def sent(self) -> bool:
        """Whether every message of this result has left the client; with ``track=True``,
        also that zmq is done with the memory of what it sent without a copy (a buffer
        may then be changed in place)."""
        if self._parts:
            return all(part.sent for part in self._parts)
        return self._sent and self._tracker.done

    def wait_for_send(self, timeout: float | None = -1) -> bool:
        """Wait until :attr:`sent` (-1 or None: no limit); whether it is."""
        limit = timeout_of(timeout)
        deadline = None if limit is None else time.monotonic() + limit

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if self._parts:
            return all(part.wait_for_send(left()) for part in self._parts)
        with self._cond:
            if not self._cond.wait_for(lambda: self._sent, left()):
                return False
        remaining = left()
        try:
            self._tracker.wait(-1 if remaining is None else remaining)
        except zmq.NotDone:
            return False
        return True

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def metadata(self) -> Metadata | list[Metadata]:
        """One Metadata per task (a single one for a single-engine result)."""
        return self._metadata[0] if self._single_result else self._metadata

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            values = [md[key] for md in self._metadata]
            return values[0] if self._single_result else values
        if isinstance(key, (int, slice)):
            if not self.ready():
                raise TimeoutError("Result not ready.")
            value = self.get()
            if self._single_result:
                value = [value]
            return value[key]
        raise TypeError(
            f"Invalid key type {type(key).__name__!r}, must be 'int', 'slice', or 'str'"
        )

    def __getattr__(self, key: str) -> Any:
        if key in METADATA_KEYS:
            return self[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *METADATA_KEYS]

    # -- timing -----------------------------------------------------------------------------------
    def _times(self, key: str) -> list[datetime]:
        return [md[key] for md in self._metadata if md[key] is not None]

    def timedelta(
        self,
        start: datetime | Sequence[datetime] | str,
        end: datetime | Sequence[datetime] | str,
        start_key: Callable[..., Any] = min,
        end_key: Callable[..., Any] = max,
    ) -> float:
        """Seconds between two timestamps, or sets of them (reduced with start_key/end_key).

        ``start`` and ``end`` are datetimes, lists of datetimes, or metadata key names
        (``ar.timedelta("submitted", "received")``).
        """
        first = self._moment(start, start_key, "start")
        last = self._moment(end, end_key, "end")
        return float((last - first).total_seconds())

    def _moment(
        self, when: datetime | Sequence[datetime] | str, pick: Callable[..., Any], what: str
    ) -> datetime:
        """One timestamp: a datetime, the ``pick`` of several, or of a metadata key's."""
        if isinstance(when, datetime):
            return when
        times = self._times(when) if isinstance(when, str) else list(when)
        if not times:
            raise ValueError(f"no {what} timestamps (the tasks have not reached that point)")
        moment: datetime = pick(times)
        return moment

    @property
    def progress(self) -> int:
        """How many tasks have finished."""
        return len(self._results)

    @property
    def elapsed(self) -> float:
        """Seconds since the first submission; once finished, equal to ``wall_time``."""
        if self.ready():
            return self.wall_time
        submitted = self._times("submitted")
        if not submitted:
            return 0.0
        return (utcnow() - min(submitted)).total_seconds()

    @property
    def serial_time(self) -> float:
        """Seconds of computation: the sum of each task's completed minus started (engine
        clock); like ``wall_time``, a TimeoutError until every task has finished."""
        if not self.ready():
            raise TimeoutError("Not ready: serial_time is known once every task has finished.")
        total = 0.0
        for md in self._metadata:
            if md["started"] is not None and md["completed"] is not None:
                total += (md["completed"] - md["started"]).total_seconds()
        return total

    @property
    def wall_time(self) -> float:
        """Seconds from the first submission to the last result received (client clock)."""
        if not self.ready():
            raise TimeoutError("Not ready: wall_time is known once every task has finished.")
        return self.timedelta("submitted", "received")

    # -- iteration --------------------------------------------------------------------------------
    def _wait_for_msg(self, msg_id: str) -> Any:
        wait_until(self, lambda: msg_id in self._results)
        with self._cond:
            return self._results[msg_id]

    def _items_of(self, msg_id: str, value: Any) -> list[Any]:
        if isinstance(value, BaseException):
            raise value
        return [value]

    def __iter__(self) -> Iterator[Any]:
        """Results one by one, each as soon as it and those before it have arrived."""
        if self._single_result:
            raise TypeError("AsyncResults with a single result are not iterable.")
        for msg_id in self.msg_ids:
            yield from self._items_of(msg_id, self._wait_for_msg(msg_id))

    def __len__(self) -> int:
        return len(self.msg_ids)

    # -- retrying (see retry.py) ----------------------------------------------------------------------
    def retry_failed(self, block: bool = False, timeout: float | None = -1) -> RetryOutcome:
        """Run the failed tasks again, on other engines where their engine died; this
        result (and its widget) then follows the new tasks, and ``get()`` returns every
        result in the original order.  Aborted tasks are not retried.  With ``block``, wait
        (up to ``timeout`` s) for the retried tasks.  Returns what was done: a falsy
        :class:`~ipar_widgets.client.retry.RetryOutcome` saying so when nothing had failed."""
        from .retry import retry_failed

        outcome = retry_failed(self)
        if block and outcome:
            self.wait(timeout)
        return outcome

    def add_retry_callback(self, fn: Callable[[AsyncResult], object]) -> None:
        """Call ``fn(ar)`` after each :meth:`retry_failed` that resubmitted tasks (in the
        thread that retried): a display shown before the retry follows the new tasks."""
        with self._cond:
            self._retry_callbacks.append(fn)

    @property
    def retried(self) -> dict[str, str]:
        """Each msg_id a retry replaced -> the msg_id of the task that replaced it (a task
        retried twice has two entries: original -> first retry -> second retry)."""
        with self._cond:
            return dict(self._replacements)

    @property
    def original_msg_ids(self) -> list[str]:
        """The msg_ids as first submitted (``msg_ids`` holds the retried tasks' new ones)."""
        with self._cond:
            back = {new: old for old, new in self._replacements}
            current = list(self.msg_ids)
        out = []
        for msg_id in current:
            while msg_id in back:
                msg_id = back[msg_id]
            out.append(msg_id)
        return out

    def replaced_since(self, count: int) -> list[tuple[str, str]]:
        """``(old, new)`` msg_ids of the replacements after the first ``count`` (the Job
        seam's RetriedTasks: the displays un-count the old and wait for the new)."""
        with self._cond:
            return self._replacements[count:]

    def arrived_since(self, count: int) -> list[tuple[str, Any]]:
        """``(msg_id, result)`` of the results that arrived after the first ``count``
        (a retried task's failure stays in the log, under its old msg_id)."""
        with self._cond:
            results, old = self._results, self._superseded
            return [(m, results[m] if m in results else old[m]) for m in self._arrival[count:]]

    def _replace(self, new_ids: dict[int, str]) -> None:
        """Put the tasks ``new_ids`` (position -> msg_id) in the places of finished ones:
        their results are set aside, the Future is pending again, and the ledger delivers
        the new tasks' results here."""
        ledger = self._client._ledger
        metadata = {i: ledger.metadata_for(m) for i, m in new_ids.items()}
        with self._cond:
            for i, new in new_ids.items():
                old = self.msg_ids[i]
                value = self._results.pop(old)
                self._superseded[old] = value
                if isinstance(value, BaseException):
                    self._n_errors -= 1
                self.msg_ids[i] = new
                self._metadata[i] = metadata[i]
                self._replacements.append((old, new))
                self._task_replaced(old, new)
            if self.done():
                # concurrent.futures has no way back from done; these are the attributes its
                # set_result/set_exception set (CPython 3.9-3.13).  Done callbacks run again
                # when the retried tasks finish.
                self._state = "PENDING"
                self._result = None
                self._exception = None
            self._cond.notify_all()
        ledger.track(self, list(new_ids.values()))

    def _task_replaced(self, old: str, new: str) -> None:
        """Move what a subclass keeps per task to the new msg_id (called under the lock)."""

    # -- splitting and joining ----------------------------------------------------------------------
    #: whether each part of :meth:`split` is one task's value (True), or a list of the one
    #: task's result (False: a map's part is its chunk, so the part's get() is [chunk])
    _split_flattens = True

    def split(self) -> tuple[AsyncResult, ...]:
        """One plain AsyncResult per task (for ``concurrent.futures.wait`` and friends).

        A part of an apply's result gets that task's value; a part of a map's result gets
        ``[chunk]``, the list of its one task's result, as in ipyparallel."""
        if len(self.msg_ids) == 1:
            return (self,)
        targets: list[int | None] = (
            list(self._targets) if self._targets else [None] * len(self.msg_ids)
        )
        return tuple(
            AsyncResult(
                self._client,
                [m],
                self._fname,
                [t] if t is not None else None,
                owner=False,
                return_exceptions=self._return_exceptions,
                single=self._split_flattens,
            )
            for m, t in zip(self.msg_ids, targets)
        )

    @classmethod
    def join(cls, *async_results: AsyncResult) -> AsyncResult:
        """One AsyncResult for the tasks of several (the inverse of :meth:`split`)."""
        if not async_results:
            raise ValueError("Must specify at least one AsyncResult to join")
        if len(async_results) == 1:
            return async_results[0]
        first = async_results[0]
        msg_ids = [m for ar in async_results for m in ar.msg_ids]
        targets: list[int] | None = []
        for ar in async_results:
            if ar._targets is None or targets is None:
                targets = None
            else:
                targets.extend(ar._targets)
        joined = AsyncResult(
            first._client,
            msg_ids,
            first._fname,
            targets,
            owner=False,
            return_exceptions=first._return_exceptions,
        )
        joined._parts = tuple(async_results)
        joined._tracker = zmq.MessageTracker(*(ar._tracker for ar in async_results))
        return joined

    # -- aborting ---------------------------------------------------------------------------------
    def abort(self) -> None:
        """Abort the tasks of this result that have not started yet."""
        if self.ready():
            raise AssertionError("Can't abort, I am already done!")
        pending = [m for m in self.msg_ids if m not in self._results]
        self._client.abort(pending)

    # -- where its tasks are -----------------------------------------------------------------------
    def stacks(self, timeout: float = 5.0) -> Stacks:
        """Where is it stuck?  The Python stack of each of this result's tasks running now,
        by engine, the longest-running first (see ``Client.stacks``); empty when none runs.
        Not in ipyparallel."""
        return self._client.stacks(timeout=timeout, tasks=unfinished(self))

    # -- outputs ----------------------------------------------------------------------------------
    def wait_for_output(self, timeout: float | None = -1) -> bool:
        """Outputs are complete when each result is: same as ``wait``."""
        return bool(self.wait(timeout))

    def display_outputs(self, groupby: str = "type", result_only: bool = False) -> None:
        """Show the tasks' stdout, stderr, displays and results, labelled by engine.

        ``groupby``: ``"type"`` (all stdout, then all stderr, then displays), ``"engine"``
        (everything of one engine, then the next) or ``"order"`` (like type, with the i-th
        display of every engine together).
        """
        from .display import display_outputs

        if not self.ready():
            raise TimeoutError("Result not ready.")
        display_outputs(self, groupby, result_only)

    def wait_interactive(
        self,
        interval: float | None = None,
        timeout: float | None = -1,
        widget: bool | None = None,
        return_when: ReturnWhen = ALL_COMPLETED,
    ) -> None:
        """Wait, showing progress: a live widget in a notebook, a text display in a terminal.

        Raises TimeoutError if not done within ``timeout`` seconds.
        """
        frontend.wait_interactive(
            self, interval=interval, timeout=timeout, widget=widget, return_when=return_when
        )

    def display(self) -> None:
        """Show a live progress widget and return at once (the non-blocking wait_interactive)."""
        frontend.display_progress(self)

    def timeline(self) -> Timeline:
        """A Gantt-style chart of the tasks: one row per engine, one bar per task."""
        return frontend.timeline(self)

    # -- rendering --------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        return frontend.job_html(self)

    def _status_word(self) -> str:
        if not self.ready():
            return "pending"
        return "finished" if self._n_errors == 0 else "error"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._fname}): {self._status_word()}>"


class AsyncHubResult(AsyncResult):
    """An AsyncResult for tasks fetched from the controller's records (``Client.get_result``),
    possibly submitted by another client."""


#: what names tasks in the Client's methods: msg_ids, history indices, AsyncResults
Jobs: TypeAlias = str | int | AsyncResult | Iterable[str | int | AsyncResult] | None

# AsyncMapResult lives in mapresult.py; ipyparallel's users import it from here
from .mapresult import AsyncMapResult  # noqa: E402
