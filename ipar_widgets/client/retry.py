"""``ar.retry_failed()``: run a result's failed tasks again, in their places.

The new tasks are resubmissions (``rc.resubmit``, see docs/task-records.md): the controller
rebuilds each request from its record, so nothing of the arguments has to be kept in the
client.  Where they run:

- a load-balanced task is balanced again; when its engine died (``EngineError``) that engine
  is gone, so it runs on another one;
- a task sent to one engine (a DirectView's) goes back to that engine, where its namespace
  is, when the failure was the task's own (an exception it raised);
- a direct task whose engine died goes to the other live engines *of the same view*
  (load-balanced among them): they had the same ``push``/``execute`` as the dead one; when
  none of the view's engines is left, to any engine.

The AsyncResult then follows the new tasks in the old ones' places
(:meth:`AsyncResult._replace`): ``get()`` keeps the original order, ``ar.msg_ids`` holds the
new msg_ids where tasks were retried, and ``ar.retried`` maps each replaced msg_id to its
replacement.  Aborted tasks are not retried (they did not fail; submit them again).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..error import EngineError, TaskAborted

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

log = logging.getLogger("ipar_widgets.client")

__all__ = ["RetryOutcome", "retry_failed", "failed_tasks"]

#: one retry at a time (a click and a call must not both resubmit the same failure)
_one_at_a_time = threading.Lock()


@dataclass(frozen=True)
class RetryOutcome:
    """What :meth:`AsyncResult.retry_failed` did: ``retried`` maps each failed task's msg_id
    to its new one; ``elsewhere`` lists those whose engine had died (they run on other
    engines).  False (and its text says so) when nothing had failed."""

    name: str
    retried: dict[str, str] = field(default_factory=dict)
    elsewhere: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.retried)

    @property
    def message(self) -> str:
        """``Retried 3 failed tasks of f (1 whose engine died, on other engines).``"""
        n = len(self.retried)
        if not n:
            return f"Nothing to retry: no task of {self.name} has failed."
        text = f"Retried {n} failed task{'s' if n != 1 else ''} of {self.name}"
        if self.elsewhere:
            text += f" ({len(self.elsewhere)} whose engine died, on other engines)"
        return text + "."

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"<RetryOutcome: {self.message}>"


def _engine_died(value: BaseException) -> bool:
    return isinstance(value, EngineError) or getattr(value, "ename", None) == "EngineError"


def failed_tasks(ar: AsyncResult) -> list[tuple[int, str, BaseException]]:
    """``(position, msg_id, failure)`` of the tasks of ``ar`` whose result is an exception
    other than TaskAborted, in order."""
    out = []
    with ar._cond:
        for i, msg_id in enumerate(ar.msg_ids):
            value = ar._results.get(msg_id)
            if isinstance(value, BaseException) and not isinstance(value, TaskAborted):
                out.append((i, msg_id, value))
    return out


def retry_failed(ar: AsyncResult) -> RetryOutcome:
    """Resubmit the failed tasks of ``ar`` and make it follow them (see the module
    docstring).  A resubmission the controller refuses (no record of the task with
    ``--nodb``, arguments that went through shared memory) raises its error; the tasks
    already resubmitted by then are followed."""
    with _one_at_a_time:
        return _retry(ar)


def _retry(ar: AsyncResult) -> RetryOutcome:
    failed = failed_tasks(ar)
    if not failed:
        log.info("retry_failed: no task of %s failed, nothing to retry", ar.name)
        return RetryOutcome(ar.name)
    client = ar._client
    view = list(ar._targets) if ar._targets is not None else None
    dead: set[int] = set()
    for i, _, value in failed:
        engine_id = ar._metadata[i]["engine_id"]
        if _engine_died(value) and isinstance(engine_id, int):
            dead.add(engine_id)
    stay: list[tuple[int, str]] = []
    moved: list[tuple[int, str]] = []
    for i, msg_id, value in failed:
        (moved if view is not None and _engine_died(value) else stay).append((i, msg_id))
    batches: list[tuple[list[tuple[int, str]], dict[str, Any] | None]] = []
    if stay:
        batches.append((stay, None))
    if moved:
        others = sorted((set(view or ()) & set(client.ids)) - dead)
        # a restriction the balancer honours; none left of the view: any engine
        batches.append((moved, {"targets": others} if others else None))
    retried: dict[str, str] = {}
    try:
        for tasks, metadata in batches:
            new_ids = client._records.resubmit([m for _, m in tasks], metadata)
            ar._replace({i: new for (i, _), new in zip(tasks, new_ids, strict=True)})
            retried.update({old: new for (_, old), new in zip(tasks, new_ids, strict=True)})
    finally:
        if retried:  # also when a later batch was refused: these are followed
            _tell(ar)
    elsewhere = tuple(m for _, m, v in failed if _engine_died(v) and m in retried)
    outcome = RetryOutcome(ar.name, retried, elsewhere)
    log.info("%s", outcome.message)
    return outcome


def _tell(ar: AsyncResult) -> None:
    """Run the retry callbacks (the displays that follow ``ar``)."""
    with ar._cond:
        callbacks = list(ar._retry_callbacks)
    for fn in callbacks:
        try:
            fn(ar)
        except Exception:  # a display's trouble must not undo the retry
            log.exception("a retry callback of %s failed", ar.name)
