"""Which task each engine runs now, asked of the controller.

The client learns where a load-balanced task ran only from its reply (or its first output),
so a live display asks the controller, which knows: one ``status_request`` per refresh.
The same answer carries each engine's CPU and memory (progress/costs.py).
"""

from __future__ import annotations

import logging

from ..client.job import JobClient
from .costs import EngineCost
from .snapshot import Placement

log = logging.getLogger("ipar_widgets.progress")

__all__ = ["Placement", "query_placement"]


def query_placement(client: JobClient, timeout: float = 2.0) -> Placement | None:
    """Ask the controller; None (and a debug log line) if it does not answer in time."""
    try:
        status = client.status(timeout=timeout)
    except Exception as exc:  # a display must never fail because a status query did
        log.debug("status query for the progress display failed: %s", exc)
        return None
    running: dict[int, str | None] = {}
    busy_for: dict[int, float | None] = {}
    costs: dict[int, EngineCost] = {}
    for engine in status.get("engines", []):
        engine_id = int(engine["id"])
        running[engine_id] = engine.get("running")
        busy_for[engine_id] = engine.get("busy_for")
        cost = EngineCost.from_status(engine)  # its usage report, in the same answer
        if cost is not None:
            costs[engine_id] = cost
    totals = status.get("costs")
    total = EngineCost.from_status(totals) if isinstance(totals, dict) else None
    return Placement(running, busy_for, costs, total)
