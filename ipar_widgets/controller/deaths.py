"""Finding out how an engine died, and writing it down as an :class:`EngineDeath`.

For an engine the controller started (its child), the facts come from the process itself:
its wait status and ``ru_maxrss`` from ``os.wait4`` (the exact peak memory), its
``RLIMIT_AS``/``RLIMIT_DATA`` read from ``/proc/<pid>/limits`` while it is a zombie, and its
memory cgroup (the one its last usage report named, else the controller's, where it began)
read after its death.  The kernel's OOM killer is named only on evidence:

* the engine was killed by SIGKILL, and
* its memory cgroup's ``oom_kill`` counter (v1 ``memory.oom_control``, v2
  ``memory.events``) is higher than when it was last seen alive (its last usage report,
  or its start), or its peak memory reached ``OOM_NEAR`` of a limit it had (the cgroup's
  memory limit, ``RLIMIT_AS`` or ``RLIMIT_DATA``).

For other engines only what the controller saw is known: the heartbeats stopped, the peak
memory of its usage reports (engine/usage.py), the tasks it held.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..enginedeath import TAIL_LINES, EngineDeath, format_bytes
from ..memorylimits import cgroup_limit, cgroup_oom_kills
from ..protocol.wire import Frame, as_bytes, unpack

if TYPE_CHECKING:
    from .engines import EngineState

__all__ = ["ProcessEnd", "MemoryEvidence", "death_of", "oom_evidence", "output_tail"]

#: peak memory at least this fraction of a limit counts as "near the limit"
OOM_NEAR = 0.9


@dataclass(frozen=True)
class ProcessEnd:
    """How a local engine process ended: ``returncode`` as subprocess spells it (negative:
    the signal), its peak memory from ``wait4`` (bytes) and its soft memory rlimits."""

    returncode: int
    peak_rss: int | None = None
    rlimit_as: int | None = None
    rlimit_data: int | None = None

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def words(self) -> str:
        """``killed by SIGKILL`` / ``exited with code 3``."""
        name = self.signal_name
        return f"killed by {name}" if name else f"exited with code {self.returncode}"


@dataclass(frozen=True)
class MemoryEvidence:
    """What is known of a dead engine's memory limits and its cgroup's OOM kills."""

    cgroup: str | None = None
    oom_kills_before: int | None = None  # when it was last seen alive
    oom_kills_after: int | None = None  # after it died
    cgroup_limit: int | None = None
    rlimit_as: int | None = None
    rlimit_data: int | None = None

    def limits(self) -> list[tuple[int, str]]:
        """Its memory limits, smallest first, with their names."""
        named = [
            (self.cgroup_limit, f"the memory limit of its cgroup {self.cgroup}"),
            (self.rlimit_as, "RLIMIT_AS"),
            (self.rlimit_data, "RLIMIT_DATA"),
        ]
        return sorted((v, n) for v, n in named if v is not None)

    @classmethod
    def gather(
        cls, end: ProcessEnd, sample: dict[str, object] | None, start: tuple[str, int | None] | None
    ) -> MemoryEvidence:
        """Read the cgroup an engine was last seen in (``sample``: its last usage report;
        else ``start``: the cgroup and count when it was started) now that it is dead."""
        cgroup, before = start if start is not None else (None, None)
        if sample is not None and isinstance(sample.get("cgroup"), str):
            cgroup = str(sample["cgroup"])
            kills = sample.get("oom_kills")
            before = kills if isinstance(kills, int) else None
        directory = Path(cgroup) if cgroup else None
        return cls(
            cgroup=cgroup,
            oom_kills_before=before,
            oom_kills_after=cgroup_oom_kills(directory) if directory is not None else None,
            cgroup_limit=cgroup_limit(directory) if directory is not None else None,
            rlimit_as=end.rlimit_as,
            rlimit_data=end.rlimit_data,
        )


def oom_evidence(
    signal_name: str | None, peak_rss: int | None, memory: MemoryEvidence
) -> tuple[bool, str]:
    """Whether the evidence says the kernel's OOM killer ended the engine, and which."""
    if signal_name != "SIGKILL":
        return False, ""
    before, after = memory.oom_kills_before, memory.oom_kills_after
    if before is not None and after is not None and after > before:
        return True, (
            f"the oom_kill count of its memory cgroup {memory.cgroup} rose from {before} to {after}"
        )
    if peak_rss is not None:
        for limit, name in memory.limits():
            if peak_rss >= OOM_NEAR * limit:
                return True, (
                    f"its peak memory {format_bytes(peak_rss)} reached {peak_rss / limit:.0%} "
                    f"of {name}, {format_bytes(limit)}"
                )
    return False, ""


def output_tail(outputs: Sequence[Sequence[Frame]] | None, lines: int = TAIL_LINES) -> list[str]:
    """The last lines a task printed, from the controller's record of its outputs
    (``[DELIM, signature, header, parent, metadata, content]`` each)."""
    texts: list[str] = []
    for frames in reversed(outputs or ()):
        if len(frames) < 6:
            continue
        try:
            if json.loads(as_bytes(frames[2])).get("msg_type") != "stream":
                continue
            text = unpack(frames[5]).get("text")
        except ValueError:
            continue
        if isinstance(text, str):
            texts.append(text)
        if sum(t.count("\n") for t in texts) > lines:
            break
    return "".join(reversed(texts)).rstrip("\n").splitlines()[-lines:]


def death_of(
    engine: EngineState,
    reason: str,
    *,
    how: str,
    end: ProcessEnd | None = None,
    start_cgroup: tuple[str, int | None] | None = None,
    task_outputs: Sequence[Sequence[Frame]] | None = None,
    log_path: Path | None = None,
    log_tail: str = "",
) -> EngineDeath:
    """The record of ``engine``'s death: from its process's end where known (a local
    engine, ``start_cgroup`` its cgroup when started), else from what the controller saw
    (``how``: "heartbeat" or "connection")."""
    running = next(iter(engine.outstanding), None)
    sample = engine.sample
    function = sample.get("function") if sample and sample.get("task") == running else None
    peak, peak_source = engine.peak_rss, "usage reports" if engine.peak_rss is not None else ""
    exit_code = sig = None
    oom, evidence = False, ""
    limit, limit_source = None, ""
    if end is not None:
        how = "signal" if end.returncode < 0 else "exit"
        sig = end.signal_name
        exit_code = end.returncode if end.returncode >= 0 else None
        if end.peak_rss is not None:
            peak, peak_source = end.peak_rss, "wait4"
        memory = MemoryEvidence.gather(end, sample, start_cgroup)
        oom, evidence = oom_evidence(sig, peak, memory)
        limits = memory.limits()
        if limits:
            limit, limit_source = limits[0]
    return EngineDeath(
        engine_id=engine.id,
        how=how,
        reason=reason,
        at=time.time(),
        hostname=engine.hostname,
        pid=engine.pid or None,
        local=engine.local,
        exit_code=exit_code,
        signal=sig,
        oom=oom,
        oom_evidence=evidence,
        peak_rss=peak,
        peak_rss_source=peak_source,
        memory_limit=limit,
        memory_limit_source=limit_source,
        task=running,
        function=function if isinstance(function, str) else None,
        tasks=tuple(engine.outstanding),
        output_tail=tuple(output_tail(task_outputs)),
        log_tail=tuple(log_tail.splitlines()[-TAIL_LINES:]) if log_tail else (),
        log_path=str(log_path) if log_path is not None else "",
    )
