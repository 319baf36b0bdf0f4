"""An engine's answer to ``stack_request``: the Python stack of the task its shell runs now.

ipykernel 7 serves the control channel in a thread of its own, so the answer is made while
the task holds the shell: the control thread reads the shell thread's current frame
(``sys._current_frames``) and keeps only the task's own frames, those called by the frame
that runs the task (the kernel's apply path, or IPython's ``run_code`` for ``execute``),
without this package's frames (unpacking the arguments, the joblib batch wrapper).

A task in a pure-Python loop lets the control thread take the GIL between bytecodes, and one
waiting in C code that releases the GIL (``time.sleep``, a socket's ``recv``) leaves it free;
a task holding the GIL in C code keeps this thread from running until that call returns,
so no answer comes in time and the client says so (``client/stacks.py``).
"""

from __future__ import annotations

import linecache
import os
import time
from collections.abc import Collection
from types import CodeType, FrameType
from typing import NamedTuple

from ..protocol.stacks import MAX_FRAMES, FrameRecord, StackReply, TaskRecord

__all__ = ["ShellTask", "stack_reply"]

#: this package's own files: never the user's frames
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class ShellTask(NamedTuple):
    """The task the engine's shell runs (set by the kernel when it takes one)."""

    msg_id: str
    #: ``time.monotonic()`` when the shell took it
    began: float
    #: "apply" or "execute"
    method: str
    #: the applied function's name (None for code, or while the arguments are unpacked)
    function: str | None = None


def stack_reply(
    engine_id: int,
    task: ShellTask | None,
    frame: FrameType | None,
    task_callers: Collection[CodeType],
    max_frames: object = MAX_FRAMES,
) -> StackReply:
    """The ``stack_reply`` content for the shell's ``task`` whose innermost frame is
    ``frame``; ``task_callers`` are the code objects of the frames that call a task."""
    limit = max_frames if isinstance(max_frames, int) and max_frames > 0 else MAX_FRAMES
    if task is None or frame is None:
        return {
            "status": "ok",
            "engine_id": engine_id,
            "task": None,
            "frames": [],
            "omitted": 0,
            "called": False,
        }
    record: TaskRecord = {
        "msg_id": task.msg_id,
        "method": task.method,
        "function": task.function,
        "running_for": round(time.monotonic() - task.began, 3),
    }
    frames = _task_frames(frame, task_callers)
    omitted = max(0, len(frames or ()) - limit)
    return {
        "status": "ok",
        "engine_id": engine_id,
        "task": record,
        "frames": [_record(f) for f in (frames or [])[omitted:]],
        "omitted": omitted,
        "called": frames is not None,
    }


def _task_frames(
    innermost: FrameType, task_callers: Collection[CodeType]
) -> list[FrameType] | None:
    """The task's frames, outermost first: those below the outermost task caller, except
    this package's; None while no caller is on the stack (the task is starting or ending)."""
    stack: list[FrameType] = []
    f: FrameType | None = innermost
    while f is not None:
        stack.append(f)
        f = f.f_back
    stack.reverse()
    start = next((i + 1 for i, f in enumerate(stack) if f.f_code in task_callers), None)
    if start is None:
        return None
    return [f for f in stack[start:] if not f.f_code.co_filename.startswith(_PACKAGE_DIR)]


def _record(frame: FrameType) -> FrameRecord:
    code = frame.f_code
    lineno = frame.f_lineno or code.co_firstlineno
    # the frame's globals let linecache ask a module's loader (a zip, a notebook's cells)
    line = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
    return {"filename": code.co_filename, "lineno": lineno, "function": code.co_name, "line": line}
