"""A real single-node Slurm (tests/schedulers.py), first with the plain Slurm commands, so
the fixture is proven on its own, then with engines started by SlurmEngineSetLauncher.

In CI these tests fail, never skip, when Slurm cannot run; elsewhere they skip without root
or without the Debian packages.  Every job a test submits is cancelled at its end, and the
processes it ran are looked for by their ``SLURM_JOB_ID``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import alive, wait_until
from schedulers import SlurmCluster, processes_with, running_slurm
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets import error
from ipar_widgets.cluster.batch import JobState, SlurmEngineSetLauncher
from ipar_widgets.cluster.enginesets import wait_for_engine_sets

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One Slurm for the module (``SLURM_CONF`` set while it runs)."""
    with running_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


PYTHON = os.path.basename(sys.executable)


def job_processes(job_id: str, program: str = PYTHON) -> list[int]:
    """Live processes of ``program`` (argv[0]'s basename) started by job ``job_id``."""
    return processes_with(program, f"SLURM_JOB_ID={job_id}")


def submit(cluster: SlurmCluster, *args: str) -> str:
    done = cluster.run("sbatch", "--parsable", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def state(cluster: SlurmCluster, job_id: str) -> str:
    """``STATE REASON`` as squeue shows it; empty once the job has left the queue."""
    return cluster.run("squeue", "-h", "-j", job_id, "-o", "%T %r").stdout.strip()


@pytest.fixture
def jobs(slurm: SlurmCluster) -> Iterator[list[str]]:
    """Ids of the jobs a test submitted: all cancelled at the end, and their processes
    checked for."""
    submitted: list[str] = []
    yield submitted
    if submitted:
        slurm.run("scancel", *submitted)
        wait_until(
            lambda: not any(state(slurm, j) for j in submitted), 30, 0.1, "jobs to leave squeue"
        )
        left = {j: job_processes(j, p) for j in submitted for p in (PYTHON, "sleep")}
        assert not any(left.values()), f"job processes left running: {left}"


def test_the_node_is_idle_with_the_generated_configuration(slurm: SlurmCluster) -> None:
    assert slurm.node_state() == "idle"
    shown = slurm.run("scontrol", "show", "config").stdout
    assert f"SLURM_CONF              = {slurm.conf}" in shown
    assert "MpiDefault              = none" in shown
    print(f"slurm started in {slurm.startup_seconds:.2f} s (munged reused: {slurm.munged_reused})")


def test_a_batch_job_runs_mpi_over_pmix(
    slurm: SlurmCluster,
    jobs: list[str],
    tmp_path: Path,
) -> None:
    script = tmp_path / "mpi.sh"
    program = (
        "from mpi4py import MPI; w = MPI.COMM_WORLD; print('rank', w.rank, 'sum', w.allreduce(1))"
    )
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --ntasks=2\n"
        f"#SBATCH --output={tmp_path}/mpi-%j.out\n"
        f'srun --mpi=pmix -n 2 {sys.executable} -c "{program}"\n'
    )
    job = submit(slurm, str(script))
    jobs.append(job)
    wait_until(lambda: not state(slurm, job), 60, 0.1, "the MPI job to finish")
    out = (tmp_path / f"mpi-{job}.out").read_text()
    assert sorted(out.splitlines()) == ["rank 0 sum 2", "rank 1 sum 2"], out
    assert "JobState=COMPLETED" in slurm.run("scontrol", "show", "job", job).stdout


def test_jobs_that_cannot_start_pend_with_their_reason_and_scancel_ends_them(
    slurm: SlurmCluster,
    jobs: list[str],
    tmp_path: Path,
) -> None:
    out = f"--output={tmp_path}/%j.out"
    held = submit(slurm, "--hold", out, "--wrap", "sleep 300")
    jobs.append(held)
    blocker = submit(slurm, f"--ntasks={slurm.cpus}", out, "--wrap", "sleep 300")
    jobs.append(blocker)
    waiting = submit(slurm, f"--ntasks={slurm.cpus}", out, "--wrap", "true")
    jobs.append(waiting)
    assert state(slurm, held) == "PENDING JobHeldUser"
    wait_until(lambda: state(slurm, blocker) == "RUNNING None", 30, 0.1, "the blocker to run")
    wait_until(lambda: bool(job_processes(blocker, "sleep")), 10, what="the blocker's sleep")
    wait_until(
        lambda: state(slurm, waiting) == "PENDING Resources", 10, 0.1, "the reason Resources"
    )
    sleeping = job_processes(blocker, "sleep")
    assert slurm.run("scancel", blocker).returncode == 0
    wait_until(lambda: not job_processes(blocker, "sleep"), 10, what="the blocker's processes")
    assert sleeping and not set(sleeping) & set(job_processes(blocker, "sleep"))
    # the freed CPUs go to the waiting job, which runs and completes
    wait_until(lambda: not state(slurm, waiting), 30, 0.1, "the waiting job to finish")
    assert "JobState=COMPLETED" in slurm.run("scontrol", "show", "job", waiting).stdout
    assert state(slurm, held) == "PENDING JobHeldUser"  # still held
    assert slurm.run("scancel", held).returncode == 0
    wait_until(lambda: not state(slurm, held), 10, 0.1, "the held job to leave squeue")
    assert "JobState=CANCELLED" in slurm.run("scontrol", "show", "job", held).stdout


# -- engines as a Slurm job (SlurmEngineSetLauncher) -----------------------------------------


def engine_config(**traits: object) -> Config:
    """The Slurm launcher on this single-node Slurm: engines run on this host (so the
    controller may listen on loopback), with a time limit (no warning about a default)."""
    config = Config()
    config.SlurmEngineSetLauncher.engines_on_this_host = True
    config.SlurmEngineSetLauncher.timelimit = "10:00"
    config.SlurmEngineSetLauncher.poll_interval = 0.2
    for name, value in traits.items():
        setattr(config.SlurmEngineSetLauncher, name, value)
    return config


@ipp.interactive  # runs in the engine's namespace, where --mpi put mpi4py's MPI
def allreduce_one() -> int:
    return int(MPI.COMM_WORLD.allreduce(1))  # type: ignore[name-defined]  # noqa: F821


def test_two_engines_as_one_slurm_job_use_mpi_and_stop_runs_scancel(
    slurm: SlurmCluster, jobs: list[str], profile: str
) -> None:
    cluster = ipp.Cluster(
        n=0, engines="slurm", profile=profile, cluster_id="", config=engine_config(mpi=True)
    )
    try:
        rc = cluster.start_and_connect_sync()
        set_id = cluster.start_engines_sync(2, queue=slurm.partition)
        launcher = cluster.engine_sets[set_id]
        assert isinstance(launcher, SlurmEngineSetLauncher)
        jobs.append(launcher.job_id)
        script = launcher.job_script()
        assert f"#SBATCH --partition={slurm.partition}" in script
        assert "#SBATCH --ntasks=2" in script and "srun --mpi=pmix " in script
        wait_for_engine_sets(lambda: len(rc.ids), 2, [launcher], 60)
        rc.wait_for_engines(2, timeout=30)
        assert launcher.status_text() == "RUNNING"
        assert state(slurm, launcher.job_id) == "RUNNING None"
        assert rc[:].apply_sync(allreduce_one) == [2, 2]
        ranks = rc[:].apply_sync(lambda: int(os.environ["SLURM_PROCID"]))
        assert ranks == rc.ids  # engine id == rank, as under mpiexec
        pids = rc[:].apply_sync(os.getpid)
        assert sorted(pids) == sorted(job_processes(launcher.job_id))
        cluster.stop_engines_sync(set_id)  # the launcher's stop(): scancel
        assert launcher.status_text().startswith("CANCELLED")
        wait_until(lambda: not job_processes(launcher.job_id), 15, what="the engines to exit")
        assert not alive(pids)
        assert not state(slurm, launcher.job_id)
        assert "JobState=CANCELLED" in slurm.run("scontrol", "show", "job", launcher.job_id).stdout
        wait_until(lambda: not rc.ids, 15, what="the controller to see the engines go")
    finally:
        cluster.stop_cluster_sync()


def test_engines_queued_behind_another_job_wait_past_the_timeout_then_register(
    slurm: SlurmCluster,
    jobs: list[str],
    profile: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = submit(
        slurm, f"--ntasks={slurm.cpus}", f"--output={tmp_path}/%j.out", "--wrap", "sleep 300"
    )
    jobs.append(blocker)
    wait_until(lambda: state(slurm, blocker) == "RUNNING None", 30, 0.1, "the blocker to run")
    timeout = 5.0  # once the job runs, its engines register within it
    cluster = ipp.Cluster(
        n=2,
        engines="slurm",
        profile=profile,
        cluster_id="",
        engine_timeout=timeout,
        config=engine_config(),
    )
    outcome: dict[str, object] = {}

    def start() -> None:
        try:
            outcome["rc"] = cluster.start_and_connect_sync()
        except BaseException as exc:  # the test's thread reports it
            outcome["error"] = exc

    starter = threading.Thread(target=start, daemon=True)
    try:
        starter.start()
        wait_until(lambda: bool(cluster.engine_sets), 60, what="the engine job to be submitted")
        [launcher] = cluster.engine_sets.values()
        assert isinstance(launcher, SlurmEngineSetLauncher)
        jobs.append(launcher.job_id)
        wait_until(launcher.pending, 10, what="the engine job to be seen pending")
        queued = time.monotonic()
        # Slurm says "None" until its scheduler has looked at the job, then why it waits
        wait_until(lambda: launcher.status_text() == "PENDING (Resources)", 10, what="the reason")
        assert launcher.job_state() == JobState("PENDING", "Resources")
        [set_id] = cluster.engines
        shown = f"engine_sets={{'{set_id}': 'PENDING (Resources), 0/2 registered'}}"
        wait_until(lambda: shown in repr(cluster), 10, what=f"{shown} in the repr")
        # the registration timeout does not run while the job waits in the queue
        starter.join(timeout + 2)
        assert starter.is_alive() and not outcome, outcome
        assert time.monotonic() - queued > timeout and launcher.pending()
        assert slurm.run("scancel", blocker).returncode == 0
        starter.join(60)
        assert "rc" in outcome, outcome
        rc = outcome["rc"]
        assert isinstance(rc, ipp.Client) and len(rc.ids) == 2
        assert launcher.status_text() == "RUNNING" and not launcher.pending()
        assert repr(cluster).endswith(f"engine_sets={{'{set_id}': 'RUNNING, 2/2 registered'}})>")
        # the wait told each change on stderr, the queued state among them
        said = capsys.readouterr().err.splitlines()
        assert f"{profile}: 0/2 engines registered; PENDING (Resources)" in said, said
        pids = rc[:].apply_sync(os.getpid)
        launcher.stop()
        wait_until(lambda: not alive(pids), 15, what="the engines to exit")
    finally:
        cluster.stop_cluster_sync()  # the job cancelled: a wait still running ends at once
        starter.join(30)


def test_an_engine_job_that_fails_at_once_says_so_with_its_output(
    slurm: SlurmCluster, jobs: list[str], profile: str
) -> None:
    config = engine_config(prologue="echo 'no python here' >&2\nexit 3")
    cluster = ipp.Cluster(n=2, engines="slurm", profile=profile, cluster_id="", config=config)
    try:
        started = time.monotonic()
        with pytest.raises(error.EngineStartFailed) as info:
            cluster.start_and_connect_sync()
        assert time.monotonic() - started < 20  # not the 60 s registration timeout
        [launcher] = cluster.engine_sets.values()
        assert isinstance(launcher, SlurmEngineSetLauncher)
        jobs.append(launcher.job_id)
        assert launcher.status_text() == "FAILED: NonZeroExitCode (exit code 3)"
        assert launcher.job_state() == JobState("FAILED", "NonZeroExitCode", 3)
        assert "no python here" in info.value.log_tail
        assert f"job {launcher.job_id}: FAILED" in str(info.value) + info.value.log_tail
        assert not job_processes(launcher.job_id)
    finally:
        cluster.stop_cluster_sync()
