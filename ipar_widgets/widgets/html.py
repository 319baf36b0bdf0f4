"""Static pictures: a progress snapshot as HTML and as text, and the rich reprs of
``Client`` and ``AsyncResult``.

All are pure functions of their input (a :class:`~ipar_widgets.progress.snapshot.Snapshot`,
or the controller's status for a client); the live widget shows the same HTML.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from ..client.job import Job
from ..progress.costs import format_cpu, total_line
from ..progress.failures import GROUPS_SHOWN, FailureGroup
from ..progress.snapshot import EngineRow, FirstError, ProgressTracker, Snapshot
from ..progress.terminal import failures_line, format_eta, format_seconds, summary_line
from . import templates

if TYPE_CHECKING:
    from ..client.client import Client

__all__ = [
    "progress_html",
    "progress_text",
    "failure_title",
    "traceback_html",
    "group_details_html",
    "failure_groups_html",
    "job_html",
    "client_html",
    "strip_ansi",
]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes (IPython colours remote tracebacks)."""
    return _ANSI.sub("", text)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_STATE_CLASS = {
    "done": "ipar-ok",
    "failed": "ipar-failed",
    "aborted": "ipar-aborted",
    "running": "",
}


def head_html(snap: Snapshot, state: str | None = None) -> str:
    """Name, state and counts, then the times line; ``state`` overrides the snapshot's word
    (the widget says "cancelled" or "timed out")."""
    word = state or snap.state
    counts = []
    if snap.failed:
        tasks = (
            f" in {snap.failed_tasks} task{'s' if snap.failed_tasks != 1 else ''}"
            if snap.failed_tasks != snap.failed
            else ""
        )
        counts.append(f'<span class="ipar-failed">{snap.failed} failed{tasks}</span>')
    if snap.aborted:
        counts.append(f'<span class="ipar-aborted">{snap.aborted} aborted</span>')
    if snap.retried:
        counts.append(f"{snap.retried} retried")
    if not snap.ready or snap.running or snap.pending:
        counts.append(f"{snap.running} running")
        counts.append(f"{snap.pending} pending")
    times = []
    if snap.ready and snap.wall_time is not None:
        times.append(f"wall {format_seconds(snap.wall_time)}")
        times.append(f"serial {format_seconds(snap.serial_time)}")
    else:
        times.append(f"elapsed {format_seconds(snap.elapsed)}")
        if snap.eta is not None:
            times.append(f"{format_eta(snap.eta)} left")
    if snap.speedup is not None:
        times.append(f"speedup {snap.speedup:.1f}x")
    if not snap.ready:
        times.append(f"{snap.busy_engines}/{snap.engines_total} engines busy")
    if snap.connection:
        times.append(f'<span class="ipar-connection">{_e(snap.connection)}</span>')
    return templates.HEAD.format(
        fname=_e(snap.fname),
        state=_e(word),
        state_class=_STATE_CLASS.get(word, ""),
        done=snap.done,
        total=snap.total,
        counts="".join(" · " + c for c in counts),
        times=" · ".join(times),
    )


def _columns(snap: Snapshot) -> list[tuple[str, str]]:
    cols = [("engine", ""), ("done", ""), ("running", ""), ("failed", "")]
    if any(r.aborted for r in snap.engines):
        cols.append(("aborted", ""))
    cols += [("busy", "")]
    if any(r.cost is not None for r in snap.engines):  # the engines' usage reports
        cols += [("CPU", ""), ("memory", "")]
    cols += [("current task", "")]
    if any(r.death for r in snap.engines):
        cols.append(("died", "ipar-text"))
    cols.append(("last output", "ipar-text"))
    return cols


def _cells(row: EngineRow, cols: list[tuple[str, str]]) -> list[str]:
    current = ""
    if row.current_for is not None:
        current = format_seconds(row.current_for) + (" straggler" if row.straggler else "")
    values = {
        "engine": str(row.engine_id),
        "done": str(row.done),
        "running": str(row.running),
        "failed": str(row.failed),
        "aborted": str(row.aborted),
        "busy": format_seconds(row.busy_time),
        "current task": current,
        "CPU": format_cpu(row.cost.cpu) if row.cost is not None else "",
        "memory": row.cost.memory_text if row.cost is not None else "",
        "died": row.death.removeprefix("died: "),
        "last output": row.last_stdout,
    }
    return [values[name] for name, _ in cols]


def costs_html(snap: Snapshot) -> str:
    """The cluster's total CPU and memory under the table ('' without usage reports)."""
    line = total_line(snap.cost_total, snap.engines_total)
    return f'<div class="ipar-costs">{_e(line)}</div>' if line else ""


def table_html(snap: Snapshot) -> str:
    """The per-engine table (empty string while no task has an engine)."""
    if not snap.engines:
        return ""
    cols = _columns(snap)
    head = "".join(f'<th class="{cls}">{_e(name)}</th>' for name, cls in cols)
    rows = []
    for row in snap.engines:
        cells = []
        for (name, cls), value in zip(cols, _cells(row, cols), strict=True):
            if (name == "failed" and row.failed) or name == "died":
                cls = (cls + " ipar-failed").strip()
            if name == "last output":
                cls = "ipar-text ipar-stdout"
            cells.append(
                f'<td class="{cls}" title="{_e(value)}">{_e(value)}</td>'
                if name == "last output"
                else f'<td class="{cls}">{_e(value)}</td>'
            )
        tr_class = (
            ' class="ipar-straggler"'
            if row.straggler
            else (' class="ipar-dead"' if row.death else "")
        )
        rows.append(f"<tr{tr_class}>{''.join(cells)}</tr>")
    return templates.TABLE.format(head=head, rows="".join(rows)) + costs_html(snap)


def failure_title(snap: Snapshot) -> str:
    """``ZeroDivisionError on engine 2: division by zero (and 3 others failed)``"""
    err = snap.first_error
    if err is None:
        return ""
    where = f" on engine {err.engine_id}" if err.engine_id is not None else ""
    text = f"First failure: {err.ename}{where}" + (f": {err.evalue}" if err.evalue else "")
    others = snap.failed_tasks - 1
    if others > 0:
        text += f" (and {others} other{'s' if others > 1 else ''} failed)"
    return text


def traceback_html(err: FirstError) -> str:
    return templates.TRACEBACK.format(
        traceback=_e(strip_ansi(err.traceback or f"{err.ename}: {err.evalue}"))
    )


def group_details_html(group: FailureGroup) -> str:
    """What one failure group expands to: where its first task failed, that task's
    traceback, and the arguments of its first tasks (once fetched)."""
    where = f" on engine {group.engine_id}" if group.engine_id is not None else ""
    first = f"first{where}: {group.ename}" + (f": {group.evalue}" if group.evalue else "")
    if group.args:
        items = "".join(templates.FAILURE_ARG.format(arg=_e(a)) for a in group.args)
        args = templates.FAILURE_ARGS.format(
            title=f"arguments of the first {len(group.args)}" if group.count > 1 else "arguments",
            items=items,
        )
    else:
        args = f'<div class="ipar-muted">{_e(group.args_note)}</div>' if group.args_note else ""
    return templates.FAILURE_GROUP_BODY.format(
        first=_e(first[:300]),
        traceback=_e(strip_ansi(group.traceback or f"{group.ename}: {group.evalue}")),
        args=args,
    )


def failure_groups_html(snap: Snapshot) -> str:
    """The failure groups as collapsed sections, most frequent first ('' if none failed)."""
    groups = snap.failure_groups
    if not groups:
        return ""
    sections = [
        templates.FAILURE_GROUP.format(title=_e(g.label), body=group_details_html(g))
        for g in groups[:GROUPS_SHOWN]
    ]
    more = more_failures_html(groups)
    if more:
        sections.append(more)
    return templates.FAILURE_GROUPS.format(sections="".join(sections))


def more_failures_html(groups: tuple[FailureGroup, ...]) -> str:
    """The line under the shown groups that counts the rest ('' when all are shown): the
    live widget and the static picture both end their groups with it."""
    if len(groups) <= GROUPS_SHOWN:
        return ""
    rest = sum(g.count for g in groups[GROUPS_SHOWN:])
    kinds = len(groups) - GROUPS_SHOWN
    return (
        f'<div class="ipar-muted">and {kinds} more kind{"s" if kinds > 1 else ""} of '
        f"failure ({rest} task{'s' if rest > 1 else ''})</div>"
    )


def progress_html(
    snap: Snapshot, *, state: str | None = None, style: bool = True, failure: bool = True
) -> str:
    """The whole picture as one HTML fragment: header, table and the (collapsed) failure
    groups.

    ``style=False`` leaves out the ``<style>`` block (the live widget sends it once).
    """
    body = head_html(snap, state) + table_html(snap)
    if failure:
        body += failure_groups_html(snap)
    out = templates.BOX.format(body=body)
    return (templates.STYLE_TAG + out) if style else out


def progress_text(snap: Snapshot, state: str | None = None) -> str:
    """The same picture as plain text (``text/plain``, terminals, logs)."""
    lines = [summary_line(snap) if snap.ready else _running_line(snap)]
    if state and state != snap.state:
        lines[0] += f" [{state}]"
    if snap.engines:
        cols = _columns(snap)
        table = [[name for name, _ in cols]] + [_cells(r, cols) for r in snap.engines]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols) - 1)]
        for row in table:
            cells = [row[i].rjust(widths[i]) for i in range(len(cols) - 1)] + [row[-1][:60]]
            lines.append("  ".join(cells).rstrip())
        costs = total_line(snap.cost_total, snap.engines_total)
        if costs:
            lines.append(costs)
    failures = failures_line(snap)
    if failures:
        lines.append(failures)
    return "\n".join(lines)


def _running_line(snap: Snapshot) -> str:
    from ..progress.terminal import status_line

    return status_line(snap)


# -- reprs -----------------------------------------------------------------------------------------
def job_html(job: Job) -> str:
    """``AsyncResult._repr_html_``: the job's state and per-engine table."""
    return progress_html(ProgressTracker(job).snapshot())


def client_html(rc: Client) -> str:
    """``Client._repr_html_``: the cluster's engines and their state, from the controller."""
    try:
        status = rc.status(timeout=2)
    except Exception as exc:  # the repr must work even when the controller is gone
        body = (
            f'<div class="ipar-head"><b>Client</b> profile {_e(rc.profile)}: '
            f'<span class="ipar-failed">the controller did not answer ({_e(exc)})</span></div>'
        )
        return templates.STYLE_TAG + templates.BOX.format(body=body)
    engines = status.get("engines", [])
    busy = sum(1 for e in engines if e.get("state") == "busy")
    tasks = status.get("tasks", {})
    head = (
        f'<div class="ipar-head"><b>Client</b> · profile <span class="ipar-fname">{_e(rc.profile)}</span>'
        f" · {len(engines)} engine{'s' if len(engines) != 1 else ''} ({busy} busy)</div>"
        f'<div class="ipar-head ipar-muted">tasks: {tasks.get("done", 0)} done · '
        f"{tasks.get('failed', 0)} failed · {tasks.get('aborted', 0)} aborted · "
        f"{tasks.get('running', 0)} running · {tasks.get('pending', 0)} pending"
        f" · controller up {format_seconds(float(status.get('uptime', 0)))}</div>"
    )
    cols = ["engine", "state", "busy for", "queued", "completed", "failed", "pid", "host"]
    rows = []
    for e in engines:
        state = e.get("state", "idle")
        busy_for = e.get("busy_for")
        cells = [
            str(e.get("id")),
            f'<span class="ipar-dot ipar-{_e(state)}"></span>{_e(state)}',
            format_seconds(busy_for) if busy_for is not None else "",
            str(e.get("queue", 0)),
            str(e.get("completed", 0)),
            str(e.get("failed", 0)),
            str(e.get("pid", "")),
            _e(e.get("hostname", "")),
        ]
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="{"ipar-text" if i in (1, 7) else ""}">{c}</td>'
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    head_cells = "".join(
        f'<th class="{"ipar-text" if i in (1, 7) else ""}">{c}</th>' for i, c in enumerate(cols)
    )
    table = (
        templates.TABLE.format(head=head_cells, rows="".join(rows))
        if rows
        else ('<div class="ipar-muted">no engines registered yet</div>')
    )
    return templates.STYLE_TAG + templates.BOX.format(body=head + table)
