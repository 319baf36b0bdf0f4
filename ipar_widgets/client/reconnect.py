"""What a client does when its controller goes away and comes back.

The client's sockets reconnect by themselves (zmq) to a controller restored on the same
ports (``ipar start --restore``), and requests sent meanwhile wait in their queues.  What the
client may have missed is what the controller answered while it was away: so once it is
back, the client asks for the records of every task that was outstanding when it went away
(a ``result_request`` with ``watch``); a task submitted while it was away may reach the
restored controller after that query, so one it does not know yet is asked about again a
few times before it counts as lost.  Finished ones are handled as if their reply arrived now (outputs the client
already had are not shown twice, and a reply it already had is dropped), running ones answer
as usual when they finish, and one the restored controller has no record of fails with
:class:`~ipar_widgets.error.TaskLost`.  A controller that stays away longer than
``controller_timeout`` fails every outstanding task with
:class:`~ipar_widgets.error.ControllerLost`, naming its address and how long the client waited.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from ..error import ControllerLost, TaskLost
from ..protocol.wire import Message, Wire
from .controlplane import build_request
from .dispatch import Inbound
from .ledger import TaskLedger
from .transport import Transport

log = logging.getLogger("ipar_widgets.client")

#: how often, and how many seconds apart, a task sent while the controller was away and not
#: known to the restored one yet is asked about again before it counts as lost
RECHECKS = 5
RECHECK_DELAY = 0.5

__all__ = ["Reconnection"]


class Reconnection:
    """Follows the connection to the controller and catches up after it comes back."""

    def __init__(
        self, wire: Wire, transport: Transport, inbound: Inbound, ledger: TaskLedger, address: str
    ) -> None:
        self.wire = wire
        self.transport = transport
        self.inbound = inbound
        self.ledger = ledger
        self.address = address
        #: "connected", "lost" (waiting for it), "reconnected" or "gone"
        self.state = "connected"
        #: how many times the connection came back
        self.reconnections = 0
        self._changed_at = time.monotonic()
        #: tasks outstanding when the connection dropped: only their fate is in doubt.  A task
        #: submitted later waits in its socket's queue and reaches the restored controller,
        #: maybe after the catch-up query (another socket), so asking about it could only
        #: find it missing.
        self._in_doubt: set[str] = set()
        transport.on_connection = self.on_connection

    @property
    def note(self) -> str:
        """A line for displays: empty while all is well."""
        if self.state == "lost":
            waited = time.monotonic() - self._changed_at
            return f"controller unreachable for {waited:.0f} s; waiting for it to come back"
        if self.state == "reconnected":
            return "controller restarted, reconnected"
        if self.state == "gone":
            return f"controller at {self.address} is gone; pending tasks failed"
        return ""

    def on_connection(self, what: str, waited: float) -> None:
        """The transport's report, in the client's I/O thread (see Transport.on_connection)."""
        self._changed_at = time.monotonic()
        if what == "lost":
            self.state = "lost"
            self._in_doubt |= self.ledger.outstanding
            log.warning(
                "lost the connection to the controller at %s; waiting up to %.0f s for it",
                self.address,
                self.transport.controller_timeout,
            )
        elif what == "back":
            self.state = "reconnected"
            self.reconnections += 1
            log.warning(
                "the controller at %s is reachable again after %.1f s; catching up",
                self.address,
                waited,
            )
            self._catch_up()
        elif what == "gone":
            self.state = "gone"
            self._fail_outstanding(waited)

    def _catch_up(self) -> None:
        doubt, self._in_doubt = self._in_doubt, set()
        self._ask(sorted(self.ledger.outstanding), doubt, RECHECKS)

    def _ask(self, pending: list[str], doubt: set[str], tries: int) -> None:
        pending = [m for m in pending if m in self.ledger.outstanding]
        if not pending:
            return
        msg_id, frames = build_request(
            self.wire, "result_request", {"msg_ids": pending, "watch": True}
        )
        future: Future[Message] = Future()
        self.inbound.queries[msg_id] = future
        # the answer arrives in the I/O thread, which runs this callback as it settles it
        future.add_done_callback(lambda done: self._caught_up(pending, doubt, tries, done))
        self.transport.send(frames)

    def _caught_up(
        self, pending: list[str], doubt: set[str], tries: int, done: Future[Message]
    ) -> None:
        answer = done.result()
        if answer.content.get("status") != "ok":
            log.error("the restored controller did not give the tasks' records: %s", answer.content)
            return
        unknown: list[str] = []
        self.inbound.replay(pending, answer, resuming=True, on_unknown=unknown.append)
        # a task outstanding when the connection dropped and unknown now is lost; one sent
        # later may still be on its way (another socket than this query's): ask again
        later = [m for m in unknown if m not in doubt and tries > 0]
        for msg_id in unknown:
            if msg_id not in later:
                self._lost(msg_id)
        if later:
            timer = threading.Timer(RECHECK_DELAY, self._ask, (later, doubt, tries - 1))
            timer.daemon = True
            timer.start()

    def _lost(self, msg_id: str) -> None:
        if msg_id in self.ledger.outstanding:
            self.ledger.complete(msg_id, TaskLost(self.address, msg_id))

    def _fail_outstanding(self, waited: float) -> None:
        pending = sorted(self.ledger.outstanding)
        log.error(
            "the controller at %s stayed unreachable for %.0f s; failing %d pending task(s)",
            self.address,
            waited,
            len(pending),
        )
        for msg_id in pending:
            self.ledger.complete(msg_id, ControllerLost(self.address, waited, msg_id))
