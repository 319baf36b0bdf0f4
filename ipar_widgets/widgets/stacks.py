"""The pictures of engines' stacks (``rc.stacks()``, ``ar.stacks()``, the "Where is it stuck?"
button): text and HTML, pure functions of the :class:`~ipar_widgets.client.stacks.EngineStack`
results, in the order given (the straggler first, as the client sorts them).

Compact on purpose: per engine one line (engine, task, how long it has run) and the
innermost frames of the task with ``file:line`` and the source line, which is where a stuck
task is; the outer frames are counted, not shown (``EngineStack.frames`` has them all).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

from ..client.stacks import EngineStack, StackFrame
from ..progress.terminal import format_seconds

__all__ = [
    "FRAMES_SHOWN",
    "STACKS_TIMEOUT",
    "STACKS_CSS",
    "area_html",
    "asking_html",
    "engine_title",
    "failed_html",
    "stacks_html",
    "stacks_text",
]

#: innermost frames shown per engine
FRAMES_SHOWN = 5
#: seconds the widget's button waits for the engines (one holding the GIL never answers)
STACKS_TIMEOUT = 3.0
#: what an empty answer says (a job none of whose tasks runs now)
NONE_RUNNING = "None of the tasks asked about is running now."

STACKS_CSS = """
.ipar-stk { font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, #222); line-height: 1.4; margin: 4px 0; }
.ipar-stk details { margin: 2px 0; }
.ipar-stk summary { cursor: pointer; }
.ipar-stk .ipar-stk-engine { font-weight: 600; }
.ipar-stk .ipar-stk-muted { color: var(--jp-ui-font-color2, #666); }
.ipar-stk .ipar-stk-warn { color: var(--jp-warn-color1, #e65100); }
.ipar-stk .ipar-stk-frames { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 12px); white-space: pre; overflow-x: auto;
  margin: 2px 0 4px 1.2em; }
.ipar-stk .ipar-stk-note { margin: 2px 0 4px 1.2em; max-width: 60em; }
.ipar-stk .ipar-stk-line { color: var(--jp-mirror-editor-keyword-color, #008000); }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def engine_title(stack: EngineStack) -> str:
    """The one line about an engine: ``engine 2: spin, running for 12.3 s (task <msg_id>)``."""
    head = f"engine {stack.engine_id}"
    if stack.state == "idle":
        return f"{head}: idle: runs no task"
    if stack.state == "gone":
        return f"{head}: gone: {stack.note}"
    if stack.state == "no answer":
        facts = [f"task {stack.task}"] if stack.task else []
        if stack.running_for is not None:
            facts.append(f"busy for {format_seconds(stack.running_for)} per the controller")
        return f"{head}: no answer" + (f" ({', '.join(facts)})" if facts else "")
    what = stack.function or ("code (execute)" if stack.method == "execute" else "a task")
    if stack.running_for is not None:
        what += f", running for {format_seconds(stack.running_for)}"
    return f"{head}: {what}" + (f" (task {stack.task})" if stack.task else "")


def _shown(stack: EngineStack) -> tuple[int, Sequence[StackFrame]]:
    """Outer frames not shown, and the innermost ones shown."""
    frames = stack.frames[-FRAMES_SHOWN:]
    return stack.omitted + len(stack.frames) - len(frames), frames


def _hidden_line(n: int) -> str:
    return f"... {n} outer frame{'s' if n != 1 else ''} not shown"


def stacks_text(stacks: Sequence[EngineStack]) -> str:
    """Plain text: per engine its title, then its innermost frames as a traceback shows them
    (``file:line in function`` and the source line), or why there are none."""
    if not stacks:
        return NONE_RUNNING
    lines: list[str] = []
    for stack in stacks:
        lines.append(engine_title(stack))
        hidden, frames = _shown(stack)
        if hidden:
            lines.append(f"    {_hidden_line(hidden)}")
        for frame in frames:
            lines.append(f"    {frame.where} in {frame.function}")
            if frame.line:
                lines.append(f"        {frame.line}")
        if stack.note and stack.state in ("busy", "no answer"):
            lines.append(f"    {stack.note}")
    return "\n".join(lines)


def _frames_html(stack: EngineStack) -> str:
    hidden, frames = _shown(stack)
    rows = []
    if hidden:
        rows.append(f'<span class="ipar-stk-muted">{_e(_hidden_line(hidden))}</span>')
    for frame in frames:
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        rows.append(
            f'<span title="{_e(frame.where)}">{_e(where)}</span> in {_e(frame.function)}'
            + (f'\n    <span class="ipar-stk-line">{_e(frame.line)}</span>' if frame.line else "")
        )
    lines = "\n".join(rows)
    out = f'<div class="ipar-stk-frames">{lines}</div>' if rows else ""
    if stack.note and stack.state in ("busy", "no answer"):
        cls = "ipar-stk-warn" if stack.state == "no answer" else "ipar-stk-muted"
        out += f'<div class="ipar-stk-note {cls}">{_e(stack.note)}</div>'
    return out


def stacks_html(stacks: Sequence[EngineStack], *, before: str = "") -> str:
    """HTML: per engine a ``<details>`` whose summary is its title and the innermost frame,
    opened for the straggler (the first) and for any engine that did not answer; idle and
    gone engines take one line each.  ``before`` is HTML put above them."""
    out = [f'<style>{STACKS_CSS}</style><div class="ipar-stk">{before}']
    if not stacks:
        out.append(f'<div class="ipar-stk-muted">{_e(NONE_RUNNING)}</div>')
    for i, stack in enumerate(stacks):
        if stack.state in ("idle", "gone"):
            out.append(f'<div class="ipar-stk-muted">{_e(engine_title(stack))}</div>')
            continue
        title = f'<span class="ipar-stk-engine">{_e(engine_title(stack))}</span>'
        inner = stack.innermost
        if inner is not None:
            where = f"{os.path.basename(inner.filename)}:{inner.lineno}"
            title += f' <span class="ipar-stk-muted">at {_e(where)}</span>'
        is_open = " open" if i == 0 or stack.state == "no answer" else ""
        out.append(f"<details{is_open}><summary>{title}</summary>{_frames_html(stack)}</details>")
    out.append("</div>")
    return "".join(out)


def _message_html(text: str, cls: str) -> str:
    return f'<style>{STACKS_CSS}</style><div class="ipar-stk"><div class="{cls}">{_e(text)}</div></div>'


def asking_html() -> str:
    """The widget's stacks area while the engines are asked."""
    return _message_html("Asking the engines where their tasks are...", "ipar-stk-muted")


def area_html(stacks: Sequence[EngineStack], at: str) -> str:
    """The widget's stacks area once they answered: when it was asked (``at``, a clock
    time: the picture does not change by itself), then the engines' stacks."""
    when = f"Where the running tasks were at {at} (click again to ask again):"
    return stacks_html(stacks, before=f'<div class="ipar-stk-muted">{_e(when)}</div>')


def failed_html(reason: str) -> str:
    """The widget's stacks area when the engines could not be asked at all."""
    return _message_html(f"Could not ask the engines: {reason}", "ipar-stk-warn")
