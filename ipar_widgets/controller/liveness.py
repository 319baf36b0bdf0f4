"""Noticing engines that died or hung, and declaring them lost.

Two watches run on the controller's timers: heartbeats (every engine's heartbeat socket is
pinged each ``heartbeat_period``; an engine silent for ``heartbeat_timeout`` is lost, and so
is one whose connection closed after it had answered) and, for engines on this host, their
processes (an engine whose process exited is lost at once, without waiting for heartbeats).
A lost engine's tasks are retried elsewhere when they allow it and failed otherwise, and
every client hears ``engine_unregistered``.  The pongs themselves are read by the router
(:meth:`.Router.on_engine`), since they arrive on the engine port.
"""

from __future__ import annotations

import logging
import signal
import time

from ..protocol.routing import HEARTBEAT_PING
from .engines import EngineRegistry, EngineState
from .launcher import LocalLauncher
from .lifecycle import Lifecycle
from .records import RecordStore
from .restore import Restorer
from .router import Router
from .scheduler import LoadBalancer

log = logging.getLogger("ipar_widgets.controller")


class Liveness:
    """Heartbeats, local engine processes, and what happens when an engine is lost."""

    def __init__(
        self,
        router: Router,
        lifecycle: Lifecycle,
        balancer: LoadBalancer,
        engines: EngineRegistry,
        records: RecordStore,
        *,
        launcher: LocalLauncher | None,
        heartbeat_timeout: float,
        shutdown_grace: float,
    ) -> None:
        self.router = router
        self.lifecycle = lifecycle
        self.balancer = balancer
        self.engines = engines
        self.records = records
        self.launcher = launcher
        self.heartbeat_timeout = heartbeat_timeout
        self.shutdown_grace = shutdown_grace
        #: told when an engine it awaits is lost (set by the Controller)
        self.restorer: Restorer

    def heartbeat(self) -> None:
        """Ping every engine; declare lost those silent too long or no longer connected."""
        now = time.monotonic()
        for engine in list(self.engines):
            if now - engine.last_pong > self.heartbeat_timeout:
                self.engine_lost(
                    engine, f"it did not answer heartbeats for {now - engine.last_pong:.1f} s"
                )
            elif (
                not self.router.send_to_engine([engine.heartbeat, HEARTBEAT_PING])
                and engine.answered
            ):
                self.engine_lost(engine, "its connection closed (the process died)")

    def watch_processes(self) -> None:
        """Reap local engine processes that exited, kill those that overstay a stop, and
        finish a shutdown once they are all gone."""
        if self.launcher is None:
            return
        for local, code in self.launcher.reap():
            if local.engine_id is not None and local.engine_id in self.engines.by_id:
                self.engine_lost(
                    self.engines.by_id[local.engine_id],
                    f"its process (pid {local.pid}) exited with code {code}",
                )
            elif local.engine_id is None and local.stop_requested is None:
                log.error(
                    "engine process %d (pid %d) exited with code %d before registering; see %s",
                    local.seq,
                    local.pid,
                    code,
                    local.log_path,
                )
        self.launcher.kill_overdue(self.shutdown_grace)
        if self.lifecycle.stopping:
            self.lifecycle.finish_shutdown_if_done()

    def engine_lost(self, engine: EngineState, reason: str) -> None:
        """An engine left without being asked: retry or fail its tasks, kill a local one's
        process (it may only be hung), and tell every client."""
        if engine.id not in self.engines.by_id:
            return
        log.warning("engine %d lost: %s", engine.id, reason)
        self.engines.unregister(engine, reason)
        for msg_id in list(engine.outstanding):
            rec = self.records.get(msg_id)
            if rec is None or rec.finished:
                continue
            if rec.balanced and rec.retries > 0:
                rec.retries -= 1
                self.balancer.resubmit(rec, engine.id)
                continue
            self.router.fail_task(
                rec, "EngineError", f"engine {engine.id} died while it held task {msg_id}: {reason}"
            )
        engine.outstanding.clear()
        if self.launcher is not None:
            local = self.launcher.by_engine_id(engine.id)
            if local is not None:
                self.launcher.signal(local, signal.SIGKILL)
        self.router.publish("engine_unregistered", {"engine_id": engine.id, "reason": reason})
        self.restorer.engine_gone()
        self.balancer.dispatch()
