"""The live widget of a wait for engines (``rc.wait_for_engines``, a cluster's start) in a
notebook: a bar of engines registered of those asked for, and a table per engine set with its
batch job's state; the final state stays in the output as static HTML.

The widgets hold no logic: :func:`engine_wait_html` renders a snapshot
(:class:`~ipar_widgets.progress.enginewait.EngineWaitSnapshot`), and the shared update loop
(:mod:`.loop`) sends what changed, within the kernel's message budget.
"""

from __future__ import annotations

import html
import threading
import uuid
from typing import Any

import ipywidgets as w
from IPython.display import display, update_display

from ..progress.enginewait import EngineWaitSnapshot, wait_line
from ..progress.terminal import format_seconds
from . import templates
from .loop import Changes, UpdateLoop, get_loop

__all__ = ["EngineWaitView", "engine_wait_html"]

#: least seconds between two refreshes (the wait looks at the controller every 0.5 s)
REFRESH_PERIOD = 0.25

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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


class EngineWaitView:
    """A wait's widgets; :meth:`update` and :meth:`finish` take the wait's snapshots."""

    def __init__(self, *, period: float = REFRESH_PERIOD, loop: UpdateLoop | None = None) -> None:
        self.period = period
        self.loop = loop or get_loop()
        self.display_id = uuid.uuid4().hex
        self.snap = EngineWaitSnapshot(0, 0, (), 0.0)
        self._ended = threading.Event()
        self._shown = False
        self._published = False
        self.bar = w.IntProgress(
            value=0,
            min=0,
            max=1,
            description="engines",
            bar_style="info",
            layout=w.Layout(width="auto", max_width="640px"),
        )
        self.body = w.HTML(value="")
        self.box = w.VBox(
            [
                w.HTML(value=templates.STYLE_TAG, layout=w.Layout(display="none")),
                self.bar,
                self.body,
            ],
            _dom_classes=("ipar-engine-wait",),
        )

    def bundle(self) -> dict[str, Any]:
        return {
            _WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id},
            "text/plain": wait_line(self.snap),
            "text/html": engine_wait_html(self.snap),
        }

    # -- the wait's side ----------------------------------------------------------------------------
    def update(self, snap: EngineWaitSnapshot) -> None:
        """A new snapshot: shown at the first one, then refreshed by the loop."""
        self.snap = snap
        if not self._shown:
            self._shown = True
            display(self.bundle(), raw=True, display_id=self.display_id)
            self.loop.add(self)
        self.loop.wake()

    def finish(self, snap: EngineWaitSnapshot) -> None:
        """The wait ended: the final update now (from the waiting thread), then the static
        picture in the output."""
        self.snap = snap
        self._ended.set()
        if self._shown:
            self.loop.finish(self)

    # -- the loop's side ----------------------------------------------------------------------------
    def changes(self, final: bool = False) -> Changes:
        snap = self.snap
        style = "info"
        if snap.ended:
            style = "success" if snap.ready else "danger"
        wanted: list[tuple[Any, dict[str, Any]]] = [
            (
                self.bar,
                {
                    "max": max(1, snap.wanted),
                    "value": min(snap.registered, max(1, snap.wanted)),
                    "bar_style": style,
                },
            ),
            (self.body, {"value": engine_wait_html(snap, style=False)}),
        ]
        out: Changes = []
        for widget, traits in wanted:
            diff = {k: v for k, v in traits.items() if getattr(widget, k) != v}
            if diff:
                out.append((widget, diff))
        return out

    def done(self) -> bool:
        return self._ended.is_set()

    def finished(self) -> None:
        """Once (the loop and :meth:`finish` may both get here): the final static picture."""
        if self._published:
            return
        self._published = True
        from IPython import get_ipython

        if get_ipython() is not None:
            update_display(self.bundle(), raw=True, display_id=self.display_id)
