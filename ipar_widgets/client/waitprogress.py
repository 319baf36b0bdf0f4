"""What a wait for engines reports to its display: engines registered of those asked for, per
engine set, with each set's batch job state where its launcher has one.

:class:`EngineWaitReport` is fed by the wait at each look at the controller; it opens the
display (:func:`~ipar_widgets.client.frontend.engine_wait_display`: the widget in a
notebook, the line in a terminal) only once there is something to wait for, so a wait that
is already satisfied shows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import frontend

if TYPE_CHECKING:
    from .client import Client

__all__ = ["EngineWaitReport", "WaitDisplay", "engine_set_rows", "outcome_of"]

#: one engine set: (set id, registered, engines asked for or None, its job state)
SetReport = tuple[str, int, "int | None", str]


class WaitDisplay(Protocol):
    """What shows a wait (the progress layer's tracker, feeding the widget or the line)."""

    def update(
        self, registered: int, wanted: int, sets: Sequence[SetReport], show: bool = True
    ) -> None: ...

    def finish(self, outcome: str) -> None: ...


def engine_set_rows(client: Client) -> list[SetReport]:
    """(set id, registered, asked for, job state) of each engine set: the client's Cluster's
    sets with their launchers' last state, then sets only the controller knows of (engines
    started elsewhere: how many were asked for is not known here).  Nothing is asked of a
    scheduler: the launchers say what they last saw."""
    counts = client._engine_set_counts()
    rows: list[SetReport] = []
    cluster: Any = client.cluster
    launchers: dict[str, Any] = dict(cluster.engines) if cluster is not None else {}
    uuids: set[str] | None = None
    for set_id, launcher in launchers.items():
        wanted = getattr(launcher, "n", None)
        processes = getattr(launcher, "processes", None)
        if set_id not in counts and processes:
            # engines the controller started name no set: count the set's own uuids
            uuids = client._engine_uuids() if uuids is None else uuids
            counts[set_id] = sum(1 for p in processes if p.get("uuid") in uuids)
        rows.append(
            (
                set_id,
                counts.get(set_id, 0),
                wanted if isinstance(wanted, int) else None,
                launcher.status_text(),
            )
        )
    rows.extend(
        (set_id, count, None, "") for set_id, count in counts.items() if set_id not in launchers
    )
    return rows


def outcome_of(error: BaseException | None) -> str:
    """What a wait's display says at its end: "ready", "interrupted", or the error that ended
    it (its class name and the first line of its text)."""
    if error is None:
        return "ready"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


class EngineWaitReport:
    """The display side of one wait (see the module docstring)."""

    def __init__(self, client: Client, interactive: bool | None, widget: bool | None) -> None:
        self._client = client
        self._choice = (interactive, widget)
        self._tracker: WaitDisplay | None = None
        self._decided = False
        self._wanted = 0

    def update(self, registered: int, wanted: int) -> bool:
        """The wait's latest look: ``registered`` of ``wanted`` engines.  Whether a display
        shows it (False: none was wanted, or nothing is missing yet)."""
        if not self._decided:
            if registered >= wanted:
                return False  # nothing to wait for: no display
            self._decided = True
            self._tracker = frontend.engine_wait_display(*self._choice)
        self._wanted = wanted
        if self._tracker is None:
            return False
        # the look that ends the wait is shown by finish(), once
        rows = engine_set_rows(self._client)
        self._tracker.update(registered, wanted, rows, show=registered < wanted)
        return True

    def finish(self, error: BaseException | None) -> None:
        """The wait ended: ready, or the error that ended it (its class name and text)."""
        if self._tracker is None:
            return
        if error is None:
            # the last look may predate the registrations that ended the wait
            rows = engine_set_rows(self._client)
            self._tracker.update(len(self._client), self._wanted, rows, show=False)
        self._tracker.finish(outcome_of(error))
