"""``view.executor`` / ``rc.executor()`` and the lazy map they return, on a real cluster."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

import ipar_widgets as ipp
from ipar_widgets.client.frontend import wait_interactive
from ipar_widgets.client.job import Job
from ipar_widgets.client.view import LazyMapIterator, LoadBalancedView, ViewExecutor

pytestmark = pytest.mark.timeout(120)


@ipp.interactive  # the engines cannot import this module: it travels as a notebook's would
def slow(x: int) -> int:
    import time

    time.sleep(0.2)
    return x


class CountingInputs:
    """An endless input that counts how much of it was read."""

    def __init__(self) -> None:
        self.read = 0
        self.lock = threading.Lock()

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count():
            with self.lock:
                self.read += 1
            yield i


def test_client_executor_and_view_executor(rc) -> None:  # type: ignore[no-untyped-def]
    ex = rc.executor()
    assert isinstance(ex, ViewExecutor) and isinstance(ex.view, LoadBalancedView)
    assert ex.view.targets is None and ex._max_workers == 4
    assert rc.executor(targets=[1, 2]).view.targets == [1, 2]
    view = rc.load_balanced_view()
    assert view.executor is view.executor and view.executor.view is view
    f = view.executor.submit(lambda x, y=1: x * y, 6, y=7)
    assert isinstance(f, ipp.AsyncResult) and f.result(timeout=10) == 42


def test_map_yields_in_input_order(rc) -> None:  # type: ignore[no-untyped-def]
    ex = rc.executor()
    it = ex.map(lambda x, y: x - y, range(10), [1] * 12)
    assert isinstance(it, LazyMapIterator) and iter(it) is it
    assert list(it) == [x - 1 for x in range(10)]
    assert len(it.jobs) == 10 and len(it) == 10 and it.ready()
    # chunksize inputs per task; a map over nothing is empty
    chunked = ex.map(lambda x: x * 2, range(10), chunksize=3)
    assert list(chunked) == [x * 2 for x in range(10)]
    assert [chunked.task_size(m) for m in chunked.msg_ids] == [3, 3, 3, 1]
    assert list(ex.map(abs, [])) == []
    with pytest.raises(ValueError, match="chunksize must be a whole number >= 1, found 0"):
        ex.map(abs, [1], chunksize=0)


def test_map_reads_its_inputs_lazily_and_cancel_stops_it(rc) -> None:  # type: ignore[no-untyped-def]
    inputs = CountingInputs()
    it = rc.executor().map(slow, inputs)  # endless: returns at once
    assert [next(it) for _ in range(6)] == [0, 1, 2, 3, 4, 5]
    # at most one batch per engine beyond what finished (counted after the inputs read: more
    # than 6 may have finished, since tasks of one wave end together)
    read = inputs.read
    finished = sum(job.ready() for job in it.jobs)
    assert 6 <= read <= finished + 4 + 1, (read, finished)
    it.cancel()
    read = inputs.read
    rest = list(it)  # what was already sent still comes, in order, then the iteration ends
    assert rest == list(range(6, 6 + len(rest))) and inputs.read == read
    assert it.cancelled and it.ready()


def test_submission_goes_on_without_iteration(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    before = len(view.history)
    with view.executor as ex:
        f = ex.submit(time.sleep, 0.5)
        m = ex.map(lambda x: x, range(10))
    assert f.done() and len(view.history) == before + 11
    t0 = time.monotonic()
    assert list(m) == list(range(10))
    assert time.monotonic() - t0 < 0.5


def test_errors_come_at_their_place(rc) -> None:  # type: ignore[no-untyped-def]
    ex = rc.executor()

    def fail_at_3(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    it = ex.map(fail_at_3, range(6))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ipp.RemoteError, match="ValueError: three"):
        next(it)

    def inputs() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("no more inputs")

    broken = ex.map(abs, inputs())
    assert [next(broken), next(broken)] == [1, 2]
    with pytest.raises(KeyError, match="no more inputs"):
        next(broken)
    assert broken.ready()
    # a function that cannot be pickled fails at the call
    lock = threading.Lock()
    with pytest.raises(ipp.error.SerializationError):
        ex.map(lambda x: (lock, x), range(3))


def test_timeout_bounds_the_iteration(rc) -> None:  # type: ignore[no-untyped-def]
    it = rc.executor().map(time.sleep, [0, 2], timeout=0.5)
    assert next(it) is None
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within its timeout"):
        next(it)
    assert time.monotonic() - t0 < 1.5
    assert it.wait(10)


def test_shutdown_with_cancel_futures_aborts_what_has_not_started(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    ex = view.executor
    futures = [ex.submit(time.sleep, 0.5) for _ in range(12)]
    ex.shutdown(wait=True, cancel_futures=True)
    outcomes = [f.get(return_exceptions=True) for f in futures]
    assert any(isinstance(o, ipp.TaskAborted) for o in outcomes)
    assert outcomes.count(None) >= 1  # those already running finished


def test_a_directview_executor_splits_each_batch_between_its_engines(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[[0, 1]]
    it = dv.executor.map(lambda x: x + 100, range(7))
    assert list(it) == [x + 100 for x in range(7)]
    engines = {md["engine_id"] for md in it.task_metadata}
    assert engines == {0, 1}


def test_the_lazy_map_is_a_job_the_displays_can_show(rc) -> None:  # type: ignore[no-untyped-def]
    it = rc.executor().map(slow, range(8))
    assert isinstance(it, Job)
    out = io.StringIO()
    wait_interactive(it, interval=0.05, timeout=30, widget=False, stream=out)
    assert it.ready() and it.arrived_count() == 8
    assert out.getvalue().rstrip().splitlines()[-1].startswith("slow: 8/8 tasks done (0 failed)")
    assert list(it) == list(range(8))
    assert repr(it) == "<LazyMapIterator(slow): 8/8 tasks finished>"
