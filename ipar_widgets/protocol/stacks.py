"""The ``stack_request`` / ``stack_reply`` control messages: where an engine's running task is.

A client sends ``stack_request`` to an engine's control channel (route ``b"k<id>"``, see
:mod:`.routing`), with content ``{"max_frames": n}``.  The engine answers from its control
thread, while its shell keeps running the task, with a :class:`StackReply`: the task it runs
(None when idle) and that task's own Python frames, outermost first, at most ``n`` of the
innermost.  Engine and client both read this module, so the two sides spell the fields once.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["MAX_FRAMES", "FrameRecord", "TaskRecord", "StackReply"]

#: frames an engine sends when the request does not say (the innermost ones are kept)
MAX_FRAMES = 30


class FrameRecord(TypedDict):
    """One frame of the task's stack."""

    filename: str
    lineno: int
    #: the frame's function (``<module>`` for the top level of code run with ``execute``)
    function: str
    #: the source line, stripped; "" where the engine could not read the file
    line: str


class TaskRecord(TypedDict):
    """The task the engine's shell runs."""

    msg_id: str
    #: ``"apply"`` (a function) or ``"execute"`` (code: ``execute``, ``%px``)
    method: str
    #: the applied function's name; None for code, and while an apply's arguments unpack
    function: str | None
    #: seconds since the shell took the task, when the engine answered
    running_for: float


class StackReply(TypedDict):
    """A ``stack_reply``'s content."""

    status: str
    engine_id: int
    #: None: the engine runs no task
    task: TaskRecord | None
    #: the task's frames, outermost first (the engine's own machinery left out)
    frames: list[FrameRecord]
    #: outer frames of the task left out to keep to ``max_frames``
    omitted: int
    #: whether the task's function had been called: with no frames, it is C code called
    #: directly (a built-in such as ``time.sleep`` as the task); else it is starting or ending
    called: bool
