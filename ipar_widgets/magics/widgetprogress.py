"""A blocking ``%px``'s progress in a notebook: the live progress widget (bar, counts, the
per-engine table, the first failure, Cancel), once the cell has waited ``--progress-after``
seconds.

It takes the place of the text progress line (:class:`~ipar_widgets.magics.kernel.
KernelProgress`) in a kernel, with the same two calls, so the wait
(:func:`~ipar_widgets.magics.live.wait_for_cell`) does not know which one it drives.  The
widget renders from the job's snapshots, not from the line's text; it follows the job to its
end through the shared update loop, and the output then keeps the final state as static
HTML, as every progress widget does.
"""

from __future__ import annotations

from ..client import frontend
from ..client.job import Job

__all__ = ["WidgetProgress"]


class WidgetProgress:
    """Shows ``job``'s progress widget at the first :meth:`show` (nothing before it)."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._shown = False

    @property
    def shown(self) -> bool:
        """Whether the widget is up."""
        return self._shown

    def show(self, text: str, final: bool = False) -> None:
        """The wait's progress call: the first one puts the widget up (``text`` is the line
        form's and not used: the widget draws the job itself); later ones, and the final
        one, leave it to the update loop, which sends the final state when the job ends."""
        if self._shown or final:
            return
        self._shown = True
        frontend.display_progress(self._job)
