"""The live widget of a large ``push``/``scatter``/``pull``/``gather`` in a notebook: a bar in
bytes (engines' parts done, when the whole size is known) and the transfer's line; the final
state stays in the output as static HTML.  Renders
:class:`~ipar_widgets.progress.transfer.TransferSnapshot` only, in the frame shared with the
other small displays (:mod:`.snapview`), refreshed through the shared update loop (:mod:`.loop`).
"""

from __future__ import annotations

import html
from typing import Any

from ..progress.transfer import TransferSnapshot, transfer_line
from . import templates
from .loop import UpdateLoop
from .snapview import SnapshotView

__all__ = ["TransferView", "transfer_html"]

#: least seconds between two refreshes
REFRESH_PERIOD = 0.25


def transfer_html(snap: TransferSnapshot, style: bool = True) -> str:
    """The transfer as HTML: its line, in the progress displays' box."""
    line = html.escape(transfer_line(snap))
    exact = f"{snap.bytes_done} bytes" + (
        "" if snap.bytes_total is None else f" of {snap.bytes_total}"
    )
    box = templates.BOX.format(body=f'<div class="ipar-head" title="{exact}">{line}</div>')
    return templates.STYLE_TAG + box if style else box


class TransferView(SnapshotView[TransferSnapshot]):
    """A transfer's widgets; :meth:`update` and :meth:`finish` take its snapshots."""

    dom_class = "ipar-transfer"

    def __init__(self, *, period: float = REFRESH_PERIOD, loop: UpdateLoop | None = None) -> None:
        super().__init__(TransferSnapshot("push", 0, None, 0, 0, 0.0), period=period, loop=loop)

    def text(self, snap: TransferSnapshot) -> str:
        return transfer_line(snap)

    def html(self, snap: TransferSnapshot, style: bool = True) -> str:
        return transfer_html(snap, style=style)

    def bar_traits(self, snap: TransferSnapshot) -> dict[str, Any]:
        style = "info"
        if snap.outcome is not None:
            style = "success" if snap.outcome == "done" else "danger"
        # in bytes when the whole size is known, else in engines' parts
        if snap.bytes_total is not None:
            value, top = snap.bytes_done, max(1, snap.bytes_total)
        else:
            value, top = snap.engines_done, max(1, snap.engines_total)
        return {"max": top, "value": min(value, top), "bar_style": style, "description": snap.what}
