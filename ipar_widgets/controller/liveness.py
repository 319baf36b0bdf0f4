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
from .deaths import ProcessEnd, death_of
from .engines import EngineRegistry, EngineState
from .launcher import LocalEngine, LocalLauncher, tail
from .lifecycle import Lifecycle
from .records import RecordStore
from .restarts import EngineRestarts
from .restore import Restorer
from .router import Router
from .scheduler import LoadBalancer

log = logging.getLogger("ipar_widgets.controller")

#: seconds a lost local engine's process gets to be seen exiting: its connection closes a
#: moment before the process is gone, and only its exit says how it died.  The heartbeat
#: leaves a local engine whose connection closed to the process watch this long; an engine
#: lost otherwise (its socket unreachable for a task) waits LOCAL_EXIT_WAIT, blocking
LOCAL_EXIT_GRACE = 2.0
LOCAL_EXIT_WAIT = 0.1


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
        #: replaces local engines that died (set by the Controller)
        self.restarts: EngineRestarts | None = None
        #: when each engine's heartbeat connection was found closed (controller clock)
        self._closed_since: dict[int, float] = {}

    def heartbeat(self) -> None:
        """Ping every engine; declare lost those silent too long or no longer connected."""
        now = time.monotonic()
        for gone in [i for i in self._closed_since if i not in self.engines.by_id]:
            del self._closed_since[gone]  # stopped on purpose meanwhile
        for engine in list(self.engines):
            if now - engine.last_pong > self.heartbeat_timeout:
                self.engine_lost(
                    engine,
                    f"it did not answer heartbeats for {now - engine.last_pong:.1f} s",
                    how="heartbeat",
                )
            elif (
                not self.router.send_to_engine([engine.heartbeat, HEARTBEAT_PING])
                and engine.answered
            ):
                closed = self._closed_since.setdefault(engine.id, now)
                # a local engine's exit is seen by watch_processes, which knows how it died;
                # one whose process outlives its connection for long is lost all the same
                if not engine.local or now - closed > LOCAL_EXIT_GRACE:
                    self.engine_lost(engine, "its connection closed (the process died)")

    def watch_processes(self) -> None:
        """Reap local engine processes that exited, kill those that overstay a stop, and
        finish a shutdown once they are all gone."""
        if self.launcher is None:
            return
        for local, end in self.launcher.reap():
            code = end.returncode
            if local.engine_id is not None and local.engine_id in self.engines.by_id:
                self.engine_lost(
                    self.engines.by_id[local.engine_id],
                    f"its process (pid {local.pid}) {end.words()}",
                    end=end,
                    local=local,
                )
            elif local.engine_id is None and local.stop_requested is None:
                log.error(
                    "engine process %d (pid %d) exited with code %d before registering; see %s",
                    local.seq,
                    local.pid,
                    code,
                    local.log_path,
                )
                if self.restarts is not None:
                    error = f"its process {end.words()} before registering (log: {local.log_path})"
                    dead = self.restarts.failed(local, error)
                    if dead is not None:
                        self.router.publish(
                            "engine_replacement_failed", {"engine_id": dead, "error": error}
                        )
        self.launcher.kill_overdue(self.shutdown_grace)
        if self.lifecycle.stopping:
            self.lifecycle.finish_shutdown_if_done()

    def engine_lost(
        self,
        engine: EngineState,
        reason: str,
        *,
        how: str = "connection",
        end: ProcessEnd | None = None,
        local: LocalEngine | None = None,
    ) -> None:
        """An engine left without being asked: write down how (deaths.py), retry or fail
        its tasks, kill a local one's process (it may only be hung), tell every client, and
        start a replacement when asked to (restarts.py)."""
        if engine.id not in self.engines.by_id:
            return
        self._closed_since.pop(engine.id, None)
        if local is None and self.launcher is not None:
            local = self.launcher.by_engine_id(engine.id)
            if local is not None and end is None:
                end = self.launcher.reap_one(local, wait=LOCAL_EXIT_WAIT)
                if end is not None:
                    reason = f"its process (pid {local.pid}) {end.words()}"
        running = next(iter(engine.outstanding), None)
        rec = self.records.get(running) if running is not None else None
        death = death_of(
            engine,
            reason,
            how=how,
            end=end,
            start_cgroup=local.start_cgroup if local is not None else None,
            task_outputs=rec.outputs if rec is not None else None,
            log_path=local.log_path if local is not None else None,
            log_tail=tail(local.log_path, 10) if local is not None else "",
        )
        if self.restarts is not None:
            death = self.restarts.replace(death, local, self.lifecycle.stopping)
        record = death.to_json()
        log.warning("engine %d lost: %s", engine.id, death.cause)
        self.engines.unregister(engine, reason, record)
        for msg_id in list(engine.outstanding):
            rec = self.records.get(msg_id)
            if rec is None or rec.finished:
                continue
            if rec.balanced and rec.retries > 0:
                rec.retries -= 1
                self.balancer.resubmit(rec, engine.id)
                continue
            self.router.fail_task(
                rec, "EngineError", death.describe(msg_id), extra={"death": record}
            )
        engine.outstanding.clear()
        if self.launcher is not None and local is not None and end is None:
            self.launcher.signal(local, signal.SIGKILL)  # alive, but lost: hung, or cut off
        self.router.publish(
            "engine_unregistered", {"engine_id": engine.id, "reason": reason, "death": record}
        )
        self.restorer.engine_gone()
        self.balancer.dispatch()
