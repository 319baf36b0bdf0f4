"""The client's sockets and its one background I/O thread.

Receiving: one I/O thread owns the socket replies arrive on and the output subscription; it
blocks in ``poll`` (never on a timer), so an idle client costs nothing.

Sending: zmq sockets must not be shared between threads, so user threads send on a socket
of their own (identity ``<client>/s``) under a lock, and the controller sends the answers
to the I/O thread's socket (identity ``<client>``).  A send then costs the caller nothing
more than the send: no hand-off to the I/O thread and back.  Until the I/O thread's
connection is known to be up (its first request has been answered), messages go through its
outbox instead, so no answer can arrive before its socket is connected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from ..protocol.wire import readable, recv_frames, send_frames

log = logging.getLogger("ipar_widgets.client")

Handler = Callable[[list[Any]], None]
#: suffix of the identity user threads send from; the controller answers the identity without it
SENDER_SUFFIX = b"/s"


class Transport:
    """Sockets to one controller and the thread that serves them."""

    def __init__(
        self,
        context: zmq.Context[Any],
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
        self.notify.subscribe(identity + b"\x00")  # outputs of this client's tasks
        self.notify.subscribe(b"*\x00")  # cluster notices and outputs nobody claimed
        self.notify.connect(notify_url)
        self.requests.connect(request_url)
        self.sender = context.socket(zmq.DEALER)
        self.sender.identity = identity + SENDER_SUFFIX
        self.sender.linger = 1000
        self.sender.sndhwm = 0
        self.sender.connect(request_url)
        self._send_lock = threading.Lock()
        #: set once the I/O thread's socket has had an answer: it is connected
        self.direct = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._outbox: deque[tuple[list[Any], Callable[[], None] | None]] = deque()
        self._lock = threading.Lock()
        self._wake_sent = False
        self._closing = False
        self._closed = threading.Event()
        #: optional: returns the monotonic time of the next deadline (or None) ...
        self.next_deadline: Callable[[], float | None] | None = None
        #: ... and is called in the I/O thread once that time has passed
        self.on_deadline: Callable[[], None] | None = None
        self.thread = threading.Thread(target=self._run, name="ipar-client-io", daemon=True)
        self.thread.start()

    # -- called from any thread -------------------------------------------------------------------
    def send(self, frames: list[Any], on_sent: Callable[[], None] | None = None) -> None:
        """Send one multipart message; ``on_sent`` runs once it is sent."""
        if self.direct:
            self.send_many([frames], on_sent)
            return
        with self._lock:
            if self._closing:
                raise RuntimeError("this client is closed")
            self._outbox.append((frames, on_sent))
            wake = not self._wake_sent
            self._wake_sent = True
        if wake:
            self._wake()

    def send_many(
        self, messages: list[list[Any]], on_sent: Callable[[], None] | None = None
    ) -> None:
        """Queue several messages at once; ``on_sent`` runs after the last one is sent."""
        if not messages:
            if on_sent is not None:
                on_sent()
            return
        if self.direct:
            with self._send_lock:
                if self._closing:
                    raise RuntimeError("this client is closed")
                for frames in messages:
                    send_frames(self.sender, frames)
            if on_sent is not None:
                on_sent()
            return
        with self._lock:
            if self._closing:
                raise RuntimeError("this client is closed")
            last = len(messages) - 1
            for i, frames in enumerate(messages):
                self._outbox.append((frames, on_sent if i == last else None))
            wake = not self._wake_sent
            self._wake_sent = True
        if wake:
            self._wake()

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
        self._wake()
        if threading.current_thread() is not self.thread:
            self._closed.wait(timeout)

    @property
    def closed(self) -> bool:
        return self._closing

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

    def _drain(self, sock: zmq.Socket[Any], handler: Handler) -> None:
        # called when the poll said a message waits: only later ones need asking the socket
        for i in range(1000):
            if i and not readable(sock):
                return
            try:
                frames = recv_frames(sock, noblock=True)
            except zmq.Again:
                return
            try:
                handler(frames)
            except Exception:
                log.exception("error handling a message from the controller")

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.notify, zmq.POLLIN)
        poller.register(self.requests, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while True:
                timeout = None
                deadline = self.next_deadline() if self.next_deadline else None
                if deadline is not None:
                    timeout = max(0.0, deadline - time.monotonic()) * 1000
                events = dict(poller.poll(timeout))
                if deadline is not None and self.on_deadline and time.monotonic() >= deadline:
                    self.on_deadline()
                # outputs first: a task's output is taken before its reply when both wait
                if self.notify in events:
                    self._drain(self.notify, self._on_notify)
                if self.requests in events:
                    self._drain(self.requests, self._on_reply)
                if self._wake_r in events:
                    self._flush_outbox()
                    if self._closing:
                        break
        except Exception:
            log.exception("the client's I/O thread failed")
        finally:
            self.requests.close(linger=0)
            self.notify.close(linger=0)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._closed.set()
