"""The frame shared by the small live widgets of one snapshot type (the wait for engines, a
large transfer): a bar over an HTML body, shown at the first snapshot, refreshed through the
shared update loop (:mod:`.loop`), and left in the output as static HTML when it ends.

Each widget says only what differs: how its snapshot reads as text and as HTML, and what the
bar shows (:meth:`SnapshotView.bar_traits`).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Generic, TypeVar

import ipywidgets as w
from IPython.display import display, update_display

from . import templates
from .loop import Changes, UpdateLoop, get_loop

__all__ = ["SnapshotView", "REFRESH_PERIOD"]

#: least seconds between two refreshes
REFRESH_PERIOD = 0.25

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

SnapT = TypeVar("SnapT")


class SnapshotView(Generic[SnapT]):
    """A display's widgets; :meth:`update` and :meth:`finish` take its snapshots.

    Subclasses give the first snapshot, the box's CSS class and the bar's label, and define
    :meth:`text`, :meth:`html` and :meth:`bar_traits`.
    """

    #: the CSS class of the widgets' box
    dom_class = ""
    #: the bar's label until :meth:`bar_traits` sets one
    bar_label = ""

    def __init__(
        self, first: SnapT, *, period: float = REFRESH_PERIOD, loop: UpdateLoop | None = None
    ) -> None:
        self.period = period
        self.loop = loop or get_loop()
        self.display_id = uuid.uuid4().hex
        self.snap = first
        self._ended = threading.Event()
        self._shown = False
        self._published = False
        self.bar = w.IntProgress(
            value=0,
            min=0,
            max=1,
            description=self.bar_label,
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
            _dom_classes=(self.dom_class,),
        )

    # -- what each display defines -----------------------------------------------------------------
    def text(self, snap: SnapT) -> str:
        """The snapshot as the plain-text line."""
        raise NotImplementedError

    def html(self, snap: SnapT, style: bool = True) -> str:
        """The snapshot as HTML (with the style tag when ``style``)."""
        raise NotImplementedError

    def bar_traits(self, snap: SnapT) -> dict[str, Any]:
        """The bar's traits for the snapshot (``max``, ``value``, ``bar_style``, ...)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------
    def bundle(self) -> dict[str, Any]:
        return {
            _WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id},
            "text/plain": self.text(self.snap),
            "text/html": self.html(self.snap),
        }

    def update(self, snap: SnapT) -> None:
        """A new snapshot: shown at the first one, then refreshed by the loop."""
        self.snap = snap
        if not self._shown:
            self._shown = True
            display(self.bundle(), raw=True, display_id=self.display_id)
            self.loop.add(self)
        self.loop.wake()

    def finish(self, snap: SnapT) -> None:
        """The display's subject ended: the final update now (from the calling thread), then
        the static picture in the output."""
        self.snap = snap
        self._ended.set()
        if self._shown:
            self.loop.finish(self)

    # -- the loop's side ---------------------------------------------------------------------------
    def changes(self, final: bool = False) -> Changes:
        snap = self.snap
        wanted: list[tuple[Any, dict[str, Any]]] = [
            (self.bar, self.bar_traits(snap)),
            (self.body, {"value": self.html(snap, style=False)}),
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
