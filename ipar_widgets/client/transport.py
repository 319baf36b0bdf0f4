"""The client's sockets and its one background I/O thread.

Receiving: one I/O thread owns the socket replies arrive on and the output subscription; it
blocks in ``poll`` (never on a timer), so an idle client costs nothing.

Sending: zmq sockets must not be shared between threads, so user threads send on a socket
of their own (identity ``<client>/s``) under a lock, and the controller sends the answers
to the I/O thread's socket (identity ``<client>``).  A send then costs the caller nothing
more than the send: no hand-off to the I/O thread and back.  Until the I/O thread's
connection is known to be up (its first request has been answered), messages go through its
outbox instead, so no answer can arrive before its socket is connected.

Waiting: a thread that sends tasks and at once waits for them (``apply_sync``, a view with
``block=True``) sends them on a socket of its own, its *waiter* (identity ``<client>/w<n>``),
and the controller sends their replies back to that socket, where the waiting thread
receives them itself.  That saves the I/O thread's wake-up and the hand-over to the waiting
thread: about a sixth of a round trip.  A thread that stops waiting before every reply came
(a timeout, Ctrl-C) gives its waiter to the I/O thread, which receives the rest.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

import zmq
from zmq.backend import zmq_poll
from zmq.utils.monitor import recv_monitor_message

from ..error import ClientClosed
from ..protocol.routing import EVERYONE, sender_identity, subscription, waiter_identity
from ..protocol.wire import (
    Frame,
    as_bytes,
    recv_frames,
    send_frames,
    send_frames_tracked,
    waiting_messages,
)

log = logging.getLogger("ipar_widgets.client")

Handler = Callable[[list[Frame]], object]
_POLLIN = int(zmq.POLLIN)


class _Waiter:
    """A thread's own socket for the replies to what it sends and waits for."""

    __slots__ = ("thread", "socket", "busy")

    def __init__(self, thread: threading.Thread, socket: zmq.Socket[bytes]) -> None:
        self.thread = thread
        self.socket = socket
        self.busy = False


class Transport:
    """Sockets to one controller and the thread that serves them."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        identity: bytes,
        request_url: str,
        notify_url: str,
        on_reply: Handler,
        on_notify: Handler,
    ) -> None:
        self.identity = identity
        self._on_reply = on_reply
        self._on_notify = on_notify
        self.requests = context.socket(zmq.DEALER)
        self.requests.identity = identity
        self.requests.linger = 0
        self.requests.sndhwm = self.requests.rcvhwm = 0
        self.notify = context.socket(zmq.SUB)
        self.notify.linger = 0
        self.notify.rcvhwm = 0
        self.notify.subscribe(subscription(identity))  # outputs of this client's tasks
        self.notify.subscribe(subscription(EVERYONE))  # notices, outputs nobody claimed
        self.notify.connect(notify_url)
        # the request socket's connection events: the controller going away and coming back
        self._monitor = self.requests.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        self.requests.connect(request_url)
        self.sender = context.socket(zmq.DEALER)
        self.sender.identity = sender_identity(identity)
        self.sender.linger = 1000
        self.sender.sndhwm = 0
        self.sender.connect(request_url)
        self._send_lock = threading.Lock()
        #: set once the I/O thread's socket has had an answer: it is connected
        self.direct = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._outbox: deque[tuple[list[Frame], Callable[[], None] | None]] = deque()
        self._lock = threading.Lock()
        self._wake_sent = False
        self._closing = False
        self._closed = threading.Event()
        self._request_url = request_url
        self._context = context
        #: thread id -> its waiter (see begin_wait)
        self._waiters: dict[int, _Waiter] = {}
        self._waiter_count = 0
        #: waiters of threads that stopped waiting early, for the I/O thread to take over
        self._orphans: list[zmq.Socket[bytes]] = []
        #: readable once the client closes, so waiting threads wake up and stop
        self._closing_r, self._closing_w = os.pipe()
        #: optional: returns the monotonic time of the next deadline (or None) ...
        self.next_deadline: Callable[[], float | None] | None = None
        #: ... and is called in the I/O thread once that time has passed
        self.on_deadline: Callable[[], None] | None = None
        #: called in the I/O thread with "lost" when the connection to the controller drops,
        #: "back" when it is up again, and "gone" once it stayed down for ``controller_timeout``
        self.on_connection: Callable[[str, float], None] | None = None
        self.controller_timeout = 60.0
        #: monotonic time the connection dropped (None while it is up)
        self.down_since: float | None = None
        self._gone_told = False
        self.thread = threading.Thread(target=self._run, name="ipar-client-io", daemon=True)
        self.thread.start()

    # -- called from any thread -------------------------------------------------------------------
    def send(self, frames: list[Frame], on_sent: Callable[[], None] | None = None) -> None:
        """Send one multipart message; ``on_sent`` runs once it is sent."""
        if self.direct:
            self.send_many([frames], on_sent)
            return
        with self._lock:
            if self._closing:
                raise ClientClosed("send to the controller")
            self._outbox.append((frames, on_sent))
            wake = not self._wake_sent
            self._wake_sent = True
        if wake:
            self._wake()

    def send_many(
        self, messages: list[list[Frame]], on_sent: Callable[[], None] | None = None
    ) -> None:
        """Queue several messages at once; ``on_sent`` runs after the last one is sent."""
        if not messages:
            if on_sent is not None:
                on_sent()
            return
        if self.direct:
            with self._send_lock:
                if self._closing:
                    raise ClientClosed("send to the controller")
                for frames in messages:
                    send_frames(self.sender, frames)
            if on_sent is not None:
                on_sent()
            return
        with self._lock:
            if self._closing:
                raise ClientClosed("send to the controller")
            last = len(messages) - 1
            for i, frames in enumerate(messages):
                self._outbox.append((frames, on_sent if i == last else None))
            wake = not self._wake_sent
            self._wake_sent = True
        if wake:
            self._wake()

    def send_tracked(self, messages: list[list[Frame]]) -> zmq.MessageTracker:
        """Send messages (``track=True``): the tracker returned is done once zmq no longer
        needs the memory of the frames it sent without a copy.  Before the connection is up
        the frames are copied into the outbox, and the tracker is done at once."""
        if not self.direct:
            self.send_many([[as_bytes(frame) for frame in frames] for frames in messages])
            return zmq.MessageTracker()
        trackers: list[zmq.MessageTracker] = []
        with self._send_lock:
            if self._closing:
                raise ClientClosed("send to the controller")
            for frames in messages:
                trackers.extend(send_frames_tracked(self.sender, frames))
        return zmq.MessageTracker(*trackers)

    # -- waiters (each used only by the thread that owns it) ------------------------------------
    def begin_wait(self) -> zmq.Socket[bytes]:
        """This thread's waiter socket (made on first use), marked in use until end_wait."""
        me = threading.current_thread()
        with self._lock:
            if self._closing:
                raise ClientClosed("send to the controller")
            waiter = self._waiters.get(me.ident or 0)
            if waiter is None or waiter.thread is not me:
                # a thread that ended no longer uses its socket: close it here, under the lock
                for ident, other in list(self._waiters.items()):
                    if not other.thread.is_alive():
                        del self._waiters[ident]
                        other.socket.close(linger=0)
                self._waiter_count += 1
                sock = self._context.socket(zmq.DEALER)
                sock.identity = waiter_identity(self.identity, self._waiter_count)
                sock.linger = 0
                sock.sndhwm = sock.rcvhwm = 0
                sock.connect(self._request_url)
                waiter = self._waiters[me.ident or 0] = _Waiter(me, sock)
            waiter.busy = True
            return waiter.socket

    def receive_waited(self, sock: zmq.Socket[bytes], timeout: float | None) -> list[Frame] | None:
        """The next reply on this thread's waiter, or None after ``timeout`` seconds.

        Raises RuntimeError once the client closes.
        """
        # zmq_poll itself, not a zmq.Poller: this is on the path of every blocking call
        ready = zmq_poll(
            [(sock, _POLLIN), (self._closing_r, _POLLIN)],
            -1 if timeout is None else int(max(0.0, timeout) * 1000) + 1,
        )
        if self._closing:
            raise ClientClosed(text="the client was closed while waiting for results")
        # zmq_poll gives back the socket objects it was given (its stub says int)
        first: object = ready[0][0] if ready else None
        if first is not sock:
            return None
        return recv_frames(sock, noblock=True)

    def end_wait(self, sock: zmq.Socket[bytes], complete: bool) -> None:
        """This thread is done with its waiter.  ``complete``: every reply it waited for came;
        if not, the I/O thread takes the socket over and receives the rest, and the thread
        gets a fresh one next time."""
        me = threading.current_thread()
        with self._lock:
            waiter = self._waiters.get(me.ident or 0)
            if waiter is None or waiter.socket is not sock:
                return
            waiter.busy = False
            if self._closing:
                del self._waiters[me.ident or 0]
                sock.close(linger=0)
                self._close_pipe_if_unused()
                return
            if complete:
                return
            del self._waiters[me.ident or 0]
            self._orphans.append(sock)
        self.wake()

    def wake(self) -> None:
        """Make the I/O thread go round its loop (to take in a deadline or an orphan)."""
        with self._lock:
            wake = not self._wake_sent
            self._wake_sent = True
        if wake:
            self._wake()

    def _close_pipe_if_unused(self) -> None:
        """Close the closing-signal pipe once no thread can be waiting on it (call with the
        lock, after closing began)."""
        if self._closing_w >= 0 and not self._waiters:
            os.close(self._closing_r)
            os.close(self._closing_w)
            self._closing_r = self._closing_w = -1

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        with self._send_lock:
            self.sender.close(linger=1000)
        with self._lock:  # waiters not in use close now; the others when their threads stop
            for ident, waiter in list(self._waiters.items()):
                if not waiter.busy:
                    del self._waiters[ident]
                    waiter.socket.close(linger=0)
            os.write(self._closing_w, b"x")  # wakes the threads still waiting
            self._close_pipe_if_unused()
        self._wake()
        if threading.current_thread() is not self.thread:
            self._closed.wait(timeout)

    @property
    def closed(self) -> bool:
        return self._closing

    def _closed_by_context(self) -> None:
        """The sockets went with their context (``context.destroy()``): close as ``close``
        would, waking every thread that waits, without touching the dead sockets."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._closing_w >= 0:
                os.write(self._closing_w, b"x")

    # -- the I/O thread ---------------------------------------------------------------------------
    def _flush_outbox(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            batch = list(self._outbox)
            self._outbox.clear()
            self._wake_sent = False
            orphans, self._orphans = self._orphans, []
        for sock in orphans:
            self._poller.register(sock, zmq.POLLIN)
            self._adopted.append(sock)
        for frames, on_sent in batch:
            try:
                send_frames(self.requests, frames)
            except zmq.ZMQError as exc:
                log.error("could not send a message to the controller: %s", exc)
                continue
            if on_sent is not None:
                try:
                    on_sent()
                except Exception:
                    log.exception("error in a sent-callback")

    def _connection_events(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_DISCONNECTED and self.down_since is None:
                self.down_since = time.monotonic()
                self._gone_told = False
                self._tell("lost", 0.0)
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and self.down_since is not None:
                waited = time.monotonic() - self.down_since
                self.down_since = None
                self._tell("back", waited)

    def _tell_if_gone(self) -> None:
        if self.down_since is None or self._gone_told:
            return
        waited = time.monotonic() - self.down_since
        if waited >= self.controller_timeout:
            self._gone_told = True
            self._tell("gone", waited)

    def _tell(self, what: str, waited: float) -> None:
        if self.on_connection is None:
            return
        try:
            self.on_connection(what, waited)
        except Exception:
            log.exception("error handling the connection to the controller")

    def _drain(self, sock: zmq.Socket[bytes], handler: Handler) -> None:
        for frames in waiting_messages(sock, 1000):
            try:
                handler(frames)
            except Exception:
                log.exception("error handling a message from the controller")

    def _run(self) -> None:
        self._poller = poller = zmq.Poller()
        self._adopted: list[zmq.Socket[bytes]] = []  # waiters of threads that stopped waiting
        poller.register(self.notify, zmq.POLLIN)
        poller.register(self.requests, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while True:
                timeout: int | None = None
                deadline = self.next_deadline() if self.next_deadline else None
                wake = deadline
                if self.down_since is not None and not self._gone_told:
                    gone_at = self.down_since + self.controller_timeout
                    wake = gone_at if wake is None else min(wake, gone_at)
                if wake is not None:
                    timeout = int(max(0.0, wake - time.monotonic()) * 1000) + 1
                events = dict(poller.poll(timeout))
                if deadline is not None and self.on_deadline and time.monotonic() >= deadline:
                    self.on_deadline()
                if self._monitor in events:
                    self._connection_events()
                self._tell_if_gone()
                # outputs first: a task's output is taken before its reply when both wait
                if self.notify in events:
                    self._drain(self.notify, self._on_notify)
                if self.requests in events:
                    self._drain(self.requests, self._on_reply)
                for sock in self._adopted:
                    if sock in events:
                        self._drain(sock, self._on_reply)
                if self._wake_r in events:
                    self._flush_outbox()
                    if self._closing:
                        break
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.ENOTSOCK, zmq.ETERM) and not self._context.closed:
                log.exception("the client's I/O thread failed")
            else:  # someone destroyed the zmq context under us: that closes this client
                log.debug("the zmq context of the client was destroyed; the client is closed")
                self._closed_by_context()
        except Exception:
            log.exception("the client's I/O thread failed")
        finally:
            try:
                self.requests.disable_monitor()
            except zmq.ZMQError:
                pass  # the context is gone already
            self._monitor.close(linger=0)
            self.requests.close(linger=0)
            self.notify.close(linger=0)
            for sock in self._adopted:
                sock.close(linger=0)
            with self._lock:
                orphans, self._orphans = self._orphans, []
            for sock in orphans:
                sock.close(linger=0)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._closed.set()
