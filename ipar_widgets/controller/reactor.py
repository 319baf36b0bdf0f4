"""The controller's poll loop: it waits on its sockets and timers and hands each message on.

Everything the controller does runs in this one thread, in one of three ways: a message
arrived on a registered socket (its handler runs), a timer fell due (heartbeats, watching
local engine processes, a deferred shutdown), or a task's timeout passed before it reached
an engine (the load balancer fails it).  A socket is drained up to ``drain_limit`` messages
per turn, so a flood on one socket cannot starve the others.  A handler rejects a message by
raising :class:`~ipar_widgets.protocol.wire.InvalidMessage`: the message is dropped, counted
and logged (each kind of problem at most once a second per socket).
"""

from __future__ import annotations

import errno
import heapq
import logging
import time
from collections.abc import Callable
from typing import Protocol

import zmq

from ..protocol.wire import Frame, InvalidMessage, waiting_messages

log = logging.getLogger("ipar_widgets.controller")

#: what a registered socket's messages are handed to: the frames of one multipart message
MessageHandler = Callable[[list[Frame]], None]


class Deadlines(Protocol):
    """Deadlines the loop must wake up for besides its timers (the load balancer's task
    timeouts): kept apart from timers because there is one per task, most never due."""

    def next_deadline(self) -> float | None:
        """The earliest deadline (``time.monotonic()`` clock), or None when there is none."""
        ...

    def expire(self, now: float) -> None:
        """Act on every deadline that ``now`` has passed."""
        ...


class Reactor:
    """A single-threaded poll loop over zmq sockets, with timers and drop accounting."""

    def __init__(self, drain_limit: int = 256) -> None:
        self.drain_limit = drain_limit
        #: messages dropped because a handler found them invalid (shown by ``ipar list``)
        self.dropped = 0
        self._readers: list[tuple[zmq.Socket[bytes], str, MessageHandler]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._running = False
        self._last_drop_log: dict[tuple[str, str], float] = {}

    # -- what to wait for -------------------------------------------------------------------------
    def add_reader(self, sock: zmq.Socket[bytes], name: str, handler: MessageHandler) -> None:
        """Hand every message arriving on ``sock`` to ``handler``.  Readers are served in the
        order they were added when several have messages waiting; ``name`` labels the
        socket in drop warnings."""
        self._readers.append((sock, name, handler))

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop once, ``delay`` seconds from now."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._timer_seq, callback))

    def every(self, period: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop every ``period`` seconds while it runs."""

        def tick() -> None:
            try:
                callback()
            finally:
                if self._running:
                    self.call_later(period, tick)

        self.call_later(period, tick)

    # -- the loop ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether :meth:`run` is serving (and has not been asked to stop)."""
        return self._running

    def stop(self) -> None:
        """End :meth:`run` after the current turn."""
        self._running = False

    def run(self, deadlines: Deadlines | None = None) -> None:
        """Serve the registered sockets and timers until :meth:`stop` is called."""
        self._running = True
        poller = zmq.Poller()
        handlers = list(self._readers)
        for sock, _, _ in handlers:
            poller.register(sock, zmq.POLLIN)
        while self._running:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic()) * 1000
            deadline = deadlines.next_deadline() if deadlines is not None else None
            if deadline is not None:
                wait = max(0.0, deadline - time.monotonic()) * 1000
                timeout = wait if timeout is None else min(timeout, wait)
            try:
                events = dict(poller.poll(None if timeout is None else int(timeout)))
            except zmq.ZMQError as exc:
                # pyzmq retries an interrupted poll itself; should EINTR surface anyway, it is
                # no error.  (errno's, not zmq's: pyzmq 27 has no zmq.EINTR, and looking it up
                # turned every other poll error into an AttributeError.)
                if exc.errno == errno.EINTR:
                    continue
                raise
            for sock, name, handler in handlers:
                if sock in events:
                    self._drain(sock, name, handler)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback = heapq.heappop(self._timers)
                try:
                    callback()
                except Exception:
                    log.exception("error in a controller timer")
            if deadline is not None and deadlines is not None:
                deadlines.expire(now)

    def _drain(self, sock: zmq.Socket[bytes], name: str, handler: MessageHandler) -> None:
        for frames in waiting_messages(sock, self.drain_limit):
            try:
                handler(frames)
            except InvalidMessage as exc:
                self._drop(name, str(exc))
            except Exception:
                log.exception("error handling a message; it was dropped")

    def _drop(self, name: str, why: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        # a flood of garbage must not flood the log: each kind of problem once a second
        if now - self._last_drop_log.get((name, why), 0.0) > 1.0:
            log.warning(
                "dropped a message on the %s port: %s (%d dropped so far)", name, why, self.dropped
            )
            self._last_drop_log[(name, why)] = now
