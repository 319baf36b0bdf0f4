"""The seam between work in flight and whatever shows it.

A :class:`Job` is a set of tasks as the progress displays, the widgets and the magics see
it: a name, the tasks' msg_ids and metadata, the results that arrived (in arrival order),
whether it is over, and one way to wait for it to change.  :class:`AsyncResult`
(:mod:`.asyncresult`) and a lazy map (:class:`.lazymap.LazyMapIterator`, what ``imap`` and ``executor.map`` return) are jobs;
nothing above the client layer reads anything else of them, so their insides can change
without the displays noticing.

:class:`JobClient` is the part of a Client a display acts through: the engines there are,
the Cancel and Interrupt buttons (``abort``, ``send_signal``) and where tasks run now
(``status``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from ..enginedeath import EngineDeath
from .metadata import Metadata

if TYPE_CHECKING:
    from .asyncresult import Jobs
    from .targets import Targets

#: a concurrent.futures constant: ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION
ReturnWhen: TypeAlias = str | None

__all__ = [
    "Job",
    "JobClient",
    "RetriedTasks",
    "DeathRecords",
    "TaskArguments",
    "ArrivalLog",
    "condition_for",
    "unfinished",
]


class JobClient(Protocol):
    """What a display needs of the client behind a job."""

    @property
    def ids(self) -> list[int]:
        """The registered engines' ids."""
        ...

    def abort(self, jobs: Jobs = None, targets: Targets = None, block: bool | None = None) -> None:
        """Abort tasks (msg_ids) that have not started."""
        ...

    def send_signal(
        self, sig: int | str, targets: Targets = None, block: bool | None = None
    ) -> None:
        """Send a signal to engines (``SIGINT`` interrupts what they run)."""
        ...

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The controller's view of the cluster (per engine: the task it runs, for how long)."""
        ...

    @property
    def connection_note(self) -> str:
        """A line about the connection to the controller ('' while it is fine)."""
        ...


@runtime_checkable
class Job(Protocol):
    """A running or finished set of tasks, as the displays read it.

    ``msg_ids`` and ``task_metadata`` run in parallel and may grow (an ``imap`` submits as
    it goes), never shrink; ``arrived_since(n)`` returns the results that arrived after the
    first ``n``, in arrival order, so a reader that remembers ``n`` folds each result in
    once.  Results are values or exceptions (``RemoteError``, ``TaskAborted``, ...).
    """

    @property
    def name(self) -> str:
        """What the tasks run (the function's name), for titles."""
        ...

    @property
    def msg_ids(self) -> Sequence[str]: ...

    @property
    def task_metadata(self) -> Sequence[Metadata]:
        """One :class:`Metadata` per msg_id, in the same order, updated as tasks progress."""
        ...

    @property
    def client(self) -> JobClient: ...

    def __len__(self) -> int:
        """How many items the job has: a map's elements, however they were chunked."""
        ...

    def task_size(self, msg_id: str) -> int:
        """How many items one task carries (a map's chunk size; 1 otherwise)."""
        ...

    def ready(self) -> bool:
        """Whether every task has finished and no more will come."""
        ...

    def arrived_count(self) -> int:
        """How many tasks' results have arrived."""
        ...

    def arrived_since(self, count: int) -> list[tuple[str, Any]]:
        """``(msg_id, result)`` of the results that arrived after the first ``count``."""
        ...

    def wait_for_change(
        self, timeout: float | None, since: int | None = None, *, every_result: bool = True
    ) -> int:
        """Block until more than ``since`` results have arrived (default: as many as now),
        the job is over, or ``timeout`` seconds pass (None: no limit); return how many have
        arrived.  With ``every_result=False`` only a failure or the end wakes it: a thread
        waiting for a whole job is then not woken once per task."""
        ...

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(job)`` once the job is over (at once if it is)."""
        ...


@runtime_checkable
class RetriedTasks(Protocol):
    """A job whose failed tasks can be run again in their places (an AsyncResult's
    ``retry_failed``): the displays un-count a replaced task and wait for its replacement."""

    def replaced_since(self, count: int) -> list[tuple[str, str]]:
        """``(old msg_id, new msg_id)`` of the replacements after the first ``count``, in
        the order they were made (a task retried twice appears twice)."""
        ...

    def retry_failed(self, block: bool = False, timeout: float | None = -1) -> object:
        """Resubmit the failed tasks; what it returns says what was done (``str()``)."""
        ...

    def add_retry_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(job)`` after each retry that resubmitted tasks (from the thread that
        retried)."""
        ...


@runtime_checkable
class DeathRecords(Protocol):
    """A client that keeps how its engines died (``Client.engine_deaths``), for the rows of
    dead engines."""

    @property
    def engine_deaths(self) -> Mapping[int, EngineDeath]:
        """Engine id -> how that engine died."""
        ...


@runtime_checkable
class TaskArguments(Protocol):
    """A client that can say what tasks were called with (their arguments' short reprs),
    for the failure groups' details."""

    def task_arguments(self, msg_ids: Sequence[str], timeout: float) -> dict[str, str | None]:
        """Each task's arguments' repr, None where they are not available; raises when the
        controller does not answer within ``timeout`` seconds."""
        ...


class ArrivalLog:
    """The readers of the Job seam that AsyncResult and LazyMapIterator share: both keep their
    results by msg_id in ``_results``, the msg_ids in order of arrival in ``_arrival``, both
    under ``_cond``."""

    _fname: str
    _metadata: list[Metadata]
    _results: dict[str, Any]
    _arrival: list[str]
    _cond: threading.Condition

    @property
    def name(self) -> str:
        """The name of the function the tasks run (what the repr and errors show)."""
        return self._fname

    @name.setter
    def name(self, value: str) -> None:
        # %px names its executions "%px", as ipyparallel's reprs do: <AsyncResult(%px): ...>
        self._fname = value

    @property
    def task_metadata(self) -> list[Metadata]:
        """One Metadata per task, in the order of ``msg_ids``."""
        return self._metadata

    def task_size(self, msg_id: str) -> int:
        """Items per task: 1 (a map's chunks count their elements)."""
        return 1

    def arrived_count(self) -> int:
        """How many tasks' results have arrived."""
        return len(self._arrival)

    def arrived_since(self, count: int) -> list[tuple[str, Any]]:
        """``(msg_id, result)`` of the results that arrived after the first ``count``."""
        with self._cond:
            results = self._results
            return [(m, results[m]) for m in self._arrival[count:]]


class _FirstFailure:
    """Whether a job has a failed task yet, reading each result once."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.seen = 0
        self.failed = False

    def __call__(self) -> bool:
        if self.failed or self.job.ready():
            return True
        arrived = self.job.arrived_since(self.seen)
        self.seen += len(arrived)
        self.failed = any(isinstance(value, BaseException) for _, value in arrived)
        return self.failed


def condition_for(job: Job, return_when: ReturnWhen = ALL_COMPLETED) -> Callable[[], bool]:
    """The condition a wait for ``job`` ends on, for a :mod:`concurrent.futures` constant:
    ``ALL_COMPLETED`` (or None) the job is over, ``FIRST_COMPLETED`` a result arrived,
    ``FIRST_EXCEPTION`` a task failed or the job is over."""
    if return_when in (None, ALL_COMPLETED):
        return job.ready
    if return_when == FIRST_COMPLETED:
        return lambda: job.arrived_count() > 0 or job.ready()
    if return_when == FIRST_EXCEPTION:
        return _FirstFailure(job)
    raise ValueError(
        "return_when must be ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION, "
        f"found {return_when!r}"
    )


def unfinished(job: Job) -> list[str]:
    """The msg_ids of the job's tasks whose result has not arrived, in submission order."""
    arrived = {msg_id for msg_id, _ in job.arrived_since(0)}
    return [m for m in job.msg_ids if m not in arrived]
