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

from ..protocol.routing import control_identity, heartbeat_identity, shell_identity


class EngineState:
    """A registered engine."""

    __slots__ = (
        "id",
        "uuid",
        "shell",
        "control",
        "heartbeat",
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
    )

    def __init__(self, engine_id: int, uuid: str, pid: int, hostname: str, local: bool) -> None:
        self.id = engine_id
        self.uuid = uuid
        self.shell = shell_identity(uuid)
        self.control = control_identity(uuid)
        self.heartbeat = heartbeat_identity(uuid)
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
        for ident in (engine.shell, engine.control, engine.heartbeat):
            self.by_ident[ident] = engine
        if self.on_register is not None:
            self.on_register(engine)
        return engine

    def remember(self, engine_id: int, uuid: str) -> None:
        """An engine of an earlier controller (from the task database): its id is never
        given to another engine, and records naming it still find its uuid."""
        self._uuids.setdefault(engine_id, uuid)
        self._next_id = max(self._next_id, engine_id + 1)

    def uuid_of(self, engine_id: int | None) -> str | None:
        """The uuid of engine ``engine_id``, also after it left (None: no such engine)."""
        return None if engine_id is None else self._uuids.get(engine_id)

    def unregister(self, engine: EngineState, reason: str) -> None:
        self.by_id.pop(engine.id, None)
        self.by_uuid.pop(engine.uuid, None)
        for ident in (engine.shell, engine.control, engine.heartbeat):
            self.by_ident.pop(ident, None)
        self.unregistered.append({"id": engine.id, "reason": reason, "at": time.time()})
        del self.unregistered[:-100]
        if self.on_unregister is not None:
            self.on_unregister(engine, reason)
