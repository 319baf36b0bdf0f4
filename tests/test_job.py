"""The Job seam: what progress displays, widgets and magics read of a running job, and the one
waiting loop every wait goes through."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import ipar_widgets as ipp
from ipar_widgets.client.job import Job, condition_for, unfinished
from ipar_widgets.client.metadata import Metadata
from ipar_widgets.client.waiting import wait_until
from ipar_widgets.progress import ProgressTracker
from ipar_widgets.widgets.html import progress_text
from ipar_widgets.widgets.timeline import timeline


@ipp.interactive
def fail_on_three(x: int) -> int:
    import time

    time.sleep(0.05 * x)
    if x == 3:
        raise ValueError(f"bad input {x}")
    return x


class HandMadeJob:
    """A job that has the seam's members and nothing else, filled in by the test."""

    def __init__(self, engines: list[int]) -> None:
        self._ids = engines
        self.name = "handmade"
        self.msg_ids: list[str] = []
        self.task_metadata: list[Metadata] = []
        self.arrived: list[tuple[str, Any]] = []
        self.over = False
        self._cond = threading.Condition()
        self.callbacks: list[Callable[[Any], object]] = []

    # the JobClient part
    @property
    def client(self) -> HandMadeJob:
        return self

    @property
    def ids(self) -> list[int]:
        return self._ids

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None) -> None:
        raise AssertionError("not used here")

    def send_signal(self, sig: int | str, targets: Any = None, block: bool | None = None) -> None:
        raise AssertionError("not used here")

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        return {"engines": []}

    connection_note = ""

    # the Job part
    def __len__(self) -> int:
        return len(self.msg_ids)

    def task_size(self, msg_id: str) -> int:
        return 1

    def ready(self) -> bool:
        return self.over

    def arrived_count(self) -> int:
        return len(self.arrived)

    def arrived_since(self, count: int) -> list[tuple[str, Any]]:
        with self._cond:
            return self.arrived[count:]

    def wait_for_change(
        self, timeout: float | None, since: int | None = None, *, every_result: bool = True
    ) -> int:
        with self._cond:
            seen = len(self.arrived) if since is None else since
            self._cond.wait_for(lambda: len(self.arrived) > seen or self.over, timeout)
            return len(self.arrived)

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        self.callbacks.append(fn)

    # what the test does
    def submit(self, msg_id: str, at: datetime) -> Metadata:
        md = Metadata(msg_id=msg_id, submitted=at)
        self.task_metadata.append(md)
        self.msg_ids.append(msg_id)
        return md

    def finish(self, msg_id: str, value: Any) -> None:
        with self._cond:
            self.arrived.append((msg_id, value))
            self.over = len(self.arrived) == len(self.msg_ids)
            self._cond.notify_all()


def test_the_displays_need_nothing_but_the_seam() -> None:
    job = HandMadeJob([0, 1])
    assert isinstance(job, Job)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i, engine_id in enumerate([0, 1, 0]):
        md = job.submit(f"m{i}", t0)
        md.update(engine_id=engine_id, started=t0, completed=t0 + timedelta(seconds=i + 1))
        md["received"] = t0 + timedelta(seconds=i + 1)
    job.finish("m0", 10)
    job.finish("m1", ipp.RemoteError("ValueError", "bad input 3", "Traceback: ...", {}))
    tracker = ProgressTracker(job)
    snap = tracker.snapshot()
    assert (snap.fname, snap.total, snap.done, snap.failed, snap.ready) == (
        "handmade",
        3,
        1,
        1,
        False,
    )
    assert snap.first_error is not None and snap.first_error.evalue == "bad input 3"
    assert unfinished(job) == ["m2"]
    job.finish("m2", 30)
    snap = tracker.snapshot()
    assert (snap.done, snap.failed, snap.ready, snap.serial_time) == (2, 1, True, 6.0)
    assert snap.wall_time == 3.0
    assert progress_text(snap).splitlines()[0] == (
        "handmade: 3/3 tasks done (1 failed); serial 6.0 s, wall 3.0 s, speedup 2.0x"
    )
    chart = timeline(job)
    assert [(b.engine_id, b.status, b.end) for b in chart.bars] == [
        (0, "ok", 1.0),
        (1, "error", 2.0),
        (0, "ok", 3.0),
    ]


def test_async_results_and_imap_streams_are_jobs(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    ar = view.map_async(fail_on_three, range(5), chunksize=2)
    assert isinstance(ar, Job) and ar.name == "fail_on_three" and len(ar) == 5
    assert [ar.task_size(m) for m in ar.msg_ids] == [2, 2, 1]
    stream = view.imap(abs, [-1, -2])
    assert isinstance(stream, Job)
    assert list(stream) == [1, 2] and stream.ready() and stream.arrived_count() == 2
    with pytest.raises(ipp.RemoteError):
        ar.get(timeout=30)
    arrived = dict(ar.arrived_since(0))
    assert sorted(arrived) == sorted(ar.msg_ids) and ar.arrived_count() == 3
    assert [type(v).__name__ for v in (arrived[m] for m in ar.msg_ids)] == [
        "list",
        "RemoteError",
        "list",
    ]


def test_wait_for_change_returns_at_each_result_and_counts_them(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map_async(time.sleep, [0.05, 0.4, 1.2])
    seen = ar.wait_for_change(10, 0)  # the first result
    assert seen >= 1
    started = time.monotonic()
    assert ar.wait_for_change(0.05, since=3) == ar.arrived_count()  # nothing more to come
    assert time.monotonic() - started < 5  # returns within its timeout
    while not ar.ready():
        assert ar.wait_for_change(10, since=ar.arrived_count()) >= 1
    assert ar.arrived_count() == 3 and ar.wait_for_change(None) == 3  # over: returns at once


def test_a_wait_for_the_whole_job_wakes_at_a_failure_not_per_result(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map_async(fail_on_three, [0, 1, 2, 3, 40])
    assert ar.wait_for_change(30, 0, every_result=False) >= 4  # woken by the failure of 3
    assert not ar.ready()  # 40 (2 s) is still running
    assert isinstance(dict(ar.arrived_since(0))[ar.msg_ids[3]], ipp.RemoteError)
    ar.abort()


def test_conditions_follow_the_concurrent_futures_constants(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map_async(fail_on_three, [3, 20], chunksize=1)
    assert wait_until(ar, condition_for(ar, FIRST_COMPLETED), 30) is True
    assert wait_until(ar, condition_for(ar, FIRST_EXCEPTION), 30) is True
    assert ar.arrived_count() >= 1 and not ar.ready()
    assert wait_until(ar, condition_for(ar, ALL_COMPLETED), 0.05) is False  # times out
    assert wait_until(ar, condition_for(ar, ALL_COMPLETED), 30) is True
    with pytest.raises(ValueError, match="return_when must be ALL_COMPLETED, FIRST_COMPLETED"):
        condition_for(ar, "SOMETIMES")


def test_the_wait_ticks_at_its_interval_while_it_waits(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[0].apply_async(time.sleep, 0.6)
    ticks: list[float] = []
    started = time.monotonic()
    assert wait_until(ar, ar.ready, 30, tick=lambda: ticks.append(time.monotonic()), interval=0.1)
    took = time.monotonic() - started
    assert 0.5 < took < 10
    assert 3 <= len(ticks) <= took / 0.1 + 2  # about one per interval, none between
    assert all(b - a >= 0.09 for a, b in zip(ticks, ticks[1:], strict=False))
