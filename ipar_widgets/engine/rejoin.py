"""How an engine rejoins its controller after the connection was lost (a controller that
crashed and was restored with ``ipar start --restore``, or a network that came back).

The engine's sockets reconnect by themselves (zmq), and what it sent while the controller
was away waits in their queues.  What can be lost is what was in flight when the old
controller died: replies it had read but not yet written to its task database, and requests
it had handed to its socket but not yet to the network.  So the engine keeps the replies of
the last ``retention`` seconds in a :class:`ReplyJournal` (nothing ages out while the
controller is unreachable), and on reconnection it sends a ``registration_request`` with its
old id, the task it is running and those replies, on its control socket (served by its own
thread, so a long task does not delay it).  The controller records the replies it did not
have (a reply it already has is ignored) and then asks, in order on the shell socket, for a
sync marker: tasks it believes it sent before the marker that the engine never answered were
lost on the way, and are queued again, so nothing runs twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..protocol.wire import Frame

log = logging.getLogger("ipar_widgets.engine")

#: what a rejoin carries besides the replies: the engine's facts for the controller
RejoinFacts = Callable[[], dict[str, object]]


class ReplyJournal:
    """The task replies this engine sent recently, as signed frames, for resending."""

    def __init__(self, retention: float, max_bytes: int) -> None:
        #: seconds a reply is kept after it was sent (while the controller is reachable)
        self.retention = retention
        #: most bytes kept; past it the oldest replies go first
        self.max_bytes = max_bytes
        self._entries: deque[tuple[float, int, list[Frame]]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        #: while the controller is unreachable nothing ages out
        self.holding = False

    def note(self, frames: list[Frame]) -> None:
        """Keep a reply as sent: ``[client, <IDS|MSG>, signature, header, ...]``."""
        size = 0
        for f in frames:
            size += len(f)
        now = time.monotonic()
        with self._lock:
            self._entries.append((now, size, frames))
            self._bytes += size
            self._trim(now)

    def _trim(self, now: float) -> None:
        entries = self._entries
        while entries and (
            self._bytes > self.max_bytes
            or (not self.holding and now - entries[0][0] > self.retention)
        ):
            _, size, _ = entries.popleft()
            self._bytes -= size

    def hold(self) -> None:
        """The controller is unreachable: keep every reply until it is back."""
        self.holding = True

    def replies(self) -> list[list[Frame]]:
        """The replies kept, oldest first; replies age out normally again from now on."""
        with self._lock:
            self.holding = False
            return [frames for _, _, frames in self._entries]

    def __len__(self) -> int:
        return len(self._entries)


def rejoin_message(
    facts: dict[str, object], replies: list[list[Frame]]
) -> tuple[dict[str, object], list[Frame]]:
    """The content and buffers of a rejoining engine's ``registration_request``: its facts,
    ``rejoin: True``, and the replies (their frame counts in ``replies``, their frames as the
    buffers, in order)."""
    buffers: list[Frame] = []
    for frames in replies:
        buffers.extend(frames)
    content = {**facts, "rejoin": True, "replies": [len(frames) for frames in replies]}
    return content, buffers
