"""joblib's Parallel on a real cluster through ipar_widgets' backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

import ipar_widgets as ipp

joblib = pytest.importorskip("joblib")
from joblib import Parallel, delayed, parallel_config  # noqa: E402

from ipar_widgets.client._joblib import IPythonParallelBackend  # noqa: E402

pytestmark = pytest.mark.timeout(120)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# The engines cannot import this test module: its functions travel as interactive ones (the
# way a notebook's do), importing what they use themselves.


@ipp.interactive
def neg(x: int) -> int:
    return -x


@ipp.interactive
def pid_of(_: int) -> int:
    import os

    return os.getpid()


@ipp.interactive
def fail_on(x: int, bad: int) -> int:
    import time

    if x == bad:
        raise ValueError(f"{x} is the bad one")
    time.sleep(0.3)
    return x


@ipp.interactive
def nap(x: int) -> int:
    import time

    time.sleep(0.3)
    return x


def test_parallel_runs_on_the_engines_with_exact_results_in_order(rc) -> None:  # type: ignore[no-untyped-def]
    backend = IPythonParallelBackend(view=rc.load_balanced_view())
    with parallel_config(backend=backend):
        assert Parallel()(delayed(neg)(i) for i in range(500)) == [-i for i in range(500)]
        # auto-batching: 500 tiny calls go in far fewer tasks, all of them kept in .jobs
        assert 1 <= len(backend.jobs) < 500
        assert all(ar.ready() and ar.successful() for ar in backend.jobs)
        pids = Parallel()(delayed(pid_of)(i) for i in range(8))
    engine_pids = set(rc[:].apply_sync(os.getpid))
    assert set(pids) <= engine_pids and os.getpid() not in pids


def test_registered_names_and_the_view_they_use(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    view.register_joblib_backend()
    for name in ("ipyparallel", "ipar_widgets"):
        with parallel_config(backend=name):
            assert Parallel(n_jobs=2)(delayed(neg)(i) for i in range(5)) == [0, -1, -2, -3, -4]
    view.register_joblib_backend("mine")
    assert Parallel(backend="mine")(delayed(abs)(i) for i in (-3, 4)) == [3, 4]
    with pytest.raises(ValueError, match="non-empty string"):
        view.register_joblib_backend("")


def test_a_directviews_engines_are_load_balanced_over(rc) -> None:  # type: ignore[no-untyped-def]
    rc[[1, 2]].register_joblib_backend("two-engines")
    pids = Parallel(backend="two-engines", batch_size=1)(delayed(pid_of)(i) for i in range(12))
    assert set(pids) <= set(rc[[1, 2]].apply_sync(os.getpid))


def test_an_error_is_raised_with_the_remote_traceback_and_aborts_the_rest(rc) -> None:  # type: ignore[no-untyped-def]
    backend = IPythonParallelBackend(view=rc.load_balanced_view())
    t0 = time.monotonic()
    with parallel_config(backend=backend), pytest.raises(ipp.RemoteError) as info:
        Parallel(batch_size=1, pre_dispatch="all")(delayed(fail_on)(i, 0) for i in range(40))
    assert time.monotonic() - t0 < 5  # raised at the first error, not after 40 x 0.3 s / 4
    err = info.value
    assert err.ename == "ValueError" and err.evalue == "0 is the bad one"
    tb = ANSI.sub("", err.traceback)
    assert "fail_on" in tb and 'raise ValueError(f"{x} is the bad one")' in tb
    for ar in backend.jobs:
        assert ar.wait(30)
    outcomes = [ar.get(return_exceptions=True) for ar in backend.jobs]
    assert len(outcomes) == 40
    aborted = [o for o in outcomes if isinstance(o, ipp.TaskAborted)]
    assert aborted, "the batches that had not started should have been aborted"
    # the backend stays usable after an error
    with parallel_config(backend=backend):
        assert Parallel()(delayed(neg)(i) for i in range(3)) == [0, -1, -2]


def test_n_jobs_bounds_the_batches_running_at_once(rc) -> None:  # type: ignore[no-untyped-def]
    backend = IPythonParallelBackend(view=rc.load_balanced_view())
    assert [backend.effective_n_jobs(n) for n in (-1, None, -2, 2, 3, 10, 1)] == [
        4,
        4,
        3,
        2,
        3,
        4,
        1,
    ]
    with pytest.raises(ValueError, match="n_jobs == 0 has no meaning"):
        backend.effective_n_jobs(0)
    with parallel_config(backend=backend):
        assert Parallel(n_jobs=2, batch_size=1)(delayed(nap)(i) for i in range(8)) == list(range(8))
    spans = sorted((ar.metadata["started"], ar.metadata["completed"]) for ar in backend.jobs)
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most <= 2
    # a one-engine view still runs on its engine (joblib runs n_jobs=1 in this process)
    single = IPythonParallelBackend(view=rc.load_balanced_view(targets=[3]))
    assert single.effective_n_jobs(-1) == 2
    with parallel_config(backend=single):
        assert Parallel()(delayed(pid_of)(i) for i in range(3)) == [rc[3].apply_sync(os.getpid)] * 3


def test_results_as_a_generator(rc) -> None:  # type: ignore[no-untyped-def]
    with parallel_config(backend=IPythonParallelBackend(view=rc.load_balanced_view())):
        gen = Parallel(return_as="generator")(delayed(neg)(i) for i in range(20))
        assert not isinstance(gen, list)
        assert list(gen) == [-i for i in range(20)]
        unordered = Parallel(return_as="generator_unordered")(delayed(neg)(i) for i in range(20))
        assert sorted(unordered) == sorted(-i for i in range(20))


def test_the_default_backend_uses_the_default_profiles_cluster(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2, profile_name="default")
    ipp.register_joblib_backend()
    with parallel_config(backend="ipyparallel"):
        parallel = Parallel(batch_size=1)
        pids = parallel(delayed(pid_of)(i) for i in range(6))
        # the call closed its connection at its end; the next call of the same Parallel
        # connects again
        assert parallel(delayed(neg)(i) for i in range(3)) == [0, -1, -2]
    assert set(pids) <= set(handle.rc[:].apply_sync(os.getpid))
    assert handle.cluster._running()  # not ours to stop


def test_the_default_backend_starts_a_cluster_when_none_runs_and_stops_it() -> None:
    from conftest import cluster_processes

    before = cluster_processes()
    ipp.register_joblib_backend("fresh")
    assert Parallel(backend="fresh")(delayed(neg)(i) for i in range(4)) == [0, -1, -2, -3]
    assert cluster_processes() == before


def test_importing_ipar_widgets_does_not_import_joblib_and_a_missing_joblib_is_explained() -> None:
    code = (
        "import sys\n"
        "import ipar_widgets as ipp\n"
        "assert 'joblib' not in sys.modules and 'distributed' not in sys.modules\n"
        "sys.modules['joblib'] = None  # as if it were not installed\n"
        "try:\n"
        "    ipp.register_joblib_backend()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith("the joblib backend needs the package 'joblib'")
    assert out.rstrip().endswith("install it with: pip install joblib")
