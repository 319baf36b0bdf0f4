"""The one update loop every live widget of a kernel shares, and its message budget.

A background thread refreshes the registered views in turn.  A refresh compares what a view
wants to show with what its widgets hold and sends only the traits that differ, one message
per widget (``hold_sync``).  Every message, live or final, spends from one
:class:`MessageBudget`: at most ``MESSAGES_PER_SECOND`` in any one-second window for the
whole kernel, however many views, engines or tasks there are; that is far below the server's
iopub limit (1,000 messages/s, past which it drops messages).  Live refreshes leave
``FINAL_RESERVE`` of that room free, so the forced final update of a finished job is sent at
once in all but the busiest moments.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("ipar_widgets.widgets")

__all__ = [
    "MessageBudget",
    "UpdateLoop",
    "LiveView",
    "Changes",
    "get_loop",
    "MESSAGES_PER_SECOND",
    "FINAL_RESERVE",
]

#: update messages per second for all live widgets of a kernel together
MESSAGES_PER_SECOND = 10
#: room kept free for final updates
FINAL_RESERVE = 4

#: (widget, {trait: value}) pairs: what a refresh sends, one message per pair
Changes = list[tuple[Any, dict[str, Any]]]


class MessageBudget:
    """At most ``limit`` messages in any ``window`` seconds (a sliding window)."""

    def __init__(
        self,
        limit: int = MESSAGES_PER_SECOND,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._sent: deque[float] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()

    def room(self, now: float | None = None) -> int:
        """Messages that may be sent now."""
        now = self.clock() if now is None else now
        self._expire(now)
        return self.limit - len(self._sent)

    def delay_for(self, n: int, reserve: int = 0, now: float | None = None) -> float:
        """Seconds until ``n`` messages fit while keeping ``reserve`` free (0: now)."""
        now = self.clock() if now is None else now
        self._expire(now)
        over = len(self._sent) + n + reserve - self.limit
        if over <= 0:
            return 0.0
        if over > len(self._sent):  # more than a whole window: send when the window is empty
            return (self._sent[-1] + self.window - now) if self._sent else 0.0
        return max(0.0, self._sent[over - 1] + self.window - now)

    def spend(self, n: int, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._sent.extend([now] * n)
        self.total += n


class LiveView(Protocol):
    """What the loop needs of a live display."""

    #: least seconds between two refreshes of this view
    period: float

    def changes(self, final: bool = False) -> Changes:
        """What differs between the widgets and the job's state now."""

    def done(self) -> bool:
        """Whether the job has ended (the loop then sends the final update and drops it)."""

    def finished(self) -> None:
        """Called once the final update is sent (e.g. to publish the static snapshot)."""


def apply(changes: Changes) -> None:
    """Set the traits, one message per widget."""
    for widget, traits in changes:
        with widget.hold_sync():
            for name, value in traits.items():
                setattr(widget, name, value)


class UpdateLoop:
    """One thread for every live view; start it with :func:`get_loop`."""

    def __init__(self, budget: MessageBudget | None = None) -> None:
        self.budget = budget or MessageBudget()
        self._views: list[LiveView] = []
        self._last: dict[int, float] = {}
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # one sender at a time: this thread or a final flush
        self._thread: threading.Thread | None = None
        self._next = 0
        #: (monotonic time, messages) of every send, when a test asks for it
        self.log: list[tuple[float, int]] | None = None

    # -- registering ----------------------------------------------------------------------------
    def add(self, view: LiveView) -> None:
        with self._cond:
            self._views.append(view)
            self._last[id(view)] = 0.0
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="ipar-widgets-update", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wake(self) -> None:
        """Refresh soon (a view's state changed: a result, a click)."""
        with self._cond:
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every live view has sent its final update (for notebooks run headless,
        whose runner stops listening when the last cell ends); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._views, timeout)

    def follow_again(self, view: LiveView) -> None:
        """Refresh ``view`` again although its job had ended (a retry gave it new tasks): it
        is registered again if the loop dropped it.  (One whose final update is being sent
        is kept: the loop drops a view only if it is still done, see _run.)"""
        with self._cond:
            if view in self._views:
                self._cond.notify_all()
                return
        self.add(view)

    def remove(self, view: LiveView) -> bool:
        with self._cond:
            if view not in self._views:
                return False
            self._views.remove(view)
            self._last.pop(id(view), None)
            self._cond.notify_all()
            return True

    def finish(self, view: LiveView) -> None:
        """Drop ``view`` and send its final update now, from the calling thread (a display
        that fails is logged, never raised into the user's wait)."""
        self.remove(view)
        try:
            self._send(view, final=True)
            view.finished()
        except Exception:
            log.exception("final update of a progress widget failed")

    def send_message(self, send: Callable[[], object], n: int = 1) -> None:
        """Run ``send``, which publishes ``n`` messages that are not trait updates (a custom
        widget message), within the same budget: it waits, as a final update does, until
        they fit."""
        with self._send_lock:
            delay = self.budget.delay_for(n)
            if delay > 0:
                time.sleep(delay)
            try:
                send()
            finally:
                now = self.budget.clock()
                self.budget.spend(n, now)
                if self.log is not None:
                    self.log.append((now, n))

    # -- sending --------------------------------------------------------------------------------
    def _send(self, view: LiveView, final: bool) -> float:
        """One refresh of ``view``: 0.0 once sent, else the seconds to wait for room.

        A live refresh sends what fits in the budget less the final reserve (the changes come
        in order of importance; the rest waits for the next refresh); a final one sends
        everything, waiting for room if it must.
        """
        with self._send_lock:
            room = self.budget.room() - FINAL_RESERVE
            if not final and room <= 0:
                return max(0.01, self.budget.delay_for(1, reserve=FINAL_RESERVE))
            changes = view.changes(final=final)
            if not changes:
                return 0.0
            if final:
                delay = self.budget.delay_for(len(changes))
                if delay > 0:  # rare: only when several jobs end within the same second
                    time.sleep(delay)
            else:
                changes = changes[:room]
            try:
                apply(changes)
            finally:
                now = self.budget.clock()
                self.budget.spend(len(changes), now)
                if self.log is not None:
                    self.log.append((now, len(changes)))
            return 0.0

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._views:
                    self._thread = None
                    return
                views = list(self._views)
            now = time.monotonic()
            wait = 1.0
            order = views[self._next % len(views) :] + views[: self._next % len(views)]
            self._next += 1
            for view in order:
                due = self._last.get(id(view), 0.0) + view.period
                if view.done():
                    try:
                        self._send(view, final=True)
                        view.finished()
                    except Exception:
                        log.exception("final update of a progress widget failed")
                    with self._cond:  # follow_again takes it too: drop it or keep it, not both
                        if view.done():  # else a retry gave its job new tasks meanwhile
                            self.remove(view)
                    continue
                if now < due:
                    wait = min(wait, due - now)
                    continue
                try:
                    retry_in = self._send(view, final=False)
                except Exception:
                    log.exception("progress widget update failed; dropping it")
                    self.remove(view)
                    continue
                if retry_in:
                    wait = min(wait, retry_in)
                else:
                    self._last[id(view)] = time.monotonic()
                    wait = min(wait, view.period)
            with self._cond:
                if self._views:
                    self._cond.wait(max(0.01, wait))


_loop: UpdateLoop | None = None
_loop_lock = threading.Lock()


def get_loop() -> UpdateLoop:
    """The kernel's update loop (made on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = UpdateLoop()
        return _loop
