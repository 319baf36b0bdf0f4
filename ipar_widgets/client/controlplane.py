"""Requests to the controller itself (routing frame ``b"c"``): how one is built, how its
answer becomes a value or an error, and the one wait for engines to register.

Two callers ask the controller: a :class:`~ipar_widgets.client.client.Client`, over its
long-lived connection, and the ``ipar`` command, the ``Cluster`` API and the JupyterLab
server extension, which ask one question at a time (:func:`ask_once`).  Both build requests
with :func:`build_request` and read answers with :func:`check_answer`, so a refusal raises
the same :class:`~ipar_widgets.error.ControllerRefused`, and silence the same
:class:`~ipar_widgets.error.NoAnswer`, whoever asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from ..error import (
    ControllerRefused,
    EnginesNotReady,
    EngineStartFailed,
    NoAnswer,
    RemoteError,
    unwrap_exception,
)
from ..protocol.routing import CONTROLLER
from ..protocol.wire import Frame, Message, Wire

__all__ = ["build_request", "check_answer", "ask_once", "wait_for_engines", "address_of"]

#: what a status callable returns: the controller's ``status_reply`` content
Status = Mapping[str, Any]


def address_of(info: Mapping[str, Any]) -> str:
    """The controller's client address in a client connection file's contents."""
    return f"tcp://{info['location']}:{info['ports']['client']}"


def build_request(
    wire: Wire, msg_type: str, content: dict[str, Any] | None = None, route: bytes = CONTROLLER
) -> tuple[str, list[Frame]]:
    """A signed request for the controller (or, with ``route``, an engine's control
    channel); returns its msg_id (the answer's parent) and its frames."""
    header, frames = wire.build(msg_type, content, idents=[route])
    return str(header["msg_id"]), frames


def check_answer(msg: Message, request: str) -> Message:
    """The answer itself when it succeeded; otherwise the error it carries, raised.

    A refusal by the controller (a malformed or impossible request) raises
    :class:`ControllerRefused` with the controller's reason; an error the cluster produced
    on purpose (an unknown engine: :class:`EngineError`) or one raised on an engine raises
    as itself.
    """
    if msg.content.get("status") != "error":
        return msg
    err = unwrap_exception(msg.content)
    if type(err) is RemoteError and msg.content.get("origin") == "cluster":
        raise ControllerRefused(
            request, str(msg.content.get("evalue") or "the controller refused the request")
        )
    raise err


def ask_once(
    info: Mapping[str, Any],
    msg_type: str,
    content: dict[str, Any] | None = None,
    timeout: float = 5.0,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
) -> Message:
    """Ask the controller of a client connection file (``info``) one question, over a
    connection made for it and closed after it."""
    wire = Wire(str(info["key"]).encode())
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    address = address_of(info)
    try:
        sock.connect(address)
        msg_id, frames = build_request(wire, msg_type, content)
        sock.send_multipart(frames)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(int(remaining * 1000) + 1):
                raise NoAnswer(msg_type, timeout, address)
            msg = wire.decode(sock.recv_multipart())
            if msg.parent_header.get("msg_id") == msg_id:
                break
    finally:
        sock.close(linger=0)
    return check_answer(msg, msg_type)


def wait_for_engines(
    status: Callable[[], Status],
    n: int | None,
    timeout: float | None,
    pause: Callable[[float], None],
    *,
    timeout_detail: Callable[[], str] | None = None,
) -> Status:
    """Wait until ``n`` engines are registered (None: as many as the cluster was asked to
    start); return the last status.

    ``status()`` asks the controller for its status; ``pause(s)`` waits up to ``s`` seconds
    before the next question (a Client wakes early when an engine registers).  Raises
    :class:`EnginesNotReady` after ``timeout`` seconds (None or < 0: no limit), with
    ``timeout_detail()`` appended, and :class:`EngineStartFailed` as soon as an engine the
    controller started has exited before registering and too few others are starting to
    reach ``n``: the wait could then only time out.
    """
    limit = None if timeout is None or timeout < 0 else float(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    current = status()
    wanted = int(current.get("engines_requested") or 0) if n is None else n
    while True:
        registered = int(current.get("engines_registered", 0))
        if registered >= wanted:
            return current
        failures = current.get("launch_failures") or []
        if failures and registered + int(current.get("engines_starting", 0)) < wanted:
            last = failures[-1]
            raise EngineStartFailed(
                last.get("returncode"),
                str(last.get("log", "")),
                str(last.get("log_tail", "")),
                what=f"engine {last['seq']}" if "seq" in last else "an engine",
            )
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            assert limit is not None
            raise EnginesNotReady(
                registered, wanted, limit, timeout_detail() if timeout_detail else ""
            )
        pause(0.5 if remaining is None else min(0.5, remaining))
        current = status()
