"""Every routing frame, socket identity and topic a cluster's processes agree on.

The messages themselves are Jupyter messages (:mod:`.wire`); what this module names is what
travels *around* them, so that the client, the controller and the engines spell each
convention in one place.

Routing frames (the first frame a client sends, before ``<IDS|MSG>``)::

    b"b"       a load-balanced task: the controller picks the engine
    b"d<id>"   a task for engine <id> (a DirectView)
    b"k<id>"   a control message for engine <id> (abort, clear, signal: answered mid-task)
    b"c"       a request to the controller itself (status, results, shutdown, ...)

Identities (ZMQ routing ids)::

    <client>         a client's I/O-thread socket: answers and replies go here
    <client>/s       the socket user threads send from (answers go to <client>)
    <client>/w<n>    a waiting thread's own socket: the replies of the tasks it waits for
    s:<uuid>         an engine's shell socket (tasks and their replies)
    c:<uuid>         an engine's control socket
    h:<uuid>         an engine's heartbeat socket (echoes HEARTBEAT_PING)
    b"controller"    the requester named in messages the controller itself sends an engine

Topics on the controller's notify socket (clients subscribe by prefix)::

    <client>\\0engine.<id>.<kind>   output of one of that client's tasks
    *\\0engine.<id>.<kind>          output of a task no known client submitted
    *\\0controller                  cluster notices (engines joining and leaving, shutdown)
"""

from __future__ import annotations

import re

__all__ = [
    "BALANCED",
    "CONTROLLER",
    "CONTROLLER_IDENTITY",
    "CONTROLLER_TOPIC",
    "EVERYONE",
    "HEARTBEAT_PING",
    "REPLAY_TOPIC",
    "SENDER_SUFFIX",
    "TOPIC_SEPARATOR",
    "WAITER_MARK",
    "Route",
    "client_of",
    "control_identity",
    "control_route",
    "direct_route",
    "engine_id_of_topic",
    "engine_topic",
    "heartbeat_identity",
    "parse_route",
    "sender_identity",
    "shell_identity",
    "subscription",
    "topic_for",
    "waiter_identity",
]

# -- routing frames ------------------------------------------------------------------------------
BALANCED = b"b"
CONTROLLER = b"c"
_DIRECT = b"d"
_CONTROL = b"k"


def direct_route(engine_id: int) -> bytes:
    """The routing frame of a task for one engine."""
    return b"d%d" % engine_id


def control_route(engine_id: int) -> bytes:
    """The routing frame of a control message for one engine."""
    return b"k%d" % engine_id


class Route:
    """A parsed routing frame: ``kind`` is ``"balanced"``, ``"direct"``, ``"control"`` or
    ``"controller"``; ``engine_id`` is set for the two that name an engine."""

    __slots__ = ("kind", "engine_id")

    def __init__(self, kind: str, engine_id: int | None = None) -> None:
        self.kind = kind
        self.engine_id = engine_id


_BALANCED_ROUTE = Route("balanced")
_CONTROLLER_ROUTE = Route("controller")


def parse_route(frame: bytes) -> Route:
    """Read a routing frame; ValueError (with what was found) when it is none of the four."""
    if frame == BALANCED:
        return _BALANCED_ROUTE
    if frame == CONTROLLER:
        return _CONTROLLER_ROUTE
    kind = frame[:1]
    if kind in (_DIRECT, _CONTROL):
        try:
            engine_id = int(frame[1:])
        except ValueError:
            raise ValueError(f"bad engine id in routing frame {frame[:20]!r}") from None
        return Route("direct" if kind == _DIRECT else "control", engine_id)
    raise ValueError(
        f"unknown routing frame {frame[:20]!r}; expected b'b', b'c', b'd<id>' or b'k<id>'"
    )


# -- client identities ---------------------------------------------------------------------------
SENDER_SUFFIX = b"/s"
WAITER_MARK = b"/w"


def sender_identity(client: bytes) -> bytes:
    """The identity of the socket a client's user threads send from."""
    return client + SENDER_SUFFIX


def waiter_identity(client: bytes, n: int) -> bytes:
    """The identity of a waiting thread's own reply socket (the n-th the client made)."""
    return client + WAITER_MARK + b"%d" % n


def client_of(identity: bytes) -> bytes:
    """The client an identity belongs to: ``<client>`` for ``<client>``, ``<client>/s`` and
    ``<client>/w<n>``."""
    if identity.endswith(SENDER_SUFFIX):
        return identity[: -len(SENDER_SUFFIX)]
    mark = identity.rfind(WAITER_MARK)
    return identity if mark < 0 else identity[:mark]


# -- engine identities ---------------------------------------------------------------------------
SHELL_PREFIX = b"s:"
CONTROLLER_IDENTITY = b"controller"
HEARTBEAT_PING = b"\x00ping"


def shell_identity(uuid: str) -> bytes:
    return SHELL_PREFIX + uuid.encode()


def control_identity(uuid: str) -> bytes:
    return b"c:" + uuid.encode()


def heartbeat_identity(uuid: str) -> bytes:
    return b"h:" + uuid.encode()


# -- notify topics -------------------------------------------------------------------------------
TOPIC_SEPARATOR = b"\x00"
EVERYONE = b"*"
CONTROLLER_TOPIC = EVERYONE + TOPIC_SEPARATOR + b"controller"
#: the topic a client gives outputs it replays from the controller's records
REPLAY_TOPIC = EVERYONE + TOPIC_SEPARATOR + b"replay"
_ENGINE_IN_TOPIC = re.compile(rb"engine\.(\d+)\.")


def engine_topic(engine_id: int, kind: str) -> bytes:
    """The topic an engine publishes one kind of output under (``engine.3.stream.stdout``)."""
    return f"engine.{engine_id}.{kind}".encode()


def topic_for(receiver: bytes, topic: bytes) -> bytes:
    """The notify topic that sends an engine's output (``topic``) to one receiver."""
    return receiver + TOPIC_SEPARATOR + topic


def subscription(client: bytes) -> bytes:
    """The prefix a client subscribes to for the outputs of its own tasks."""
    return client + TOPIC_SEPARATOR


def engine_id_of_topic(topic: bytes) -> int | None:
    """The engine id an output's topic names, or None."""
    m = _ENGINE_IN_TOPIC.search(topic)
    return int(m.group(1)) if m else None
