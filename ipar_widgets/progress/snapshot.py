"""An immutable picture of an AsyncResult's progress, which every display renders.

The terminal line, the notebook widget and the static HTML are pure functions of a
:class:`Snapshot`, so they agree, can be tested without a kernel, and can be throttled freely.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol.wire import utcnow

if TYPE_CHECKING:
    from ..client.asyncresult import AsyncResult


@dataclass(frozen=True)
class EngineRow:
    """One engine's share of a job."""

    engine_id: int
    done: int = 0
    failed: int = 0
    running: int = 0
    busy_time: float = 0.0
    current_for: float | None = None  # seconds the task now running has run
    straggler: bool = False
    last_stdout: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Counts are in items (a map's elements), times in seconds."""

    fname: str
    total: int
    done: int
    failed: int
    running: int
    pending: int
    elapsed: float
    serial_time: float
    ready: bool
    eta: tuple[float, float, float] | None = None  # (low, likely, high) seconds left
    engines: tuple[EngineRow, ...] = ()
    engines_total: int = 0
    first_error: dict[str, Any] | None = None
    errors: int = 0
    aborted: int = 0

    @property
    def finished(self) -> int:
        """Items that finished, well or not."""
        return self.done + self.failed

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0

    @property
    def speedup(self) -> float | None:
        """Serial time over wall time so far: how many engines' worth of work ran at once."""
        if self.elapsed <= 0 or self.serial_time <= 0:
            return None
        return self.serial_time / self.elapsed

    @property
    def rate(self) -> float | None:
        """Items finished per second so far."""
        if self.elapsed <= 0 or not self.finished:
            return None
        return self.finished / self.elapsed

    @property
    def busy_engines(self) -> int:
        return sum(1 for e in self.engines if e.running)


def _seconds(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    return float((end - start).total_seconds())


def estimate_eta(durations: list[float], remaining: int, workers: int) -> tuple[float, float, float] | None:
    """Seconds left as (low, likely, high), from the durations of finished tasks.

    Needs at least 3 finished tasks; remaining tasks run ``workers`` at a time.  The range
    spreads the likely value by the tasks' own variability (quartiles).
    """
    if len(durations) < 3 or remaining <= 0:
        return (0.0, 0.0, 0.0) if remaining <= 0 and durations else None
    workers = max(1, workers)
    waves = remaining / workers
    median = statistics.median(durations)
    q = statistics.quantiles(durations, n=4) if len(durations) >= 4 else [min(durations), median, max(durations)]
    low, high = q[0], q[-1]
    return (waves * low, waves * median, waves * high)


def take_snapshot(ar: AsyncResult, engines_total: int | None = None) -> Snapshot:
    """Read an AsyncResult's current state (safe to call from any thread)."""
    with ar._cond:
        results = dict(ar._results)
    sizes: dict[str, int] = getattr(ar, "_chunk_sizes", {})
    now = utcnow()
    rows: dict[int, dict[str, Any]] = {}
    done = failed = running = aborted = errors = 0
    serial = 0.0
    durations: list[float] = []
    first_error: dict[str, Any] | None = None
    seen_running: set[int] = set()
    submitted = []
    for msg_id, md in zip(ar.msg_ids, ar._metadata):
        n = sizes.get(msg_id, 1)
        engine_id = md["engine_id"]
        row = rows.setdefault(engine_id, {"done": 0, "failed": 0, "running": 0, "busy": 0.0,
                                          "current": None, "stdout": ""}) if engine_id is not None else None
        if md["submitted"] is not None:
            submitted.append(md["submitted"])
        if row is not None and md["stdout"]:
            lines = md["stdout"].rstrip("\n").splitlines()
            if lines:
                row["stdout"] = lines[-1]
        if msg_id in results:
            took = _seconds(md["started"], md["completed"])
            if took is not None:
                serial += took
                durations.append(took / max(1, n))
                if row is not None:
                    row["busy"] += took
            value = results[msg_id]
            if isinstance(value, BaseException):
                failed += n
                errors += 1
                if md["status"] == "aborted":
                    aborted += n
                if row is not None:
                    row["failed"] += n
                if first_error is None:
                    first_error = {
                        "engine_id": engine_id,
                        "ename": getattr(value, "ename", type(value).__name__),
                        "evalue": getattr(value, "evalue", str(value)),
                        "traceback": getattr(value, "traceback", "") or str(value),
                    }
            else:
                done += n
                if row is not None:
                    row["done"] += n
        elif engine_id is not None and engine_id not in seen_running:
            # the oldest unfinished task an engine holds is the one it runs now
            seen_running.add(engine_id)
            running += n
            if row is not None:
                row["running"] += n
                started = md["started"] or md["submitted"]
                row["current"] = _seconds(started, now)
    total = len(ar)
    pending = max(0, total - done - failed - running)
    elapsed = _seconds(min(submitted), now) if submitted and not ar.ready() else None
    if elapsed is None:
        try:
            elapsed = ar.elapsed
        except Exception:
            elapsed = 0.0
    median = statistics.median(durations) if durations else None
    engine_rows = tuple(
        EngineRow(
            engine_id=eid,
            done=r["done"],
            failed=r["failed"],
            running=r["running"],
            busy_time=r["busy"],
            current_for=r["current"],
            straggler=bool(median and r["current"] and r["current"] > 3 * median and len(durations) >= 3),
            last_stdout=r["stdout"],
        )
        for eid, r in sorted(rows.items())
    )
    if engines_total is None:
        engines_total = len(ar._client.ids)
    eta = None if ar.ready() else estimate_eta(durations, total - done - failed, engines_total)
    return Snapshot(
        fname=ar._fname,
        total=total,
        done=done,
        failed=failed,
        running=running,
        pending=pending,
        elapsed=max(0.0, elapsed),
        serial_time=serial,
        ready=ar.ready(),
        eta=eta,
        engines=engine_rows,
        engines_total=engines_total,
        first_error=first_error,
        errors=errors,
        aborted=aborted,
    )


__all__ = ["Snapshot", "EngineRow", "take_snapshot", "estimate_eta"]
