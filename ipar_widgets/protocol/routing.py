"""Every routing frame, socket identity and topic a cluster's processes agree on.

The messages themselves are Jupyter messages (:mod:`.wire`); what this module names is what
travels *around* them, so that the client, the controller and the engines spell each
convention in one place.

Routing frames (the first frame a client sends, before ``<IDS|MSG>``)::

    b"b"       a load-balanced task: the controller picks the engine
    b"d<id>"   a task for engine <id> (a DirectView)
    b"k<id>"   a control message for engine <id> (abort, clear, signal: answered mid-task)
    b"c"       a request to the controller itself (status, results, shutdown, ...)
    b"m<id>,<id>,..."   one task for each of these engines (a BroadcastView): the controller
               sends each engine the request under the msg_id ``part_msg_id(msg_id, id)``,
               and each engine's reply comes back as usual
    b"g<id>,<id>,..."   the same, gathered (a coalescing BroadcastView): the controller
               answers once, with a ``broadcast_reply`` holding every engine's reply

Identities (ZMQ routing ids)::

    <client>         a client's I/O-thread socket: answers and replies go here
    <client>/s       the socket user threads send from (answers go to <client>)
    <client>/w<n>    a waiting thread's own socket: the replies of the tasks it waits for
    s:<uuid>         an engine's shell socket (tasks and their replies)
    c:<uuid>         an engine's control socket
    h:<uuid>         an engine's heartbeat socket (echoes HEARTBEAT_PING)
    u:<uuid>         an engine's usage reports (``engine_usage``: CPU, memory), once a second
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
    "BroadcastRoute",
    "Route",
    "broadcast_route",
    "client_of",
    "control_identity",
    "control_route",
    "direct_route",
    "engine_id_of_topic",
    "engine_topic",
    "heartbeat_identity",
    "parse_route",
    "part_msg_id",
    "sender_identity",
    "shell_identity",
    "subscription",
    "topic_for",
    "usage_identity",
    "waiter_identity",
]

# -- routing frames ------------------------------------------------------------------------------
BALANCED = b"b"
CONTROLLER = b"c"
_DIRECT = b"d"
_CONTROL = b"k"
_BROADCAST = b"m"
_GATHERED = b"g"


def direct_route(engine_id: int) -> bytes:
    """The routing frame of a task for one engine."""
    return b"d%d" % engine_id


def control_route(engine_id: int) -> bytes:
    """The routing frame of a control message for one engine."""
    return b"k%d" % engine_id


def broadcast_route(engine_ids: list[int], gathered: bool) -> bytes:
    """The routing frame of one request for several engines (one reply each, or, gathered,
    one reply for all)."""
    return (_GATHERED if gathered else _BROADCAST) + b",".join(b"%d" % i for i in engine_ids)


def part_msg_id(msg_id: str, engine_id: int) -> str:
    """The msg_id of one engine's part of a broadcast request ``msg_id``: client and
    controller both derive it, so the request names it nowhere."""
    return f"{msg_id}_{engine_id}"


class Route:
    """A parsed routing frame: ``kind`` is ``"balanced"``, ``"direct"``, ``"control"`` or
    ``"controller"``; ``engine_id`` is set for the two that name an engine."""

    __slots__ = ("kind", "engine_id")

    def __init__(self, kind: str, engine_id: int | None = None) -> None:
        self.kind = kind
        self.engine_id = engine_id


class BroadcastRoute(Route):
    """A parsed broadcast routing frame: ``kind`` is ``"broadcast"``, ``engine_ids`` the
    engines in the order the client gave them, ``gathered`` whether one reply answers all."""

    __slots__ = ("engine_ids", "gathered")

    def __init__(self, engine_ids: tuple[int, ...], gathered: bool) -> None:
        super().__init__("broadcast")
        self.engine_ids = engine_ids
        self.gathered = gathered


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
    if kind in (_BROADCAST, _GATHERED):
        return _parse_broadcast(frame)
    raise ValueError(
        f"unknown routing frame {frame[:20]!r}; expected b'b', b'c', b'd<id>', b'k<id>', "
        "b'm<id>,...' or b'g<id>,...'"
    )


def _parse_broadcast(frame: bytes) -> BroadcastRoute:
    try:
        engine_ids = tuple(int(part) for part in frame[1:].split(b","))
    except ValueError:
        raise ValueError(f"bad engine ids in broadcast routing frame {frame[:40]!r}") from None
    if len(set(engine_ids)) != len(engine_ids):
        raise ValueError(f"an engine is named twice in broadcast routing frame {frame[:40]!r}")
    return BroadcastRoute(engine_ids, frame[:1] == _GATHERED)


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
CONTROL_PREFIX = b"c:"
CONTROLLER_IDENTITY = b"controller"
HEARTBEAT_PING = b"\x00ping"


def shell_identity(uuid: str) -> bytes:
    return SHELL_PREFIX + uuid.encode()


def control_identity(uuid: str) -> bytes:
    return CONTROL_PREFIX + uuid.encode()


def heartbeat_identity(uuid: str) -> bytes:
    return b"h:" + uuid.encode()


def usage_identity(uuid: str) -> bytes:
    """The identity of an engine's usage reports (CPU, memory: engine/usage.py)."""
    return b"u:" + uuid.encode()


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
