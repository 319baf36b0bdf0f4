"""A memory cgroup of a test's own, on cgroup v1 or v2, for real OOM kills.

The death tests move an engine into a small memory cgroup and let the kernel act.  Linux
offers that through two interfaces (the kernel's Documentation/admin-guide/cgroup-v1/memory.rst
and cgroup-v2.rst):

* v1: a ``memory`` hierarchy at ``/sys/fs/cgroup/memory``; the limit is
  ``memory.limit_in_bytes`` (with swap: ``memory.memsw.limit_in_bytes``), the OOM kills the
  ``oom_kill`` line of ``memory.oom_control``.
* v2: one unified hierarchy at ``/sys/fs/cgroup`` (``cgroup.controllers`` lists
  ``memory``); a child has the memory files only when its parent lists ``memory`` in
  ``cgroup.subtree_control``; the limit is ``memory.max`` (swap: ``memory.swap.max``), the
  OOM kills the ``oom_kill`` line of ``memory.events``.  A cgroup with processes of its own
  cannot hand controllers to children, so the test's cgroup is a leaf right under the root.

The paths are the ones ipar_widgets/memorylimits.py derives from ``/proc/<pid>/cgroup``, so
a test can compare the death report's cgroup with its own.  The v2 branch follows the
documented interface; the machine these tests were written on has v1 only.
"""

from __future__ import annotations

import errno
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ipar_widgets.memorylimits import CGROUP_ROOT

__all__ = ["Hierarchy", "MemoryCgroup", "writable_hierarchy"]


@dataclass(frozen=True)
class Hierarchy:
    """Where a test may make memory cgroups: cgroup ``version`` 1 or 2, children under ``root``."""

    version: int
    root: Path

    @property
    def limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == 1 else "memory.max"

    @property
    def swap_file(self) -> str:
        return "memory.memsw.limit_in_bytes" if self.version == 1 else "memory.swap.max"

    @property
    def events_file(self) -> str:
        return "memory.oom_control" if self.version == 1 else "memory.events"


V1 = Hierarchy(1, CGROUP_ROOT / "memory")
V2 = Hierarchy(2, CGROUP_ROOT)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _enable_memory(root: Path) -> bool:
    """Make sure a v2 ``root`` gives the memory controller to its children; True when this
    call turned it on (to be turned off again).  Raises OSError when the kernel refuses."""
    control = root / "cgroup.subtree_control"
    if "memory" in (_read(control) or "").split():
        return False
    control.write_text("+memory")
    return True


def _disable_memory(root: Path) -> None:
    try:
        (root / "cgroup.subtree_control").write_text("-memory")
    except OSError:
        pass  # another cgroup there took it up meanwhile: leave it on


def _why(error: OSError, what: str) -> str:
    text = f"{what} failed ({error.strerror or error})"
    if error.errno == errno.EBUSY and "subtree_control" in what:
        text += ": that cgroup has processes of its own, so it cannot give controllers to children"
    return text


def _probe(hierarchy: Hierarchy) -> str | None:
    """None when a child memory cgroup with a settable limit can be made under the
    hierarchy's root, else what went wrong."""
    enabled = False
    if hierarchy.version == 2:
        try:
            enabled = _enable_memory(hierarchy.root)
        except OSError as e:
            return _why(e, f"writing +memory to {hierarchy.root / 'cgroup.subtree_control'}")
    probe = hierarchy.root / f"ipar-probe-{uuid.uuid4().hex[:8]}"
    try:
        try:
            probe.mkdir()
        except OSError as e:
            return _why(e, f"mkdir {probe}")
        try:
            limit = probe / hierarchy.limit_file
            if not limit.exists():
                return f"{probe} has no {hierarchy.limit_file}"
            try:
                limit.write_text(limit.read_text())  # unchanged: only whether it may be written
            except OSError as e:
                return _why(e, f"writing {limit}")
            return None
        finally:
            probe.rmdir()
    finally:
        if enabled:
            _disable_memory(hierarchy.root)


def writable_hierarchy() -> tuple[Hierarchy | None, str]:
    """The memory cgroup hierarchy a test may use (v1 first, as memorylimits.py reads it
    first), or None and what was found instead (for the skip reason)."""
    found = []
    if (V1.root / "memory.limit_in_bytes").exists():
        problem = _probe(V1)
        if problem is None:
            return V1, ""
        found.append(f"cgroup v1 memory hierarchy at {V1.root} not writable: {problem}")
    else:
        found.append(f"no cgroup v1 memory hierarchy at {V1.root}")
    controllers = _read(V2.root / "cgroup.controllers")
    if controllers is None:
        found.append(f"no cgroup v2 hierarchy at {V2.root} (no cgroup.controllers)")
    elif "memory" not in controllers.split():
        listed = controllers.strip() or "none"
        found.append(f"cgroup v2 at {V2.root} without the memory controller (it has: {listed})")
    else:
        problem = _probe(V2)
        if problem is None:
            return V2, ""
        found.append(f"cgroup v2 at {V2.root} not writable: {problem}")
    return None, "; ".join(found)


class MemoryCgroup:
    """A new memory cgroup limited to ``limit`` bytes (swap included), removed on exit once
    its processes are gone::

        with MemoryCgroup(hierarchy, 150 << 20) as cgroup:
            ...  # a process writes its pid to cgroup.path / "cgroup.procs"
            cgroup.oom_kills()
    """

    def __init__(self, hierarchy: Hierarchy, limit: int) -> None:
        self.hierarchy = hierarchy
        self.limit = limit
        self.path = hierarchy.root / f"ipar-test-{uuid.uuid4().hex[:8]}"
        self._enabled = False

    def __enter__(self) -> MemoryCgroup:
        if self.hierarchy.version == 2:
            self._enabled = _enable_memory(self.hierarchy.root)
        self.path.mkdir()
        try:
            (self.path / self.hierarchy.limit_file).write_text(str(self.limit))
            swap = self.path / self.hierarchy.swap_file
            if swap.exists():  # no swapping out instead of the OOM kill (v1: memory + swap)
                swap.write_text(str(self.limit) if self.hierarchy.version == 1 else "0")
        except BaseException:
            self._remove(timeout=10)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._remove(timeout=10)

    def oom_kills(self) -> int:
        """How many processes of this cgroup the kernel's OOM killer killed."""
        events = self.path / self.hierarchy.events_file
        text = events.read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        raise AssertionError(f"expected an oom_kill line in {events} (Linux 4.13+), found {text!r}")

    def processes(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]

    def _remove(self, timeout: float) -> None:
        """rmdir once no process is left in it (the engine may still be exiting, and v2
        refuses with EBUSY while a dying process is not yet reaped), within ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    self.path.rmdir()
                    return
                except FileNotFoundError:
                    return
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        left = self.processes() if (self.path / "cgroup.procs").exists() else []
                        raise AssertionError(
                            f"could not remove the test's memory cgroup {self.path} within "
                            f"{timeout} s ({e.strerror}); processes still in it: {left}"
                        ) from e
                time.sleep(0.05)
        finally:
            if self._enabled:
                _disable_memory(self.hierarchy.root)
