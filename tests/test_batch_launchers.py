"""Batch-scheduler launchers: the scripts they render, and submitting, polling, stopping and
re-attaching to jobs, against stand-in scheduler commands on PATH (``tests/stubs``) that
record how they were called and answer what each test tells them to, in the shape of the
real commands' output.  Real Slurm and SGE daemons are exercised elsewhere."""

from __future__ import annotations

import json
import logging
import os
import shlex
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ipar, wait_until
from traitlets.config import Config

from ipar_widgets import paths
from ipar_widgets.cluster import batch
from ipar_widgets.cluster.batch import JobState
from ipar_widgets.cluster.launcher import LauncherError

pytestmark = pytest.mark.timeout(60)

STUB = Path(__file__).parent / "stubs" / "fake_scheduler.py"
COMMANDS = [
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
    "qsub",
    "qstat",
    "qdel",
    "qacct",
    "qsig",
    "bsub",
    "bjobs",
    "bkill",
    "condor_submit",
    "condor_q",
    "condor_rm",
    "condor_history",
]
CONNECTION = '{"key": "k y", "url": "tcp://10.0.0.1:5555"}'
EXPORTS = [
    "export IPP_CLUSTER_ID=c1",
    "export IPP_CONNECTION_INFO='" + CONNECTION + "'",
]
ENGINE = shlex.join([sys.executable, "-m", "ipar_widgets.engine"])
#: a batch controller announces its connection info in its output (no shared filesystem)
CONTROLLER = shlex.join([sys.executable, "-m", "ipar_widgets.controller", "--announce"])
ID = "ipar-engineset-c1-7"


class Scheduler:
    """The stand-in commands: what they will answer, and how they were called."""

    def __init__(self, here: Path) -> None:
        self.here = here

    def say(self, name: str, out: str = "", err: str = "", rc: int = 0) -> None:
        for suffix, text in (("out", out), ("err", err), ("rc", str(rc))):
            tmp = self.here / f".{name}.{suffix}.tmp"
            tmp.write_text(text)
            tmp.replace(self.here / f"{name}.{suffix}")  # never half-written when read

    def calls(self, name: str) -> list[dict[str, Any]]:
        path = self.here / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if c["name"] == name]


@pytest.fixture
def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scheduler:
    here = tmp_path / "scheduler"
    bin_dir = here / "bin"
    bin_dir.mkdir(parents=True)
    for name in COMMANDS:
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {STUB} {name} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCHEDULER_DIR", str(here))
    return Scheduler(here)


@pytest.fixture
def launchers() -> Iterator[list[batch.BatchSystemLauncher]]:
    """Launchers a test started: their watcher threads end with the test."""
    made: list[batch.BatchSystemLauncher] = []
    yield made
    for launcher in made:
        if launcher.state == "running":
            launcher.notify_stop({"exit_code": None, "job_id": launcher.job_id})


def make(cls: type[batch.BatchSystemLauncher], work: Path, **traits: Any) -> Any:
    if issubclass(cls, batch.BatchEngineSetLauncher):
        traits.setdefault("n", 3)
    traits.setdefault("poll_interval", 0.05)
    launcher = cls(work_dir=str(work), identifier=ID, **traits)
    launcher.environment = {"IPP_CONNECTION_INFO": CONNECTION, "IPP_CLUSTER_ID": "c1"}
    return launcher


def lines(*parts: str | list[str]) -> str:
    flat: list[str] = []
    for part in parts:
        flat += part if isinstance(part, list) else [part]
    return "\n".join(flat) + "\n"


# -- the scripts ----------------------------------------------------------------------------------
def test_slurm_engine_script_has_every_setting(tmp_path: Path) -> None:
    launcher = make(
        batch.SlurmEngineSetLauncher,
        tmp_path,
        n=4,
        queue="debug",
        account="proj1",
        qos="short",
        timelimit="1:30:00",
        options="--mem=4G --exclusive",
        prologue="module load python/3.11\nsource /opt/venv/bin/activate",
        extra_directives=["#SBATCH --constraint=ib"],
        engine_args=["--log-level=20"],
    )
    assert launcher.job_script() == lines(
        "#!/bin/bash",
        f"#SBATCH --job-name={ID}",
        "#SBATCH --ntasks=4",
        f"#SBATCH --output={tmp_path}/{ID}-%j.out",
        "#SBATCH --partition=debug",
        "#SBATCH --account=proj1",
        "#SBATCH --qos=short",
        "#SBATCH --time=1:30:00",
        "#SBATCH --mem=4G --exclusive",
        "#SBATCH --constraint=ib",
        EXPORTS,
        "module load python/3.11",
        "source /opt/venv/bin/activate",
        f"srun {ENGINE} --log-level=20",
    )


def test_slurm_mpi_uses_pmix_and_rank_ids_and_controller_has_no_srun(tmp_path: Path) -> None:
    mpi = make(batch.SlurmEngineSetLauncher, tmp_path, mpi=True, timelimit="10")
    assert mpi.job_script().splitlines()[-1] == f"srun --mpi=pmix {ENGINE} --rank-as-id --mpi"
    by_flag = make(batch.SlurmEngineSetLauncher, tmp_path, engine_args=["--mpi"], timelimit="10")
    assert by_flag.job_script().splitlines()[-1] == f"srun --mpi=pmix {ENGINE} --rank-as-id --mpi"
    controller = make(batch.SlurmControllerLauncher, tmp_path, controller_args=["--ip=*"])
    script = controller.job_script()
    assert "#SBATCH --ntasks=1" in script.splitlines()
    assert script.splitlines()[-1] == f"{CONTROLLER} '--ip=*'"


def test_missing_time_limit_is_announced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        make(batch.SlurmEngineSetLauncher, tmp_path).job_script()
        make(batch.PBSEngineSetLauncher, tmp_path, timelimit="01:00:00").job_script()
        make(batch.HTCondorEngineSetLauncher, tmp_path).job_script()
    assert [r.getMessage() for r in caplog.records] == [
        "SlurmEngineSetLauncher: no time limit set (c.SlurmEngineSetLauncher.timelimit); the "
        "job gets the partition's default time limit, and is killed when it runs out"
    ]


def test_user_template_keeps_its_directives_and_gets_the_missing_ones(tmp_path: Path) -> None:
    template = (
        "#!/bin/bash\n"
        "#SBATCH --ntasks=8\n"
        "#SBATCH -p big\n"
        "#SBATCH --output={work_dir}/mine-%j.log\n"
        "\n"
        "echo {n} engines for {cluster_id}\n"
        "{program}\n"
    )
    launcher = make(
        batch.SlurmEngineSetLauncher,
        tmp_path,
        batch_template=template,
        queue="small",
        timelimit="5",
        prologue="module load mpi",
        extra_directives=["#SBATCH --mem=1G"],
        cluster_id="c1",
    )
    assert launcher.job_script() == lines(
        "#!/bin/bash",
        "#SBATCH --ntasks=8",
        "#SBATCH -p big",
        f"#SBATCH --output={tmp_path}/mine-%j.log",
        f"#SBATCH --job-name={ID}",
        "#SBATCH --time=5",
        "#SBATCH --mem=1G",
        "",
        EXPORTS,
        "module load mpi",
        "echo 3 engines for c1",
        f"srun {ENGINE}",
    )
    # a template that places the exports and the prologue itself gets them there only
    placed = make(
        batch.SGEEngineSetLauncher,
        tmp_path,
        timelimit="1:00:00",
        prologue="conda activate x",
        batch_template="#$ -t 1-{n}\n{prologue}\n{environment}\n{program}\n",
    )
    assert placed.job_script() == lines(
        "#!/bin/bash",
        "#$ -t 1-3",
        "#$ -S /bin/bash",
        f"#$ -N {ID}",
        f"#$ -o {tmp_path}/{ID}-$JOB_ID.$TASK_ID.out",
        "#$ -j y",
        "#$ -l h_rt=1:00:00",
        "conda activate x",
        EXPORTS,
        ENGINE,
    )
    template_file = tmp_path / "t.sh"
    template_file.write_text("#!/bin/sh\necho ${{HOME}} {walltime}\n{program}\n")
    from_file = make(
        batch.PBSControllerLauncher,
        tmp_path,
        batch_template_file=str(template_file),
        namespace={"walltime": "2h"},
        timelimit="02:00:00",
    )
    assert from_file.job_script().splitlines()[-2:] == ["echo ${HOME} 2h", CONTROLLER]
    broken = make(batch.SlurmEngineSetLauncher, tmp_path, batch_template="#!/bin/sh\n${HOME}\n")
    with pytest.raises(LauncherError, match=r"uses \{HOME\}, which is not a template variable"):
        broken.job_script()


def test_sge_pbs_lsf_scripts(tmp_path: Path) -> None:
    sge = make(batch.SGEEngineSetLauncher, tmp_path, queue="all.q", timelimit="0:30:00")
    assert sge.job_script() == lines(
        "#!/bin/bash",
        "#$ -S /bin/bash",
        f"#$ -N {ID}",
        "#$ -t 1-3",
        f"#$ -o {tmp_path}/{ID}-$JOB_ID.$TASK_ID.out",
        "#$ -j y",
        "#$ -q all.q",
        "#$ -l h_rt=0:30:00",
        EXPORTS,
        ENGINE,
    )
    pbs = make(batch.PBSEngineSetLauncher, tmp_path, n=2, queue="workq", timelimit="00:10:00")
    assert pbs.job_script() == lines(
        "#!/bin/bash",
        "#PBS -N ipar-engineset",
        "#PBS -t 1-2",
        "#PBS -j oe",
        f"#PBS -o {tmp_path}/{ID}.out",
        "#PBS -q workq",
        "#PBS -l walltime=00:10:00",
        EXPORTS,
        ENGINE,
    )
    pbs_pro = make(batch.PBSEngineSetLauncher, tmp_path, job_array_directive="#PBS -J 1-{n}")
    assert "#PBS -J 1-3" in pbs_pro.job_script().splitlines()
    lsf = make(batch.LSFEngineSetLauncher, tmp_path, n=5, queue="normal", timelimit="60")
    assert lsf.job_script() == lines(
        "#!/bin/bash",
        f"#BSUB -J {ID}[1-5]",
        f"#BSUB -o {tmp_path}/{ID}-%J.%I.out",
        "#BSUB -q normal",
        "#BSUB -W 60",
        EXPORTS,
        ENGINE,
    )
    lsf_controller = make(batch.LSFControllerLauncher, tmp_path, timelimit="60")
    assert lsf_controller.job_script().splitlines()[1:3] == [
        f"#BSUB -J {ID}",
        f"#BSUB -o {tmp_path}/{ID}-%J.out",
    ]


def test_htcondor_description_and_executable(tmp_path: Path) -> None:
    launcher = make(
        batch.HTCondorEngineSetLauncher,
        tmp_path,
        n=4,
        prologue="module load py",
        extra_directives=["request_memory = 2GB"],
    )
    executable = tmp_path / f"{ID}.sh"
    assert launcher.job_script() == lines(
        "universe = vanilla",
        f"executable = {executable}",
        f"output = {tmp_path}/{ID}-$(Cluster).$(Process).out",
        f"error = {tmp_path}/{ID}-$(Cluster).$(Process).out",
        f"batch_name = {ID}",
        "request_memory = 2GB",
        "queue 4",
    )
    assert launcher.wrapper_script() == lines("#!/bin/bash", EXPORTS, "module load py", ENGINE)
    assert launcher.preview() == (
        f"{launcher.job_script()}\n# {executable} (the job's executable):\n"
        f"{launcher.wrapper_script()}"
    )
    # a template's own queue statement stays last, and the generated lines go before it
    own = make(
        batch.HTCondorEngineSetLauncher,
        tmp_path,
        batch_template="universe = vanilla\nrequirements = (Memory > 1024)\nqueue {n}\n",
    )
    assert own.job_script().splitlines()[1:3] == [
        "requirements = (Memory > 1024)",
        f"executable = {executable}",
    ]
    assert own.job_script().splitlines()[-1] == "queue 3"


# -- submitting and watching ----------------------------------------------------------------------
SCONTROL_FAILED = """\
JobId=123 JobName=ipar-engineset-c1-7
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901757 Nice=0 Account=(null) QOS=(null)
   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=1:0
   RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A
"""


def test_slurm_job_is_submitted_polled_and_reported(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("sbatch", "Submitted batch job 123\n")
    scheduler.say("squeue", "PENDING Resources\n")
    launcher = make(batch.SlurmEngineSetLauncher, tmp_path / "log", timelimit="5")
    launchers.append(launcher)
    assert launcher.status_text() == "not submitted"
    launcher.start()
    script = tmp_path / "log" / f"{ID}.sbatch"
    assert [c["argv"] for c in scheduler.calls("sbatch")] == [[str(script)]]
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    assert script.read_text() == launcher.job_script()
    assert launcher.job_id == "123" and launcher.running
    assert launcher.output_file == f"{tmp_path}/log/{ID}-%j.out"
    wait_until(launcher.pending, 10, what="PENDING from squeue")
    assert launcher.status_text() == "PENDING (Resources)"
    assert scheduler.calls("squeue")[0]["argv"] == ["-h", "-o", "%T %r", "-j", "123"]

    scheduler.say("squeue", "RUNNING None\n")
    wait_until(lambda: launcher.status_text() == "RUNNING", 10, what="RUNNING")
    assert not launcher.pending()
    output = tmp_path / "log" / f"{ID}-123.out"
    output.write_text("".join(f"line {i}\n" for i in range(30)) + "engine: cannot import numpy\n")

    # the job left squeue; scontrol still has its record
    scheduler.say("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    scheduler.say("scontrol", SCONTROL_FAILED)
    assert launcher.wait_for_stop(10)
    assert launcher.state == "after"
    assert launcher.stop_data == {
        "exit_code": 1,
        "job_id": "123",
        "state": "FAILED",
        "reason": "NonZeroExitCode",
        "gone": False,
    }
    assert launcher.status_text() == "FAILED: NonZeroExitCode (exit code 1)"
    assert launcher.get_output() == output.read_text()
    assert launcher.failure() == (
        "job 123: FAILED: NonZeroExitCode (exit code 1)\n"
        + "".join(f"line {i}\n" for i in range(11, 30))
        + "engine: cannot import numpy"
    )


def test_slurm_states_from_squeue_and_scontrol(tmp_path: Path, scheduler: Scheduler) -> None:
    launcher = make(batch.SlurmEngineSetLauncher, tmp_path)
    launcher.job_id = "9"
    scheduler.say("squeue", "COMPLETING None\n")
    assert launcher.job_state() == JobState("COMPLETING")
    scheduler.say("squeue", "PENDING ReqNodeNotAvail,_UnavailableNodes:node[1-2]\n")
    assert launcher.job_state() == JobState(
        "PENDING", "ReqNodeNotAvail,_UnavailableNodes:node[1-2]"
    )
    scheduler.say("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    for record, expected in [
        ("JobState=COMPLETED Reason=None ExitCode=0:0", JobState("COMPLETED", "", 0)),
        ("JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15", JobState("TIMEOUT", "TimeLimit", 143)),
        ("JobState=CANCELLED Reason=None ExitCode=0:15", JobState("CANCELLED", "", 143)),
        ("JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125", None),
    ]:
        scheduler.say("scontrol", f"JobId=9 JobName=x\n   {record}\n")
        if expected is None:
            assert launcher.job_state().describe() == (
                "FAILED: OUT_OF_MEMORY, OutOfMemory (exit code 253)"
            )
        else:
            assert launcher.job_state() == expected
    # after MinJobAge the record is gone too: ended, how is unknown
    scheduler.say("scontrol", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    gone = launcher.job_state()
    assert gone.finished and gone.gone and gone.state == "UNKNOWN"
    assert (
        gone.describe() == "ended (Slurm no longer lists job 9 and has no record of how it ended)"
    )
    # a scheduler that cannot be asked: unknown, not finished, and no exception
    scheduler.say("squeue", err="slurm_load_jobs error: Unable to contact slurm controller\n", rc=1)
    failing = launcher.job_state()
    assert not failing.finished
    assert failing.describe() == (
        "UNKNOWN (squeue -h -o '%T %r' -j 9 exited with code 1: "
        "slurm_load_jobs error: Unable to contact slurm controller)"
    )
    launcher.state_command = [str(tmp_path / "no-squeue")]
    missing = launcher.job_state()
    assert missing.state == "UNKNOWN" and not missing.finished
    assert missing.reason.startswith(f"cannot run {tmp_path}/no-squeue: [Errno 2]")


def test_failed_submit_says_what_the_scheduler_said(tmp_path: Path, scheduler: Scheduler) -> None:
    refused = (
        "sbatch: error: Batch job submission failed: Invalid account or account/partition "
        "combination specified\n"
    )
    scheduler.say("sbatch", err=refused, rc=1)
    launcher = make(batch.SlurmEngineSetLauncher, tmp_path, timelimit="5")
    script = tmp_path / f"{ID}.sbatch"
    with pytest.raises(LauncherError) as failed:
        launcher.start()
    assert str(failed.value) == f"sbatch {script} failed with exit code 1:\n{refused.strip()}"
    assert launcher.state == "before"
    scheduler.say("sbatch", "sbatch: submitted, but no number here\n")
    with pytest.raises(LauncherError, match=r"exited with code 0, but cannot find the job id"):
        make(batch.SlurmEngineSetLauncher, tmp_path, timelimit="5").start()
    scheduler.say("bsub", err="Request aborted by esub. Job not submitted.\n", rc=255)
    lsf = make(batch.LSFEngineSetLauncher, tmp_path, timelimit="5")
    with pytest.raises(LauncherError) as bsub_failed:
        lsf.start()
    assert str(bsub_failed.value) == (
        f"bsub < {tmp_path}/{ID}.sh failed with exit code 255:\n"
        "Request aborted by esub. Job not submitted."
    )


def test_stop_deletes_the_job_and_waits_until_it_ended(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("sbatch", "Submitted batch job 55\n")
    scheduler.say("squeue", "RUNNING None\n")
    launcher = make(batch.SlurmEngineSetLauncher, tmp_path, timelimit="5", poll_interval=30)
    launchers.append(launcher)
    launcher.start()
    wait_until(lambda: launcher.status_text() == "RUNNING", 10, what="RUNNING")
    launcher.signal("SIGUSR1")
    assert scheduler.calls("scancel")[-1]["argv"] == ["-s", "USR1", "55"]
    # cancelled: squeue and scontrol no longer know it (as after MinJobAge)
    scheduler.say("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    scheduler.say("scontrol", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    launcher.stop()  # wakes the watcher, which would otherwise sleep 30 s
    assert scheduler.calls("scancel")[-1]["argv"] == ["55"]
    assert launcher.state == "after"
    assert launcher.status_text() == "CANCELLED (deleted by stop())"
    # deleting a job that is gone already is no error
    scheduler.say("scancel", err="scancel: error: Invalid job id specified\n", rc=1)
    launcher.stop()


def test_to_dict_and_from_dict_watch_and_stop_from_elsewhere(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("sbatch", "Submitted batch job 77\n")
    scheduler.say("squeue", "PENDING Priority\n")
    first = make(batch.SlurmEngineSetLauncher, tmp_path, timelimit="5")
    launchers.append(first)
    first.start()
    record = json.loads(json.dumps(first.to_dict()))
    assert {k: record[k] for k in ("state", "job_id", "output_file", "batch_file_name", "n")} == {
        "state": "running",
        "job_id": "77",
        "output_file": f"{tmp_path}/{ID}-%j.out",
        "batch_file_name": "",
        "n": 3,
    }
    other = batch.SlurmEngineSetLauncher.from_dict(record)
    launchers.append(other)
    assert other.status_text() == "PENDING (Priority)" and other.pending()  # asked at once
    scheduler.say("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    scheduler.say("scontrol", "JobId=77\n   JobState=CANCELLED Reason=None ExitCode=0:0\n")
    other.stop()
    assert scheduler.calls("scancel")[-1]["argv"] == ["77"]
    assert other.state == "after" and other.status_text() == "CANCELLED"
    assert first.wait_for_stop(10) and first.status_text() == "CANCELLED"
    ended = batch.SlurmEngineSetLauncher.from_dict(other.to_dict())
    assert ended.state == "after" and ended.status_text() == "CANCELLED"


SGE_QSTAT = """\
job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID
-----------------------------------------------------------------------------------------------------------------
     41 0.55500 other      root         r     12/03/2026 08:50:01 all.q@node1                        1
     77 0.55500 ipar-engin root         {a}     12/03/2026 08:50:02 all.q@node1                        1 1
     77 0.00000 ipar-engin root         {b}    12/03/2026 08:50:02                                    1 2,3
"""
SGE_QACCT = """\
==============================================================
qname        all.q
hostname     node1
jobname      ipar-engineset-c1-7
jobnumber    77
taskid       1
failed       0
exit_status  0
==============================================================
qname        all.q
jobnumber    77
taskid       2
failed       0
exit_status  {code}
"""


def test_sge_array_states_errors_and_accounting(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("qsub", 'Your job-array 77.1-3:1 ("ipar-engineset-c1-7") has been submitted\n')
    scheduler.say("qstat", SGE_QSTAT.format(a="r ", b="qw"))
    launcher = make(batch.SGEEngineSetLauncher, tmp_path, timelimit="1:00:00")
    launchers.append(launcher)
    launcher.start()
    assert launcher.job_id == "77"
    described = launcher.to_dict()
    assert described["n"] == 3 and described["detail_command"] == ["qstat", "-j", "{job_id}"]
    wait_until(launcher.pending, 10, what="PENDING while tasks wait")
    assert launcher.status_text() == "PENDING"
    scheduler.say("qstat", SGE_QSTAT.format(a="r ", b="t "))
    wait_until(lambda: launcher.status_text() == "RUNNING", 10, what="RUNNING")
    for task in (1, 2):
        (tmp_path / f"{ID}-77.{task}.out").write_text(f"engine {task} up\n")
    assert launcher.get_output() == (
        f"==> {ID}-77.1.out <==\nengine 1 up\n\n==> {ID}-77.2.out <==\nengine 2 up\n"
    )
    assert launcher.signal_command == []
    with pytest.raises(LauncherError, match="SGE cannot send a signal to a job"):
        launcher.signal(15)
    scheduler.say("qstat", SGE_QSTAT.format(a="r ", b="Eqw"))
    scheduler.say(
        "qstat+-j",
        "job_number:                 77\n"
        "error reason    1:          12/03/2026 08:50:03 [0:1234]: error: can't chdir to "
        "/home/x: No such file or directory\n",
    )
    scheduler.say("qacct", err="error: job id 77 not found\n", rc=1)
    assert launcher.wait_for_stop(10)
    assert launcher.status_text() == (
        "FAILED: error state Eqw: 12/03/2026 08:50:03 [0:1234]: error: can't chdir to "
        "/home/x: No such file or directory"
    )
    scheduler.say("qdel", "root has registered the job 77 for deletion\n")
    launcher.stop()  # a job in error state still sits in the queue: it is deleted
    assert scheduler.calls("qdel")[-1]["argv"] == ["77"]

    launcher.job_id = "77"
    scheduler.say("qstat", SGE_QSTAT.format(a="r ", b="qw").replace(" 77 ", " 78 "))
    scheduler.say("qacct", SGE_QACCT.format(code=0))
    assert launcher.job_state() == JobState("COMPLETED", "", 0)
    scheduler.say("qacct", SGE_QACCT.format(code=137))
    assert launcher.job_state().describe() == "FAILED: exit code 137"


PBS_QSTAT = """\
Job Id: 123[].pbsserver
    Job_Name = ipar-engineset
    Job_Owner = root@login1
    job_state = {state}
    queue = workq
    server = pbsserver
    {extra}
"""


def test_pbs_job_through_its_states_and_history(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("qsub", "123[].pbsserver\n")
    scheduler.say(
        "qstat",
        PBS_QSTAT.format(
            state="Q", extra="comment = Not Running: Insufficient amount of resource: ncpus"
        ),
    )
    launcher = make(batch.PBSEngineSetLauncher, tmp_path, timelimit="00:10:00")
    launchers.append(launcher)
    launcher.start()
    assert launcher.job_id == "123[]"
    wait_until(launcher.pending, 10, what="PENDING")
    assert launcher.status_text() == (
        "PENDING (Not Running: Insufficient amount of resource: ncpus)"
    )
    assert scheduler.calls("qstat")[0]["argv"] == ["-f", "123[]"]
    scheduler.say("qstat", PBS_QSTAT.format(state="B", extra=""))
    wait_until(lambda: launcher.status_text() == "RUNNING", 10, what="RUNNING")
    launcher.signal("TERM")
    assert scheduler.calls("qsig")[-1]["argv"] == ["-s", "TERM", "123[]"]
    for task in (1, 2, 3):
        (tmp_path / f"{ID}.out-{task}").write_text(f"task {task}\n")
    assert launcher.get_output().count("==> ") == 3
    scheduler.say(
        "qstat",
        err="qstat: 123[].pbsserver Job has finished, use -x or -H to obtain historical job "
        "information\n",
        rc=35,
    )
    scheduler.say("qstat+-x", PBS_QSTAT.format(state="F", extra="exit_status = 0"))
    assert launcher.wait_for_stop(10)
    assert launcher.status_text() == "COMPLETED"
    assert launcher.stop_data is not None and launcher.stop_data["exit_code"] == 0
    scheduler.say("qstat+-x", PBS_QSTAT.format(state="F", extra="exit_status = 271"))
    assert launcher.job_state().describe() == "FAILED: exit code 271"
    scheduler.say("qdel", err="qdel: Job has finished 123[].pbsserver\n", rc=35)
    launcher.stop()  # already finished: no error
    assert scheduler.calls("qdel")[-1]["argv"] == ["123[]"]


def test_lsf_job_array_through_its_states(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("bsub", "Job <5150> is submitted to default queue <normal>.\n")
    scheduler.say("bjobs", "PEND|-|New job is waiting for scheduling\n" * 3)
    launcher = make(batch.LSFEngineSetLauncher, tmp_path, timelimit="60")
    launchers.append(launcher)
    launcher.start()
    submitted = scheduler.calls("bsub")[0]
    assert submitted["argv"] == [] and submitted["stdin"] == launcher.job_script()
    assert launcher.job_id == "5150"
    wait_until(launcher.pending, 10, what="PENDING")
    assert launcher.status_text() == "PENDING (New job is waiting for scheduling)"
    assert scheduler.calls("bjobs")[0]["argv"] == [
        "-noheader",
        "-o",
        "stat exit_code pend_reason delimiter='|'",
        "5150",
    ]
    scheduler.say("bjobs", "RUN|-|\nRUN|-|\nUSUSP|-|\n")
    wait_until(lambda: launcher.status_text() == "RUNNING", 10, what="RUNNING")
    launcher.signal(10)
    assert scheduler.calls("bkill")[-1]["argv"] == ["-s", "USR1", "5150"]
    scheduler.say("bjobs", "DONE|-|\nEXIT|2|\nDONE|-|\n")
    assert launcher.wait_for_stop(10)
    assert launcher.status_text() == "FAILED: exit code 2"
    scheduler.say("bkill", err="Job <5150>: Job has already finished\n", rc=255)
    launcher.stop()
    assert scheduler.calls("bkill")[-1]["argv"] == ["5150"]
    scheduler.say("bjobs", err="Job <5150> is not found\n", rc=255)
    assert launcher.job_state().describe() == "ended (LSF no longer lists job 5150)"


def test_htcondor_cluster_through_its_states(
    tmp_path: Path, scheduler: Scheduler, launchers: list[Any]
) -> None:
    scheduler.say("condor_submit", "Submitting job(s)...\n3 job(s) submitted to cluster 42.\n")
    scheduler.say("condor_q", "1 undefined\n1 undefined\n1 undefined\n")
    launcher = make(batch.HTCondorEngineSetLauncher, tmp_path)
    launchers.append(launcher)
    launcher.start()
    executable = tmp_path / f"{ID}.sh"
    assert stat.S_IMODE(executable.stat().st_mode) == 0o700
    assert executable.read_text() == launcher.wrapper_script()
    assert [c["argv"] for c in scheduler.calls("condor_submit")] == [[f"{tmp_path}/{ID}.condor"]]
    assert launcher.job_id == "42"
    wait_until(launcher.pending, 10, what="PENDING (Idle)")
    assert scheduler.calls("condor_q")[0]["argv"] == ["42", "-af", "JobStatus", "HoldReason"]
    scheduler.say("condor_q", "2 undefined\n2 undefined\n2 undefined\n")
    wait_until(lambda: launcher.status_text() == "RUNNING", 10, what="RUNNING")
    with pytest.raises(LauncherError, match="HTCondor cannot send a signal to a job"):
        launcher.signal(2)
    scheduler.say(
        "condor_q",
        "5 Error from slot1@node1: Failed to execute '/w/x.sh': (errno=8: 'Exec format error')\n"
        "2 undefined\n2 undefined\n",
    )
    scheduler.say("condor_history", "")
    assert launcher.wait_for_stop(10)
    assert launcher.status_text() == (
        "FAILED: held: Error from slot1@node1: Failed to execute '/w/x.sh': (errno=8: "
        "'Exec format error')"
    )
    scheduler.say("condor_rm", "All jobs in cluster 42 have been marked for removal\n")
    launcher.stop()
    assert scheduler.calls("condor_rm")[-1]["argv"] == ["42"]
    scheduler.say("condor_q", "")
    scheduler.say("condor_history", "4 0 undefined\n4 0 undefined\n4 0 undefined\n")
    assert launcher.job_state() == JobState("COMPLETED", "", 0)
    scheduler.say("condor_history", "3 undefined via condor_rm (by user root)\n")
    assert launcher.job_state().describe() == "CANCELLED (via condor_rm (by user root))"


def test_found_by_name_and_under_ipyparallels_module() -> None:
    from ipar_widgets.cluster import launcher

    for name in ("slurm", "sge", "pbs", "lsf", "htcondor"):
        engines = launcher.find_launcher_class(name, "EngineSet")
        controller = launcher.find_launcher_class(name, "Controller")
        assert issubclass(engines, batch.BatchEngineSetLauncher)
        assert issubclass(controller, batch.BatchControllerLauncher)
    assert launcher.SGEEngineSetLauncher is batch.SGEEngineSetLauncher
    assert (
        launcher.find_launcher_class(
            "ipyparallel.cluster.launcher.PBSEngineSetLauncher", "EngineSet"
        )
        is batch.PBSEngineSetLauncher
    )
    assert batch.SlurmEngineSetLauncher(n=2).needs_routable_address()
    assert not batch.SlurmEngineSetLauncher(engines_on_this_host=True).needs_routable_address()


def test_ipar_start_dry_run_prints_the_job_script_and_the_walltime_warning(profile: str) -> None:
    shown = ipar(
        "start", "--dry-run", "--engines", "slurm", "--ip", "*", "-n", "4", "--profile", profile
    )
    assert shown.stdout.startswith("#!/bin/bash\n#SBATCH --job-name=ipar-engineset-")
    assert "#SBATCH --ntasks=4\n" in shown.stdout
    assert "export IPP_CONNECTION_INFO='<the controller'" in shown.stdout
    assert "no time limit set (c.SlurmEngineSetLauncher.timelimit)" in shown.stderr
    assert not paths.cluster_file(paths.profile_dir(profile)).exists()  # nothing started
    refused = ipar("start", "--dry-run", "--engines", "slurm", "--profile", profile, check=False)
    assert refused.returncode == 1
    assert "cannot reach a controller listening on the loopback address" in refused.stderr


def test_cluster_job_script_shows_what_start_engines_would_submit(profile: str) -> None:
    import ipar_widgets as ipp

    config = Config()
    config.SlurmEngineSetLauncher.timelimit = "1:00:00"
    config.SlurmEngineSetLauncher.account = "proj"
    cluster = ipp.Cluster(
        n=64, engines="slurm", controller_ip="*", profile=profile, cluster_id="", config=config
    )
    script = cluster.job_script(16, queue="short")  # as start_engines_sync(16, queue=...)
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=ipar-engineset-")
    for line in ("--ntasks=16", "--partition=short", "--account=proj", "--time=1:00:00"):
        assert f"#SBATCH {line}\n" in script
    assert "export IPP_CONNECTION_INFO='<the controller" in script  # not running: unknown
    assert "#SBATCH --ntasks=64\n" in cluster.job_script()  # default: the cluster's n
    assert not paths.cluster_file(paths.profile_dir(profile)).exists()  # nothing started
    local = ipp.Cluster(n=2, profile=profile, cluster_id="")
    with pytest.raises(ValueError, match="local engines are started by the controller"):
        local.job_script()
