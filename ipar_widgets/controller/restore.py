"""A controller restored in the place of one that died: its records and engines come back.

``ipar start --restore`` binds the dead controller's ports with its key and calls
:meth:`Restorer.restore`: the unfinished task records come back from the task database
(finished ones stay there, where queries find them), and so do the engines that had not
left.  Those engines are *rejoining*: their sockets reconnect by themselves, tasks meant for
them are held, and load balancing waits, so that no task runs twice.

An engine rejoins with a ``registration_request`` on its control socket (see
``engine/rejoin.py``) carrying its id, the task it is running and the replies of its last
seconds.  The replies the database did not have are recorded and answered now; then a sync
marker goes to the engine's shell socket, after the held tasks.  When its answer comes, every
task sent to that engine before the marker has been answered, or was lost on the way (it was
in the dead controller's queues): those are queued again.  Once every restored engine has
rejoined or been given up (``rejoin_timeout``, or its heartbeats stop), load balancing
resumes and the clients' questions held meanwhile are answered.

The same rejoin also serves a live controller whose engine lost its connection for a while.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from ..protocol.routing import CONTROLLER_IDENTITY
from ..protocol.wire import DELIM, Frame, InvalidMessage, Wire, as_bytes, unpack
from .engines import EngineRegistry, EngineState
from .reactor import Reactor
from .records import ABORTED, PENDING, RUNNING, RecordStore, TaskRecord
from .router import Router
from .scheduler import LoadBalancer

log = logging.getLogger("ipar_widgets.controller")

#: seconds a restored controller whose database knew of no engine waits for engines to rejoin
#: (they reconnect within a fraction of a second; those the database knows of are waited for
#: until each is back, or rejoin_timeout)
REJOIN_GRACE = 2.0


class RestorableStore(Protocol):
    """What a restore reads of the task database."""

    def load_unfinished(self) -> list[TaskRecord]:
        """The records of tasks that had not finished, oldest first."""
        ...

    def load_engines(self) -> list[dict[str, object]]:
        """Every engine that registered: ``id``, ``uuid``, ``hostname``, ``pid``, ``left``."""
        ...


class Restorer:
    """Restores a dead controller's state and takes its engines back."""

    def __init__(
        self,
        router: Router,
        balancer: LoadBalancer,
        engines: EngineRegistry,
        records: RecordStore,
        wire: Wire,
        reactor: Reactor,
        *,
        engine_lost: Callable[[EngineState, str], None],
        rejoin_timeout: float,
    ) -> None:
        self.router = router
        self.balancer = balancer
        self.engines = engines
        self.records = records
        self.wire = wire
        self.reactor = reactor
        self.engine_lost = engine_lost
        self.rejoin_timeout = rejoin_timeout
        #: whether restored engines are still awaited (load balancing waits meanwhile)
        self.active = False
        #: past rejoin_timeout: an engine whose marker waits behind a long task holds no one
        self._patience_over = False
        #: past REJOIN_GRACE: engines the database did not know of had time to come back
        self._grace_over = True
        self._deferred: list[Callable[[], None]] = []
        #: direct tasks for engine ids not registered (yet): sent when the engine rejoins,
        #: failed as for an unknown engine when the restore ends without it
        self._for_engine: dict[int, list[Callable[[], None]]] = {}
        router.hold_for_engine = self.hold_for_engine

    # -- at start ---------------------------------------------------------------------------------
    def restore(self, store: RestorableStore) -> tuple[int, int]:
        """Bring back the engines that had not left and the unfinished tasks; return how many
        of each."""
        awaited = 0
        rows = store.load_engines()
        # the engines still in the cluster first: their ids are theirs; ids of engines that
        # left (maybe of earlier controllers of the profile) are not given out again now
        for row in sorted(rows, key=lambda r: bool(r.get("left"))):
            engine_id, engine_uuid = int(str(row["id"])), str(row["uuid"])
            if row.get("left"):
                self.engines.remember(engine_id, engine_uuid)
                continue
            back = self.engines.register(
                engine_uuid,
                int(str(row.get("pid") or 0)),
                str(row.get("hostname") or ""),
                False,
                engine_id=engine_id,
            )
            back.rejoining = True
            awaited += 1
        self.router.adopt_unrecorded = True
        orphans: list[TaskRecord] = []
        restored = store.load_unfinished()
        now = time.monotonic()
        for rec in restored:
            # the waiting threads' sockets of the dead controller's clients may be gone:
            # answers go to the clients' own sockets, which pick them up (and deduplicate)
            rec.reply_to = rec.client
            self.records.add(rec)
        for rec in restored:
            engine = self.engines.by_id.get(rec.engine_id) if rec.engine_id is not None else None
            if rec.status == RUNNING and engine is not None:
                rec.dispatched = now
                engine.outstanding[rec.msg_id] = None
                engine.busy_since = engine.busy_since or now
            elif rec.status == RUNNING or (not rec.balanced and engine is None):
                orphans.append(rec)
            elif rec.balanced:
                rec.status = PENDING
                assert rec.request is not None
                self.balancer.submit(rec, unpack(rec.request[4]))
            else:  # a direct task not yet sent: to its engine, once it is back
                assert engine is not None
                self.router.send_task(rec, engine)
        for rec in orphans:
            self._lost_task(rec, "its engine had left before the controller was restored")
        # With no engine in the database (it had not saved them yet), engines may still be
        # alive: a short grace lets them rejoin before the clients' questions are answered.
        self.active = True
        self.balancer.held = True
        self._grace_over = awaited > 0
        if not awaited:
            self.reactor.call_later(min(REJOIN_GRACE, self.rejoin_timeout), self._end_grace)
        self.reactor.call_later(self.rejoin_timeout, self._give_up)
        log.info(
            "restored %d unfinished task(s); waiting up to %.0f s for %d engine(s) to rejoin",
            len(restored),
            self.rejoin_timeout,
            awaited,
        )
        return awaited, len(restored)

    def abandon(
        self, store: RestorableStore, on_engine_left: Callable[[EngineState, str], None]
    ) -> int:
        """A controller started *without* ``--restore`` where one died: its unfinished tasks
        are finished as aborted (so nobody waits for them, and a later restore does not run
        them) and its engines count as gone.  Returns how many tasks were aborted."""
        for row in store.load_engines():
            engine_id, engine_uuid = int(str(row["id"])), str(row["uuid"])
            if not row.get("left"):  # (a new controller's engines are numbered from 0 again)
                gone = EngineState(engine_id, engine_uuid, 0, str(row.get("hostname") or ""), False)
                on_engine_left(gone, "its controller died and was replaced without --restore")
        abandoned = store.load_unfinished()
        for rec in abandoned:
            self.records.add(rec)
            self.router.fail_task(
                rec,
                "TaskAborted",
                f"the controller died before task {rec.msg_id} finished, and a new one was "
                "started without --restore (ipar start --restore would have finished it)",
                status=ABORTED,
            )
        if abandoned:
            log.warning("aborted %d task(s) a controller that died left unfinished", len(abandoned))
        return len(abandoned)

    def _lost_task(self, rec: TaskRecord, why: str) -> None:
        if rec.balanced and rec.retries > 0 and rec.engine_id is not None:
            rec.retries -= 1
            self.balancer.resubmit(rec, rec.engine_id)
            return
        self.router.fail_task(
            rec,
            "EngineError",
            f"task {rec.msg_id} was on engine {rec.engine_id} when the controller died, and "
            f"{why}; it did not allow retries (retries=0), so it was not run again",
        )

    # -- rejoining --------------------------------------------------------------------------------
    def rejoined(
        self, engine: EngineState, content: dict[str, object], buffers: list[Frame]
    ) -> None:
        """An engine is back (see the module docstring): take its resent replies and running
        task, send what was held for it, then the sync marker."""
        engine.rejoining = False
        engine.last_pong = time.monotonic()
        engine.engine_set = str(content.get("engine_set") or engine.engine_set)
        counts = content.get("replies")
        start = 0
        for n in counts if isinstance(counts, list) else []:
            entry = buffers[start : start + int(n)]
            start += int(n)
            self._resent_reply(engine, entry)
        running = content.get("running")
        if isinstance(running, str):
            rec = self.records.get(running)
            if rec is not None and not rec.finished and running not in engine.outstanding:
                self.balancer.take(running)
                rec.engine_id = engine.id
                rec.status = RUNNING
                rec.dispatched = time.monotonic()
                engine.outstanding[running] = None
        if not self.router.paused:
            self.router.send_held(engine)
        for call in self._for_engine.pop(engine.id, []):
            call()  # direct tasks sent for it while it was not back yet
        engine.unconfirmed = set(engine.outstanding)
        if isinstance(running, str):
            engine.unconfirmed.discard(running)
        engine.sync_id = sync_id = str(uuid.uuid4())
        header = self.wire.header("sync_request")
        header["msg_id"] = sync_id
        _, frames = self.wire.build(
            "sync_request", {}, header=header, idents=[engine.shell, CONTROLLER_IDENTITY]
        )
        self.router.send_to_engine(frames)
        log.info(
            "engine %d rejoined (%d replies resent, running %s); %d task(s) to confirm",
            engine.id,
            len(counts) if isinstance(counts, list) else 0,
            running or "nothing",
            len(engine.unconfirmed),
        )

    def _resent_reply(self, engine: EngineState, entry: list[Frame]) -> None:
        if len(entry) < 7 or as_bytes(entry[1]) != DELIM:
            log.warning("engine %d resent a malformed reply; dropped", engine.id)
            return
        try:
            msg_id = unpack(entry[4]).get("msg_id")
        except ValueError:
            msg_id = None
        rec = self.records.get(msg_id) if isinstance(msg_id, str) else None
        if rec is not None and rec.finished:
            return  # recorded before the crash: nothing new
        try:
            self.router.on_engine([engine.shell, *entry])
        except InvalidMessage as exc:
            log.warning("engine %d resent a reply that does not verify: %s", engine.id, exc)

    def synced(self, engine: EngineState, sync_id: str) -> None:
        """The engine answered the sync marker: what it never answered of the tasks sent
        before it was lost on the way, and goes again."""
        if sync_id != engine.sync_id:
            return
        engine.sync_id = None
        lost, engine.unconfirmed = engine.unconfirmed, set()
        for msg_id in lost:
            if msg_id not in engine.outstanding:
                continue
            del engine.outstanding[msg_id]
            rec = self.records.get(msg_id)
            if rec is None or rec.finished:
                continue
            log.info("task %s never reached engine %d; sending it again", msg_id, engine.id)
            if rec.balanced:
                rec.status = PENDING
                rec.dispatched = None
                self.balancer.queue.appendleft(rec)
            else:
                self.router.send_task(rec, engine)
        engine.busy_since = time.monotonic() if engine.outstanding else None
        self._release_if_done()

    # -- the end of the restore -------------------------------------------------------------------
    def _awaited(self) -> list[EngineState]:
        return [
            e
            for e in self.engines
            if e.rejoining or (e.sync_id is not None and not self._patience_over)
        ]

    def _give_up(self) -> None:
        if not self.active:
            return
        self._patience_over = True  # a marker waiting behind a long task holds no one now
        for engine in self._awaited():
            self.engine_lost(
                engine,
                f"it did not rejoin the restored controller within {self.rejoin_timeout:g} s",
            )
        self._release_if_done()

    def _end_grace(self) -> None:
        self._grace_over = True
        self._release_if_done()

    def _release_if_done(self) -> None:
        if not self.active or not self._grace_over or self._awaited():
            return
        self.active = False
        self.balancer.held = False
        log.info("every restored engine rejoined or was given up; load balancing resumes")
        deferred, self._deferred = self._deferred, []
        waiting = [call for calls in self._for_engine.values() for call in calls]
        self._for_engine.clear()
        for call in [*waiting, *deferred]:
            call()
        self.balancer.dispatch()

    def engine_gone(self) -> None:
        """An awaited engine was lost (liveness): the restore may be over."""
        self._release_if_done()

    def hold_for_engine(self, engine_id: int, call: Callable[[], None]) -> bool:
        """Take ``call`` (a direct task's dispatch) for engine ``engine_id``, not registered:
        it runs when that engine rejoins, or when the restore ends.  False when no restore
        is under way (the engine is simply unknown)."""
        if not self.active:
            return False
        self._for_engine.setdefault(engine_id, []).append(call)
        return True

    def defer(self, call: Callable[[], None]) -> None:
        """Run ``call`` once the restore is over (now, when it is)."""
        if self.active:
            self._deferred.append(call)
        else:
            call()
