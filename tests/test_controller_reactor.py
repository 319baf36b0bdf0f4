"""The controller's poll loop (``controller/reactor.py``) with real zmq sockets.

Each test runs the loop in the test's own thread over inproc sockets; a guard timer stops
any loop that a regression would keep running, so a failure shows up in seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest
import zmq

from ipar_widgets.controller.reactor import Reactor
from ipar_widgets.protocol.wire import Frame, InvalidMessage

GUARD = 5.0  # seconds after which a test's loop is stopped whatever happens


class Pipes:
    """PUSH sockets connected to PULL sockets over inproc, all closed at the end of a test
    (a socket left to the garbage collector would keep the context from terminating)."""

    def __init__(self) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sockets: list[zmq.Socket[bytes]] = []

    def pipe(self, name: str) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        """(sender, receiver)"""
        receiver = self.context.socket(zmq.PULL)
        receiver.bind(f"inproc://{name}")
        sender = self.context.socket(zmq.PUSH)
        sender.connect(f"inproc://{name}")
        self.sockets += [sender, receiver]
        return sender, receiver

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.context.term()


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    made = Pipes()
    yield made
    made.close()


def test_a_poll_error_reaches_the_caller_as_the_original_zmq_error() -> None:
    # Terminating the context while the loop polls makes zmq_poll fail with ETERM: not EINTR,
    # so the loop must re-raise that very error (it used to look up zmq.EINTR, which pyzmq
    # 27 does not have, and raised AttributeError instead).
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    reactor = Reactor()
    reactor.add_reader(sock, "pull", lambda frames: None)
    terminator = threading.Thread(target=ctx.term, daemon=True)  # returns once sock closes
    reactor.call_later(0.05, terminator.start)
    reactor.call_later(GUARD, reactor.stop)
    try:
        with pytest.raises(zmq.ZMQError) as caught:
            reactor.run()
    finally:
        sock.close(linger=0)
        terminator.join(GUARD)
    assert type(caught.value) is zmq.ContextTerminated
    assert caught.value.errno == zmq.ETERM
    assert not terminator.is_alive()


def test_a_signal_during_poll_does_not_end_the_loop(
    pipes: Pipes,
) -> None:
    _, receiver = pipes.pipe("signal")
    reactor = Reactor()
    reactor.add_reader(receiver, "pull", lambda frames: None)
    received: list[int] = []

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGUSR1, on_usr1)
    ticks: list[str] = []

    def finish() -> None:  # stops the loop once the signal was handled while it ran
        ticks.append("timer")
        if received:
            reactor.stop()
        else:
            reactor.call_later(0.05, finish)

    # a timer far enough ahead that the loop is inside poll when the signal comes
    reactor.call_later(0.4, finish)
    reactor.call_later(GUARD, reactor.stop)
    sender_thread = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
    sender_thread.start()
    try:
        reactor.run()
    finally:
        sender_thread.join()
        signal.signal(signal.SIGUSR1, previous)
    assert received == [signal.SIGUSR1]
    assert ticks[:1] == ["timer"]
    assert not reactor.running


def test_one_busy_socket_gives_way_after_the_drain_limit(
    pipes: Pipes,
) -> None:
    busy_sender, busy = pipes.pipe("busy")
    quiet_sender, quiet = pipes.pipe("quiet")
    for i in range(300):
        busy_sender.send(b"busy %d" % i)
    quiet_sender.send(b"quiet")
    reactor = Reactor(drain_limit=256)
    seen: list[bytes] = []

    def handle(frames: list[Frame]) -> None:
        assert len(frames) == 1 and isinstance(frames[0], bytes)
        seen.append(frames[0])
        if len(seen) == 301:
            reactor.stop()

    reactor.add_reader(busy, "busy", handle)  # served first when both have messages
    reactor.add_reader(quiet, "quiet", handle)
    reactor.call_later(GUARD, reactor.stop)
    reactor.run()

    assert len(seen) == 301
    assert seen[:256] == [b"busy %d" % i for i in range(256)]
    assert seen[256] == b"quiet"
    assert seen[257:] == [b"busy %d" % i for i in range(256, 300)]


def test_invalid_messages_are_counted_and_logged_once_a_second_per_problem(
    pipes: Pipes, caplog: pytest.LogCaptureFixture
) -> None:
    sender, receiver = pipes.pipe("garbage")
    for text in (b"unsigned", b"unsigned", b"unsigned", b"truncated"):
        sender.send(text)
    reactor = Reactor()
    handled: list[bytes] = []

    def reject(frames: list[Frame]) -> None:
        assert isinstance(frames[0], bytes)
        handled.append(frames[0])
        if len(handled) == 4:
            reactor.stop()
        raise InvalidMessage(f"{frames[0].decode()} message")

    reactor.add_reader(receiver, "client", reject)
    reactor.call_later(GUARD, reactor.stop)
    with caplog.at_level(logging.WARNING, logger="ipar_widgets.controller"):
        reactor.run()

    assert reactor.dropped == 4
    assert [r.getMessage() for r in caplog.records] == [
        "dropped a message on the client port: unsigned message (1 dropped so far)",
        "dropped a message on the client port: truncated message (4 dropped so far)",
    ]
