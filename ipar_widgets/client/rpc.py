"""Questions over a client's connection: to the controller itself, and to engines' control
channels (answered even while an engine runs a task).

Requests are built and answers read by :mod:`.controlplane`, as for one-off questions; what
this adds is waiting for the answer that the client's I/O thread receives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..error import ClientClosed, NoAnswer
from ..protocol.routing import control_route
from ..protocol.wire import Message, Wire
from .controlplane import build_request, check_answer
from .dispatch import Inbound
from .transport import Transport

__all__ = ["Requests"]


class Requests:
    """Asks and waits for answers on behalf of one client."""

    def __init__(self, wire: Wire, transport: Transport, inbound: Inbound, address: str) -> None:
        self.wire = wire
        self.transport = transport
        self.queries = inbound.queries
        self.address = address

    def ask(
        self, msg_type: str, content: dict[str, Any] | None = None, *, timeout: float | None = 10
    ) -> Message:
        """Ask the controller; the answer, or ControllerRefused / NoAnswer / the error the
        answer carries."""
        if self.transport.closed:
            raise ClientClosed(f"ask the controller ({msg_type})")
        msg_id, frames = build_request(self.wire, msg_type, content)
        future: Future[Message] = Future()
        self.queries[msg_id] = future
        self.transport.send(frames)
        try:
            msg = future.result(timeout)
        except FutureTimeout:
            self.queries.pop(msg_id, None)
            raise NoAnswer(msg_type, timeout, self.address) from None
        return check_answer(msg, msg_type)

    def ask_engines(
        self,
        engine_ids: Iterable[int],
        msg_type: str,
        content: dict[str, Any],
        timeout: float = 10,
    ) -> dict[int, Message]:
        """Send a control message to each engine and wait for every answer (each checked)."""
        answers = self.ask_each_engine(engine_ids, msg_type, content, timeout)
        for engine_id, msg in answers.items():
            if msg is None:
                raise TimeoutError(
                    f"engine {engine_id} did not answer {msg_type} within {timeout:g} s; is it "
                    "still running? (see rc.ids, or: ipar list)"
                )
        replies = {engine_id: msg for engine_id, msg in answers.items() if msg is not None}
        for msg in replies.values():
            check_answer(msg, msg_type)
        return replies

    def ask_each_engine(
        self,
        engine_ids: Iterable[int],
        msg_type: str,
        content: dict[str, Any],
        timeout: float,
    ) -> dict[int, Message | None]:
        """Send a control message to each engine; each one's answer (an error answer too,
        unchecked), or None where none came within ``timeout`` seconds of the sending.  One
        engine that cannot answer (its task holds the GIL) does not hide the others'."""
        if self.transport.closed:
            raise ClientClosed(f"send {msg_type} to engines")
        futures: dict[int, tuple[str, Future[Message]]] = {}
        for engine_id in engine_ids:
            msg_id, frames = build_request(
                self.wire, msg_type, content, route=control_route(engine_id)
            )
            future: Future[Message] = Future()
            self.queries[msg_id] = future
            futures[engine_id] = (msg_id, future)
            self.transport.send(frames)
        answers: dict[int, Message | None] = {}
        deadline = time.monotonic() + timeout
        for engine_id, (msg_id, future) in futures.items():
            try:
                answers[engine_id] = future.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                self.queries.pop(msg_id, None)  # a late answer is dropped (dispatch.py)
                answers[engine_id] = None
        return answers
