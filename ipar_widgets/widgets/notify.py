"""The "done while you were away" notice: when a job shown with ``ar.display()`` ends, tell
the front end, which shows a JupyterLab notification naming the job and its outcome.

Transport: one custom message (``Widget.send``, ipywidgets' own channel for messages that
are not state) on the comm the job's widget already has, with content
``{"ipar_widgets": "job-ended", "notice": {...}}``.  Our lab extension
(labextension/src/notify.ts, loaded by JupyterLab 4 and Notebook 7) watches the iopub
messages of every notebook's kernel for it.  Everywhere else the message reaches a widget
model that ignores custom messages (JupyterLab or Notebook 7 without our extension, VS Code)
or a runner that keeps only state updates (nbclient, nbconvert): nothing is shown, nothing
is logged, nothing is left open.  We chose this over a comm of our own to a front-end
target because a front end without that target logs a warning for each job (nbclient:
"No handler found for comm target") and one that ignores comms leaves it open in the
kernel.

The notice is a pure function of the job's final :class:`~ipar_widgets.progress.snapshot.
Snapshot` (:func:`job_notice`), so what the toast says is tested in Python.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from traitlets import Bool, Float

from ..client.settings import SessionSettings
from ..progress.snapshot import Snapshot
from ..progress.terminal import format_seconds

log = logging.getLogger("ipar_widgets.widgets")

__all__ = ["EVENT", "JobNotifications", "Notice", "job_notice", "notify_job_ended"]

#: the custom message's marker (labextension/src/notify.ts checks the same)
EVENT = "job-ended"
#: JupyterLab cuts a notification's message at 140 characters; the name gets at most this
_NAME_CHARS = 40


class JobNotifications(SessionSettings):
    """Which ended jobs notify (``JobNotifications.instance()``, or
    ``c.JobNotifications.*`` in the profile's ``ipython_config.py``)."""

    enabled = Bool(
        True,
        config=True,
        help="Send the JupyterLab notification when a job shown with ar.display() ends (or "
        "one whose wait_interactive() stopped waiting before its end).",
    )
    min_seconds = Float(
        0.0,
        min=0.0,
        config=True,
        help="Only jobs that ran at least this many seconds (wall time, submission to last "
        "result) notify: a job that ends before you look away needs no notice.  Default 0: "
        "every such job notifies.",
    )

    def wanted(self, notice: Notice) -> bool:
        """Whether a job that ended as ``notice`` says notifies."""
        return self.enabled and notice.wall >= self.min_seconds


@dataclass(frozen=True)
class Notice:
    """What the notification says: ``message`` as shown, ``type`` the JupyterLab
    notification type (success/error/warning), and the facts behind it."""

    message: str
    type: str
    job: str
    outcome: str  # "done", "failed", "cancelled", "aborted"
    total: int
    done: int
    failed: int
    aborted: int
    wall: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _tasks(n: int) -> str:
    return f"{n} task{'s' if n != 1 else ''}"


def job_notice(snap: Snapshot, state: str | None = None) -> Notice:
    """The notice for a job that ended as ``snap`` shows; ``state`` is the widget's word
    ("cancelled") when the user stopped it.

    ``sleep: 40 tasks done in 12.3 s`` · ``divide: 3 of 40 tasks failed in 2.1 s (first:
    ZeroDivisionError)`` · ``sleep: cancelled after 4.0 s: 8 of 40 tasks done, 32 aborted``
    """
    name = snap.fname if len(snap.fname) <= _NAME_CHARS else snap.fname[: _NAME_CHARS - 1] + "…"
    wall = snap.wall_time if snap.wall_time is not None else snap.elapsed
    took = format_seconds(wall)
    if state == "cancelled":
        outcome, kind = "cancelled", "warning"
        message = f"{name}: cancelled after {took}: {snap.done} of {_tasks(snap.total)} done"
        if snap.failed:
            message += f", {snap.failed} failed"
        if snap.aborted:
            message += f", {snap.aborted} aborted"
    elif snap.failed:
        outcome, kind = "failed", "error"
        message = f"{name}: {snap.failed} of {_tasks(snap.total)} failed in {took}"
        if snap.first_error is not None:
            message += f" (first: {snap.first_error.ename})"
    elif snap.aborted:
        outcome, kind = "aborted", "warning"
        message = (
            f"{name}: {snap.aborted} of {_tasks(snap.total)} aborted, {snap.done} done in {took}"
        )
    else:
        outcome, kind = "done", "success"
        message = f"{name}: {_tasks(snap.total)} done in {took}"
    return Notice(
        message=message,
        type=kind,
        job=snap.fname,
        outcome=outcome,
        total=snap.total,
        done=snap.done,
        failed=snap.failed,
        aborted=snap.aborted,
        wall=round(wall, 3),
    )


def notify_job_ended(widget: Any, notice: Notice) -> bool:
    """Send ``notice`` as a custom message of ``widget`` (the job's displayed widget);
    False if it could not be sent.

    Never raises: a notification that cannot be sent is logged, the job's result stands.
    """
    try:
        widget.send({"ipar_widgets": EVENT, "notice": notice.to_json()})
    except Exception:
        log.exception("could not send the job-ended notification")
        return False
    return True
