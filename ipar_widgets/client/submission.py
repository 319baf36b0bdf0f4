"""Sending tasks: signing each request, noting it in the ledger, and the waiter protocol.

A thread that sends tasks and at once waits for them (``apply_sync``, a view with
``block=True``) does so inside :meth:`Submitter.waiting`: the first tasks it sends there go
out on a socket of its own (its *waiter*, see ``transport.py``), the controller sends their
replies back to that socket, and the thread's ``get()`` receives them itself.  Such a thread
sends first and notes the tasks while they travel; any other thread notes them first, so the
I/O thread knows them when their replies come.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import zmq

from ..error import ClientClosed
from ..protocol.sharedmem import SharedArea
from ..protocol.wire import Frame, Wire, send_frames, send_frames_tracked
from .ledger import Submitted, TaskLedger
from .targets import EngineTable
from .transport import Transport

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

__all__ = ["Submitter"]

R = TypeVar("R", bound="AsyncResult")


class Submitter:
    """Builds and sends one client's tasks."""

    def __init__(
        self,
        wire: Wire,
        shared: SharedArea | None,
        ledger: TaskLedger,
        engines: EngineTable,
        transport: Transport,
    ) -> None:
        self.wire = wire
        self.shared = shared
        self.ledger = ledger
        self.engines = engines
        self.transport = transport
        #: per thread: the AsyncResults sent inside waiting() (None outside it)
        self._thread_state = threading.local()

    def build(
        self,
        route: bytes,
        msg_type: str,
        content: dict[str, Any],
        buffers: Sequence[Frame],
        metadata: dict[str, Any] | None = None,
        engine_id: int | None = None,
    ) -> tuple[str, list[Frame], Submitted]:
        """Sign a task's message; return its msg_id, its frames and what :meth:`submit`
        notes in the ledger.  Big buffers go into shared memory when the controller is on
        this host (the engine maps them)."""
        if self.transport.closed:
            raise ClientClosed("submit tasks")
        header = self.wire.header(msg_type)
        if self.shared is not None and buffers:
            buffers, segments = self.shared.stage(buffers)
            if segments:
                metadata = {**(metadata or {}), "shm": segments}
        _, frames = self.wire.build(
            msg_type, content, header=header, metadata=metadata, idents=[route], buffers=buffers
        )
        msg_id = str(header["msg_id"])
        note = Submitted(
            msg_id, header["date"], engine_id, self.engines.uuid_of(engine_id), metadata or {}
        )
        return msg_id, frames, note

    def submit(
        self,
        messages: list[list[Frame]],
        notes: list[Submitted],
        make_result: Callable[[], R],
        *,
        track: bool = False,
    ) -> R:
        """Send tasks and return the AsyncResult ``make_result`` makes for them.

        A thread that will wait for them sends them first: their replies come to its own
        socket, so the bookkeeping can overlap their travel.  Otherwise it comes first, so
        the I/O thread knows the tasks when their replies come.  With ``track``, the
        AsyncResult's ``_tracker`` follows zmq's use of the frames sent without a copy
        (``ar.sent`` is true once it is done).
        """
        if self.transport.closed:
            raise ClientClosed("submit tasks")
        ledger = self.ledger
        if self._waiting_here():
            trackers: list[zmq.MessageTracker] | None = [] if track else None
            sock = self._send_waited(messages, trackers)
            try:
                for note in notes:
                    ledger.submitted(note)
                ar = make_result()
            except BaseException:
                self.transport.end_wait(sock, complete=False)
                raise
            if trackers is not None:
                ar._tracker = zmq.MessageTracker(*trackers)
            self._claim_waiter(ar, sock)
            return ar
        for note in notes:
            ledger.submitted(note)
        if notes:
            self._thread_state.last_shared = notes[-1].msg_id
        ar = make_result()
        if track:
            ar._tracker = self.transport.send_tracked(messages)
            ar._set_sent()
        else:
            self.transport.send_many(messages, on_sent=ar._set_sent)
        return ar

    # -- the waiter protocol ------------------------------------------------------------------------
    def _waiting_here(self) -> bool:
        """Whether tasks sent now go to this thread's waiter: the first ones sent inside
        ``waiting()``, once the I/O thread's connection is up, and once the controller has
        read this thread's earlier tasks.

        The waiter is another socket than the one those went out on, and the controller may
        read two sockets in either order: ``rc[0].push(ns, block=False)`` then
        ``rc[0].apply_sync(f)`` must not run ``f`` before the push.  Once the last of them
        was answered, the controller has read them all (one socket keeps its order);
        until then the waited tasks go out behind them on the same socket.
        """
        state = self._thread_state
        claims = getattr(state, "claims", None)
        if claims is None or claims or not self.transport.direct:
            return False
        last = getattr(state, "last_shared", None)
        return last is None or last not in self.ledger.outstanding

    def _send_waited(
        self,
        messages: list[list[Frame]],
        trackers: list[zmq.MessageTracker] | None = None,
    ) -> zmq.Socket[bytes]:
        """Send on this thread's waiter; with ``trackers``, tracked (see submit)."""
        sock = self.transport.begin_wait()
        try:
            for frames in messages:
                if trackers is None:
                    send_frames(sock, frames)
                else:
                    trackers.extend(send_frames_tracked(sock, frames))
        except BaseException:
            self.transport.end_wait(sock, complete=False)
            raise
        return sock

    def _claim_waiter(self, ar: AsyncResult, sock: zmq.Socket[bytes]) -> None:
        ar._waiter = sock
        ar._waiter_thread = threading.current_thread()
        self._thread_state.claims.append(ar)
        ar._set_sent()

    @contextmanager
    def waiting(self) -> Iterator[list[AsyncResult]]:
        """Tasks this thread sends in the block and then waits for with ``get()``: their
        replies come to the thread's own socket, where its ``get()`` receives them.  Yields
        the AsyncResults that were given the waiter."""
        state = self._thread_state
        if getattr(state, "claims", None) is not None:
            yield []  # nested: the outer block's tasks have the waiter
            return
        claims: list[AsyncResult] = []
        state.claims = claims
        try:
            yield claims
        except BaseException:
            for ar in claims:
                ar._abandon_waiter()
            raise
        finally:
            state.claims = None
