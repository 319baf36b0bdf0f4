"""AsyncResult and AsyncMapResult against a real 4-engine cluster (the seed page's behaviours)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import threading
import time
from datetime import datetime

import pytest

import ipar_widgets as ipp

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@ipp.interactive
def sleep_here(t: float) -> tuple[int, float]:
    import time

    time.sleep(t)
    return id, t  # noqa: F821  (`id` is scattered to each engine)


@pytest.fixture
def ids_scattered(rc):  # type: ignore[no-untyped-def]
    rc[:].scatter("id", rc.ids, flatten=True, block=True)
    return rc


def test_get_dict_and_its_duplicate_error(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].apply_async(os.getpid)
    pids = ar.get_dict(timeout=10)
    assert sorted(pids) == [0, 1, 2, 3]
    assert len(set(pids.values())) == 4
    lb = rc.load_balanced_view(targets=[2])
    double = ipp.AsyncResult.join(lb.apply_async(os.getpid), lb.apply_async(os.getpid))
    with pytest.raises(ValueError, match="Cannot build dict, 2 jobs ran on engine #2"):
        double.get_dict(timeout=10)


def test_results_arrive_in_order_as_they_complete(ids_scattered) -> None:  # type: ignore[no-untyped-def]
    rc = ids_scattered
    assert rc[:]["id"] == [0, 1, 2, 3]
    tic = time.monotonic()
    ar = rc[:].apply(time.sleep, ipp.Reference("id"))
    times = []
    for _ in ar:
        times.append(time.monotonic() - tic)
    assert ar.get() == [None, None, None, None]
    for i, t in enumerate(times):
        assert i <= t < i + 0.5, times  # each result as soon as its engine finished


def test_metadata_before_during_and_after(rc) -> None:  # type: ignore[no-untyped-def]
    gate = rc[1].apply_async(time.sleep, 0.6)
    md = gate.metadata
    assert md.msg_id == gate.msg_ids[0]
    assert md["engine_id"] == md.engine_id == gate.engine_id == 1
    assert isinstance(md.submitted, datetime) and md.submitted.tzinfo is not None
    assert md.started is None and md.completed is None and md.received is None
    assert gate["status"] is None and not gate.ready()
    with pytest.raises(TimeoutError, match="wall_time is known once"):
        _ = gate.wall_time
    assert 0 <= gate.elapsed < 0.6
    gate.get(timeout=10)
    assert md.status == "ok" and gate.ready() and gate.successful()
    assert md.submitted <= md.received
    assert md.started <= md.completed
    assert 0.6 <= (md.completed - md.started).total_seconds() < 1.0
    assert gate.elapsed == gate.wall_time == (md.received - md.submitted).total_seconds()
    assert rc.metadata[gate.msg_ids[0]] is md  # the client keeps it after completion
    assert gate.msg_ids[0] not in rc.outstanding and gate.msg_ids[0] in rc.history


def test_stdout_stderr_and_outputs_are_complete_when_get_returns(rc) -> None:  # type: ignore[no-untyped-def]
    def chatty(n: int) -> int:
        import sys

        from IPython.display import display

        for i in range(n):
            print(f"line {i}")
        print("warn", file=sys.stderr)
        display({"text/plain": "shown"}, raw=True)
        return n

    for _ in range(5):
        ar = rc[:].apply_async(chatty, 50)
        assert ar.get(timeout=10) == [50] * 4
        assert ar.stdout == ["".join(f"line {i}\n" for i in range(50))] * 4
        assert ar.stderr == ["warn\n"] * 4
        assert [o[0]["data"] for o in ar.outputs] == [{"text/plain": "shown"}] * 4


def test_timing_properties(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    amr = view.map(time.sleep, [0.2] * 8)
    assert len(amr) == 8 and amr.progress == 0
    for unknown_yet in ("serial_time", "wall_time"):
        with pytest.raises(ipp.TimeoutError, match=f"Not ready: {unknown_yet} is known once"):
            getattr(amr, unknown_yet)
    amr.get(timeout=10)
    assert amr.progress == 8
    assert 1.6 <= amr.serial_time < 2.2
    assert 0.4 <= amr.wall_time < 1.0
    assert amr.wall_time == amr.timedelta("submitted", "received")
    assert amr.timedelta(amr["started"], amr["completed"], min, max) <= amr.wall_time
    speedup = amr.serial_time / amr.wall_time
    assert 2.0 < speedup <= 4.2


def test_chunksize_pairs_run_on_one_engine(ids_scattered) -> None:  # type: ignore[no-untyped-def]
    view = ids_scattered.load_balanced_view()
    amr = view.map(sleep_here, [0.05 * t for t in range(10)], chunksize=2)
    assert len(amr.msg_ids) == 5 and len(amr) == 10
    results = amr.get(timeout=20)
    assert [r[1] for r in results] == [0.05 * t for t in range(10)]
    engines = [r[0] for r in results]
    assert all(engines[i] == engines[i + 1] for i in range(0, 10, 2))
    assert [md["engine_id"] for md in amr.metadata] == engines[::2]


def test_unordered_map_yields_in_completion_order(ids_scattered) -> None:  # type: ignore[no-untyped-def]
    view = ids_scattered.load_balanced_view()
    durations = [0.1 * t for t in range(8, 0, -1)]  # slowest first
    amr = view.map(sleep_here, durations, ordered=False)
    seen = [r[1] for r in amr]
    arrival = [chunk[0][1] for _, chunk in amr.arrived_since(0)]
    assert seen == arrival  # yielded exactly in the order results came back
    assert seen != durations and sorted(seen) == sorted(durations)
    assert seen[:4] == sorted(durations[:4])  # the first four run together; shortest first
    ordered = [r[1] for r in view.map(sleep_here, durations)]
    assert ordered == durations


def test_map_reduce_rms(rc) -> None:  # type: ignore[no-untyped-def]
    from functools import reduce
    from math import sqrt

    import numpy as np

    lview = rc.load_balanced_view()
    X = np.linspace(0, 100)
    add = lambda a, b: a + b  # noqa: E731
    sq = lambda x: x * x  # noqa: E731
    assert sqrt(reduce(add, map(sq, X)) / len(X)) == 58.028845747399714
    assert sqrt(reduce(add, lview.map(sq, X)) / len(X)) == 58.028845747399714


def test_split_of_an_apply_gives_each_engines_value(rc) -> None:  # type: ignore[no-untyped-def]
    parent = rc[:].apply_async(os.getpid)
    children = parent.split()
    assert [c.msg_ids for c in children] == [[m] for m in parent.msg_ids]
    assert children[0].split() == (children[0],)
    pids = parent.get(timeout=10)
    assert [c.get(timeout=10) for c in children] == pids  # each part: one value, not [value]
    assert ipp.AsyncResult.join(*children).get(timeout=10) == pids


def test_msg_ids_split_and_fetch_recipe(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    amr = view.map(lambda x: x * 10, range(6), chunksize=2)
    amr.wait(10)
    fetched = {}
    for msg_id in amr.msg_ids:
        part = rc.get_result(msg_id)
        fetched[msg_id] = (part.get(timeout=10), part.metadata.engine_id)
    assert [v for m in amr.msg_ids for v in fetched[m][0]] == [0, 10, 20, 30, 40, 50]
    assert [fetched[m][1] for m in amr.msg_ids] == [md.engine_id for md in amr.metadata]
    parts = amr.split()  # plain AsyncResults of one task each, as in ipyparallel
    assert [type(p) for p in parts] == [ipp.AsyncResult] * 3
    assert [p.get() for p in parts] == [[[0, 10]], [[20, 30]], [[40, 50]]]
    assert ipp.AsyncMapResult.join(*parts).get() == [[0, 10], [20, 30], [40, 50]]


def test_errors_single_composite_and_return_exceptions(rc) -> None:  # type: ignore[no-untyped-def]
    @ipp.interactive
    def boom(x: int) -> int:
        if x:
            raise ValueError(f"bad {x}")
        return x

    with pytest.raises(ipp.RemoteError) as info:
        rc[2].apply_sync(boom, 3)
    err = info.value
    assert (err.ename, err.evalue, err.engine_id, err.method) == ("ValueError", "bad 3", 2, "apply")
    assert "bad 3" in err.traceback and "boom" in err.traceback
    assert str(err) == "[2:apply] ValueError: bad 3"
    rendered = [ANSI.sub("", line) for line in err._render_traceback_()]
    assert rendered[0] == "[2:apply]" and any("raise ValueError" in line for line in rendered)

    ar = rc[:].apply_async(boom, 1)
    with pytest.raises(ipp.CompositeError) as info:
        ar.get(timeout=10)
    comp = info.value
    assert [e.engine_id for e in comp.elist] == [0, 1, 2, 3]
    assert "one or more exceptions raised in: boom (4 errors)" in str(comp)
    assert not ar.successful()
    got = ar.get(return_exceptions=True)
    assert all(isinstance(e, ipp.RemoteError) for e in got)
    assert isinstance(ar.exception(), ipp.CompositeError)

    amr = rc.load_balanced_view().map(boom, [0, 1, 0], return_exceptions=True)
    values = amr.get(timeout=10)
    assert values[0] == 0 and values[2] == 0 and isinstance(values[1], ipp.RemoteError)


def test_future_interface_and_await(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[0].apply_async(lambda: 7)
    assert isinstance(ar, concurrent.futures.Future)
    called = threading.Event()
    ar.add_done_callback(lambda f: called.set())
    assert ar.result(timeout=10) == 7 and ar.done() and ar.exception() is None
    assert called.wait(5)
    done, _ = concurrent.futures.wait([rc[1].apply_async(lambda: 1)], timeout=10)
    assert len(done) == 1

    async def run() -> list[int]:
        return list(await rc[:].apply_async(lambda: 2))

    assert asyncio.run(run()) == [2, 2, 2, 2]


def test_wait_with_return_when(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    amr = view.map(time.sleep, [0.05, 1.0])
    done, pending = amr.wait(timeout=5, return_when=ipp.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    assert amr.wait(timeout=5) is True
    assert amr.r == [None, None]


def test_abort_and_cancel_pending_tasks(rc) -> None:  # type: ignore[no-untyped-def]
    blocker = rc[3].apply_async(time.sleep, 1.0)
    queued = rc[3].apply_async(lambda: "ran")
    assert queued.cancel() is True
    with pytest.raises(ipp.TaskAborted, match="aborted before it started"):
        queued.get(timeout=10)
    assert queued.cancelled() and queued.metadata.status == "aborted"
    blocker.get(timeout=10)
    assert blocker.cancel() is False


def test_getitem_getattr_and_repr(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].apply_async(lambda: 5)
    assert repr(ar) in ("<AsyncResult(<lambda>): pending>", "<AsyncResult(<lambda>): finished>")
    ar.get(timeout=10)
    assert repr(ar) == "<AsyncResult(<lambda>): finished>"
    assert ar[0] == 5 and ar[1:3] == [5, 5]
    assert ar["engine_id"] == ar.engine_id == [0, 1, 2, 3]
    with pytest.raises(AttributeError):
        ar.no_such_thing  # noqa: B018
    with pytest.raises(TypeError, match="AsyncResults with a single result are not iterable"):
        iter(rc[0].apply_async(lambda: 1)).__next__()


def test_wait_interactive_in_a_terminal(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    amr = rc.load_balanced_view().map(time.sleep, [0.05] * 20)
    amr.wait_interactive(interval=0.05, timeout=10)
    out = capsys.readouterr().out
    assert "sleep: 20/20 tasks done (0 failed); serial" in out
    assert "speedup" in out
    slow = rc.load_balanced_view().map(time.sleep, [2.0])
    with pytest.raises(TimeoutError):
        slow.wait_interactive(timeout=0.2)
    slow.get(timeout=10)
