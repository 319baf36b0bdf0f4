"""``Client.become_dask`` / ``stop_dask``: a dask.distributed cluster inside the engines."""

from __future__ import annotations

import os
import time

import pytest

import ipar_widgets as ipp
from ipar_widgets.client import dask_engine

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(180)


def test_become_dask_round_trip(rc) -> None:  # type: ignore[no-untyped-def]
    dc = rc.become_dask()
    try:
        assert isinstance(dc, distributed.Client)
        workers = dc.scheduler_info()["workers"]
        assert len(workers) == 4
        assert str(dc.scheduler.address).startswith("tcp://127.0.0.1:")  # like the controller
        # each engine has its Worker in its namespace, under both of ipyparallel's names
        reprs = rc[:].apply_sync(repr, ipp.Reference("distributed_worker"))
        assert all(r.startswith("<Worker ") for r in reprs)
        assert rc[:].apply_sync(repr, ipp.Reference("dask_worker")) == reprs
        assert dc.submit(lambda x: x + 1, 41).result(timeout=30) == 42
        squares = dc.map(lambda x: x * x, range(10))
        assert dc.submit(sum, squares).result(timeout=30) == 285
        # the dask tasks run in the engine processes
        engine_pids = set(rc[:].apply_sync(os.getpid))
        pids = dc.gather(dc.map(lambda i: __import__("os").getpid(), range(20), pure=False))
        assert set(pids) <= engine_pids and os.getpid() not in pids
        # exactly one Scheduler, on the first engine; a second call finds it again
        assert [a is not None for a in rc[:].apply_sync(dask_engine.scheduler_address)] == [
            True,
            False,
            False,
            False,
        ]
        again = rc.become_distributed()
        try:
            assert again.scheduler.address == dc.scheduler.address
            assert len(again.scheduler_info()["workers"]) == 4
        finally:
            again.close()
        # the dask servers' log lines go to the engines' logs, not into later tasks' output
        ar = rc[:].apply_async(time.sleep, 0.2)
        ar.get(timeout=10)
        assert ar.stdout == [""] * 4 and ar.stderr == [""] * 4
    finally:
        dc.close()
        rc.stop_dask()
    assert rc[:].apply_sync(dask_engine.scheduler_address) == [None] * 4
    with pytest.raises(ipp.CompositeError, match="NameError"):
        rc[:].apply_sync(lambda x: x, ipp.Reference("distributed_worker"))
    rc.stop_distributed()  # nothing left to stop: still fine


def test_a_task_running_in_the_engine_does_not_stall_its_worker(rc) -> None:  # type: ignore[no-untyped-def]
    dc = rc.become_dask(targets=[0, 1], nthreads=2)
    try:
        info = dc.scheduler_info()["workers"]
        assert sorted(w["nthreads"] for w in info.values()) == [2, 2]
        worker0 = rc[0].pull("distributed_worker.address", block=True)
        busy = rc[0].apply_async(time.sleep, 3)  # holds engine 0's kernel
        t0 = time.monotonic()
        assert dc.submit(lambda: "on engine 0", workers=[worker0]).result(timeout=10) == (
            "on engine 0"
        )
        assert time.monotonic() - t0 < 2.5 and not busy.ready()
        busy.get(10)
    finally:
        dc.close()
        rc.stop_dask(targets=[0, 1])
    assert rc[[0, 1]].apply_sync(dask_engine.stop_worker) == [False, False]


def test_with_a_nanny_the_workers_are_subprocesses_of_the_engines(rc) -> None:  # type: ignore[no-untyped-def]
    import psutil

    # ncores: distributed's name before 2.0, which ipyparallel's examples still use
    dc = rc.become_dask(targets=[2, 3], nanny=True, ncores=3)
    engine_pids = rc[[2, 3]].apply_sync(os.getpid)
    try:
        info = dc.scheduler_info()["workers"]
        assert [w["nthreads"] for w in info.values()] == [3, 3]
        pids = set(dc.gather(dc.map(lambda i: __import__("os").getpid(), range(10), pure=False)))
        children = {c.pid for p in engine_pids for c in psutil.Process(p).children(recursive=True)}
        assert pids and pids <= children
    finally:
        dc.close()
        rc.stop_dask(targets=[2, 3])
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
