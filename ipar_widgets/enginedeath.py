"""How an engine died, as one record: what the controller found out, what the client keeps.

The controller writes an :class:`EngineDeath` when an engine leaves without being asked
(controller/deaths.py gathers the facts) and sends it with the ``engine_unregistered``
notice and in the error of each task the engine held.  The client keeps the records
(``Client.engine_deaths``), an ``EngineError`` carries its engine's (``err.death``), and the
progress widget and the JupyterLab panel show them.

Which facts are there depends on where the engine ran.  For an engine the controller
started on its own host (a child it reaps), the exit code or signal and the exact peak
memory (``wait4``'s ``ru_maxrss``) are known, and so are the memory limits it had (its
cgroup's, ``RLIMIT_AS``/``RLIMIT_DATA``) and whether its cgroup's OOM killer struck.  For
any other engine (ssh, MPI, a batch job) the controller only saw it stop answering; the
peak memory then comes from its last usage reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EngineDeath", "format_bytes"]

#: the last lines of output a record keeps
TAIL_LINES = 10


def format_bytes(n: float | None) -> str:
    """``1.2 GB``, ``312 MB``, ``48 kB`` (decimal units, as ``ls -h --si`` and most monitors)."""
    if n is None:
        return "?"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class EngineDeath:
    """The facts about one engine's death (fields are None or empty where unknown).

    ``how`` is ``"signal"`` (killed by ``signal``), ``"exit"`` (exited with ``exit_code``),
    ``"heartbeat"`` (stopped answering heartbeats) or ``"connection"`` (its connection
    closed, or it could not be reached); ``oom`` says the evidence (``oom_evidence``) points
    to the kernel's OOM killer.  ``peak_rss`` is its peak resident memory in bytes
    (``peak_rss_source``: ``"wait4"``, exact, or ``"usage reports"``), ``memory_limit`` the
    smallest memory limit it had (``memory_limit_source`` names it).  ``task`` is the msg_id
    of the task it was running, ``function`` that task's function where the engine's usage
    reports named it, ``tasks`` every task it held.  ``output_tail`` holds the last lines the
    running task printed (as the controller recorded them), ``log_tail`` the last lines of
    the engine's log file (engines on the controller's host).  ``replaced_by`` is the id of
    the engine started in its place (``Cluster(restart_engines=True)``); ``replacement`` is
    ``"starting"`` until it registered, ``"limit"`` when none was started because
    ``max_engine_restarts`` were used (``restarts_left``: how many remain), ``"failed"`` when
    the replacement's process exited before it registered (``replacement_error`` says how),
    else ``""``.
    """

    engine_id: int
    how: str
    reason: str = ""
    at: float = 0.0
    hostname: str = ""
    pid: int | None = None
    local: bool = False
    exit_code: int | None = None
    signal: str | None = None
    oom: bool = False
    oom_evidence: str = ""
    peak_rss: int | None = None
    peak_rss_source: str = ""
    memory_limit: int | None = None
    memory_limit_source: str = ""
    task: str | None = None
    function: str | None = None
    tasks: tuple[str, ...] = ()
    output_tail: tuple[str, ...] = ()
    log_tail: tuple[str, ...] = ()
    log_path: str = ""
    replaced_by: int | None = None
    replacement: str = ""
    #: why its replacement never registered (``replacement == "failed"``)
    replacement_error: str = ""
    restarts_left: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # -- words ------------------------------------------------------------------------------------
    @property
    def cause(self) -> str:
        """How it ended, in a few words: ``killed by SIGKILL``, ``exited with code 3``,
        ``killed by the kernel's OOM killer (SIGKILL)``, ``stopped answering heartbeats``."""
        if self.oom:
            return f"killed by the kernel's OOM killer ({self.signal or 'SIGKILL'})"
        if self.how == "signal" and self.signal:
            return f"killed by {self.signal}"
        if self.how == "exit" and self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return self.reason or "lost"

    @property
    def replacement_words(self) -> str:
        """``replaced by engine 7``, ``a replacement is starting``, ``not replaced: ...``,
        ``its replacement failed: ...``."""
        if self.replaced_by is not None:
            return f"replaced by engine {self.replaced_by}"
        if self.replacement == "starting":
            return "a replacement is starting"
        if self.replacement == "failed":
            return f"its replacement failed: {self.replacement_error}"
        if self.replacement == "limit":
            return "not replaced: max_engine_restarts reached"
        return ""

    def summary(self) -> str:
        """One line for a table row: the cause, the peak memory, the replacement."""
        parts = [self.cause]
        if self.peak_rss is not None:
            parts.append(f"peak {format_bytes(self.peak_rss)}")
        if self.replacement_words:
            parts.append(self.replacement_words)
        return "died: " + ", ".join(parts)

    def describe(self, msg_id: str | None = None) -> str:
        """The whole report, as an EngineError's message says it (about task ``msg_id``,
        default the one it was running)."""
        msg_id = msg_id or self.task
        # the start is ipyparallel-era wording that scripts match: "engine 3 died while it
        # held task <msg_id>"
        text = f"engine {self.engine_id} died"
        if msg_id is not None:
            text += f" while it held task {msg_id}"
            if msg_id == self.task and self.function:
                text += f" (running {self.function})"
            elif msg_id != self.task and self.task is not None:
                text += f" (queued behind {self.task})"
        text += f": {self.cause}"
        if self.pid:
            text += f"; pid {self.pid}" + (f" on {self.hostname}" if self.hostname else "")
        if self.oom and self.oom_evidence:
            text += f"; evidence: {self.oom_evidence}"
        if self.peak_rss is not None:
            exact = " (exact, from wait4)" if self.peak_rss_source == "wait4" else ""
            src = f" ({self.peak_rss_source})" if self.peak_rss_source not in ("", "wait4") else ""
            text += f"; peak memory {format_bytes(self.peak_rss)}{exact}{src}"
        if self.memory_limit is not None:
            text += f", limit {format_bytes(self.memory_limit)} ({self.memory_limit_source})"
        if self.how in ("heartbeat", "connection") and self.reason and self.reason != self.cause:
            text += f"; {self.reason}"
        if self.replacement_words:
            text += f"; {self.replacement_words}"
        if self.output_tail:
            text += "\nits last output:\n" + "\n".join("  " + line for line in self.output_tail)
        if self.log_tail:
            where = f" ({self.log_path})" if self.log_path else ""
            text += f"\nthe end of its log{where}:\n" + "\n".join(
                "  " + line for line in self.log_tail
            )
        return text

    # -- the wire ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (what notices and error replies carry)."""
        out = dataclasses.asdict(self)
        for key in ("tasks", "output_tail", "log_tail"):
            out[key] = list(out[key])
        out["cause"] = self.cause
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineDeath:
        """The record from :meth:`to_json`'s dict; unknown keys go to ``extra`` (a newer
        controller's), missing ones take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        given = {k: v for k, v in data.items() if k in names}
        for key in ("tasks", "output_tail", "log_tail"):
            if key in given:
                given[key] = tuple(str(x) for x in given[key] or ())
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in names | {"cause", "extra"}})
        given.setdefault("how", "connection")
        given.setdefault("engine_id", -1)
        return cls(**given, extra=extra)

    def replaced(self, engine_id: int) -> EngineDeath:
        """The same record, noting the engine started in its place."""
        return dataclasses.replace(self, replaced_by=engine_id, replacement="")

    def replacement_failed(self, error: str) -> EngineDeath:
        """The same record, noting that its replacement never registered, and why."""
        return dataclasses.replace(self, replacement="failed", replacement_error=error)
