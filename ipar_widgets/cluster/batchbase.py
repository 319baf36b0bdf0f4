"""What every batch-scheduler launcher shares: the job script, submitting it, watching the job.

ipyparallel's launchers submit a script and never look at the job again, so a job that waits
in the queue, fails at once or is killed at its walltime looks like "waiting for engines".
These launchers poll the scheduler (``state_command``, then ``history_command`` once the job
left the queue) and turn what it says into a :class:`JobState`, so waits and ``ipar list``
can say "PENDING (Resources)" or "FAILED: NonZeroExitCode" with the job's output.

The script is rendered from a template (the user's ``batch_template`` or the class's own),
and the generated directives (array size, queue, output file, time limit...) are added to it
only when the template does not already have them.  The launcher's ``environment``
(``IPP_CONNECTION_INFO``: how engines reach the controller) is written into the script as
``export`` lines, because SGE and HTCondor do not pass the submitting environment on, and the
connection info must not need a shared filesystem.  The scheduler-specific parts (directive
syntax, state parsing) live in ``batch.py``.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import signal as signals
import string
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Float, Integer, List, Unicode

from .launcher import (
    BaseLauncher,
    ControllerLauncher,
    EngineLauncher,
    LauncherError,
    ProcessStateError,
    parse_announcement,
)

__all__ = [
    "BatchControllerLauncher",
    "BatchEngineSetLauncher",
    "BatchSystemLauncher",
    "Directive",
    "JobState",
]

#: job states after which the job will not run again
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
JOB_STATES = frozenset({"PENDING", "RUNNING", "COMPLETING", "UNKNOWN"}) | FINAL_STATES

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class JobState:
    """What the scheduler says about a job, in one vocabulary for every scheduler.

    ``state`` is one of PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT,
    UNKNOWN; ``reason`` the scheduler's own explanation ("Resources", a hold reason...);
    ``gone`` means the scheduler has no record of the job any more (it ended, how is unknown).
    """

    state: str
    reason: str = ""
    exit_code: int | None = None
    gone: bool = False

    def __post_init__(self) -> None:
        if self.state not in JOB_STATES:
            raise ValueError(f"job state must be one of {sorted(JOB_STATES)}, not {self.state!r}")

    @property
    def finished(self) -> bool:
        """Whether the job will not run (again): a final state, or no record left."""
        return self.state in FINAL_STATES or self.gone

    def describe(self) -> str:
        """One line for users: "PENDING (Resources)", "RUNNING", "FAILED: reason"."""
        if self.state == "FAILED":
            code = f"exit code {self.exit_code}" if self.exit_code is not None else ""
            if self.reason and code:
                return f"FAILED: {self.reason} ({code})"
            return f"FAILED: {self.reason or code or 'no reason given'}"
        if self.state == "UNKNOWN" and self.gone:
            return f"ended ({self.reason})" if self.reason else "ended"
        if self.reason and self.state in ("PENDING", "UNKNOWN", "TIMEOUT", "CANCELLED"):
            return f"{self.state} ({self.reason})"
        return self.state

    def as_stop_data(self, job_id: str) -> dict[str, Any]:
        """What ``notify_stop`` gets (and ``to_dict`` records) for a job that ended."""
        code = self.exit_code
        if code is None and self.state == "COMPLETED":
            code = 0
        return {
            "exit_code": code,
            "job_id": job_id,
            "state": self.state,
            "reason": self.reason,
            "gone": self.gone,
        }

    @classmethod
    def from_stop_data(cls, data: dict[str, Any]) -> JobState | None:
        state = data.get("state")
        if state not in JOB_STATES:
            return None
        code = data.get("exit_code")
        return cls(
            str(state),
            str(data.get("reason") or ""),
            int(code) if isinstance(code, int) else None,
            bool(data.get("gone")),
        )


def combine_states(states: list[JobState]) -> JobState | None:
    """One state for the tasks of a job array.  A failed task wins (a task in an error or
    held state never runs without someone acting, so waiting for all engines is pointless);
    then pending while any task waits (so no registration timeout runs), running while any
    runs, else how the tasks ended.  None for no tasks (the job is not listed)."""
    if not states:
        return None
    for wanted in ("FAILED", "PENDING", "RUNNING", "COMPLETING", "UNKNOWN", "TIMEOUT", "CANCELLED"):
        found = [s for s in states if s.state == wanted]
        if found:
            return found[0]
    return states[0]


@dataclass(frozen=True)
class Directive:
    """A header line a launcher generates, and the pattern that finds one the user's template
    already has (the template's wins)."""

    line: str
    present: str

    def found_in(self, script: str) -> bool:
        return re.search(self.present, script, re.MULTILINE) is not None


def _format(template: str, namespace: dict[str, Any], where: str) -> str:
    try:
        return string.Formatter().vformat(template, (), namespace)
    except KeyError as exc:
        raise LauncherError(
            f"the batch template ({where}) uses {{{exc.args[0]}}}, which is not a template "
            f"variable; known: {', '.join(sorted(namespace))}. Write {{{{ and }}}} for a "
            "literal brace (e.g. ${{HOME}})"
        ) from None
    except (IndexError, ValueError) as exc:
        raise LauncherError(
            f"the batch template ({where}) is not a valid format string ({exc}); write {{{{ "
            "and }} for literal braces"
        ) from None


class BatchSystemLauncher(BaseLauncher):
    """Runs its command as a batch job: renders a script, submits it, polls the scheduler.

    Subclasses (``batch.py``) give the scheduler's commands, its directives and how to read
    its job states; ``BatchEngineSetLauncher`` / ``BatchControllerLauncher`` say what runs.
    """

    submit_command = List(Unicode(), help="The command that submits the job script.").tag(
        config=True
    )
    delete_command = List(
        Unicode(),
        help="The command that deletes the job; the job id is appended (or replaces '{job_id}').",
    ).tag(config=True)
    signal_command = List(
        Unicode(),
        help="The command that signals the job: the signal name (or '{signal}') and the job id "
        "(or '{job_id}') follow. Empty: this scheduler cannot signal jobs.",
    ).tag(config=True)
    state_command = List(
        Unicode(),
        help="The command that asks the scheduler for the job's state while it is queued or "
        "running; '{job_id}' is replaced by the job id.",
    ).tag(config=True)
    history_command = List(
        Unicode(),
        help="The command that asks how a job that left the queue ended (accounting); "
        "'{job_id}' is replaced by the job id. Empty: a job that left the queue is ended, "
        "how is unknown.",
    ).tag(config=True)
    gone_regexp = Unicode(
        "",
        help="Regular expression matching what the scheduler's commands say about a job they "
        "no longer know (it ended), so that is not taken for an error.",
    ).tag(config=True)
    job_id_regexp = Unicode(
        r"\d+", help="Regular expression that finds the job id in the submit command's output."
    ).tag(config=True)
    job_id_regexp_group = Integer(
        0, help="The group of job_id_regexp that is the job id (0: the whole match)."
    ).tag(config=True)
    batch_template = Unicode(
        "",
        help="The job script template (str.format: {n}, {queue}, {program}, {environment}, "
        "{prologue}, {job_name}, {output_file}, {profile_dir}, {cluster_id}...). Directives "
        "it lacks are added. Empty: the launcher's own template.",
    ).tag(config=True)
    batch_template_file = Unicode(
        "", help="A file holding the job script template (when batch_template is empty)."
    ).tag(config=True)
    batch_file_name = Unicode(
        "",
        help="File name of the rendered job script in work_dir (default: named after the "
        "launcher's identifier, so engine sets do not overwrite each other's scripts).",
    ).tag(config=True)
    queue = Unicode("", help="The queue (Slurm: partition) the job is submitted to.").tag(
        config=True
    )
    output_file = Unicode(
        "",
        help="Where the job's stdout and stderr go, as written in the script (scheduler "
        "placeholders such as %j allowed). Default: a file in work_dir named after the "
        "identifier and the job id.",
    ).tag(config=True)
    timelimit = AnyTrait(
        "",
        help="Wall-clock limit of the job in the scheduler's format (Slurm '1:00:00', SGE/PBS "
        "'01:00:00', LSF '60'). Empty: the queue's default, which is announced as a warning.",
    ).tag(config=True)
    job_name = Unicode("", help="Name of the job in the queue (default: the identifier).").tag(
        config=True
    )
    prologue = Unicode(
        "",
        help="Shell lines the job runs before the program, e.g. 'module load python' or "
        "'source ~/venv/bin/activate'.",
    ).tag(config=True)
    extra_directives = List(
        Unicode(),
        help="Lines added to the script's header as they are, e.g. ['#SBATCH --mem=4G'].",
    ).tag(config=True)
    namespace = Dict(help="Extra variables for the batch template (e.g. {'mem': '4G'}).").tag(
        config=True
    )
    poll_interval = Float(1.0, help="Seconds between questions to the scheduler.").tag(config=True)
    submit_timeout = Float(60.0, help="Seconds the submit command may take.").tag(config=True)
    command_timeout = Float(
        30.0, help="Seconds a state, delete or signal command may take before it counts as failed."
    ).tag(config=True)
    stop_timeout = Float(
        10.0, help="Seconds stop() waits for the scheduler to report the deleted job ended."
    ).tag(config=True)

    #: the scheduler's name in messages
    scheduler: ClassVar[str] = "batch"
    #: what the scheduler calls a queue, for the time-limit warning
    queue_word: ClassVar[str] = "queue"
    #: the job script's file-name extension
    script_suffix: ClassVar[str] = ".sh"
    #: the submit command reads the script on stdin (LSF's ``bsub < script``)
    submit_via_stdin: ClassVar[bool] = False
    #: placeholders of the output path that stand for the job id / for anything (a task)
    job_id_placeholders: ClassVar[tuple[str, ...]] = ()
    other_placeholders: ClassVar[str] = r"(?!)"
    #: the pattern that finds an output directive in a template (group 1: the path)
    output_directive: ClassVar[str] = r"(?!)"
    #: the pattern that finds a time-limit directive ('' : the scheduler has none)
    timelimit_directive: ClassVar[str] = ""
    #: whether the job is an array of ``n`` tasks (engine sets) or a single task
    is_engine_set: ClassVar[bool] = False

    serialize_fields: ClassVar[tuple[str, ...]] = (
        "state",
        "stop_data",
        "job_id",
        "output_file",
        "batch_file_name",
        "work_dir",
        "delete_command",
        "signal_command",
        "state_command",
        "history_command",
        "gone_regexp",
    )

    #: scheduler-specific attributes :meth:`to_dict` also writes (e.g. SGE's detail_command)
    extra_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each class's ``serialize_fields``: the shared ones, its scheduler's
        ``extra_fields``, and ``n`` for engine sets (whatever the order of the bases)."""
        super().__init_subclass__(**kwargs)
        fields = list(BatchSystemLauncher.serialize_fields)
        for klass in reversed(cls.__mro__):
            fields += [f for f in vars(klass).get("extra_fields", ()) if f not in fields]
        if cls.is_engine_set:
            fields.append("n")
        cls.serialize_fields = tuple(fields)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = ""
        self._last: JobState | None = None
        self._deleted = False
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- what runs --------------------------------------------------------------------------------
    program = List(
        Unicode(),
        help="What the job runs, for a launcher that is neither an engine set nor a controller "
        "(those run engine_cmd / controller_cmd).",
    ).tag(config=True)
    program_args = List(Unicode(), help="Arguments of program.").tag(config=True)

    def command(self) -> list[str]:
        """The program and arguments each task runs (engine / controller launchers say)."""
        if not self.program:
            raise LauncherError(f"{type(self).__name__} has nothing to run (set program)")
        return [*self.program, *self.program_args]

    def task_count(self) -> int:
        return 1

    def program_line(self) -> str:
        """The script's command line (Slurm puts ``srun`` in front of engines)."""
        return shlex.join(self.command())

    def find_args(self) -> list[str]:
        return [*self.submit_command, str(self.batch_file)]

    @property
    def batch_file(self) -> Path:
        """Where the rendered script is written."""
        name = self.batch_file_name or f"{self._base_name()}{self.script_suffix}"
        return Path(self.work_dir).absolute() / name

    def _base_name(self) -> str:
        return self.identifier or ("ipar-engines" if self.is_engine_set else "ipar-controller")

    def _job_name(self) -> str:
        return self.job_name or self._base_name()

    def default_output_name(self) -> str:
        """The output file's name in work_dir when output_file is not set."""
        return f"{self._base_name()}.out"

    def _output_pattern(self, script: str = "") -> str:
        if self.output_file:
            return self.output_file
        found = re.search(self.output_directive, script, re.MULTILINE) if script else None
        if found:
            return found.group(1).strip().strip("'\"")
        return str(Path(self.work_dir).absolute() / self.default_output_name())

    # -- the script -------------------------------------------------------------------------------
    def default_template(self) -> str:
        return "#!/bin/bash\n{program}\n"

    def directives(self, output_file: str) -> list[Directive]:
        """The generated header lines (each only if the template lacks one of its kind)."""
        return []

    def export_lines(self) -> list[str]:
        """``export NAME=value`` for each variable of ``environment``, shell-quoted."""
        lines = []
        for name in sorted(self.environment):
            if not _ENV_NAME.match(name):
                raise LauncherError(
                    f"environment variable name {name!r} cannot be exported by a job script "
                    "(letters, digits and _ only, not starting with a digit)"
                )
            lines.append(f"export {name}={shlex.quote(str(self.environment[name]))}")
        return lines

    def _user_template(self) -> tuple[str, str] | None:
        if self.batch_template:
            return self.batch_template, f"c.{type(self).__name__}.batch_template"
        if self.batch_template_file:
            try:
                return Path(self.batch_template_file).read_text(), self.batch_template_file
            except OSError as exc:
                raise LauncherError(
                    f"cannot read batch_template_file {self.batch_template_file!r}: {exc}"
                ) from None
        return None

    def template_namespace(self, output_file: str) -> dict[str, Any]:
        """The variables a template can use."""
        ns: dict[str, Any] = {
            "n": self.task_count(),
            "queue": self.queue,
            "profile_dir": self.profile_dir,
            "cluster_id": self.cluster_id,
            "work_dir": str(Path(self.work_dir).absolute()),
            "output_file": output_file,
            "job_name": self._job_name(),
            "timelimit": str(self.timelimit),
            "program": self.program_line(),
            "program_and_args": shlex.join(self.command()),
            "program_args": shlex.join(self.command()[1:]),
            "prologue": self.prologue,
            "environment": "\n".join(self.export_lines()),
        }
        ns.update(self.namespace)
        return ns

    def _render_parts(self) -> tuple[str, str, str]:
        """(the rendered script, its template source, the output path pattern)."""
        user = self._user_template()
        template, where = user if user else (self.default_template(), "default")
        ns = self.template_namespace(self._output_pattern())
        body = _format(template, ns, where)
        output = self._output_pattern(body)
        if output != ns["output_file"]:
            body = _format(template, {**ns, "output_file": output}, where)
        return body, template, output

    def job_script(self) -> str:
        """The exact script :meth:`start` submits (rendered, not submitted)."""
        body, template, output = self._render_parts()
        lines = body.splitlines()
        if not lines or not lines[0].startswith("#!"):
            lines.insert(0, "#!/bin/bash")
        inserts = [d.line for d in self.directives(output) if not d.found_in(body)]
        inserts += list(self.extra_directives)
        after = []
        if "{environment}" not in template:
            after += self.export_lines()
        if self.prologue and "{prologue}" not in template:
            after += self.prologue.rstrip("\n").splitlines()
        end = 1
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith("#")):
            end += 1
        lines[end:end] = after
        # directives go before the header's trailing blank lines, exports right after them
        head = end
        while head > 1 and not lines[head - 1].strip():
            head -= 1
        lines[head:head] = inserts
        script = "\n".join(lines) + "\n"
        self._warn_without_timelimit(script)
        return script

    def _warn_without_timelimit(self, script: str) -> None:
        if self.timelimit_directive and not re.search(
            self.timelimit_directive, script, re.MULTILINE
        ):
            self.log.warning(
                "%s: no time limit set (c.%s.timelimit); the job gets the %s's default time "
                "limit, and is killed when it runs out",
                type(self).__name__,
                type(self).__name__,
                self.queue_word,
            )

    def preview(self) -> str:
        return self.job_script()

    def write_batch_script(self) -> Path:
        """Render the script and write it (mode 0700: it holds the connection key)."""
        script = self.job_script()
        path = self.batch_file
        path.parent.mkdir(parents=True, exist_ok=True)
        self.output_file = self._output_pattern(script)
        Path(self.output_file).parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, script)
        return path

    # -- running scheduler commands ---------------------------------------------------------------
    def _expand(
        self, command: list[str], job_id: str, sig: str | None = None, append: bool = True
    ) -> list[str]:
        """``command`` with '{job_id}' / '{signal}' filled in; without them (ipyparallel's
        delete and signal commands) the signal and the job id are appended."""
        has_id = not append or any("{job_id}" in part for part in command)
        has_sig = any("{signal}" in part for part in command)
        out = [part.replace("{job_id}", job_id).replace("{signal}", sig or "") for part in command]
        if sig is not None and not has_sig:
            out.append(sig)
        if not has_id:
            out.append(job_id)
        return out

    def _run(
        self, command: list[str], timeout: float, stdin_path: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a scheduler command; LauncherError when it cannot run or does not finish."""
        self.log.debug("running %s", shlex.join(command))
        try:
            if stdin_path is not None:
                with open(stdin_path) as stdin:
                    return subprocess.run(
                        command, stdin=stdin, capture_output=True, text=True, timeout=timeout
                    )
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except OSError as exc:
            raise LauncherError(
                f"cannot run {shlex.join(command)}: {exc}; is the {self.scheduler} client "
                f"installed and on PATH (or set c.{type(self).__name__}.* commands)?"
            ) from None
        except subprocess.TimeoutExpired:
            raise LauncherError(
                f"{shlex.join(command)} did not finish within {timeout:g} s"
            ) from None

    def _says_gone(self, result: subprocess.CompletedProcess[str]) -> bool:
        text = result.stdout + result.stderr
        return bool(self.gone_regexp) and re.search(self.gone_regexp, text) is not None

    @staticmethod
    def _said(result: subprocess.CompletedProcess[str]) -> str:
        return "\n".join(t.strip() for t in (result.stderr, result.stdout) if t.strip())

    # -- job states -------------------------------------------------------------------------------
    def parse_state(self, output: str) -> JobState | None:
        """The job's state from ``state_command``'s output; None when it is not listed."""
        raise NotImplementedError

    def parse_history(self, output: str) -> JobState | None:
        """How the job ended, from ``history_command``'s output; None when not recorded."""
        return None

    def explain(self, current: JobState) -> JobState:
        """Add what a second command says to a state (SGE asks why a job is in error)."""
        return current

    def job_state(self) -> JobState:
        """Ask the scheduler now.  Never raises: a command that fails gives UNKNOWN with what
        went wrong as the reason (and a job the scheduler forgot is UNKNOWN and ``gone``)."""
        if not self.job_id:
            return JobState("UNKNOWN", "not submitted")
        try:
            asked = self._expand(self.state_command, self.job_id, append=False)
            result = self._run(asked, self.command_timeout)
            if result.returncode != 0 and not self._says_gone(result):
                return JobState(
                    "UNKNOWN",
                    f"{shlex.join(asked)} exited with code {result.returncode}: "
                    f"{self._said(result)}",
                )
            current = self.parse_state(result.stdout) if result.returncode == 0 else None
            if current is not None:
                current = self.explain(current)
                if not current.finished:
                    return current
            forgotten = f"{self.scheduler} no longer lists job {self.job_id}"
            if not self.history_command:
                return current or JobState("UNKNOWN", forgotten, gone=True)
            # a finished job: its record (accounting) says more, e.g. the exit code
            asked = self._expand(self.history_command, self.job_id, append=False)
            result = self._run(asked, self.command_timeout)
            ended = self.parse_history(result.stdout) if result.returncode == 0 else None
            if ended is not None or current is not None:
                return ended or current  # type: ignore[return-value]
            if result.returncode != 0 and not self._says_gone(result):
                return JobState(
                    "UNKNOWN",
                    f"{shlex.join(asked)} exited with code "
                    f"{result.returncode}: {self._said(result)}",
                )
            return JobState("UNKNOWN", f"{forgotten} and has no record of how it ended", gone=True)
        except LauncherError as exc:
            return JobState("UNKNOWN", str(exc))
        except Exception as exc:  # a parser meeting output it does not know
            return JobState("UNKNOWN", f"cannot read the {self.scheduler} state: {exc!r}")

    def poll_once(self) -> JobState:
        """Ask the scheduler, remember the answer, and end the launcher when the job ended."""
        found = self.job_state()
        if self._deleted and found.finished and found.state in ("UNKNOWN", "FAILED"):
            # what a deleted job looks like afterwards (killed by a signal, or forgotten)
            found = JobState("CANCELLED", "deleted by stop()", found.exit_code, found.gone)
        self._last = found
        if found.finished and self.state == "running":
            self.notify_stop(found.as_stop_data(self.job_id))
        return found

    def _watch(self) -> None:
        while self.state == "running":
            self.poll_once()
            if self.state != "running":
                return
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _start_watcher(self) -> None:
        self._watcher = threading.Thread(
            target=self._watch, name=f"watch-job-{self.job_id}", daemon=True
        )
        self._watcher.start()

    # -- the launcher interface -------------------------------------------------------------------
    def parse_job_id(self, output: str) -> str:
        found = re.search(self.job_id_regexp, output, re.MULTILINE)
        if found is None:
            raise LauncherError(
                f"cannot find the job id in the output of {shlex.join(self.args)} (expected a "
                f"match of {self.job_id_regexp!r}; set c.{type(self).__name__}.job_id_regexp). "
                f"It said:\n{output}"
            )
        return str(found.group(self.job_id_regexp_group))

    def start(self) -> None:
        """Write the script, submit it, and watch the job.  A failed submit raises
        LauncherError with the command, its exit code and everything it printed."""
        if self.state != "before":
            raise ProcessStateError(
                f"{type(self).__name__} submits once; it is already {self.state!r} (make a "
                "new launcher to submit another job)"
            )
        path = self.write_batch_script()
        if self.submit_via_stdin:
            command = list(self.submit_command)
            result = self._run(command, self.submit_timeout, stdin_path=path)
            shown = f"{shlex.join(command)} < {shlex.quote(str(path))}"
        else:
            command = [*self.submit_command, str(path)]
            result = self._run(command, self.submit_timeout)
            shown = shlex.join(command)
        if result.returncode != 0:
            raise LauncherError(
                f"{shown} failed with exit code {result.returncode}:\n{self._said(result)}"
            )
        try:
            self.job_id = self.parse_job_id(result.stdout + result.stderr)
        except LauncherError as exc:
            raise LauncherError(f"{shown} exited with code 0, but {exc}") from None
        self.log.info("%s: submitted job %s (%s)", type(self).__name__, self.job_id, shown)
        self.notify_start(self.job_id)
        self._start_watcher()

    def stop(self) -> None:
        """Delete the job (a job that already ended is fine), then wait up to
        ``stop_timeout`` seconds until the scheduler says it ended."""
        if not self.job_id:
            return
        if self.state == "after" and self.stop_data and self.stop_data.get("gone"):
            return  # the scheduler has forgotten it: nothing to delete
        if self._deleted and self.state == "after":
            return  # deleted by an earlier stop(), and seen to end
        self._deleted = True
        command = self._expand(self.delete_command, self.job_id)
        result = self._run(command, self.command_timeout)
        if result.returncode != 0 and not self._says_gone(result):
            raise LauncherError(
                f"{shlex.join(command)} failed with exit code {result.returncode}:\n"
                f"{self._said(result)}"
            )
        if self.state == "running":
            self._wake.set()
            if not self.wait_for_stop(self.stop_timeout):
                self.log.warning(
                    "%s: job %s deleted, but %s still reports it %s after %g s",
                    type(self).__name__,
                    self.job_id,
                    self.scheduler,
                    self._last.describe() if self._last else "unknown",
                    self.stop_timeout,
                )

    def signal(self, sig: int | str) -> None:
        """Send ``sig`` (a number or a name like 'SIGINT') to the job's processes."""
        if isinstance(sig, str):
            name = sig.upper().removeprefix("SIG")
            signals.Signals["SIG" + name]  # KeyError for a name that is no signal
        else:
            name = signals.Signals(sig).name.removeprefix("SIG")
        if not self.signal_command:
            raise LauncherError(
                f"{self.scheduler} cannot send a signal to a job; {type(self).__name__}.stop() "
                f"deletes it (set c.{type(self).__name__}.signal_command if your site has a way)"
            )
        if self.state != "running" or not self.job_id:
            raise ProcessStateError(f"cannot signal a job that is {self.state!r}")
        command = self._expand(self.signal_command, self.job_id, name)
        result = self._run(command, self.command_timeout)
        if result.returncode != 0 and not self._says_gone(result):
            raise LauncherError(
                f"{shlex.join(command)} failed with exit code {result.returncode}:\n"
                f"{self._said(result)}"
            )

    # -- what users see ---------------------------------------------------------------------------
    def last_state(self) -> JobState | None:
        """The scheduler's last answer (or how the job ended), None before the first poll."""
        if self._last is not None:
            return self._last
        return JobState.from_stop_data(self.stop_data) if self.stop_data else None

    def pending(self) -> bool:
        last = self._last
        return self.state == "running" and last is not None and last.state == "PENDING"

    def status_text(self) -> str:
        if self.state == "before":
            return "not submitted"
        last = self.last_state()
        if last is None:
            return f"submitted (job {self.job_id})"
        return last.describe()

    def output_paths(self) -> list[Path]:
        """The job's output files as they exist now (one per task for some schedulers)."""
        pattern = self.output_file or self._output_pattern()
        escaped = glob.escape(pattern)
        for placeholder in self.job_id_placeholders:
            escaped = escaped.replace(placeholder, glob.escape(self.job_id) if self.job_id else "*")
        escaped = re.sub(self.other_placeholders, "*", escaped)
        found = set(glob.glob(escaped)) | set(glob.glob(self._task_suffix_glob(escaped)))
        return [Path(p) for p in sorted(found) if os.path.isfile(p)]

    def _task_suffix_glob(self, escaped: str) -> str:
        """Files the scheduler names after the output file per task (PBS: 'out-1')."""
        return escaped

    def get_output(self, remove: bool = False) -> str:
        """What the job wrote so far ('' before its output file exists); each task's file
        under a '==> name <==' line when there are several."""
        paths = self.output_paths()
        texts = []
        for path in paths:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            texts.append(f"==> {path.name} <==\n{text}" if len(paths) > 1 else text)
            if remove:
                path.unlink(missing_ok=True)
        return "\n".join(texts)

    def failure(self) -> str:
        tail = "\n".join(self.get_output().strip().splitlines()[-20:])
        head = f"job {self.job_id}: {self.status_text()}"
        return f"{head}\n{tail}" if tail else head

    # -- JSON -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> BatchSystemLauncher:
        """A launcher watching the job ``d`` describes: it asks the scheduler at once (so its
        status is current) and keeps polling while the job runs."""
        launcher = super().from_dict(d, **kwargs)
        assert isinstance(launcher, BatchSystemLauncher)
        if launcher.state == "running" and launcher.job_id:
            launcher.poll_once()
            if launcher.state == "running":
                launcher._start_watcher()
        return launcher


class BatchEngineSetLauncher(BatchSystemLauncher, EngineLauncher):
    """``n`` engines as one batch job (a job array, or one job of ``n`` tasks)."""

    is_engine_set: ClassVar[bool] = True

    def command(self) -> list[str]:
        return [*self.engine_cmd, *self.engine_args]

    def task_count(self) -> int:
        return int(self.n)

    def needs_routable_address(self) -> bool:
        """The scheduler runs the engines on its compute nodes, which are other hosts (set
        ``engines_on_this_host`` for a single-node test scheduler)."""
        return not self.engines_on_this_host

    engines_on_this_host = Bool(
        False,
        help="The scheduler's compute nodes are this machine (a single-node scheduler), so the "
        "engines can reach a controller listening on loopback.",
    ).tag(config=True)


class BatchControllerLauncher(BatchSystemLauncher, ControllerLauncher):
    """The controller as a one-task batch job, on whichever node the scheduler picks.

    It runs with ``--announce``: its connection info is one line of the job's output file,
    read here once the job runs (on a cluster that file is on the filesystem the login node
    shares with the compute nodes; a Cluster puts it in the profile's ``security``
    directory, readable by its owner only).  The Cluster writes the connection files on this
    side; the job's state is the controller's liveness, and stop() deletes the job.
    """

    controller_on_this_host = Bool(
        False,
        help="The scheduler runs jobs on this machine (a single-node scheduler), so clients "
        "here can reach a controller listening on loopback.",
    ).tag(config=True)
    announce_timeout = Float(
        60.0,
        help="Seconds the controller has to announce itself once its job runs (time in the "
        "queue does not count) before the start counts as failed.",
    ).tag(config=True)

    runs_elsewhere: ClassVar[bool] = True

    def command(self) -> list[str]:
        args = list(self.controller_args)
        announce = [] if "--announce" in args else ["--announce"]
        return [*self.controller_cmd, *announce, *args]

    def needs_routable_address(self) -> bool:
        """The job runs on a compute node: clients here cannot reach its loopback."""
        return not self.controller_on_this_host

    def announcement(self) -> dict[str, Any] | None:
        return parse_announcement(self.get_output()) if self.job_id else None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and executable by its owner only, from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o700)  # an existing file keeps its old mode through O_CREAT
