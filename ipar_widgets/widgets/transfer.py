"""The live widget of a large ``push``/``scatter``/``pull``/``gather`` in a notebook: a bar in
bytes (engines' parts done, when the whole size is known) and the transfer's line; the final
state stays in the output as static HTML.  Renders
:class:`~ipar_widgets.progress.transfer.TransferSnapshot` only, refreshed through the shared
update loop (:mod:`.loop`).
"""

from __future__ import annotations

import html
import threading
import uuid
from typing import Any

import ipywidgets as w
from IPython.display import display, update_display

from ..progress.transfer import TransferSnapshot, transfer_line
from . import templates
from .loop import Changes, UpdateLoop, get_loop

__all__ = ["TransferView", "transfer_html"]

#: least seconds between two refreshes
REFRESH_PERIOD = 0.25

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def transfer_html(snap: TransferSnapshot, style: bool = True) -> str:
    """The transfer as HTML: its line, in the progress displays' box."""
    line = html.escape(transfer_line(snap))
    exact = f"{snap.bytes_done} bytes" + (
        "" if snap.bytes_total is None else f" of {snap.bytes_total}"
    )
    box = templates.BOX.format(body=f'<div class="ipar-head" title="{exact}">{line}</div>')
    return templates.STYLE_TAG + box if style else box


class TransferView:
    """A transfer's widgets; :meth:`update` and :meth:`finish` take its snapshots."""

    def __init__(self, *, period: float = REFRESH_PERIOD, loop: UpdateLoop | None = None) -> None:
        self.period = period
        self.loop = loop or get_loop()
        self.display_id = uuid.uuid4().hex
        self.snap = TransferSnapshot("push", 0, None, 0, 0, 0.0)
        self._ended = threading.Event()
        self._shown = False
        self._published = False
        self.bar = w.IntProgress(
            value=0,
            min=0,
            max=1,
            description="",
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
            _dom_classes=("ipar-transfer",),
        )

    def bundle(self) -> dict[str, Any]:
        return {
            _WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id},
            "text/plain": transfer_line(self.snap),
            "text/html": transfer_html(self.snap),
        }

    def update(self, snap: TransferSnapshot) -> None:
        """A new snapshot: shown at the first one, then refreshed by the loop."""
        self.snap = snap
        if not self._shown:
            self._shown = True
            display(self.bundle(), raw=True, display_id=self.display_id)
            self.loop.add(self)
        self.loop.wake()

    def finish(self, snap: TransferSnapshot) -> None:
        """The transfer ended: the final update now, then the static picture."""
        self.snap = snap
        self._ended.set()
        if self._shown:
            self.loop.finish(self)

    # -- the loop's side ----------------------------------------------------------------------------
    def changes(self, final: bool = False) -> Changes:
        snap = self.snap
        style = "info"
        if snap.outcome is not None:
            style = "success" if snap.outcome == "done" else "danger"
        # in bytes when the whole size is known, else in engines' parts
        if snap.bytes_total is not None:
            value, top = snap.bytes_done, max(1, snap.bytes_total)
        else:
            value, top = snap.engines_done, max(1, snap.engines_total)
        wanted: list[tuple[Any, dict[str, Any]]] = [
            (
                self.bar,
                {
                    "max": top,
                    "value": min(value, top),
                    "bar_style": style,
                    "description": snap.what,
                },
            ),
            (self.body, {"value": transfer_html(snap, style=False)}),
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
