"""``ar.timeline()``: a Gantt chart of a job's tasks as inline SVG (no plotting library).

One row per engine; one bar per task from ``started`` to ``completed``, coloured by how it
ended; before it, the wait from ``submitted`` to ``started`` shaded.  It is plain HTML, so it
stays in saved and exported notebooks.  Submission times are on the client's clock, start and
completion on the engine's: on one machine they agree; across machines the shading is only as
good as the clocks' agreement.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import datetime

from ..client.job import Job
from ..error import TaskAborted
from ..progress.terminal import format_seconds
from ..protocol.wire import utcnow
from . import templates

__all__ = ["Timeline", "TaskBar", "timeline"]

ROW_HEIGHT = 18
BAR_HEIGHT = 12
LABEL_WIDTH = 70
CHART_WIDTH = 720
AXIS_HEIGHT = 22


@dataclass(frozen=True)
class TaskBar:
    """One task on the chart; times in seconds from the job's first submission."""

    engine_id: int
    submitted: float
    started: float
    end: float
    status: str  # ok, error, aborted, running
    label: str


class Timeline:
    """The chart of one job: ``_repr_html_`` draws it, ``bars`` holds what it shows."""

    def __init__(self, fname: str, bars: list[TaskBar], span: float, not_run: int) -> None:
        self.fname = fname
        self.bars = bars
        self.span = span
        self.not_run = not_run

    @property
    def engines(self) -> list[int]:
        return sorted({b.engine_id for b in self.bars})

    def svg(self) -> str:
        engines = self.engines
        height = AXIS_HEIGHT + ROW_HEIGHT * max(1, len(engines)) + 4
        width = LABEL_WIDTH + CHART_WIDTH + 10
        scale = CHART_WIDTH / self.span if self.span > 0 else 0.0
        row_of = {e: i for i, e in enumerate(engines)}
        parts = [
            f'<svg class="ipar-timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="timeline of {html.escape(self.fname)}">'
        ]
        for i, engine_id in enumerate(engines):
            y = AXIS_HEIGHT + i * ROW_HEIGHT
            parts.append(
                f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 1}" '
                f'text-anchor="end">engine {engine_id}</text>'
            )
        for tick in _ticks(self.span):
            x = LABEL_WIDTH + tick * scale
            parts.append(
                f'<line class="ipar-axis" x1="{x:.1f}" y1="{AXIS_HEIGHT - 4}" x2="{x:.1f}" '
                f'y2="{height - 2}" stroke-dasharray="2,3"/>'
            )
            parts.append(
                f'<text x="{x:.1f}" y="{AXIS_HEIGHT - 8}" text-anchor="middle">'
                f"{_tick_label(tick)}</text>"
            )
        for bar in self.bars:
            y = AXIS_HEIGHT + row_of[bar.engine_id] * ROW_HEIGHT
            wait_w = max(0.0, (bar.started - bar.submitted) * scale)
            if wait_w >= 0.5:
                parts.append(
                    f'<rect class="ipar-wait" x="{LABEL_WIDTH + bar.submitted * scale:.1f}" '
                    f'y="{y + 2}" width="{wait_w:.1f}" height="{BAR_HEIGHT - 4}"/>'
                )
            run_w = max(1.0, (bar.end - bar.started) * scale)
            parts.append(
                f'<rect class="ipar-bar-{bar.status}" x="{LABEL_WIDTH + bar.started * scale:.1f}" '
                f'y="{y}" width="{run_w:.1f}" height="{BAR_HEIGHT}" rx="2">'
                f"<title>{html.escape(bar.label)}</title></rect>"
            )
        parts.append("</svg>")
        return "".join(parts)

    def caption(self) -> str:
        counts: dict[str, int] = {}
        for bar in self.bars:
            counts[bar.status] = counts.get(bar.status, 0) + 1
        text = (
            f"{self.fname}: {len(self.bars)} task{'s' if len(self.bars) != 1 else ''} on "
            f"{len(self.engines)} engine{'s' if len(self.engines) != 1 else ''} over "
            f"{format_seconds(self.span)}"
        )
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        if self.not_run:
            detail += f", {self.not_run} not run"
        return f"{text} ({detail})" if detail else text

    def _repr_html_(self) -> str:
        legend = (
            '<span class="ipar-muted">bars: run time (blue ok, red error, orange aborted, '
            "light blue still running); grey: waiting since submission</span>"
        )
        return (
            templates.STYLE_TAG + '<div class="ipar-box"><div class="ipar-head">'
            f"{html.escape(self.caption())}</div>{self.svg()}<div>{legend}</div></div>"
        )

    def __repr__(self) -> str:
        return f"<Timeline {self.caption()}>"


def _ticks(span: float) -> list[float]:
    """Axis marks at a round step (1, 2 or 5 times a power of ten), at most 8 of them."""
    if span <= 0:
        return [0.0]
    base = 10.0 ** math.floor(math.log10(span / 8))
    step = next(base * m for m in (1, 2, 5, 10) if span / (base * m) <= 8)
    return [round(i * step, 9) for i in range(int(span / step + 1e-9) + 1)]


def _tick_label(t: float) -> str:
    return f"{t:g} s"


def _offset(t: datetime | None, origin: datetime) -> float | None:
    return None if t is None else (t - origin).total_seconds()


def timeline(job: Job) -> Timeline:
    """The chart of ``job``'s tasks so far (running tasks reach to now)."""
    metadata = list(job.task_metadata)
    msg_ids = list(job.msg_ids)[: len(metadata)]
    submitted = [md["submitted"] for md in metadata if md["submitted"] is not None]
    now = utcnow()
    origin = min(submitted) if submitted else now
    bars: list[TaskBar] = []
    not_run = 0
    end_max = 0.0
    results = dict(job.arrived_since(0))
    for msg_id, md in zip(msg_ids, metadata, strict=True):
        started = _offset(md["started"], origin)
        engine_id = md["engine_id"]
        if started is None or not isinstance(engine_id, int):  # a list: a coalesced broadcast
            not_run += 1
            continue
        value = results.get(msg_id)
        if msg_id not in results:
            status, end = "running", _offset(now, origin)
        elif isinstance(value, TaskAborted) or md["status"] == "aborted":
            status, end = "aborted", _offset(md["completed"], origin)
        elif isinstance(value, BaseException):
            status, end = "error", _offset(md["completed"], origin)
        else:
            status, end = "ok", _offset(md["completed"], origin)
        end = started if end is None else end
        sub = _offset(md["submitted"], origin) or 0.0
        label = (
            f"engine {engine_id}: {status}, ran {format_seconds(max(0.0, end - started))}, "
            f"waited {format_seconds(max(0.0, started - sub))}"
        )
        bars.append(TaskBar(int(engine_id), sub, started, end, status, label))
        end_max = max(end_max, end)
    return Timeline(job.name, bars, end_max, not_run)
