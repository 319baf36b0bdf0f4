"""An immutable picture of a job's progress, which every display renders.

The terminal line, the notebook widget and the static HTML are pure functions of a
:class:`Snapshot`, so they agree, can be tested without a kernel, and can be throttled freely.
A :class:`ProgressTracker` makes snapshots of one job cheaply: each finished task is folded
into running totals once, when it arrives, so a snapshot costs a walk over the unfinished
tasks only.

Counts are in items (a map's elements, however they were chunked), times in seconds.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client.job import DeathRecords, Job, RetriedTasks, TaskArguments
from ..error import TaskAborted
from ..protocol.wire import utcnow
from .costs import EngineCost
from .failures import FailureGroup, FailureGroups

__all__ = [
    "Snapshot",
    "EngineRow",
    "FirstError",
    "FailureGroup",
    "Placement",
    "ProgressTracker",
    "take_snapshot",
    "estimate_eta",
    "STRAGGLER_FACTOR",
    "ETA_MIN_TASKS",
]

#: a task running this many times the median task time is shown as a straggler
STRAGGLER_FACTOR = 3.0
#: finished tasks needed before an ETA is shown
ETA_MIN_TASKS = 3
#: seconds a fetch of failed tasks' arguments may take (ProgressTracker.fetch_arguments)
ARGS_TIMEOUT = 5.0


@dataclass(frozen=True)
class EngineRow:
    """One engine's share of a job."""

    engine_id: int
    done: int = 0
    failed: int = 0
    aborted: int = 0
    running: int = 0
    busy_time: float = 0.0
    current_for: float | None = None  # seconds the task it runs now has run
    straggler: bool = False
    last_stdout: str = ""
    #: its CPU and memory now (its latest usage report; None: not reported, or it is gone)
    cost: EngineCost | None = None
    #: how it died ('' while it lives), e.g. "died: killed by SIGKILL, peak 312 MB,
    #: replaced by engine 7" (enginedeath.py), and the engine that replaced it
    death: str = ""
    replaced_by: int | None = None


@dataclass(frozen=True)
class FirstError:
    """The first task that failed (in order of arrival), as the displays show it."""

    engine_id: int | None
    ename: str
    evalue: str
    traceback: str


@dataclass(frozen=True)
class Snapshot:
    """A job's state at one moment.

    ``done`` counts items that succeeded, ``failed`` those whose task raised, ``aborted``
    those whose task was aborted before it ran; ``running`` items are in a task an engine is
    running, ``pending`` the rest.  ``eta`` is (low, likely, high) seconds left, or None until
    enough tasks finished to estimate it.
    """

    fname: str
    total: int
    done: int = 0
    failed: int = 0
    aborted: int = 0
    running: int = 0
    pending: int = 0
    elapsed: float = 0.0
    serial_time: float = 0.0
    ready: bool = False
    eta: tuple[float, float, float] | None = None
    engines: tuple[EngineRow, ...] = ()
    engines_total: int = 0
    first_error: FirstError | None = None
    failed_tasks: int = 0  # tasks (not items) that raised, aborted ones excluded
    median_task_time: float | None = None
    wall_time: float | None = None  # once ready: first submission to last result
    #: about the connection to the controller: '' while fine, else e.g. "controller
    #: restarted, reconnected" (client/reconnect.py)
    connection: str = ""
    #: the failed tasks grouped by exception type and message pattern, most frequent first
    #: (progress/failures.py)
    failure_groups: tuple[FailureGroup, ...] = ()
    #: tasks resubmitted by ``retry_failed`` so far (a task retried twice counts twice)
    retried: int = 0
    #: the whole cluster's CPU and memory (all engines, not only this job's), while running
    cost_total: EngineCost | None = None
    taken_at: datetime = field(default_factory=utcnow, compare=False)

    @property
    def finished(self) -> int:
        """Items that finished, well or not."""
        return self.done + self.failed + self.aborted

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0

    @property
    def speedup(self) -> float | None:
        """Serial time over wall time so far: how many engines' worth of work ran at once."""
        wall = self.wall_time if self.wall_time is not None else self.elapsed
        if wall <= 0 or self.serial_time <= 0:
            return None
        return self.serial_time / wall

    @property
    def rate(self) -> float | None:
        """Items finished per second so far."""
        if self.elapsed <= 0 or not self.finished:
            return None
        return self.finished / self.elapsed

    @property
    def busy_engines(self) -> int:
        """Engines running one of this job's tasks now."""
        return sum(1 for e in self.engines if e.running)

    @property
    def state(self) -> str:
        """``running``, ``done`` (all succeeded), ``failed`` or ``aborted``."""
        if not self.ready:
            return "running"
        if self.failed:
            return "failed"
        if self.aborted:
            return "aborted"
        return "done"


@dataclass(frozen=True)
class Placement:
    """What the controller knows and the client does not: which task each engine runs now.

    ``running`` maps engine id to the msg_id it runs (None when idle), ``busy_for`` to the
    seconds it has run it; :func:`ipar_widgets.progress.placement.query_placement` asks.
    """

    running: dict[int, str | None] = field(default_factory=dict)
    busy_for: dict[int, float | None] = field(default_factory=dict)
    #: each engine's CPU and memory (progress/costs.py), and the cluster's total
    costs: dict[int, EngineCost] = field(default_factory=dict)
    cost_total: EngineCost | None = None


def estimate_eta(
    durations: list[float], remaining: int, workers: int
) -> tuple[float, float, float] | None:
    """Seconds left as (low, likely, high), from the per-item durations of finished tasks.

    ``remaining`` items run ``workers`` at a time.  The likely value uses the median duration,
    the range the quartiles (the middle half of the tasks seen so far).  None until
    ``ETA_MIN_TASKS`` tasks have finished.
    """
    if remaining <= 0:
        return (0.0, 0.0, 0.0)
    if len(durations) < ETA_MIN_TASKS:
        return None
    waves = remaining / max(1, workers)
    median = statistics.median(durations)
    if len(durations) >= 4:
        low, _, high = statistics.quantiles(durations, n=4, method="inclusive")
    else:
        low, high = min(durations), max(durations)
    return (waves * max(0.0, low), waves * median, waves * max(median, high))


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _last_line(text: str) -> str:
    stripped = text.rstrip("\n")
    return stripped[stripped.rfind("\n") + 1 :] if stripped else ""


def _error_of(value: BaseException, engine_id: int | None) -> FirstError:
    tb = getattr(value, "traceback", "") or ""
    return FirstError(
        engine_id=getattr(value, "engine_id", None) if engine_id is None else engine_id,
        ename=str(getattr(value, "ename", type(value).__name__)),
        evalue=str(getattr(value, "evalue", value)),
        traceback=tb if isinstance(tb, str) else "\n".join(tb),
    )


class _EngineTotals:
    __slots__ = ("done", "failed", "aborted", "busy", "stdout")

    def __init__(self) -> None:
        self.done = self.failed = self.aborted = 0
        self.busy = 0.0
        self.stdout = ""


class ProgressTracker:
    """Makes snapshots of one :class:`~ipar_widgets.client.job.Job` (an AsyncResult, an
    imap's stream).  Safe to use from any thread; one lock serialises snapshots.
    """

    def __init__(self, job: Job, engines_total: int | None = None) -> None:
        self.job = job
        self._engines_total = engines_total
        self._lock = threading.Lock()
        self._folded = 0  # how many of the job's arrivals are in the totals below
        #: msg_ids whose result is folded in
        self._finished: set[str] = set()
        self._index: dict[str, int] = {}
        self._engines: dict[int, _EngineTotals] = {}
        self._done = self._failed = self._aborted = self._failed_tasks = 0
        self._serial = 0.0
        self._durations: list[float] = []
        self._first_error: FirstError | None = None
        self._first_submitted: datetime | None = None
        self._unfinished: list[int] = []
        self._known = 0  # tasks of the job seen so far (a lazy map's grows)
        self._groups = FailureGroups()
        #: failed or aborted msg_id -> (which, items, engine id, seconds it ran): what a
        #: retry un-counts
        self._failed_folds: dict[str, tuple[str, int, Any, float]] = {}
        self._first_error_id: str | None = None
        self._replaceable = job if isinstance(job, RetriedTasks) else None
        self._replaced = 0  # how many of the job's replacements are applied
        self._retried = 0
        #: how the client's engines died (Client.engine_deaths), for the rows of dead ones
        client = job.client
        self._deaths = client.engine_deaths if isinstance(client, DeathRecords) else None

    # -- folding finished tasks in --------------------------------------------------------------
    def _sync_tasks(self) -> None:
        msg_ids = self.job.msg_ids
        metadata = self.job.task_metadata
        for i in range(self._known, len(msg_ids)):
            self._index[msg_ids[i]] = i
            self._unfinished.append(i)
            submitted = metadata[i]["submitted"]
            if submitted is not None and (
                self._first_submitted is None or submitted < self._first_submitted
            ):
                self._first_submitted = submitted
        self._known = len(msg_ids)

    def _fold(self, arrived: list[tuple[str, Any]]) -> None:
        # the hot loop of every refresh (once per finished task): a task that succeeded
        # takes the short path, with the lookups bound to locals
        job = self.job
        metadata = job.task_metadata
        task_size = job.task_size
        index = self._index
        finished = self._finished
        engines = self._engines
        durations = self._durations
        serial = self._serial
        done = 0
        try:
            for msg_id, value in arrived:
                i = index.get(msg_id)
                if i is None:
                    continue
                finished.add(msg_id)
                md = metadata[i]
                n = task_size(msg_id)
                engine_id = md["engine_id"]
                # not an int: a coalescing broadcast's one task ran on a list of engines
                row = None
                if isinstance(engine_id, int):
                    row = engines.get(engine_id)
                    if row is None:
                        row = engines[engine_id] = _EngineTotals()
                started, completed = md["started"], md["completed"]
                took = None
                if started is not None and completed is not None:
                    took = (completed - started).total_seconds()
                    serial += took
                    durations.append(took / n if n > 1 else took)
                    if row is not None:
                        row.busy += took
                if isinstance(value, BaseException) or md["status"] == "aborted":
                    self._fold_failure(msg_id, value, md, n, engine_id, row, took)
                else:
                    done += n
                    if row is not None:
                        row.done += n
                if row is not None and md["stdout"]:
                    row.stdout = _last_line(md["stdout"]) or row.stdout
        finally:
            self._serial = serial
            self._done += done

    def _fold_failure(
        self,
        msg_id: str,
        value: Any,
        md: Any,
        n: int,
        engine_id: Any,
        row: _EngineTotals | None,
        took: float | None,
    ) -> None:
        """A task that was aborted, or failed (``value`` its exception)."""
        if isinstance(value, TaskAborted) or md["status"] == "aborted":
            self._aborted += n
            if row is not None:
                row.aborted += n
            self._failed_folds[msg_id] = ("aborted", n, engine_id, took or 0.0)
            return
        self._failed += n
        self._failed_tasks += 1
        if row is not None:
            row.failed += n
        if self._first_error is None:
            self._first_error = _error_of(value, engine_id)
            self._first_error_id = msg_id
        self._failed_folds[msg_id] = ("failed", n, engine_id, took or 0.0)
        self._groups.add(msg_id, value, engine_id if isinstance(engine_id, int) else None)

    # -- retried tasks ------------------------------------------------------------------------
    def _apply_replacements(self, replaced: list[tuple[str, str]]) -> None:
        """A retry put new tasks in failed ones' places: un-count the failures and wait for
        the new tasks.  A replaced task whose failure was not folded yet is never folded (its
        msg_id has no place any more)."""
        back: list[int] = []
        self._retried += len(replaced)
        for old, new in replaced:
            i = self._index.pop(old, None)
            if i is None:  # a tracker made after the retry found the new msg_id in place
                continue
            self._index[new] = i
            if old in self._finished:
                self._finished.discard(old)
                self._unfold(old)
                back.append(i)
        if back:
            self._unfinished = sorted(set(self._unfinished).union(back))

    def _unfold(self, msg_id: str) -> None:
        folded = self._failed_folds.pop(msg_id, None)
        if folded is None:
            return
        which, n, engine_id, took = folded
        row = self._engines.get(engine_id) if isinstance(engine_id, int) else None
        self._serial -= took
        if row is not None:
            row.busy -= took
        if which == "aborted":
            self._aborted -= n
            if row is not None:
                row.aborted -= n
            return
        self._failed -= n
        self._failed_tasks -= 1
        if row is not None:
            row.failed -= n
        self._groups.remove(msg_id)
        if self._first_error_id == msg_id:
            self._first_error = self._first_error_id = None
            for other in self._failed_folds:  # the earliest failure left, if any
                found = self._groups.failure_of(other)
                if found is not None:
                    self._first_error = _error_of(found[0], found[1])
                    self._first_error_id = other
                    break

    # -- the failed tasks' arguments ----------------------------------------------------------
    def fetch_arguments(
        self, on_done: Callable[[], None] | None = None, timeout: float = ARGS_TIMEOUT
    ) -> bool:
        """Fetch, in a thread of its own, the arguments of the tasks the failure groups show
        that have none yet (the first few of each group), from the job's client (which reads
        them from the controller's records); ``on_done()`` once they are in the groups.
        Called when a display first shows a group; False if there was nothing to fetch."""
        with self._lock:
            wanted = self._groups.wanting_arguments()
            if not wanted:
                return False
            client = self.job.client
            if not isinstance(client, TaskArguments):
                self._groups.note_arguments(wanted, "arguments not available from this client")
                return False
            self._groups.note_arguments(wanted, "fetching arguments…")

        def fetch() -> None:
            note = "arguments not available (the controller keeps no record of them)"
            try:
                reprs = client.task_arguments(wanted, timeout)
            except Exception as exc:
                reprs, note = {}, f"arguments not available: {exc}"
            with self._lock:
                self._groups.set_arguments({m: reprs.get(m) for m in wanted}, note)
            if on_done is not None:
                on_done()

        threading.Thread(target=fetch, name="ipar-failure-arguments", daemon=True).start()
        return True

    # -- the snapshot -------------------------------------------------------------------------
    def snapshot(self, placement: Placement | None = None, *, per_engine: bool = True) -> Snapshot:
        """The job's state now.  ``placement`` (from the controller) tells which task each
        engine runs; without it, a direct task counts as running when it is the oldest
        unfinished one of its engine.  ``per_engine=False`` skips the engine rows (the terminal
        needs none), which makes the snapshot cost independent of the unfinished tasks."""
        job = self.job
        with self._lock:
            # replacements first: a new task's result read below then has its place
            replaced = self._replaceable.replaced_since(self._replaced) if self._replaceable else []
            # readiness first: once it is true, the arrivals read after it are all of them
            ready = job.ready()
            arrived = job.arrived_since(self._folded)
            self._sync_tasks()  # after: every task that arrived was listed before it did
            self._folded += len(arrived)
            if replaced:
                self._replaced += len(replaced)
                self._apply_replacements(replaced)
            self._fold(arrived)
            return self._build(placement, ready, per_engine)

    def _build(self, placement: Placement | None, ready: bool, per_engine: bool) -> Snapshot:
        job = self.job
        msg_ids = job.msg_ids
        metadata = job.task_metadata
        total = len(job)
        now = utcnow()
        median = statistics.median(self._durations) if self._durations else None
        running_items = 0
        live: dict[int, dict[str, Any]] = {}
        if per_engine or placement is not None:
            running_ids = {m: e for e, m in placement.running.items() if m} if placement else {}
            still: list[int] = []
            done_ids = self._finished
            for i in self._unfinished:
                msg_id = msg_ids[i]
                if msg_id in done_ids:
                    continue
                still.append(i)
                md = metadata[i]
                engine_id = running_ids.get(msg_id, md["engine_id"])
                if not isinstance(engine_id, int):
                    continue
                slot = live.setdefault(engine_id, {"running": 0, "since": None, "stdout": ""})
                if md["stdout"]:
                    slot["stdout"] = _last_line(md["stdout"]) or slot["stdout"]
                runs_now = (
                    (msg_id in running_ids) if placement is not None else slot["since"] is None
                )
                if runs_now and not slot["running"]:
                    slot["running"] = job.task_size(msg_id)
                    running_items += slot["running"]
                    busy_for = placement.busy_for.get(engine_id) if placement is not None else None
                    if busy_for is None:
                        busy_for = _seconds(md["started"] or md["submitted"], now)
                    slot["since"] = busy_for
            self._unfinished = still
        rows: list[EngineRow] = []
        if per_engine:
            engine_ids = sorted(set(self._engines) | set(live))
            for engine_id in engine_ids:
                totals = self._engines.get(engine_id) or _EngineTotals()
                slot = live.get(engine_id, {"running": 0, "since": None, "stdout": ""})
                current = slot["since"] if slot["running"] else None
                straggler = bool(
                    current is not None
                    and median is not None
                    and len(self._durations) >= ETA_MIN_TASKS
                    and current > STRAGGLER_FACTOR * median * max(1, slot["running"])
                )
                death = self._deaths.get(engine_id) if self._deaths is not None else None
                rows.append(
                    EngineRow(
                        engine_id=engine_id,
                        done=totals.done,
                        failed=totals.failed,
                        aborted=totals.aborted,
                        running=slot["running"],
                        busy_time=totals.busy,
                        current_for=current,
                        straggler=straggler,
                        last_stdout=slot["stdout"] or totals.stdout,
                        cost=placement.costs.get(engine_id) if placement is not None else None,
                        death=death.summary() if death is not None else "",
                        replaced_by=death.replaced_by if death is not None else None,
                    )
                )
        finished = self._done + self._failed + self._aborted
        pending = max(0, total - finished - running_items)
        wall = None
        if ready:
            received = [md["received"] for md in metadata if md["received"] is not None]
            if received and self._first_submitted is not None:
                wall = max(0.0, (max(received) - self._first_submitted).total_seconds())
        elapsed = (
            wall
            if wall is not None
            else (
                max(0.0, (now - self._first_submitted).total_seconds())
                if self._first_submitted
                else 0.0
            )
        )
        engines_total = self._engines_total
        if engines_total is None:
            engines_total = len(job.client.ids)
        workers = max(1, min(engines_total or 1, total - finished or 1))
        eta = None if ready else estimate_eta(self._durations, total - finished, workers)
        return Snapshot(
            fname=job.name,
            total=total,
            done=self._done,
            failed=self._failed,
            aborted=self._aborted,
            running=running_items,
            pending=pending,
            elapsed=elapsed,
            serial_time=self._serial,
            ready=ready,
            eta=eta,
            engines=tuple(rows),
            engines_total=engines_total,
            first_error=self._first_error,
            failed_tasks=self._failed_tasks,
            median_task_time=median,
            wall_time=wall,
            connection=job.client.connection_note,
            failure_groups=self._groups.groups(),
            retried=self._retried,
            cost_total=placement.cost_total if placement is not None else None,
            taken_at=now,
        )


def take_snapshot(
    job: Job, engines_total: int | None = None, placement: Placement | None = None
) -> Snapshot:
    """One snapshot of ``job`` now (a fresh tracker: for repeated snapshots keep a
    :class:`ProgressTracker`)."""
    return ProgressTracker(job, engines_total).snapshot(placement)
