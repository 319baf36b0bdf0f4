"""A process's memory limits, and its memory cgroup's OOM-kill count, as Linux shows them.

Read from ``/proc/<pid>/cgroup``, ``/proc/<pid>/limits`` and the cgroup's files under
``/sys/fs/cgroup`` (v1: the ``memory`` hierarchy's ``memory.limit_in_bytes`` and
``memory.oom_control``; v2: ``memory.max`` and ``memory.events``).  Anything unreadable
(another OS, no cgroup, no permission) is None: the callers then know less, nothing fails.
The engine reports its cgroup with its usage (engine/usage.py); the controller compares its
OOM-kill count after the engine died (controller/deaths.py).

A zombie's ``/proc/<pid>/limits`` still shows its limits, but its cgroup file shows the
root: a process's cgroup must be read while it is alive.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["cgroup_limit", "cgroup_oom_kills", "memory_cgroup", "own_memory_cgroup", "rlimits"]

#: where the cgroup hierarchies are mounted
CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 62  # v1 reports "no limit" as a huge number (9223372036854771712)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def memory_cgroup(pid: int | str) -> Path | None:
    """The directory of process ``pid``'s memory cgroup (v1 ``memory`` controller, else v2)."""
    text = _read(Path(f"/proc/{pid}/cgroup"))
    if text is None:
        return None
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            return CGROUP_ROOT / "memory" / parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":
            unified = CGROUP_ROOT / parts[2].lstrip("/")
    if unified is not None and (unified / "memory.events").exists():
        return unified
    return None


def cgroup_oom_kills(directory: Path) -> int | None:
    """The ``oom_kill`` count of a memory cgroup (v1 memory.oom_control, v2 memory.events)."""
    for name in ("memory.oom_control", "memory.events"):
        text = _read(directory / name)
        if text is None:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def cgroup_limit(directory: Path) -> int | None:
    """A memory cgroup's limit in bytes (None: no limit, or unreadable)."""
    for name in ("memory.limit_in_bytes", "memory.max"):
        text = _read(directory / name)
        if text is not None:
            text = text.strip()
            if text.isdigit() and int(text) < _UNLIMITED:
                return int(text)
            return None
    return None


def rlimits(pid: int | str) -> tuple[int | None, int | None]:
    """The soft RLIMIT_AS and RLIMIT_DATA of process ``pid`` in bytes (None: unlimited or
    unknown).  A zombie's are still readable: read them after it exited, before reaping."""
    text = _read(Path(f"/proc/{pid}/limits"))
    found: dict[str, int | None] = {}
    for line in (text or "").splitlines():
        for label, key in (("Max address space", "as"), ("Max data size", "data")):
            if line.startswith(label):
                soft = line[len(label) :].split()[0]
                found[key] = int(soft) if soft.isdigit() else None
    return found.get("as"), found.get("data")


def own_memory_cgroup() -> tuple[str, int | None] | None:
    """This process's memory cgroup directory and its ``oom_kill`` count now (None without
    a readable memory cgroup): what an engine reports, and the controller's baseline for
    the engines it starts (they begin in its cgroup)."""
    directory = memory_cgroup("self")
    if directory is None:
        return None
    return str(directory), cgroup_oom_kills(directory)
