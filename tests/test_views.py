"""DirectView and LoadBalancedView features against a real cluster."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until

import ipar_widgets as ipp


def test_interactive_functions_see_the_engine_namespace(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[:]
    dv.push({"factor": 3}, block=True)
    rc[[0, 2]].push({"factor": 5}, block=True)

    @ipp.interactive
    def scaled(x: int) -> int:
        return x * factor  # noqa: F821

    assert dv.apply_sync(scaled, 2) == [10, 6, 10, 6]
    assert rc.load_balanced_view(targets=[1]).apply_sync(scaled, 1) == 3


def test_push_pull_getitem_setitem_and_execute(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[:]
    dv["a"] = 10
    dv.execute("b = a * 2", block=True)
    assert dv["b"] == [20, 20, 20, 20]
    assert dv.pull(["a", "b"], block=True) == [[10, 20]] * 4
    assert rc[1].pull("b", block=True) == 20
    ar = dv.execute("b + 1", silent=False)
    replies = ar.get(timeout=10)
    assert [r.data["text/plain"] for r in replies] == ["21"] * 4
    assert replies[0].plaintext().startswith("Out[0:")
    assert ar.execute_result[0]["data"]["text/plain"] == "21"
    with pytest.raises(ipp.CompositeError, match="NameError"):
        dv.pull("no_such_name", block=True)
    err = rc[0].execute("1/0", block=False)
    with pytest.raises(ipp.RemoteError) as info:
        err.get(timeout=10)
    assert info.value.ename == "ZeroDivisionError" and info.value.method == "execute"


def test_run_a_file(rc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "script.py"
    script.write_text("ran_file = __name__\n")
    rc[:].run(str(script), block=True)
    assert rc[:]["ran_file"] == ["__main__"] * 4


def test_scatter_and_gather(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[:]
    dv.scatter("part", list(range(10)), block=True)
    assert dv["part"] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert dv.gather("part", block=True) == list(range(10))
    dv.scatter("one", rc.ids, flatten=True, block=True)
    assert dv["one"] == [0, 1, 2, 3]
    arr = np.arange(12.0)
    dv.scatter("arr", arr, block=True)
    assert [len(x) for x in dv["arr"]] == [3, 3, 3, 3]
    back = dv.gather("arr", block=True)
    assert isinstance(back, np.ndarray) and np.array_equal(back, arr)


def test_direct_map_splits_the_sequence(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[:]
    amr = dv.map(lambda x: (x, __ipar_engine_id__), range(10))  # noqa: F821
    with pytest.raises(ipp.CompositeError):  # a test-module lambda resolves no engine globals
        amr.get(timeout=10)
    pairs = dv.map_sync(ipp.interactive(lambda x: (x, __ipar_engine_id__)), range(10))  # noqa: F821
    assert pairs == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1), (6, 2), (7, 2), (8, 3), (9, 3)]
    assert dv.map_sync(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
    assert dv.map_sync(str, []) == []
    with pytest.raises(TypeError, match="chunksize only applies"):
        dv.map(str, [1], chunksize=2)


def test_references_in_arguments_and_as_the_function(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[:]
    dv.push({"base": 100, "double": ipp.interactive(lambda x: 2 * x)}, block=True)
    R = ipp.Reference
    assert (
        dv.apply_sync(lambda a, b, c: (a, b, c), R("base"), [R("base"), 1], {"k": R("base")})
        == [(100, [100, 1], {"k": 100})] * 4
    )
    assert rc[0].apply_sync(R("double"), 21) == 42


def test_remote_and_parallel_decorators(rc) -> None:  # type: ignore[no-untyped-def]
    dv = rc[:]

    @dv.remote(block=True)
    def getpid() -> int:
        import os

        return os.getpid()

    pids = getpid()
    assert len(set(pids)) == 4

    @dv.parallel(block=True)
    def part_sums(xs: list[int]) -> list[int]:
        return [sum(xs)]

    assert part_sums(list(range(8))) == [1, 5, 9, 13]

    @rc.load_balanced_view().parallel(block=True)
    def square(x: int) -> int:
        return x * x

    assert square.map(range(5)) == [0, 1, 4, 9, 16]
    lazy = dv.remote(block=False)(lambda: 1)()
    assert isinstance(lazy, ipp.AsyncResult) and lazy.get(timeout=10) == [1, 1, 1, 1]


def test_flags_block_temp_flags_and_set_flags(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    assert view.block is False
    assert isinstance(view.apply(lambda: 1), ipp.AsyncResult)
    with view.temp_flags(block=True, retries=2):
        assert view.apply(lambda: 1) == 1 and view.retries == 2
    assert view.block is False and view.retries == 0
    view.set_flags(timeout=5)
    assert view.timeout == 5
    with pytest.raises(KeyError, match="Invalid name: 'bogus'"):
        view.set_flags(bogus=1)
    with pytest.raises(ValueError, match="retries must be a whole number"):
        view.set_flags(retries=-1)
    dv = rc[:]
    dv.block = True
    try:
        assert dv.apply(lambda: 2) == [2, 2, 2, 2]
        assert dv.apply_async(lambda: 2).get(timeout=10) == [2, 2, 2, 2]
    finally:
        dv.block = False


def test_retries_rerun_a_failing_task_elsewhere(rc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "first-attempt"

    def flaky(path: str) -> int:
        import os

        if not os.path.exists(path):
            open(path, "w").close()
            raise RuntimeError("first attempt fails")
        return os.getpid()

    view = rc.load_balanced_view()
    with pytest.raises(ipp.RemoteError, match="first attempt fails"):
        view.apply_sync(flaky, str(marker))
    marker.unlink()
    view.retries = 1
    ar = view.apply_async(flaky, str(marker))
    assert ar.get(timeout=10) in rc[:].apply_sync(os.getpid)


def test_after_and_follow_dependencies(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    slow = view.apply_async(time.sleep, 0.5)
    with view.temp_flags(after=[slow]):
        after = view.apply_async(time.time)
    assert after.get(timeout=10) >= slow.metadata.completed.timestamp()
    with view.temp_flags(follow=slow):
        follower = view.apply_async(os.getpid)
    follower.get(timeout=10)
    assert follower.engine_id == slow.engine_id

    def fail() -> None:
        raise ValueError("no")

    failed = view.apply_async(fail)
    with view.temp_flags(after=failed):
        never = view.apply_async(lambda: "ran")
    with pytest.raises(ipp.ImpossibleDependency):
        never.get(timeout=10)
    with view.temp_flags(after=ipp.Dependency([failed], success=False, failure=True)):
        cleanup = view.apply_async(lambda: "cleanup")
    assert cleanup.get(timeout=10) == "cleanup"
    with view.temp_flags(after=["not-a-real-msg-id"]):
        bad = view.apply_async(lambda: 1)
    with pytest.raises(ipp.InvalidDependency, match="unknown task"):
        bad.get(timeout=10)


def test_timeout_fails_a_task_that_cannot_start(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view(targets=[3])
    blocker = view.apply_async(time.sleep, 1.0)
    with view.temp_flags(timeout=0.2):
        waiting = view.apply_async(lambda: 1)
    with pytest.raises(ipp.TaskTimeout, match="did not start within its timeout of 0.2 s"):
        waiting.get(timeout=10)
    blocker.get(timeout=10)


def test_retries_never_rerun_on_an_engine_the_task_failed_on(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()

    def fail() -> None:
        raise ValueError("Failed!")

    with view.temp_flags(retries=len(rc)):  # more retries than engines, no timeout
        ar = view.apply_async(fail)
        with pytest.raises(ipp.RemoteError) as info:
            ar.get(timeout=20)
    assert (info.value.ename, info.value.evalue) == ("ValueError", "Failed!")
    with view.temp_flags(retries=len(rc), timeout=0.5):  # failed everywhere: wait for a new one
        ar = view.apply_async(fail)
        with pytest.raises(ipp.TaskTimeout, match="did not start within its timeout of 0.5 s"):
            ar.get(timeout=20)
    err = ar.exception()
    assert isinstance(err, ipp.RemoteError) and err.ename == "TaskTimeout"


def test_dependency_check_and_unreachable() -> None:
    done, failed = {"a", "b"}, {"c"}
    both = ipp.Dependency(["a", "c"], success=True, failure=False)
    assert (both.check(done, failed), both.unreachable(done, failed)) == (False, True)
    assert ipp.Dependency(["a", "b"]).check(done, failed) is True
    anyone = ipp.Dependency(["a", "c"], all=False, success=False, failure=True)
    assert (anyone.check(done, failed), anyone.unreachable(done, failed)) == (True, False)
    assert ipp.Dependency(["a"], success=False, failure=True).unreachable(done) is True
    assert ipp.Dependency([]).check(set()) is True and not ipp.Dependency([]).unreachable(set())


def test_remote_and_parallel_functions_say_what_they_wrap(rc) -> None:  # type: ignore[no-untyped-def]
    @ipp.remote(rc[0], block=True)
    def times(x: int, y: int = 5) -> int:
        """multiply x * y"""
        return x * y

    assert times.__name__ == "times" and times.__doc__ == "RemoteFunction wrapping:\nmultiply x * y"
    assert repr(times).startswith("<RemoteFunction(") and "times" in repr(times)
    assert times(2, 3) == 6

    @ipp.parallel(rc[:2], block=True)
    def double(x: list[int]) -> list[int]:
        """double each"""
        return [2 * v for v in x]

    assert double.__doc__ == "ParallelFunction wrapping:\ndouble each"
    assert double([1, 2, 3, 4]) == [2, 4, 6, 8]


def test_require_and_depend(rc) -> None:  # type: ignore[no-untyped-def]
    @ipp.require("json")
    def dumps() -> str:
        return json.dumps([1])  # noqa: F821

    assert rc.load_balanced_view().apply_sync(dumps) == "[1]"

    @ipp.require("no_such_module_anywhere")
    def never() -> None:
        pass

    with pytest.raises(ipp.ImpossibleDependency):
        rc.load_balanced_view().apply_sync(never)

    def on_engine(target: int) -> bool:
        return __ipar_engine_id__ == target  # noqa: F821

    @ipp.depend(ipp.interactive(on_engine), 2)
    def where() -> int:
        return __ipar_engine_id__  # noqa: F821

    where.f = ipp.interactive(where.f)
    assert rc.load_balanced_view().apply_sync(where) == 2


def test_imap_is_lazy_and_ordered_or_not(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    consumed = []

    def inputs():  # type: ignore[no-untyped-def]
        for i in range(12):
            consumed.append(i)
            yield i

    it = view.imap(lambda x: x * 2, inputs(), max_outstanding=4)
    first = next(it)
    assert first == 0 and len(consumed) <= 6  # it did not read everything ahead
    assert [first, *it] == [2 * i for i in range(12)]
    unordered = list(view.imap(time.sleep, [0.3, 0.01, 0.01], ordered=False))
    assert unordered == [None, None, None]


def test_imap_cancel_stops_reading_the_inputs(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    read: list[int] = []

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            read.append(i)
            yield i
            i += 1

    it = view.imap(lambda x: x + 100, endless(), max_outstanding=2)
    assert [next(it) for _ in range(4)] == [100, 101, 102, 103]
    it.cancel()
    submitted = len(read)
    assert it.cancelled and submitted <= 6  # 4 consumed, at most max_outstanding ahead
    assert list(it) == [100 + i for i in range(4, submitted)]  # the submitted ones finish
    assert len(read) == submitted and it.ready() and len(it) == submitted


def test_sync_imports(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    with rc[:].sync_imports():
        import colorsys  # noqa: F401
    assert "importing colorsys on engine(s)" in capsys.readouterr().out
    assert rc[:].apply_sync(ipp.interactive(lambda: colorsys.__name__)) == ["colorsys"] * 4  # noqa: F821
    assert "colorsys" in sys.modules


def test_executor(rc) -> None:  # type: ignore[no-untyped-def]
    with rc.load_balanced_view().executor as ex:
        assert ex.submit(pow, 2, 10).result(timeout=10) == 1024
        assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_unpicklable_function_fails_at_submission(rc) -> None:  # type: ignore[no-untyped-def]
    import threading

    lock = threading.Lock()
    with pytest.raises(
        ipp.error.SerializationError, match=r"argument 0 of <lambda>\(\): <unlocked _thread.lock"
    ):
        rc[0].apply_async(lambda x: x, lock)
    assert rc[0].apply_sync(lambda: "still fine") == "still fine"


def test_100mb_array_push_pull_intact(rc) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    big = rng.integers(0, 2**62, size=100_000_000 // 8, dtype=np.int64)
    e0 = rc[0]
    e0.push({"big": big}, block=True)
    assert e0.apply_sync(
        ipp.interactive(lambda: (big.nbytes, int(big.sum() % 1_000_003), big.flags.writeable))
    ) == (big.nbytes, int(big.sum() % 1_000_003), True)  # noqa: F821
    back = e0.pull("big", block=True)
    assert back.dtype == big.dtype and back.shape == big.shape
    assert np.array_equal(back, big)
    back[0] = 1  # the pulled array is an ordinary writable array
    e0.execute("del big", block=True)


def pipelining_cluster(make_cluster):  # type: ignore[no-untyped-def]
    """One engine whose controller counts tasks back within 0.2 s as tiny (the default 5 ms
    would make these tests depend on the machine's speed), after a stream of tiny tasks."""
    rc = make_cluster(n=1, controller_args=["--pipeline-threshold=0.2"]).rc
    view = rc.load_balanced_view()
    # twice: the balancer judges by the last 16 tasks, and the first ones after a start
    # (a cold engine, the task database's first writes) may take longer than 0.2 s
    for _ in range(2):
        assert view.map_sync(abs, range(-16, 0)) == list(range(16, 0, -1))
    return rc, view


def test_a_stream_of_tiny_tasks_is_pipelined_on_the_engine(make_cluster) -> None:  # type: ignore[no-untyped-def]
    rc, view = pipelining_cluster(make_cluster)
    tasks = [view.apply_async(time.sleep, 0.5) for _ in range(6)]
    # hwm 1 plus the default pipeline_depth 3 go to the engine at once; the rest wait
    wait_until(lambda: rc.queue_status(0)["tasks"] == 4, 5, what="4 tasks on engine 0")
    assert rc.queue_status()["unassigned"] == 2
    for ar in tasks:
        assert ar.get(timeout=30) is None
    started = [ar.metadata["started"] for ar in tasks]
    assert started == sorted(started)


def test_nothing_is_queued_behind_a_task_that_runs_long(make_cluster) -> None:  # type: ignore[no-untyped-def]
    rc, view = pipelining_cluster(make_cluster)
    slow = view.apply_async(time.sleep, 1.5)
    wait_until(lambda: rc.queue_status(0)["tasks"] == 1, 5, what="the slow task on engine 0")
    # What is measured is elapsed time: once the slow task has run longer than a tiny task
    # does (0.2 s here), nothing more may wait behind it on its engine.
    time.sleep(0.4)
    quick = [view.apply_async(abs, -i) for i in range(3)]
    wait_until(lambda: rc.queue_status()["unassigned"] == 3, 5, what="3 unassigned tasks")
    assert rc.queue_status(0)["tasks"] == 1 and not slow.ready()
    assert [ar.get(timeout=30) for ar in quick] == [0, 1, 2]
    assert all(ar.metadata["started"] >= slow.metadata["completed"] for ar in quick)
