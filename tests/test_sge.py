"""A real single-node SGE cell (tests/schedulers.py), first with the plain SGE commands, so
the fixture is proven on its own, then with engines started by SGEEngineSetLauncher.

In CI these tests fail, never skip, when SGE cannot run; elsewhere they skip without root or
without the Debian packages.  Every job a test submits is deleted at its end, and the
processes it ran are looked for by their ``JOB_ID``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import alive, wait_until
from schedulers import SGECluster, processes_with, running_sge
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets.cluster.batch import SGEEngineSetLauncher

pytestmark = pytest.mark.timeout(120)  # the cell's teardown alone takes ~10 s


@pytest.fixture(scope="module")
def sge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SGECluster]:
    """One SGE cell for the module (``SGE_CELL`` and its ports set while it runs)."""
    with running_sge(tmp_path_factory.mktemp("sge")) as cluster:
        yield cluster


PYTHON = os.path.basename(sys.executable)


def job_processes(job_id: str, program: str = PYTHON) -> list[int]:
    """Live processes of ``program`` (argv[0]'s basename) that job ``job_id`` started."""
    return processes_with(program, f"JOB_ID={job_id}")


def tasks(cluster: SGECluster, job_id: str) -> dict[str, str]:
    """Task id -> state letters, as ``qstat`` shows the job's tasks; empty once it is gone."""
    shown: dict[str, str] = {}
    for line in cluster.run("qstat", "-u", "*").stdout.splitlines()[2:]:
        fields = line.split()
        if fields and fields[0] == job_id:
            shown[fields[-1]] = fields[4]
    return shown


@pytest.fixture
def jobs(sge: SGECluster) -> Iterator[list[str]]:
    """Ids of the jobs a test submitted: all deleted at the end, their processes checked."""
    submitted: list[str] = []
    yield submitted
    if submitted:
        sge.run("qdel", *submitted)
        wait_until(lambda: not any(tasks(sge, j) for j in submitted), 30, 0.1, "jobs to go")
        left = {j: job_processes(j, p) for j in submitted for p in (PYTHON, "sleep")}
        assert not any(left.values()), f"job processes left running: {left}"


def test_the_cell_is_fresh_and_its_queue_takes_jobs(sge: SGECluster) -> None:
    assert sge.queue_ready()
    assert sge.check("qconf", "-sel").split() == [sge.host]
    assert sge.check("qconf", "-sql").split() == ["all.q"]
    assert sge.job_ids() == []
    assert (sge.cell_dir / "common" / "bootstrap").read_text().count(str(sge.spool)) == 2
    print(f"SGE cell {sge.cell} started in {sge.startup_seconds:.2f} s")


def test_an_array_job_runs_its_tasks_and_qdel_ends_them(
    sge: SGECluster, jobs: list[str], tmp_path: Path
) -> None:
    script = tmp_path / "array.sh"
    script.write_text(
        '#!/bin/sh\necho "task $SGE_TASK_ID of $SGE_TASK_LAST in job $JOB_ID"\nexec sleep 300\n'
    )
    done = sge.run("qsub", "-terse", "-t", "1-2", "-o", str(tmp_path), "-j", "y", str(script))
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip().split(".")[0]  # "7.1-2:1": job 7, tasks 1 to 2, step 1
    jobs.append(job)
    wait_until(lambda: tasks(sge, job) == {"1": "r", "2": "r"}, 30, 0.1, "both tasks to run")
    wait_until(lambda: len(job_processes(job, "sleep")) == 2, 10, what="both tasks' sleep")
    sleeping = job_processes(job, "sleep")
    for task in ("1", "2"):
        out = tmp_path / f"array.sh.o{job}.{task}"
        wait_until(out.exists, 10, what=f"the output of task {task}")
        assert out.read_text() == f"task {task} of 2 in job {job}\n"
    deleted = sge.run("qdel", job)
    assert deleted.returncode == 0
    assert f"root has registered the job-array task {job}.1 for deletion" in deleted.stdout
    wait_until(lambda: not tasks(sge, job), 30, 0.1, "the job to leave qstat")
    wait_until(lambda: not any(p in job_processes(job, "sleep") for p in sleeping), 10)


def test_two_engines_as_an_sge_job_array_register_and_stop_runs_qdel(
    sge: SGECluster, jobs: list[str], profile: str
) -> None:
    config = Config()
    config.SGEEngineSetLauncher.engines_on_this_host = True  # a single-node cell
    config.SGEEngineSetLauncher.timelimit = "00:10:00"
    config.SGEEngineSetLauncher.poll_interval = 0.2
    cluster = ipp.Cluster(n=2, engines="sge", profile=profile, cluster_id="", config=config)
    try:
        rc = cluster.start_and_connect_sync()
        [launcher] = cluster.engine_sets.values()
        assert isinstance(launcher, SGEEngineSetLauncher)
        job = launcher.job_id
        jobs.append(job)
        assert "#$ -t 1-2" in launcher.job_script()
        assert sorted(rc.ids) == [0, 1]
        # SGE shows a task "t" (being transferred) until execd reports it started
        wait_until(lambda: tasks(sge, job) == {"1": "r", "2": "r"}, 15, 0.1, "tasks running")
        assert launcher.status_text() == "RUNNING"
        task_ids = rc[:].apply_sync(lambda: os.environ["SGE_TASK_ID"])
        assert sorted(task_ids) == ["1", "2"]
        pids = rc[:].apply_sync(os.getpid)
        assert sorted(pids) == sorted(job_processes(job))
        stopping = time.monotonic()
        cluster.stop_engines_sync()  # the launcher's stop(): qdel
        took = time.monotonic() - stopping
        print(f"qdel and the engine job's end took {took:.2f} s")
        # the end was seen, not waited out (qacct's "no accounting file yet" means ended)
        assert took < launcher.stop_timeout
        wait_until(lambda: not job_processes(job), 15, what="the engines to exit")
        assert not alive(pids)
        wait_until(lambda: not tasks(sge, job), 15, 0.1, "the job to leave qstat")
        wait_until(lambda: not rc.ids, 15, what="the controller to see the engines go")
        # stopped, not failed (SGE's record of a deleted job says "failed 100", code 137)
        assert launcher.status_text() == "CANCELLED (deleted by stop())"
    finally:
        cluster.stop_cluster_sync()
