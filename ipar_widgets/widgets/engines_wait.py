"""The live widget of a wait for engines (``rc.wait_for_engines``, a cluster's start) in a
notebook: a bar of engines registered of those asked for, and a table per engine set with its
batch job's state; the final state stays in the output as static HTML.

The widgets hold no logic: :func:`engine_wait_html` renders a snapshot
(:class:`~ipar_widgets.progress.enginewait.EngineWaitSnapshot`); the frame shared with the
other small displays (:mod:`.snapview`) shows it, and the shared update loop (:mod:`.loop`)
sends what changed, within the kernel's message budget.
"""

from __future__ import annotations

import html
from typing import Any

from ..progress.enginewait import EngineWaitSnapshot, wait_line
from ..progress.terminal import format_seconds
from . import templates
from .loop import UpdateLoop
from .snapview import SnapshotView

__all__ = ["EngineWaitView", "engine_wait_html"]

#: least seconds between two refreshes (the wait looks at the controller every 0.5 s)
REFRESH_PERIOD = 0.25


def engine_wait_html(snap: EngineWaitSnapshot, style: bool = True) -> str:
    """The wait as HTML: the head line, then one row per engine set."""
    e = html.escape
    head = f"<b>engines</b>: {snap.registered}/{snap.wanted} registered"
    head += f", {e(format_seconds(snap.elapsed))}"
    if snap.outcome is not None and not snap.ready:
        head += f' <span class="ipar-failed">[{e(snap.outcome)}]</span>'
    rows = "".join(
        "<tr>"
        f"<td>{e(row.set_id)}</td>"
        f"<td>{row.registered}/{'?' if row.wanted is None else row.wanted}</td>"
        f"<td>{e(row.job_state)}</td>"
        "</tr>"
        for row in snap.sets
    )
    table = (
        '<table class="ipar-table"><thead><tr><th>engine set</th><th>registered</th>'
        f"<th>job state</th></tr></thead><tbody>{rows}</tbody></table>"
        if snap.sets
        else ""
    )
    body = f'<div class="ipar-head">{head}</div>{table}'
    box = templates.BOX.format(body=body)
    return templates.STYLE_TAG + box if style else box


class EngineWaitView(SnapshotView[EngineWaitSnapshot]):
    """A wait's widgets; :meth:`update` and :meth:`finish` take the wait's snapshots."""

    dom_class = "ipar-engine-wait"
    bar_label = "engines"

    def __init__(self, *, period: float = REFRESH_PERIOD, loop: UpdateLoop | None = None) -> None:
        super().__init__(EngineWaitSnapshot(0, 0, (), 0.0), period=period, loop=loop)

    def text(self, snap: EngineWaitSnapshot) -> str:
        return wait_line(snap)

    def html(self, snap: EngineWaitSnapshot, style: bool = True) -> str:
        return engine_wait_html(snap, style=style)

    def bar_traits(self, snap: EngineWaitSnapshot) -> dict[str, Any]:
        style = "info"
        if snap.ended:
            style = "success" if snap.ready else "danger"
        return {
            "max": max(1, snap.wanted),
            "value": min(snap.registered, max(1, snap.wanted)),
            "bar_style": style,
        }
