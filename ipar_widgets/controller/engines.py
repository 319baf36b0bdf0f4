"""The controller's view of its engines: ids, socket identities, load and liveness.

An engine connects three sockets to the controller's engine port, each with its own identity
derived from the engine's uuid: ``s:`` (shell: tasks and replies), ``c:`` (control: abort,
clear, shutdown, signals, handled even while a task runs) and ``h:`` (heartbeat echo).
Ids are handed out 0, 1, 2, ... in registration order and never reused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from ..protocol.routing import (
    control_identity,
    heartbeat_identity,
    shell_identity,
    usage_identity,
)


class EngineState:
    """A registered engine."""

    __slots__ = (
        "id",
        "uuid",
        "shell",
        "control",
        "heartbeat",
        "usage",
        "pid",
        "hostname",
        "registered_at",
        "last_pong",
        "answered",
        "outstanding",
        "last_assigned",
        "completed",
        "failed",
        "busy_since",
        "local",
        "shm",
        "engine_set",
        "rejoining",
        "held",
        "unconfirmed",
        "sync_id",
        "sample",
        "peak_rss",
    )

    def __init__(self, engine_id: int, uuid: str, pid: int, hostname: str, local: bool) -> None:
        self.id = engine_id
        self.uuid = uuid
        self.shell = shell_identity(uuid)
        self.control = control_identity(uuid)
        self.heartbeat = heartbeat_identity(uuid)
        self.usage = usage_identity(uuid)
        self.pid = pid
        self.hostname = hostname
        self.registered_at = time.time()
        self.last_pong = time.monotonic()
        #: whether a heartbeat came back yet (until then its heartbeat socket may still be
        #: connecting, so an unreachable heartbeat identity is not yet a sign of death)
        self.answered = False
        #: msg_ids handed to this engine and not yet answered, in the order it runs them
        self.outstanding: OrderedDict[str, None] = OrderedDict()
        self.last_assigned = 0.0
        self.completed = 0
        self.failed = 0
        #: controller clock when the task now running started (None when idle)
        self.busy_since: float | None = None
        self.local = local
        #: the launcher's engine set it belongs to ('' when the controller started it)
        self.engine_set = ""
        #: whether it maps the controller's shared-memory segments (it shares this host)
        self.shm = False
        #: restored from the task database, and not yet back (restore.py): tasks for it are
        #: held (``held``) until it rejoins, since its socket is not connected yet
        self.rejoining = False
        self.held: list[str] = []
        #: after a rejoin, the tasks sent before the sync marker (``sync_id``) went out: those
        #: still unanswered when the marker's answer comes were lost on the way
        self.unconfirmed: set[str] = set()
        self.sync_id: str | None = None
        #: the engine's latest usage report (engine/usage.py: cpu, rss, peak_rss,
        #: gpu_memory, task, function), None before the first; and the highest peak_rss seen
        self.sample: dict[str, Any] | None = None
        self.peak_rss: int | None = None

    def note_sample(self, content: dict[str, Any]) -> None:
        """Keep a usage report (numbers that are not numbers become None)."""
        sample = {
            "cpu": _number(content.get("cpu")),
            "rss": _number(content.get("rss")),
            "peak_rss": _number(content.get("peak_rss")),
            "gpu_memory": _number(content.get("gpu_memory")),
            "task": content.get("task") if isinstance(content.get("task"), str) else None,
            "function": content.get("function")
            if isinstance(content.get("function"), str)
            else None,
            # its memory cgroup and that cgroup's OOM kills then (deaths.py compares)
            "cgroup": content.get("cgroup") if isinstance(content.get("cgroup"), str) else None,
            "oom_kills": _number(content.get("oom_kills")),
        }
        self.sample = sample
        peak = sample["peak_rss"] if sample["peak_rss"] is not None else sample["rss"]
        if peak is not None and (self.peak_rss is None or peak > self.peak_rss):
            self.peak_rss = int(peak)

    @property
    def load(self) -> int:
        return len(self.outstanding)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uuid": self.uuid,
            "pid": self.pid,
            "hostname": self.hostname,
            "registered": self.registered_at,
            "queue": max(0, len(self.outstanding) - 1),
            "running": next(iter(self.outstanding), None),
            "completed": self.completed,
            "failed": self.failed,
            "local": self.local,
            "shm": self.shm,  # whether it maps the controller's shared memory (same host)
            "engine_set": self.engine_set,
            # its latest usage report (None before the first, or with reports turned off)
            "cpu": sample["cpu"] if (sample := self.sample) else None,
            "rss": sample["rss"] if sample else None,
            "peak_rss": self.peak_rss,
            "gpu_memory": sample["gpu_memory"] if sample else None,
            # what that report named: the function it ran, and its memory cgroup with that
            # cgroup's OOM kills (a death report compares them: deaths.py)
            "function": sample["function"] if sample else None,
            "cgroup": sample["cgroup"] if sample else None,
            "oom_kills": sample["oom_kills"] if sample else None,
        }


class EngineRegistry:
    """Registered engines by id and by socket identity."""

    def __init__(self) -> None:
        self.by_id: dict[int, EngineState] = {}
        self.by_ident: dict[bytes, EngineState] = {}
        self.by_uuid: dict[str, EngineState] = {}
        self._next_id = 0
        self.unregistered: list[dict[str, Any]] = []
        #: the uuid of every engine that ever registered (task records name engines that left)
        self._uuids: dict[int, str] = {}
        #: told of each engine that registers, and of each that leaves (and why): the task store
        self.on_register: Callable[[EngineState], None] | None = None
        self.on_unregister: Callable[[EngineState, str], None] | None = None

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[EngineState]:
        return iter(self.by_id.values())

    @property
    def ids(self) -> list[int]:
        return sorted(self.by_id)

    def register(
        self, uuid: str, pid: int, hostname: str, local: bool, engine_id: int | None = None
    ) -> EngineState:
        """Add an engine: with the next id, or with ``engine_id`` when it is one this registry
        has not given to another engine (an engine rejoining after a restore keeps its id)."""
        if engine_id is None or engine_id in self.by_id or self._uuids.get(engine_id, uuid) != uuid:
            engine_id = self._next_id
        engine = EngineState(engine_id, uuid, pid, hostname, local)
        self._next_id = max(self._next_id, engine_id + 1)
        self.by_id[engine.id] = engine
        self.by_uuid[uuid] = engine
        self._uuids[engine.id] = uuid
        for ident in (engine.shell, engine.control, engine.heartbeat, engine.usage):
            self.by_ident[ident] = engine
        if self.on_register is not None:
            self.on_register(engine)
        return engine

    def remember(self, engine_id: int, uuid: str) -> None:
        """An engine of an earlier controller (from the task database): its id is never
        given to another engine, and records naming it still find its uuid."""
        self._uuids.setdefault(engine_id, uuid)
        self._next_id = max(self._next_id, engine_id + 1)

    def death_of(self, engine_id: int) -> dict[str, Any] | None:
        """The death record (JSON) of a recently lost engine, None when there is none."""
        for entry in reversed(self.unregistered):
            if entry["id"] == engine_id:
                death = entry.get("death")
                return death if isinstance(death, dict) else None
        return None

    def uuid_of(self, engine_id: int | None) -> str | None:
        """The uuid of engine ``engine_id``, also after it left (None: no such engine)."""
        return None if engine_id is None else self._uuids.get(engine_id)

    def unregister(
        self, engine: EngineState, reason: str, death: dict[str, Any] | None = None
    ) -> None:
        """Forget an engine that left; ``death`` is the record of how it died (enginedeath.py,
        as JSON), kept with the entry ``status()`` lists."""
        self.by_id.pop(engine.id, None)
        self.by_uuid.pop(engine.uuid, None)
        for ident in (engine.shell, engine.control, engine.heartbeat, engine.usage):
            self.by_ident.pop(ident, None)
        entry: dict[str, Any] = {"id": engine.id, "reason": reason, "at": time.time()}
        if death is not None:
            entry["death"] = death
        self.unregistered.append(entry)
        del self.unregistered[:-100]
        if self.on_unregister is not None:
            self.on_unregister(engine, reason)


def _number(value: object) -> float | int | None:
    """A usage report's number, or None (a bool or anything else is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def cost_totals(engines: list[dict[str, Any]]) -> dict[str, Any]:
    """The cluster's total of the engines' usage (``info()`` dicts): CPU percent of one core,
    bytes of resident memory, peak and GPU memory summed over the engines that reported
    them; ``reporting`` counts those."""
    totals: dict[str, Any] = {"cpu": None, "rss": None, "peak_rss": None, "gpu_memory": None}
    reporting = 0
    for info in engines:
        if info.get("rss") is not None or info.get("cpu") is not None:
            reporting += 1
        for key in totals:
            value = info.get(key)
            if value is not None:
                totals[key] = (totals[key] or 0) + value
    if totals["cpu"] is not None:
        totals["cpu"] = round(totals["cpu"], 1)
    totals["reporting"] = reporting
    return totals
