"""The client's book of engines that died: engine id -> :class:`EngineDeath`.

The controller sends a death record with each ``engine_unregistered`` notice of an engine it
lost (controller/deaths.py) and in the error of each task the engine held (whichever comes
first is kept), and names the dead engine in the ``engine_registered`` notice of its
replacement; this book keeps both, for ``Client.engine_deaths``, the progress
widget's rows and ``EngineError``.  It is written by the client's I/O thread and read from
any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ..enginedeath import EngineDeath

__all__ = ["DeathBook"]

#: most records kept (the oldest go first)
KEPT = 1000


class DeathBook(Mapping[int, EngineDeath]):
    """A read-only mapping of engine id -> how that engine died (updated by the client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deaths: dict[int, EngineDeath] = {}

    def __getitem__(self, engine_id: int) -> EngineDeath:
        return self._deaths[engine_id]

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._deaths))

    def __len__(self) -> int:
        return len(self._deaths)

    def __repr__(self) -> str:
        inner = ", ".join(f"{i}: {d.summary()!r}" for i, d in sorted(self._deaths.items()))
        return f"<engine deaths {{{inner}}}>"

    # -- written by the client's notices --------------------------------------------------------
    def died(self, content: Mapping[str, Any]) -> None:
        """An ``engine_unregistered`` notice: keep its death record, if it has one."""
        record = content.get("death")
        if not isinstance(record, Mapping):
            return
        death = EngineDeath.from_json(dict(record))
        with self._lock:
            known = self._deaths.get(death.engine_id)
            if known is not None and known.at == death.at and known.replaced_by is not None:
                death = death.replaced(known.replaced_by)  # the same death, heard twice
            self._deaths[death.engine_id] = death
            while len(self._deaths) > KEPT:
                del self._deaths[next(iter(self._deaths))]

    def replacement_failed(self, dead: int, error: str) -> None:
        """The replacement of the dead engine ``dead`` exited before it registered."""
        with self._lock:
            death = self._deaths.get(dead)
            if death is not None:
                self._deaths[dead] = death.replacement_failed(error)

    def replaced(self, dead: int, engine_id: int) -> None:
        """Engine ``engine_id`` registered in place of the dead engine ``dead``."""
        with self._lock:
            death = self._deaths.get(dead)
            if death is not None:
                self._deaths[dead] = death.replaced(engine_id)
