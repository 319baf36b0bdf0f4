"""Load balancing: hands each balanced task to the least-loaded engine allowed to run it.

A balanced task waits in the controller until its dependencies are met (``after``: tasks that
must finish first; ``follow``: tasks whose engine it must run on) and an engine has room
(fewer than ``hwm`` tasks outstanding).  Among the engines with room it picks the one with the
fewest outstanding tasks, then the one that waited longest, so equal engines take turns.
Failed tasks with retries left, and tasks whose ``@require``/``@depend`` is unmet on an engine,
go back in the queue with that engine excluded.  A task that failed on every engine it may use
is not retried, unless it has a ``timeout``: then it waits for a new engine until the timeout
passes (``TaskTimeout``), as in ipyparallel.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .engines import EngineRegistry, EngineState
from .records import ERROR, FINISHED, OK, PENDING, RecordStore, TaskRecord

SendTask = Callable[[TaskRecord, EngineState], bool]
FailTask = Callable[[TaskRecord, str, str], None]


def parse_dependency(value: Any) -> tuple[list[str], bool, bool, bool]:
    """Read an ``after``/``follow`` value: a list of msg_ids or a Dependency dict.

    Returns ``(msg_ids, all, success, failure)``.
    """
    if not value:
        return [], True, True, False
    if isinstance(value, dict):
        ids = [str(m) for m in value.get("dependencies", [])]
        return (
            ids,
            bool(value.get("all", True)),
            bool(value.get("success", True)),
            bool(value.get("failure", False)),
        )
    if isinstance(value, str):
        return [value], True, True, False
    return [str(m) for m in value], True, True, False


class LoadBalancer:
    """Balanced tasks waiting in the controller, and the choice of engine for each.

    It sends through ``send_task`` (False: that engine's socket is gone, try later) and
    finishes tasks it can never place through ``fail_task``; both are the router's.
    """

    def __init__(
        self,
        engines: EngineRegistry,
        records: RecordStore,
        send_task: SendTask,
        fail_task: FailTask,
        hwm: int = 1,
        pipeline_threshold: float = 0.005,
        pipeline_depth: int = 3,
    ) -> None:
        self.engines = engines
        self.records = records
        self.send_task = send_task
        self.fail_task = fail_task
        self.hwm = hwm
        self.pipeline_threshold = pipeline_threshold
        self.pipeline_depth = pipeline_depth
        #: how long the last balanced tasks took, dispatch to reply (controller clock)
        self.recent: deque[float] = deque(maxlen=16)
        self.queue: deque[TaskRecord] = deque()
        #: while a restored controller waits for its engines to rejoin, nothing is dispatched
        #: (a task the dead controller had sent may still be on its way: see restore.py)
        self.held = False
        #: why no task is handed out for now ('' when they are): the task database is behind
        self.paused = ""
        #: dependency msg_id -> tasks waiting for it
        self.waiting: dict[str, list[TaskRecord]] = {}
        self._deadlines: list[tuple[float, str]] = []

    # -- intake ---------------------------------------------------------------------------------
    def submit(self, rec: TaskRecord, metadata: dict[str, Any]) -> None:
        """Take a new balanced task, with the constraints its request's ``metadata`` sets
        (targets, retries, timeout, after, follow)."""
        targets = metadata.get("targets")
        if targets is not None:
            rec.targets = frozenset(int(t) for t in targets)
        rec.retries = int(metadata.get("retries") or 0)
        timeout = metadata.get("timeout")
        if timeout and float(timeout) > 0:
            rec.deadline = rec.arrived + float(timeout)
            heapq.heappush(self._deadlines, (rec.deadline, rec.msg_id))
        after, a_all, a_success, a_failure = parse_dependency(metadata.get("after"))
        follow, f_all, f_success, f_failure = parse_dependency(metadata.get("follow"))
        rec.after, rec.follow = after, follow
        # one set of flags per task: ipyparallel's Dependency objects carry the same flags
        rec.dep_all = a_all if after else f_all
        rec.success = a_success if after else f_success
        rec.failure = a_failure if after else f_failure
        lookup = self.records.lookup  # a dependency may have left memory (saved, or no database)
        unknown = [m for m in after + follow if lookup(m) is None] if after or follow else ()
        if unknown:
            self.fail_task(
                rec,
                "InvalidDependency",
                f"task {rec.msg_id} depends on unknown task(s) {', '.join(unknown)}",
            )
            return
        self._consider(rec)

    def _dependency_state(self, rec: TaskRecord) -> str:
        """'met', 'waiting' or 'impossible' for the task's after+follow dependencies."""
        deps = rec.dependencies
        if not deps:
            return "met"
        met = impossible = 0
        for msg_id in deps:
            dep = self.records.lookup(msg_id)
            if dep is None or not dep.finished:
                continue
            ok = (dep.status == OK and rec.success) or (dep.status == ERROR and rec.failure)
            if ok:
                met += 1
            else:
                impossible += 1
        if rec.dep_all:
            if impossible:
                return "impossible"
            return "met" if met == len(deps) else "waiting"
        if met:
            return "met"
        return "impossible" if impossible == len(deps) else "waiting"

    def _consider(self, rec: TaskRecord) -> None:
        if not rec.after and not rec.follow:  # no dependencies: the common case, kept short
            self.queue.append(rec)
            self.dispatch()
            return
        state = self._dependency_state(rec)
        if state == "impossible":
            self.fail_task(
                rec,
                "ImpossibleDependency",
                f"task {rec.msg_id}: its dependencies finished in a way that can never satisfy it",
            )
            return
        if state == "waiting":
            for msg_id in rec.dependencies:
                dep = self.records.get(msg_id)
                if dep is not None and not dep.finished:
                    self.waiting.setdefault(msg_id, []).append(rec)
            return
        self.queue.append(rec)
        self.dispatch()

    # -- choosing engines -------------------------------------------------------------------------
    def _allowed(self, rec: TaskRecord) -> set[int] | None:
        """Engine ids the task may run on, or None for any."""
        if rec.targets is None and not rec.follow and not rec.blacklist:
            return None  # the common case, asked for each task on every dispatch attempt
        allowed: set[int] | None = None
        if rec.targets is not None:
            allowed = set(rec.targets)
        if rec.follow:
            places = [self.records.lookup(m) for m in rec.follow]
            engine_sets = [
                {p.engine_id} for p in places if p is not None and p.engine_id is not None
            ]
            if engine_sets:
                if rec.dep_all:
                    where = set.intersection(*engine_sets)
                else:
                    where = set.union(*engine_sets)
                allowed = where if allowed is None else allowed & where
        if rec.blacklist:
            base = set(self.engines.by_id) if allowed is None else allowed
            allowed = base - rec.blacklist
        return allowed

    @property
    def capacity(self) -> int:
        """Most tasks an engine may hold now (0: no limit).

        When the last 16 balanced tasks each came back within ``pipeline_threshold``, the
        work is a stream of tiny tasks: an engine may then hold ``pipeline_depth`` more, so it
        finds its next tasks waiting instead of idling through a round trip to the
        controller, and handles them in one wake-up.  One slow task turns that off.
        """
        if not self.hwm:
            return 0
        if (
            self.pipeline_depth > 0
            and self.pipeline_threshold > 0
            and len(self.recent) == self.recent.maxlen
            and max(self.recent) < self.pipeline_threshold
        ):
            return self.hwm + self.pipeline_depth
        return self.hwm

    def _choose(self, rec: TaskRecord) -> EngineState | None:
        allowed = self._allowed(rec)
        best: EngineState | None = None
        capacity = self.capacity
        # Pipelining queues tasks behind the one an engine is running; never behind one that
        # has already run longer than a tiny task does: it may be the first of slow ones.
        slow_since = time.monotonic() - self.pipeline_threshold if capacity > self.hwm else None
        for engine in self.engines.by_id.values():
            load = engine.load
            if capacity and load >= capacity:
                continue
            if (
                slow_since is not None
                and load >= self.hwm
                and engine.busy_since is not None
                and engine.busy_since < slow_since
            ):
                continue
            if allowed is not None and engine.id not in allowed:
                continue
            if best is None or (load, engine.last_assigned) < (best.load, best.last_assigned):
                best = engine
        return best

    def _impossible_reason(self, rec: TaskRecord) -> str | None:
        allowed = self._allowed(rec)
        if allowed is None or not self.engines.by_id:
            return None
        if allowed & set(self.engines.by_id):
            return None
        if rec.follow:
            return f"task {rec.msg_id} must follow tasks whose engines are gone or excluded"
        if rec.targets is not None and not (rec.targets - rec.blacklist):
            return f"task {rec.msg_id}: every engine in its targets was excluded"
        if rec.targets is not None and not rec.blacklist:
            return None  # its targets may (re)appear
        if rec.targets is None and not rec.follow and rec.deadline is not None:
            return None  # failed everywhere: an engine may still register before its timeout
        return f"task {rec.msg_id}: no registered engine can run it (excluded: {sorted(rec.blacklist)})"

    def dispatch(self) -> None:
        """Hand queued tasks to engines while there is room."""
        if not self.queue or self.held or self.paused:
            return
        skipped: list[TaskRecord] = []
        while self.queue:
            rec = self.queue.popleft()
            if rec.status in FINISHED:  # answered by an engine that rejoined (restore.py)
                continue
            engine = self._choose(rec)
            if engine is None:
                reason = self._impossible_reason(rec)
                if reason:
                    self.fail_task(rec, "ImpossibleDependency", reason)
                    continue
                skipped.append(rec)
                if rec.targets is None and not rec.follow and not rec.blacklist:
                    break  # no room anywhere: later unconstrained tasks would not fit either
                continue
            engine.last_assigned = time.monotonic()
            if not self.send_task(rec, engine):
                skipped.append(rec)
                break
        if skipped:
            self.queue.extendleft(reversed(skipped))

    # -- outcomes ---------------------------------------------------------------------------------
    def take(self, msg_id: str) -> TaskRecord | None:
        """Take a queued task out of the queue (an engine that rejoined is running it)."""
        for rec in self.queue:
            if rec.msg_id == msg_id:
                self.queue.remove(rec)
                return rec
        return None

    def task_finished(self, rec: TaskRecord) -> None:
        """A task (balanced or not) finished: wake tasks waiting on it, refill engines."""
        if rec.balanced and rec.dispatched is not None:
            self.recent.append(time.monotonic() - rec.dispatched)
        for waiter in self.waiting.pop(rec.msg_id, ()):
            if waiter.finished or self._dependency_state(waiter) == "waiting":
                continue  # still listed under its other unfinished dependencies
            self._forget_waiter(waiter)
            self._consider(waiter)
        self.dispatch()

    def _forget_waiter(self, rec: TaskRecord) -> None:
        for msg_id in rec.dependencies:
            lst = self.waiting.get(msg_id)
            if lst and rec in lst:
                lst.remove(rec)
                if not lst:
                    del self.waiting[msg_id]

    def can_retry_elsewhere(self, rec: TaskRecord, engine_id: int) -> bool:
        """Whether a failed balanced task has somewhere to go after failing on ``engine_id``:
        another registered engine it has not failed on, or, when it has a ``timeout``, the
        chance that one registers before the timeout passes."""
        if rec.deadline is not None:
            return True
        others = set(self.engines.by_id) - {engine_id} - rec.blacklist
        if rec.targets is not None:
            others &= rec.targets
        return bool(others)

    def resubmit(self, rec: TaskRecord, engine_id: int) -> None:
        """Queue a balanced task again, avoiding ``engine_id``, after it failed there (and may
        retry) or its ``@require``/``@depend`` was unmet there, or that engine died."""
        rec.blacklist = {*rec.blacklist, engine_id}
        rec.status = PENDING
        rec.dispatched = None
        if rec.deadline is not None:
            # its entry may have been passed over while it ran; a passed deadline fails it now
            heapq.heappush(self._deadlines, (rec.deadline, rec.msg_id))
        self.queue.appendleft(rec)
        self.dispatch()

    def abort(self, msg_ids: set[str]) -> list[TaskRecord]:
        """Remove tasks that have not reached an engine; return them."""
        removed = [r for r in self.queue if r.msg_id in msg_ids]
        if removed:
            self.queue = deque(r for r in self.queue if r.msg_id not in msg_ids)
        for lst in list(self.waiting.values()):
            for r in list(lst):
                if r.msg_id in msg_ids and r not in removed:
                    removed.append(r)
        for r in removed:
            self._forget_waiter(r)
        return removed

    def expire(self, now: float) -> None:
        """Fail tasks whose timeout passed before they reached an engine."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, msg_id = heapq.heappop(self._deadlines)
            rec = self.records.get(msg_id)
            if rec is None or rec.finished or rec.dispatched is not None:
                continue
            self.abort({msg_id})
            self.fail_task(
                rec,
                "TaskTimeout",
                f"task {msg_id} did not start within its timeout of "
                f"{rec.deadline - rec.arrived if rec.deadline else 0:g} s",
            )

    def unassigned(self) -> list[TaskRecord]:
        """The tasks waiting in the controller, not yet on an engine: those queued for an
        engine with room, then those waiting for dependencies, each once (a task waiting
        for two unfinished tasks is listed under both in ``waiting``)."""
        tasks = list(self.queue)
        seen = {rec.msg_id for rec in tasks}
        for waiters in self.waiting.values():
            for rec in waiters:
                if rec.msg_id not in seen:
                    seen.add(rec.msg_id)
                    tasks.append(rec)
        return tasks

    def next_deadline(self) -> float | None:
        """When the first waiting task's timeout passes (``time.monotonic()``), or None."""
        return self._deadlines[0][0] if self._deadlines else None

    @property
    def pending(self) -> int:
        """How many tasks wait in the controller: ``len(self.unassigned())``, cheaply when
        none waits for dependencies."""
        if not self.waiting:
            return len(self.queue)
        return len(self.unassigned())
