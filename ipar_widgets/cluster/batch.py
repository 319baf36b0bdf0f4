"""Launchers for batch schedulers: Slurm, SGE (Grid Engine), PBS/Torque, LSF and HTCondor.

ipyparallel's class and trait names (``c.SlurmEngineSetLauncher.timelimit``,
``c.PBSEngineSetLauncher.queue``, ``batch_template``...), with what its launchers lack: the
job's state is polled ("PENDING (Resources)", "FAILED: ..."), the connection info is exported
inside the script, a ``prologue`` runs first, and a missing time limit is announced.

How ``n`` engines become one job: Slurm runs one job of ``n`` tasks started by ``srun``
(``srun --mpi=pmix`` and engine id = rank when ``mpi`` is on); SGE and PBS a job array ``-t
1-n``; LSF a job array ``-J name[1-n]``; HTCondor ``queue n``.  Controllers are one task.
Each class says its scheduler's syntax and how to read its commands' output; everything else
is in ``batchbase.py``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Bool, Integer, List, Unicode

from .batchbase import (
    BatchControllerLauncher,
    BatchEngineSetLauncher,
    BatchSystemLauncher,
    Directive,
    JobState,
    _write_private,
    combine_states,
)

__all__ = [
    "BatchControllerLauncher",
    "BatchEngineSetLauncher",
    "BatchSystemLauncher",
    "HTCondorControllerLauncher",
    "HTCondorEngineSetLauncher",
    "HTCondorLauncher",
    "JobState",
    "LSFControllerLauncher",
    "LSFEngineSetLauncher",
    "LSFLauncher",
    "PBSControllerLauncher",
    "PBSEngineSetLauncher",
    "PBSLauncher",
    "SGEControllerLauncher",
    "SGEEngineSetLauncher",
    "SGELauncher",
    "SlurmControllerLauncher",
    "SlurmEngineSetLauncher",
    "SlurmLauncher",
]


def _command(default: list[str], what: str) -> Any:
    return List(Unicode(), default, help=what).tag(config=True)


def _exit_code(text: str | None) -> int | None:
    return int(text) if text is not None and re.fullmatch(r"-?\d+", text.strip()) else None


# -- Slurm ----------------------------------------------------------------------------------------
#: Slurm's job states in our vocabulary (``squeue -o %T`` / ``scontrol``'s JobState)
_SLURM_STATES = {
    **dict.fromkeys(
        ["PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"], "PENDING"
    ),
    **dict.fromkeys(["RESV_DEL_HOLD"], "PENDING"),
    **dict.fromkeys(["RUNNING", "SUSPENDED", "STOPPED", "SIGNALING", "RESIZING"], "RUNNING"),
    **dict.fromkeys(["COMPLETING", "STAGE_OUT"], "COMPLETING"),
    "COMPLETED": "COMPLETED",
    **dict.fromkeys(["CANCELLED", "REVOKED"], "CANCELLED"),
    **dict.fromkeys(["TIMEOUT", "DEADLINE"], "TIMEOUT"),
    **dict.fromkeys(
        ["FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "SPECIAL_EXIT"], "FAILED"
    ),
}


def _slurm_state(native: str, reason: str, exit_code: int | None = None) -> JobState:
    native = native.split()[0].rstrip("+") if native.split() else native  # "CANCELLED by 0"
    reason = "" if reason in ("None", "(null)") else reason
    state = _SLURM_STATES.get(native, "UNKNOWN")
    if state == "UNKNOWN":
        reason = f"Slurm state {native}" + (f", {reason}" if reason else "")
    elif state == "FAILED" and native != "FAILED":
        reason = native + (f", {reason}" if reason else "")
    return JobState(state, reason, exit_code)


class SlurmLauncher(BatchSystemLauncher):
    """A job submitted with ``sbatch``, watched with ``squeue`` and ``scontrol``."""

    submit_command = _command(["sbatch"], "The command that submits the job script.")
    delete_command = _command(["scancel"], "The command that cancels the job (id appended).")
    signal_command = _command(["scancel", "-s"], "The command that signals the job.")
    state_command = _command(
        ["squeue", "-h", "-o", "%T %r", "-j", "{job_id}"],
        "The command that prints the job's state and reason while Slurm lists it.",
    )
    history_command = _command(
        ["scontrol", "show", "job", "{job_id}"],
        "The command that describes a finished job (kept for MinJobAge, 300 s by default).",
    )
    gone_regexp = Unicode(
        r"(?i)invalid job id|already completing or completed",
        help="What Slurm says of a job it no longer knows.",
    ).tag(config=True)
    account = Unicode("", help="Slurm account the job is charged to (--account).").tag(config=True)
    qos = Unicode("", help="Slurm quality of service of the job (--qos).").tag(config=True)
    options = Unicode(
        "", help="Extra sbatch options, put on one '#SBATCH' line (e.g. '--mem=4G --exclusive')."
    ).tag(config=True)

    scheduler: ClassVar[str] = "Slurm"
    queue_word: ClassVar[str] = "partition"
    script_suffix: ClassVar[str] = ".sbatch"
    job_id_placeholders: ClassVar[tuple[str, ...]] = ("%j", "%A")
    other_placeholders: ClassVar[str] = r"%\w"
    output_directive: ClassVar[str] = r"^#SBATCH\s+(?:--output=|--output\s+|-o\s*)(\S+)"
    timelimit_directive: ClassVar[str] = r"^#SBATCH\s+(?:--time\b|-t\b)"

    def default_output_name(self) -> str:
        return f"{self._base_name()}-%j.out"

    def directives(self, output_file: str) -> list[Directive]:
        found = [
            Directive(f"#SBATCH --job-name={self._job_name()}", r"^#SBATCH\s+(?:--job-name|-J)\b"),
            Directive(f"#SBATCH --ntasks={self.task_count()}", r"^#SBATCH\s+(?:--ntasks|-n)\b"),
            Directive(f"#SBATCH --output={output_file}", r"^#SBATCH\s+(?:--output|-o)\b"),
        ]
        if self.queue:
            found.append(
                Directive(f"#SBATCH --partition={self.queue}", r"^#SBATCH\s+(?:--partition|-p)\b")
            )
        if self.account:
            found.append(
                Directive(f"#SBATCH --account={self.account}", r"^#SBATCH\s+(?:--account|-A)\b")
            )
        if self.qos:
            found.append(Directive(f"#SBATCH --qos={self.qos}", r"^#SBATCH\s+(?:--qos|-q)\b"))
        if str(self.timelimit):
            found.append(Directive(f"#SBATCH --time={self.timelimit}", self.timelimit_directive))
        if self.options:
            found.append(
                Directive(f"#SBATCH {self.options}", rf"^#SBATCH\s+{re.escape(self.options)}$")
            )
        return found

    def template_namespace(self, output_file: str) -> dict[str, Any]:
        return {
            **super().template_namespace(output_file),
            "account": self.account,
            "qos": self.qos,
            "options": self.options,
        }

    def parse_state(self, output: str) -> JobState | None:
        states = []
        for line in output.splitlines():
            if line.strip():
                native, _, reason = line.strip().partition(" ")
                states.append(_slurm_state(native, reason.strip()))
        return combine_states(states)

    def parse_history(self, output: str) -> JobState | None:
        states = []
        for record in re.split(r"\n\s*\n", output):
            native = re.search(r"\bJobState=(\S+)", record)
            if native is None:
                continue
            reason = re.search(r"\bReason=(\S+)", record)
            code = re.search(r"\bExitCode=(\d+):(\d+)", record)
            exit_code = None
            if code:
                status, sig = int(code.group(1)), int(code.group(2))
                exit_code = status if status or not sig else 128 + sig
            states.append(
                _slurm_state(native.group(1), reason.group(1) if reason else "", exit_code)
            )
        return combine_states(states)


class SlurmEngineSetLauncher(SlurmLauncher, BatchEngineSetLauncher):
    """``n`` engines as the ``n`` tasks of one Slurm job, started by ``srun``."""

    mpi = Bool(
        False,
        help="Start the engines with 'srun --mpi=pmix' and make each engine's id its rank (as "
        "mpiexec does); on by itself when engine_args has --mpi.",
    ).tag(config=True)
    srun_cmd = List(Unicode(), ["srun"], help="The command that starts the job's tasks.").tag(
        config=True
    )
    srun_args = List(Unicode(), help="Extra srun arguments (e.g. ['--cpu-bind=cores']).").tag(
        config=True
    )

    def uses_mpi(self) -> bool:
        return bool(self.mpi) or "--mpi" in self.engine_args

    def command(self) -> list[str]:
        flags = [f for f in ("--rank-as-id", "--mpi") if f not in self.engine_args]
        return [*self.engine_cmd, *(flags if self.uses_mpi() else []), *self.engine_args]

    def program_line(self) -> str:
        srun = [*self.srun_cmd, *(["--mpi=pmix"] if self.uses_mpi() else []), *self.srun_args]
        return shlex.join([*srun, *self.command()])


class SlurmControllerLauncher(SlurmLauncher, BatchControllerLauncher):
    """The controller as a one-task Slurm job."""


# -- SGE ------------------------------------------------------------------------------------------
def _sge_state(code: str) -> JobState:
    """An SGE state code (qw, hqw, r, t, Eqw, dr, s...) in our vocabulary."""
    if "E" in code:
        return JobState("FAILED", f"error state {code}")
    if "d" in code:
        return JobState("COMPLETING", "being deleted")
    if "q" in code:
        return JobState("PENDING", "on hold" if "h" in code else "")
    if any(c in code for c in "sST"):
        return JobState("RUNNING", "suspended")
    if any(c in code for c in "rtR"):
        return JobState("RUNNING")
    return JobState("UNKNOWN", f"SGE state {code}")


class SGELauncher(BatchSystemLauncher):
    """A job submitted with ``qsub`` to (Son of / Univa / Open) Grid Engine, watched with
    ``qstat`` and ``qacct``."""

    submit_command = _command(["qsub"], "The command that submits the job script.")
    delete_command = _command(["qdel"], "The command that deletes the job (id appended).")
    signal_command = _command(
        [], "The command that signals the job (SGE has none: qdel ends a job, qmod suspends it)."
    )
    state_command = _command(
        ["qstat"], "The command that lists the user's queued and running jobs and their states."
    )
    history_command = _command(
        ["qacct", "-j", "{job_id}"],
        "The command that prints a finished job's accounting (exit_status, failed).",
    )
    detail_command = _command(
        ["qstat", "-j", "{job_id}"], "The command that says why a job is in error state (Eqw)."
    )
    gone_regexp = Unicode(
        r"(?i)does not exist|not found|do not exist"
        # qacct before the cell's first job ended: no accounting file yet
        r"|accounting: no such file|no jobs running since startup",
        help="What SGE says of a job it no longer knows.",
    ).tag(config=True)

    scheduler: ClassVar[str] = "SGE"
    job_id_placeholders: ClassVar[tuple[str, ...]] = ("$JOB_ID",)
    other_placeholders: ClassVar[str] = r"\$\w+"
    output_directive: ClassVar[str] = r"^#\$\s+-o\s+(\S+)"
    timelimit_directive: ClassVar[str] = r"^#\$\s+-l\s+.*\bh_rt="
    extra_fields: ClassVar[tuple[str, ...]] = ("detail_command",)

    def default_output_name(self) -> str:
        task = ".$TASK_ID" if self.is_engine_set else ""
        return f"{self._base_name()}-$JOB_ID{task}.out"

    def directives(self, output_file: str) -> list[Directive]:
        found = [
            Directive("#$ -S /bin/bash", r"^#\$\s+-S\b"),  # else the queue's shell (often sh)
            Directive(f"#$ -N {self._job_name()}", r"^#\$\s+-N\b"),
        ]
        if self.is_engine_set:
            found.append(Directive(f"#$ -t 1-{self.task_count()}", r"^#\$\s+-t\b"))
        found += [
            Directive(f"#$ -o {output_file}", r"^#\$\s+-o\b"),
            Directive("#$ -j y", r"^#\$\s+-j\b"),
        ]
        if self.queue:
            found.append(Directive(f"#$ -q {self.queue}", r"^#\$\s+-q\b"))
        if str(self.timelimit):
            found.append(Directive(f"#$ -l h_rt={self.timelimit}", self.timelimit_directive))
        return found

    def parse_state(self, output: str) -> JobState | None:
        # job-ID prior name user state submit/start-at queue slots ja-task-ID: one line per
        # running task, one for the tasks still waiting
        states = []
        for line in output.splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[0] == self.job_id:
                states.append(_sge_state(fields[4]))
        return combine_states(states)

    def explain(self, current: JobState) -> JobState:
        if not (current.state == "FAILED" and current.reason.startswith("error state")):
            return current
        try:
            result = self._run(
                self._expand(self.detail_command, self.job_id, append=False),
                self.command_timeout,
            )
        except Exception:
            return current
        why = re.search(r"^error reason\s+[\d,\s]*:\s*(.+)$", result.stdout, re.MULTILINE)
        if why is None:
            return current
        return JobState("FAILED", f"{current.reason}: {why.group(1).strip()}", current.exit_code)

    def parse_history(self, output: str) -> JobState | None:
        codes = [int(c) for c in re.findall(r"^exit_status\s+(-?\d+)", output, re.MULTILINE)]
        if not codes:
            return None
        failed = [
            f.strip()
            for f in re.findall(r"^failed\s+(.+)$", output, re.MULTILINE)
            if f.strip() != "0"
        ]
        worst = max(codes, key=abs)
        if failed:
            return JobState("FAILED", f"failed {failed[0]}", worst)
        if worst:
            return JobState("FAILED", "", worst)
        return JobState("COMPLETED", "", 0)


class SGEEngineSetLauncher(SGELauncher, BatchEngineSetLauncher):
    """``n`` engines as the tasks of an SGE job array (``-t 1-n``)."""


class SGEControllerLauncher(SGELauncher, BatchControllerLauncher):
    """The controller as an SGE job."""


# -- PBS ------------------------------------------------------------------------------------------
#: PBS / Torque job_state letters that are not finished
_PBS_STATES = {
    "Q": JobState("PENDING"),
    "H": JobState("PENDING", "held"),
    "W": JobState("PENDING", "waiting for its start time"),
    "T": JobState("PENDING", "being moved"),
    "M": JobState("PENDING", "moved to another server"),
    "R": JobState("RUNNING"),
    "B": JobState("RUNNING"),
    "S": JobState("RUNNING", "suspended"),
    "U": JobState("RUNNING", "suspended"),
    "E": JobState("COMPLETING"),
}


class PBSLauncher(BatchSystemLauncher):
    """A job submitted with ``qsub`` to PBS Pro, OpenPBS or Torque, watched with ``qstat -f``
    (and ``qstat -x -f`` for finished jobs, PBS Pro)."""

    submit_command = _command(["qsub"], "The command that submits the job script.")
    delete_command = _command(["qdel"], "The command that deletes the job (id appended).")
    signal_command = _command(["qsig", "-s"], "The command that signals the job.")
    state_command = _command(
        ["qstat", "-f", "{job_id}"], "The command that describes a queued or running job."
    )
    history_command = _command(
        ["qstat", "-x", "-f", "{job_id}"], "The command that describes a finished job (PBS Pro)."
    )
    gone_regexp = Unicode(
        r"(?i)unknown job id|job has finished|does not exist",
        help="What PBS says of a job it no longer lists.",
    ).tag(config=True)
    job_id_regexp = Unicode(
        r"\d+(?:\[\])?",
        help="Regular expression that finds the job id in qsub's output ('123' of "
        "'123.server', '123[]' of an array '123[].server').",
    ).tag(config=True)
    job_array_directive = Unicode(
        "#PBS -t 1-{n}",
        help="The directive that makes n array tasks (Torque; PBS Pro / OpenPBS: '#PBS -J 1-{n}').",
    ).tag(config=True)

    scheduler: ClassVar[str] = "PBS"
    #: PBS job names are at most 15 characters on Torque
    max_job_name: ClassVar[int] = 15
    output_directive: ClassVar[str] = r"^#PBS\s+-o\s+(\S+)"
    timelimit_directive: ClassVar[str] = r"^#PBS\s+-l\s+.*\bwalltime="

    def _task_suffix_glob(self, escaped: str) -> str:
        return escaped + "*"  # array tasks write 'name-1' (Torque) or 'name.1' (PBS Pro)

    def directives(self, output_file: str) -> list[Directive]:
        found = [
            Directive(
                f"#PBS -N {self._job_name()[: self.max_job_name].rstrip('-_.')}", r"^#PBS\s+-N\b"
            )
        ]
        if self.is_engine_set:
            line = self.job_array_directive.format(n=self.task_count())
            found.append(Directive(line, r"^#PBS\s+-[tJ]\b"))
        found += [
            Directive("#PBS -j oe", r"^#PBS\s+-j\b"),
            Directive(f"#PBS -o {output_file}", r"^#PBS\s+-o\b"),
        ]
        if self.queue:
            found.append(Directive(f"#PBS -q {self.queue}", r"^#PBS\s+-q\b"))
        if str(self.timelimit):
            found.append(Directive(f"#PBS -l walltime={self.timelimit}", self.timelimit_directive))
        return found

    def parse_state(self, output: str) -> JobState | None:
        states = []
        for record in re.split(r"^Job Id:", output, flags=re.MULTILINE)[1:]:
            native = re.search(r"^\s*job_state\s*=\s*(\S+)", record, re.MULTILINE)
            if native is None:
                continue
            comment = re.search(r"^\s*comment\s*=\s*(.+)$", record, re.MULTILINE)
            reason = comment.group(1).strip() if comment else ""
            code = re.search(r"^\s*exit_status\s*=\s*(-?\d+)", record, re.MULTILINE)
            exit_code = int(code.group(1)) if code else None
            letter = native.group(1)
            if letter in _PBS_STATES:
                known = _PBS_STATES[letter]
                states.append(JobState(known.state, reason or known.reason))
            elif letter in ("F", "C", "X"):
                if exit_code is None:
                    states.append(
                        JobState("UNKNOWN", "finished without an exit status", None, True)
                    )
                elif exit_code == 0:
                    states.append(JobState("COMPLETED", "", 0))
                else:
                    states.append(JobState("FAILED", reason, exit_code))
            else:
                states.append(JobState("UNKNOWN", f"PBS state {letter}"))
        return combine_states(states)

    def parse_history(self, output: str) -> JobState | None:
        return self.parse_state(output)


class PBSEngineSetLauncher(PBSLauncher, BatchEngineSetLauncher):
    """``n`` engines as the tasks of a PBS job array."""


class PBSControllerLauncher(PBSLauncher, BatchControllerLauncher):
    """The controller as a PBS job."""


# -- LSF ------------------------------------------------------------------------------------------
_LSF_STATES = {
    "PEND": "PENDING",
    "PSUSP": "PENDING",
    "WAIT": "PENDING",
    "PROV": "PENDING",
    "RUN": "RUNNING",
    "USUSP": "RUNNING",
    "SSUSP": "RUNNING",
    "ZOMBI": "COMPLETING",
    "DONE": "COMPLETED",
    "EXIT": "FAILED",
}


class LSFLauncher(BatchSystemLauncher):
    """A job submitted with ``bsub < script`` to IBM Spectrum LSF, watched with ``bjobs``."""

    submit_command = _command(["bsub"], "The command that submits the job script (on stdin).")
    delete_command = _command(["bkill"], "The command that kills the job (id appended).")
    signal_command = _command(["bkill", "-s"], "The command that signals the job.")
    state_command = _command(
        ["bjobs", "-noheader", "-o", "stat exit_code pend_reason delimiter='|'", "{job_id}"],
        "The command that prints each array element's state, exit code and pending reason.",
    )
    history_command = _command([], "The command that describes a finished job (none).")
    gone_regexp = Unicode(
        r"(?i)is not found|already finished|no matching job",
        help="What LSF says of a job it no longer knows.",
    ).tag(config=True)
    job_id_regexp = Unicode(
        r"Job <(\d+)>", help="Regular expression that finds the job id in bsub's output."
    ).tag(config=True)
    job_id_regexp_group = Integer(1, help="The group of job_id_regexp that is the job id.").tag(
        config=True
    )

    scheduler: ClassVar[str] = "LSF"
    submit_via_stdin: ClassVar[bool] = True  # bsub reads #BSUB lines only from stdin
    job_id_placeholders: ClassVar[tuple[str, ...]] = ("%J",)
    other_placeholders: ClassVar[str] = r"%\w"
    output_directive: ClassVar[str] = r"^#BSUB\s+-oo?\s+(\S+)"
    timelimit_directive: ClassVar[str] = r"^#BSUB\s+-W\b"

    def default_output_name(self) -> str:
        task = ".%I" if self.is_engine_set else ""
        return f"{self._base_name()}-%J{task}.out"

    def directives(self, output_file: str) -> list[Directive]:
        array = f"[1-{self.task_count()}]" if self.is_engine_set else ""
        found = [
            Directive(f"#BSUB -J {self._job_name()}{array}", r"^#BSUB\s+-J\b"),
            Directive(f"#BSUB -o {output_file}", r"^#BSUB\s+-oo?\b"),
        ]
        if self.queue:
            found.append(Directive(f"#BSUB -q {self.queue}", r"^#BSUB\s+-q\b"))
        if str(self.timelimit):
            found.append(Directive(f"#BSUB -W {self.timelimit}", self.timelimit_directive))
        return found

    def parse_state(self, output: str) -> JobState | None:
        states = []
        for line in output.splitlines():
            if not line.strip():
                continue
            parts = line.split("|") if "|" in line else line.split(None, 2)
            native = parts[0].strip()
            code = _exit_code(parts[1]) if len(parts) > 1 else None
            reason = parts[2].strip() if len(parts) > 2 and parts[2].strip() != "-" else ""
            state = _LSF_STATES.get(native, "UNKNOWN")
            if state == "PENDING" and native == "PSUSP":
                reason = reason or "suspended while pending"
            elif state == "RUNNING" and native != "RUN":
                reason = "suspended"
            elif state == "UNKNOWN":
                reason = f"LSF state {native}"
            elif state == "COMPLETED":
                code = 0 if code is None else code
            elif state == "FAILED":
                reason = ""
            states.append(JobState(state, reason if state != "COMPLETED" else "", code))
        return combine_states(states)


class LSFEngineSetLauncher(LSFLauncher, BatchEngineSetLauncher):
    """``n`` engines as the elements of an LSF job array (``-J name[1-n]``)."""


class LSFControllerLauncher(LSFLauncher, BatchControllerLauncher):
    """The controller as an LSF job."""


# -- HTCondor -------------------------------------------------------------------------------------
#: HTCondor's JobStatus numbers
_CONDOR_STATES = {
    "1": "PENDING",  # Idle
    "2": "RUNNING",
    "3": "CANCELLED",  # Removed
    "4": "COMPLETED",
    "5": "FAILED",  # Held: it will not run until someone releases it
    "6": "COMPLETING",  # Transferring output
    "7": "RUNNING",  # Suspended
}


def _condor_text(value: str) -> str:
    return "" if value.strip() in ("undefined", "") else value.strip()


class HTCondorLauncher(BatchSystemLauncher):
    """A job submitted with ``condor_submit``, watched with ``condor_q`` and
    ``condor_history``.

    HTCondor's submit description is not a shell script, so the launcher writes two files:
    the description (``job_script()``), and the job's executable, a shell script with the
    exports, the prologue and the program (``wrapper_script()``).  HTCondor copies the
    executable to the execute node, so no shared filesystem is needed for the connection
    info; HTCondor has no queues and no time-limit directive, so ``queue`` and ``timelimit``
    are not used.
    """

    submit_command = _command(["condor_submit"], "The command that submits the description.")
    delete_command = _command(["condor_rm"], "The command that removes the job (id appended).")
    signal_command = _command([], "The command that signals the job (HTCondor has none).")
    state_command = _command(
        ["condor_q", "{job_id}", "-af", "JobStatus", "HoldReason"],
        "The command that prints each queued job's status number and hold reason.",
    )
    history_command = _command(
        ["condor_history", "{job_id}", "-af", "JobStatus", "ExitCode", "RemoveReason"],
        "The command that prints how each job of the cluster ended.",
    )
    gone_regexp = Unicode(
        r"(?i)not found|couldn't find", help="What HTCondor says of a job it no longer knows."
    ).tag(config=True)
    job_id_regexp = Unicode(
        r"submitted to cluster (\d+)\.",
        help="Regular expression that finds the cluster id in condor_submit's output.",
    ).tag(config=True)
    job_id_regexp_group = Integer(1, help="The group of job_id_regexp that is the job id.").tag(
        config=True
    )

    scheduler: ClassVar[str] = "HTCondor"
    script_suffix: ClassVar[str] = ".condor"
    job_id_placeholders: ClassVar[tuple[str, ...]] = ("$(Cluster)", "$(ClusterId)")
    other_placeholders: ClassVar[str] = r"\$\(\w+\)"
    output_directive: ClassVar[str] = r"(?i)^\s*output\s*=\s*(\S+)"

    @property
    def wrapper_file(self) -> Path:
        """The job's executable, beside the description."""
        return self.batch_file.with_suffix(".sh")

    def default_output_name(self) -> str:
        return f"{self._base_name()}-$(Cluster).$(Process).out"

    def default_template(self) -> str:
        return "universe = vanilla\n"

    def template_namespace(self, output_file: str) -> dict[str, Any]:
        return {**super().template_namespace(output_file), "executable": str(self.wrapper_file)}

    def directives(self, output_file: str) -> list[Directive]:
        return [
            Directive("universe = vanilla", r"(?i)^\s*universe\s*="),
            Directive(f"executable = {self.wrapper_file}", r"(?i)^\s*executable\s*="),
            Directive(f"output = {output_file}", r"(?i)^\s*output\s*="),
            Directive(f"error = {output_file}", r"(?i)^\s*error\s*="),
            Directive(f"batch_name = {self._job_name()}", r"(?i)^\s*(?:\+Job)?batch_?name\s*="),
        ]

    def wrapper_script(self) -> str:
        """The job's executable: the exports, the prologue and the program."""
        lines = ["#!/bin/bash", *self.export_lines()]
        if self.prologue:
            lines += self.prologue.rstrip("\n").splitlines()
        lines.append(self.program_line())
        return "\n".join(lines) + "\n"

    def job_script(self) -> str:
        """The submit description :meth:`start` submits; ``queue n`` stays last."""
        body, _template, output = self._render_parts()
        lines = body.strip("\n").splitlines()
        queue_at = next(
            (i for i, line in enumerate(lines) if re.match(r"(?i)\s*queue\b", line)), None
        )
        if queue_at is None:
            lines.append(f"queue {self.task_count()}")
            queue_at = len(lines) - 1
        inserts = [d.line for d in self.directives(output) if not d.found_in(body)]
        lines[queue_at:queue_at] = [*inserts, *self.extra_directives]
        if re.search(r"(?i)^\s*executable\s*=", body) and str(self.wrapper_file) not in body:
            self.log.warning(
                "%s: the batch template has its own executable, so the job does not get the "
                "connection info (%s); use executable = {executable}",
                type(self).__name__,
                ", ".join(sorted(self.environment)) or "no variables",
            )
        return "\n".join(lines) + "\n"

    def preview(self) -> str:
        return (
            f"{self.job_script()}\n# {self.wrapper_file} (the job's executable):\n"
            f"{self.wrapper_script()}"
        )

    def write_batch_script(self) -> Path:
        self.wrapper_file.parent.mkdir(parents=True, exist_ok=True)
        _write_private(self.wrapper_file, self.wrapper_script())
        return super().write_batch_script()

    def parse_state(self, output: str) -> JobState | None:
        states = []
        for line in output.splitlines():
            if not line.strip():
                continue
            status, _, hold = line.strip().partition(" ")
            state = _CONDOR_STATES.get(status, "UNKNOWN")
            if state == "FAILED":
                states.append(JobState("FAILED", f"held: {_condor_text(hold) or 'no reason'}"))
            elif state == "UNKNOWN":
                states.append(JobState("UNKNOWN", f"HTCondor JobStatus {status}"))
            elif state == "RUNNING" and status == "7":
                states.append(JobState("RUNNING", "suspended"))
            else:
                states.append(JobState(state, "", 0 if state == "COMPLETED" else None))
        return combine_states(states)

    def parse_history(self, output: str) -> JobState | None:
        states = []
        for line in output.splitlines():
            parts = line.strip().split(None, 2)
            if not parts:
                continue
            code = _exit_code(parts[1]) if len(parts) > 1 else None
            removed = _condor_text(parts[2]) if len(parts) > 2 else ""
            if parts[0] == "4":
                states.append(JobState("COMPLETED" if not code else "FAILED", "", code))
            elif parts[0] == "3":
                states.append(JobState("CANCELLED", removed, code))
            else:
                states.append(JobState("UNKNOWN", f"HTCondor JobStatus {parts[0]}", code, True))
        return combine_states(states)


class HTCondorEngineSetLauncher(HTCondorLauncher, BatchEngineSetLauncher):
    """``n`` engines as ``queue n`` jobs of one HTCondor cluster."""


class HTCondorControllerLauncher(HTCondorLauncher, BatchControllerLauncher):
    """The controller as an HTCondor job."""
