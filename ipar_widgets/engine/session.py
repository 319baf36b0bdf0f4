"""The engine's jupyter_client Session, which counts the IOPub messages each request causes.

Every reply carries that count (``metadata["outputs"]``), so a client hands out a result only
once all of the task's output has arrived, although outputs and replies travel on different
sockets.  Counting here catches every publisher (print, display, the display hook, errors)
because they all send through the session.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from jupyter_client.session import Session

if TYPE_CHECKING:
    from ..protocol.wire import Frame
    from .rejoin import ReplyJournal


class CountingSession(Session):
    """A Session that counts the IOPub messages sent per parent request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        #: what ipykernel publishes IOPub messages through (compared by identity)
        self.iopub_streams: tuple[object, ...] = ()
        #: where execute replies (sent by ipykernel through here) are kept for resending
        self.journal: ReplyJournal | None = None

    def send(
        self,
        # Any, not jupyter_client's socket-or-stream: ipykernel also hands it its IOPubThread
        stream: Any,
        msg_or_type: dict[str, Any] | str,
        *args: Any,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Send as Session does; count the message when it goes out on IOPub."""
        msg = super().send(stream, msg_or_type, *args, **kwargs)
        if (
            self.journal is not None
            and msg is not None
            and msg["header"]["msg_type"] == "execute_reply"
        ):
            ident = kwargs.get("ident", args[2] if len(args) > 2 else None)
            frames: list[Frame] = list(self.serialize(msg, ident))
            self.journal.note(frames)
        if (
            msg is not None
            and any(stream is s for s in self.iopub_streams)
            and msg["header"]["msg_type"] != "status"
        ):
            parent_id = msg["parent_header"].get("msg_id")
            if parent_id:
                with self._count_lock:
                    self._counts[parent_id] = self._counts.get(parent_id, 0) + 1
        return msg

    def take_count(self, msg_id: str) -> int:
        """How many IOPub messages ``msg_id`` caused so far; forget the request."""
        with self._count_lock:
            return self._counts.pop(msg_id, 0)
