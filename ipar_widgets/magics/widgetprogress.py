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

from collections.abc import Callable

from ..client import frontend
from ..client.job import Job

__all__ = ["WidgetProgress"]

#: seconds the final call waits for the job to be over before it leaves it to the loop
FINAL_WAIT = 1.0


class WidgetProgress:
    """Shows ``job``'s progress widget at the first :meth:`show` (nothing before it)."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._shown = False
        self._end: Callable[[float], None] | None = None

    @property
    def shown(self) -> bool:
        """Whether the widget is up."""
        return self._shown

    def show(self, text: str, final: bool = False) -> None:
        """The wait's progress call: the first one puts the widget up (``text`` is the line
        form's and not used: the widget draws the job itself); later ones leave it to the
        update loop; the final one sends the final state from the cell's thread when the job
        is over (a job interrupted and still running: the loop sends it when it ends)."""
        if final:
            if self._end is not None:
                self._end(FINAL_WAIT)
            return
        if self._shown:
            return
        self._shown = True
        # the user watches the blocked cell: no done-notification (frontend.follow_progress)
        self._end = frontend.follow_progress(self._job)
