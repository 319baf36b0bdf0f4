"""Where is it stuck?  ``rc.stacks()`` and ``ar.stacks()``: the Python stack of the task each
busy engine runs, asked of the engines' control channels while the tasks hold their shells.

Each engine answers with one :class:`EngineStack` (immutable); a call returns them in a
:class:`Stacks` dict, engine id -> EngineStack, the straggler (the task that has run longest)
first.  An engine that cannot answer in time gets an EngineStack saying so, with the
controller's account of what it runs: a task that holds the GIL in C code (a long call into
a C extension, a regular expression that backtracks) keeps the engine's control thread from
running at all, so its Python stack cannot be read until that call returns.  One silent
engine never hides the others' answers, and the call returns within its ``timeout``.

The wire format is :mod:`ipar_widgets.protocol.stacks`; the engine's side is
``engine/stacks.py``; the pictures (text, HTML) are drawn by ``widgets/stacks.py``.
"""

from __future__ import annotations

import linecache
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

from ..protocol.stacks import MAX_FRAMES
from ..protocol.wire import Message
from . import frontend
from .rpc import Requests

if TYPE_CHECKING:
    from .asyncresult import Jobs
    from .targets import Targets

__all__ = [
    "StackFrame",
    "EngineStack",
    "Stacks",
    "StackState",
    "StacksClient",
    "gather_stacks",
    "straggler_first",
]

#: what an engine's answer says: it runs a task (``busy``), none (``idle``), it did not
#: answer in time (``no answer``), or the controller no longer has it (``gone``)
StackState = Literal["busy", "idle", "no answer", "gone"]

#: at most this share of a call's timeout goes to asking the controller what each engine runs
_STATUS_SHARE = 0.3


@dataclass(frozen=True)
class StackFrame:
    """One frame of a task's stack."""

    filename: str
    lineno: int
    #: the frame's function (``<module>``: the top level of code run with ``execute``)
    function: str
    #: the source line, stripped ("" where neither the engine nor this client could read it)
    line: str

    @property
    def where(self) -> str:
        """``file:line``."""
        return f"{self.filename}:{self.lineno}"


@dataclass(frozen=True)
class EngineStack:
    """What one engine was doing when asked: its task and that task's Python frames."""

    engine_id: int
    state: StackState
    #: msg_id of the task it runs (None: idle, or unknown)
    task: str | None = None
    #: the applied function's name (None for code run with ``execute``, or unknown)
    function: str | None = None
    #: how the task was sent: ``"apply"`` (a function) or ``"execute"`` (code); None unknown
    method: str | None = None
    #: seconds the task had run when the engine answered (the controller's figure for an
    #: engine that did not answer)
    running_for: float | None = None
    #: the task's frames, outermost first (the engine's own machinery left out)
    frames: tuple[StackFrame, ...] = ()
    #: outer frames the engine left out
    omitted: int = 0
    #: why there is no stack: the explanation for an engine that did not answer or is gone
    note: str = ""

    @property
    def innermost(self) -> StackFrame | None:
        """The frame running now (for a task in C code: the line that called it)."""
        return self.frames[-1] if self.frames else None

    def __str__(self) -> str:
        return frontend.stacks_text([self])

    def _repr_html_(self) -> str:
        return frontend.stacks_html([self])

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class Stacks(dict[int, EngineStack]):
    """Engine id -> :class:`EngineStack`, the straggler first (see :func:`straggler_first`);
    shown compactly in a notebook and by ``print``."""

    def __str__(self) -> str:
        return frontend.stacks_text(list(self.values()))

    def _repr_html_(self) -> str:
        return frontend.stacks_html(list(self.values()))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


@runtime_checkable
class StacksClient(Protocol):
    """A job's client that can say where its tasks are (a Client): what the "Where is it
    stuck?" button of the progress widget asks; the button is not offered without it."""

    def stacks(
        self, targets: Targets = None, timeout: float = 5.0, *, tasks: Jobs = None
    ) -> Stacks:
        """Engine id -> the stack of the task it runs (only ``tasks``' engines if given), the
        longest-running first."""
        ...


def straggler_first(stacks: Iterable[EngineStack]) -> list[EngineStack]:
    """Busy engines (answering or not) by how long their task has run, longest first; then
    idle engines, then those gone; engine id breaks ties."""
    order = {"busy": 0, "no answer": 0, "idle": 1, "gone": 2}

    def key(s: EngineStack) -> tuple[int, float, int]:
        return (
            order[s.state],
            -(s.running_for if s.running_for is not None else -1.0),
            s.engine_id,
        )

    return sorted(stacks, key=key)


class _ControllerView(NamedTuple):
    """What the controller says of one engine."""

    #: msg_id of the task it handed the engine and has no reply for (None: idle)
    running: str | None
    #: seconds the engine has been busy
    busy_for: float | None
    #: seconds since the engine registered (None: unknown, or a clock that disagrees)
    registered_ago: float | None


def gather_stacks(
    requests: Requests,
    engine_ids: list[int],
    timeout: float,
    *,
    tasks: Iterable[str] | None = None,
    max_frames: int = MAX_FRAMES,
) -> Stacks:
    """Ask ``engine_ids`` for their stacks; with ``tasks`` (msg_ids as the controller knows
    them), only the engines running one of those, and only their answers.

    Returns within ``timeout`` seconds (plus the time to draw the answers): the controller is
    asked first what each engine runs (for the engines that will not answer, and to find a
    job's engines), the engines with what is left.
    """
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(
            f"stacks(timeout=...) must be a positive number of seconds, found {timeout!r}"
        )
    deadline = time.monotonic() + timeout
    wanted = None if tasks is None else set(tasks)
    controller = _controller_view(requests, timeout * _STATUS_SHARE)
    ask = engine_ids
    if wanted is not None and controller is not None:
        ask = [e for e in engine_ids if e in controller and controller[e].running in wanted]
    answers = requests.ask_each_engine(
        ask, "stack_request", {"max_frames": max_frames}, max(0.0, deadline - time.monotonic())
    )
    found = []
    for engine_id, msg in answers.items():
        if msg is None:
            stack = _silent(engine_id, controller, timeout)
        else:
            stack = _from_answer(engine_id, msg)
        if wanted is None or stack.task in wanted:
            found.append(stack)
    return Stacks((s.engine_id, s) for s in straggler_first(found))


def _controller_view(requests: Requests, timeout: float) -> dict[int, _ControllerView] | None:
    """Engine id -> what the controller says of it; None if the controller did not answer
    (then every engine asked is asked directly)."""
    try:
        status = requests.ask("status_request", timeout=max(0.2, timeout)).content
    except Exception:  # the engines may still answer; the controller's account is a bonus
        return None
    now = time.time()  # the controller reports registration times by its wall clock
    out: dict[int, _ControllerView] = {}
    for engine in status.get("engines", []):
        busy_for = engine.get("busy_for")
        registered = engine.get("registered")
        ago = now - registered if isinstance(registered, (int, float)) else None
        out[int(engine["id"])] = _ControllerView(
            engine.get("running"),
            float(busy_for) if isinstance(busy_for, (int, float)) else None,
            ago if ago is not None and ago >= 0 else None,
        )
    return out


#: an engine that registered less than this many seconds ago may still be starting its kernel
#: (it registers first, and reads its control channel once the kernel is up)
_STARTING = 10.0


def _silent(
    engine_id: int, controller: Mapping[int, _ControllerView] | None, timeout: float
) -> EngineStack:
    """The result for an engine that did not answer within ``timeout``."""
    head = f"did not answer within {timeout:g} s"
    if controller is None:
        return EngineStack(
            engine_id,
            "no answer",
            note=f"{head} (nor did the controller): its task may hold the GIL in C code, or "
            "the engine or the controller may be unreachable",
        )
    view = controller.get(engine_id)
    if view is None:
        return EngineStack(
            engine_id,
            "gone",
            note=f"{head}, and the controller no longer has it: it died or was stopped",
        )
    if view.running is not None:
        note = (
            f"{head}: probably its task holds the GIL in C code (a long call into a C "
            "extension, a regular expression that backtracks), which keeps the engine's "
            "control thread from running; its Python stack can be read once that call returns"
        )
    elif view.registered_ago is not None and view.registered_ago < _STARTING:
        note = (
            f"{head}, though the controller counts it idle: it registered "
            f"{view.registered_ago:.1f} s ago and is probably still starting its kernel"
        )
    else:
        note = (
            f"{head}, though the controller counts it idle: it may have died (the "
            "controller has not noticed yet) or be unreachable"
        )
    return EngineStack(
        engine_id, "no answer", task=view.running, running_for=view.busy_for, note=note
    )


def _from_answer(engine_id: int, msg: Message) -> EngineStack:
    content = msg.content
    if content.get("status") != "ok":  # the controller's answer for an engine it lacks
        reason = str(content.get("evalue") or "the controller could not reach it")
        return EngineStack(engine_id, "gone", note=f"{reason}: it died or was stopped")
    task = content.get("task")
    if not isinstance(task, dict):
        return EngineStack(engine_id, "idle", note="idle: runs no task")
    frames = tuple(_frame(f) for f in content.get("frames") or [])
    return EngineStack(
        engine_id,
        "busy",
        task=str(task["msg_id"]),
        function=task.get("function"),
        method=task.get("method"),
        running_for=float(task["running_for"]),
        frames=frames,
        omitted=int(content.get("omitted") or 0),
        note="" if frames else _frameless(content.get("called") is True),
    )


def _frameless(called: bool) -> str:
    """Why a busy engine's task has no Python frame."""
    if called:
        return (
            "no Python frame of its own: the task's function is C code (a built-in such as "
            "time.sleep), called directly"
        )
    return "no Python frame of the task yet (it is starting or ending)"


def _frame(record: Mapping[str, Any]) -> StackFrame:
    frame = StackFrame(
        str(record["filename"]), int(record["lineno"]), str(record["function"]), str(record["line"])
    )
    if frame.line:
        return frame
    # A function defined in a notebook cell names the cell's file, which only this side (the
    # notebook's kernel) has, in its line cache.
    return replace(frame, line=linecache.getline(frame.filename, frame.lineno).strip())
