"""Engines started by the real ``mpiexec`` (Open MPI; ``.ci/run`` installs ``openmpi-bin``).

These tests fail, never skip, when ``mpiexec`` or mpi4py is missing: a machine without them
cannot tell whether the MPI launcher works.  Every process a test starts (``mpiexec`` and
its ranks) is looked for by pid afterwards, also when the test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator

import pytest
from conftest import alive, ipar, wait_until

import ipar_widgets as ipp
from ipar_widgets import error, paths
from ipar_widgets.cluster import enginesets
from ipar_widgets.cluster.launcher import MPIEngineSetLauncher, find_launcher_class
from ipar_widgets.cluster.mpilauncher import mpi_error_block

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def mpiexec() -> str:
    found = shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec is not installed: .ci/run installs Debian's openmpi-bin")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.fail("mpi4py is not installed: it is in the test extras (pip install '.[test]')")
    return found


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids the test started; any still alive at the end are killed, and the test fails."""
    pids: list[int] = []
    yield pids
    running = alive(pids)
    for pid in running:
        os.kill(pid, signal.SIGKILL)
    assert not running, f"processes left running: {running}"


def test_engine_ids_are_ranks_and_mpi4py_works_across_them(
    profile: str, leftovers: list[int]
) -> None:
    cluster = ipp.Cluster(n=2, engines="mpi", profile=profile, cluster_id="")
    assert find_launcher_class("mpi", "EngineSet") is MPIEngineSetLauncher
    try:
        rc = cluster.start_and_connect_sync()
        [launcher] = cluster.engine_sets.values()
        leftovers.append(launcher.process_pid)  # type: ignore[arg-type]
        pids = rc[:].apply_sync(os.getpid)
        leftovers.extend(pids)
        assert sorted(rc.ids) == [0, 1]
        ranks = rc[:].apply_sync(lambda: int(os.environ["OMPI_COMM_WORLD_RANK"]))
        assert ranks == rc.ids  # engine id == rank

        @ipp.interactive  # runs in the engine's namespace, where --mpi put mpi4py's MPI
        def allreduce() -> int:
            world = MPI.COMM_WORLD  # type: ignore[name-defined]  # noqa: F821
            return int(world.allreduce(world.rank + 1))

        assert rc[:].apply_sync(allreduce) == [3, 3]
        # no file was read: the connection came in the environment
        assert rc[0].apply_sync(lambda: "IPP_CONNECTION_INFO" in os.environ)
        assert launcher.args[:3] == ["mpiexec", "-n", "2"] and "--mpi" in launcher.args
        data = paths.read_json(cluster.cluster_file)
        [entry] = enginesets.engine_sets(data).values()
        assert entry["launcher"] == "ipar_widgets.cluster.mpilauncher.MPIEngineSetLauncher"
        assert entry["process_pid"] == launcher.process_pid and entry["n"] == 2
        # a second set, with launcher arguments as in ipyparallel: its rank 0 finds id 0
        # taken, and gets the next one
        second = cluster.start_engines_sync(1, mpi_args=["--oversubscribe"])
        assert isinstance(second, str) and cluster.engine_sets[second].args[3] == "--oversubscribe"
        leftovers.append(cluster.engine_sets[second].process_pid)  # type: ignore[arg-type]
        rc.wait_for_engines(3, timeout=30)
        assert sorted(rc.ids) == [0, 1, 2]
        assert rc[2].apply_sync(lambda: os.environ["OMPI_COMM_WORLD_RANK"]) == "0"
        leftovers.append(rc[2].apply_sync(os.getpid))
        # each set with its mpiexec and how many of its engines registered
        first_id = next(iter(cluster.engine_sets))
        shown = {
            first_id: f"running (pid {launcher.process_pid}), 2/2 registered",
            second: f"running (pid {cluster.engine_sets[second].process_pid}), 1/1 registered",
        }
        assert repr(cluster).endswith(f"controller=<running>, engine_sets={shown})>")
        assert len(enginesets.engine_sets(data)) == 2
    finally:
        cluster.stop_cluster_sync()
    wait_until(lambda: not alive(leftovers), 10, what="mpiexec and its ranks to exit")
    assert not enginesets.engine_sets(data)  # forgotten once stopped


def test_ipar_start_with_mpi_and_a_killed_mpiexec_still_stops_every_rank(
    profile: str, leftovers: list[int]
) -> None:
    started = ipar("start", "-n", "2", "--engines", "mpi", "--profile", profile, check=False)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "2 engine(s)" in started.stdout
        cluster_file = paths.cluster_file(paths.profile_dir(profile))
        data = paths.read_json(cluster_file)
        [entry] = enginesets.engine_sets(data).values()
        mpiexec_pid = int(entry["process_pid"])
        leftovers.append(mpiexec_pid)
        rc = ipp.Client(profile=profile)
        try:
            rc.wait_for_engines(2, timeout=30)
            pids = rc[:].apply_sync(os.getpid)
            leftovers.extend(pids)
            listed = ipar("list", "--profile", profile).stdout
            assert "2/2" in listed and "MPIEngineSetLauncher, 2 engine(s)" in listed
            attached = ipp.Cluster.from_file(profile=profile)  # another process's view
            [(set_id, launcher)] = attached.engine_sets.items()
            assert isinstance(launcher, MPIEngineSetLauncher) and launcher.state == "running"
            assert launcher.process_pid == mpiexec_pid and set_id in repr(attached)
            # ranks that initialised MPI (mpi4py, the default) end when their mpiexec is
            # killed; their controller sees them go
            os.kill(mpiexec_pid, signal.SIGKILL)
            wait_until(lambda: not alive([mpiexec_pid, *pids]), 10, what="mpiexec and ranks")
            wait_until(lambda: not rc.ids, 10, what="the controller to see the ranks go")
        finally:
            rc.close()
    finally:
        stopped = ipar("stop", "--profile", profile, check=False)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_until(lambda: not alive(leftovers), 10, what="the ranks to exit")


def test_ranks_whose_mpiexec_and_controller_were_killed_leave_by_themselves(
    profile: str, leftovers: list[int]
) -> None:
    from traitlets.config import Config

    config = Config()
    config.EngineLauncher.engine_args = ["--controller-timeout=3"]
    config.MPIEngineSetLauncher.mpi4py = False  # ranks without MPI_Init outlive mpiexec
    cluster = ipp.Cluster(n=2, engines="mpi", profile=profile, cluster_id="", config=config)
    try:
        rc = cluster.start_and_connect_sync()
        [launcher] = cluster.engine_sets.values()
        assert "--rank-as-id" in launcher.args and "--mpi" not in launcher.args
        assert rc[:].apply_sync(lambda: int(os.environ["OMPI_COMM_WORLD_RANK"])) == rc.ids
        mpiexec_pid = launcher.process_pid
        assert mpiexec_pid is not None
        pids = rc[:].apply_sync(os.getpid)
        controller = int(cluster._data["controller_pid"])  # type: ignore[index]
        leftovers.extend([mpiexec_pid, *pids, controller])
        rc.close()
        os.kill(mpiexec_pid, signal.SIGKILL)
        wait_until(lambda: not alive([mpiexec_pid]), 10, what="mpiexec to die")
        assert alive(pids) == pids  # each rank in a process group of its own
        os.kill(controller, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: not alive([controller]), 10, what="the controller to die")
        # nothing stops the ranks now but their own watchdog (controller_timeout, 3 s)
        wait_until(lambda: not alive(pids), 20, what="the orphaned ranks to leave")
        assert time.monotonic() - killed >= 2.5  # their watchdog, not a kill, ended them
    finally:
        cluster.stop_cluster_sync()


def test_a_failing_mpiexec_says_why_at_once(profile: str, leftovers: list[int]) -> None:
    from traitlets.config import Config

    config = Config()
    config.MPIEngineSetLauncher.mpi_args = ["--no-such-option-for-mpiexec"]
    cluster = ipp.Cluster(n=2, engines="mpi", profile=profile, cluster_id="", config=config)
    try:
        with pytest.raises(error.EngineStartFailed) as info:
            cluster.start_and_connect_sync()
        message = str(info.value)
        assert "MPIEngineSetLauncher (mpiexec -n 2 --no-such-option-for-mpiexec ...)" in message
        assert "no-such-option-for-mpiexec" in info.value.log_tail
        assert info.value.returncode not in (None, 0)
    finally:
        cluster.stop_cluster_sync()


def test_mpi_error_blocks_are_found_in_the_output() -> None:
    dashes = "-" * 74
    output = f"start\n{dashes}\nThere are not enough slots available\nin the system\n{dashes}\nend"
    assert mpi_error_block(output) == "There are not enough slots available\nin the system"
    rule = "=" * 80
    assert mpi_error_block(f"{rule}\n=   BAD TERMINATION\n{rule}\n") == "=   BAD TERMINATION"
    assert mpi_error_block("nothing framed here") == ""
