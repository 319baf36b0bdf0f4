"""Which engines a call goes to: the client's table of registered engines, and how a
``targets`` value (``'all'``, an id, a list, a slice, a range) becomes engine ids."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..error import NoEnginesRegistered

__all__ = ["EngineTable", "Targets", "resolve_targets"]

#: what views and Client methods accept as ``targets``
Targets = int | Sequence[int] | slice | range | set[int] | str | None


def resolve_targets(ids: Sequence[int], targets: Any) -> list[int]:
    """Engine ids from ``'all'``/None, an id (negative: counted from the end), a list,
    tuple, set or range of ids, or a slice of the registered ``ids``.

    Raises NoEnginesRegistered when there are none, IndexError for an id that is not
    registered, TypeError for anything else.
    """
    if not ids:
        raise NoEnginesRegistered("Can't build targets without any engines")
    if targets is None or targets == "all":
        return list(ids)
    if isinstance(targets, int):
        if targets < 0:
            targets = ids[targets]
        if targets not in ids:
            raise IndexError(f"No such engine: {targets} (registered engines: {list(ids)})")
        return [targets]
    if isinstance(targets, slice):
        return list(ids[targets])
    if isinstance(targets, (list, tuple, range, set)):
        known = set(ids)
        out = []
        for t in targets:
            if not isinstance(t, int):
                raise TypeError(f"targets must be engine ids (int), found {t!r}")
            if t not in known:
                raise IndexError(f"No such engine: {t} (registered engines: {list(ids)})")
            out.append(t)
        return out
    raise TypeError(f"targets must be an int, a list of ints, a slice or 'all', found {targets!r}")


class EngineTable:
    """The engines registered with the controller, by id (with their uuids), kept current
    by the controller's notices; threads can wait for a change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._engines: dict[int, str] = {}
        #: the engine set (launcher) of each engine that came with one
        self._sets: dict[int, str] = {}

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def uuid_of(self, engine_id: int | None) -> str | None:
        return None if engine_id is None else self._engines.get(engine_id)

    def update(self, engines: Mapping[int, str], sets: Mapping[int, str] | None = None) -> None:
        """Add engines (id -> uuid, and id -> engine set where known) known from an answer
        of the controller."""
        with self._lock:
            for engine_id, uuid in engines.items():
                self._engines.setdefault(engine_id, uuid)
            for engine_id, engine_set in (sets or {}).items():
                if engine_id in self._engines:
                    self._sets.setdefault(engine_id, engine_set)
            self._changed.notify_all()

    def registered(self, engine_id: int, uuid: str, engine_set: str = "") -> None:
        with self._lock:
            self._engines[engine_id] = uuid
            if engine_set:
                self._sets[engine_id] = engine_set
            self._changed.notify_all()

    def unregistered(self, engine_ids: Iterable[int]) -> None:
        with self._lock:
            for engine_id in engine_ids:
                self._engines.pop(engine_id, None)
                self._sets.pop(engine_id, None)
            self._changed.notify_all()

    def count_by_set(self) -> dict[str, int]:
        """How many registered engines each engine set has (those that named one)."""
        with self._lock:
            counts: dict[str, int] = {}
            for engine_set in self._sets.values():
                counts[engine_set] = counts.get(engine_set, 0) + 1
            return counts

    def wait_for_change(self, timeout: float) -> None:
        """Sleep until an engine registers or leaves, or ``timeout`` seconds pass."""
        with self._lock:
            self._changed.wait(timeout)
