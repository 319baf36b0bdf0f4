"""Starting a replacement for a local engine that died (``Cluster(restart_engines=True)``).

The local engines are the controller's children, so the controller replaces them: when one
dies without being asked to stop, a new engine process starts in its place, up to
``max_restarts`` times over the controller's life.  Engines stopped on purpose, engines of
other launchers (ssh, MPI, batch: their launcher owns them) and engines lost while the
cluster shuts down are not replaced.  The replacement registers with a new id; its
``engine_registered`` notice names the engine it replaces (``replaces``), and the dead
engine's death record says ``replaced by engine <id>``.  A replacement whose process exits
before it registers is not retried: the record says why (``engine_replacement_failed``
notice), so no display says "a replacement is starting" for ever.
"""

from __future__ import annotations

import dataclasses
import logging

from ..enginedeath import EngineDeath
from .engines import EngineRegistry, EngineState
from .launcher import LocalEngine, LocalLauncher

log = logging.getLogger("ipar_widgets.controller")

__all__ = ["EngineRestarts"]


class EngineRestarts:
    """How many replacements are left, and starting them."""

    def __init__(
        self,
        launcher: LocalLauncher | None,
        engines: EngineRegistry,
        *,
        enabled: bool,
        max_restarts: int,
    ) -> None:
        self.launcher = launcher
        self.engines = engines
        self.enabled = enabled
        self.max_restarts = max_restarts
        #: replacements started so far
        self.used = 0

    def replace(self, death: EngineDeath, local: LocalEngine | None, stopping: bool) -> EngineDeath:
        """Start a replacement for the engine of ``death`` when that is wanted; return the
        record saying so (``replacement``: "starting" or "limit")."""
        if not self.enabled or local is None or self.launcher is None or stopping:
            return death
        if self.used >= self.max_restarts:
            log.warning(
                "engine %d died; not replaced: all %d restarts (max_engine_restarts) are used",
                death.engine_id,
                self.max_restarts,
            )
            return _with(death, replacement="limit", restarts_left=0)
        self.used += 1
        (started,) = self.launcher.start(1)
        started.replaces = death.engine_id
        left = self.max_restarts - self.used
        log.warning(
            "engine %d died (%s); started engine process %d in its place (%d restart(s) left)",
            death.engine_id,
            death.cause,
            started.seq,
            left,
        )
        return _with(death, replacement="starting", restarts_left=left)

    def registered(self, local: LocalEngine, engine: EngineState) -> int | None:
        """A replacement registered: note it in the dead engine's record; return the dead
        engine's id (None when ``local`` replaces none)."""
        dead = local.replaces
        if dead is None:
            return None
        death = self.engines.death_of(dead)
        if death is not None:
            death["replaced_by"] = engine.id
            death["replacement"] = ""
        return dead

    def failed(self, local: LocalEngine, error: str) -> int | None:
        """A replacement's process exited before it registered: note ``error`` in the dead
        engine's record (no other replacement is started: what made this one fail would
        most likely fail the next); return the dead engine's id (None when ``local``
        replaces none)."""
        dead = local.replaces
        if dead is None:
            return None
        death = self.engines.death_of(dead)
        if death is not None:
            death["replacement"] = "failed"
            death["replacement_error"] = error
        log.error("the replacement of engine %d did not start: %s", dead, error)
        return dead


def _with(death: EngineDeath, *, replacement: str, restarts_left: int) -> EngineDeath:
    return dataclasses.replace(death, replacement=replacement, restarts_left=restarts_left)
