"""The engine's kernel: ipykernel's IPythonKernel plus apply requests, aborts and namespace
clearing.

Execute requests take ipykernel's usual path (magics, display, rich outputs, tracebacks).
Apply requests (a pickled function with its arguments) take a short path: no busy/idle status
messages, no date parsing, the reply sent straight on the socket.  Code still runs in the
IPython shell's namespace with its output streams, display hooks and formatted tracebacks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from functools import partial
from types import FrameType
from typing import Any, cast

import comm
import zmq
from ipykernel.ipkernel import IPythonKernel
from ipykernel.utils import _async_in_context
from traitlets import Integer
from zmq.eventloop.zmqstream import ZMQStream

from ..protocol.routing import engine_topic
from ..protocol.serialize import dumps, unpack_apply
from ..protocol.sharedmem import Segment, SharedArea, SharedMemoryError
from ..protocol.wire import (
    Frame,
    InvalidMessage,
    Wire,
    readable,
    recv_frames,
    send_frames,
    socket_events,
    split_routing,
    unpack,
    utcnow_iso,
)
from .rejoin import ReplyJournal
from .session import CountingSession
from .stacks import ShellTask, stack_reply

_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)

#: a received message: bytes up to its content part, zmq Frames after (see recv_frames)
ReceivedFrames = list[bytes | zmq.Frame]
#: ipykernel's marker message that ends the aborting of queued requests (see _abort_queues)
_STOP_ABORTING = b"stop aborting"


class ShellStream(ZMQStream):
    """The engine's shell stream: receives each message with :func:`recv_frames`.

    pyzmq's ``recv_multipart`` asks the socket for ``RCVMORE`` after every frame, at the cost
    of an enum conversion each time; on a stream of tiny tasks that was a tenth of the
    engine's work.  Each wake-up of a ZMQStream also asks the socket for its events through
    pyzmq's attribute sugar, which builds an enum flag each time; :meth:`_handle_events`
    asks for a plain int.  Everything else is the ordinary ZMQStream that ipykernel expects.
    """

    # pyzmq declares ``socket`` as always set, but close() sets it to None, and a callback
    # (ours, or ipykernel's) may close the stream while it is being served
    socket: zmq.Socket[bytes] | None  # type: ignore[assignment]

    def _handle_events(self, fd: object, events: int) -> None:
        sock = self.socket
        if sock is None or sock.closed:
            super()._handle_events(fd, events)  # type: ignore[no-untyped-call]  # pyzmq's cleanup
            return
        try:
            ready = socket_events(sock)
        except zmq.ZMQError:
            super()._handle_events(fd, events)  # type: ignore[no-untyped-call]
            return
        if ready & _POLLIN and self._recv_callback is not None:
            self._handle_recv()
        if ready & _POLLOUT and self.socket is not None and self.sending():
            self._handle_send()  # type: ignore[no-untyped-call]
        sock = self.socket
        if sock is None:
            return
        # The socket's descriptor is edge-triggered: whatever still waits now will not wake
        # the loop again, so give it another turn (what pyzmq's _rebuild_io_state does).
        state = (_POLLIN if self._recv_callback is not None else 0) | (
            _POLLOUT if self.sending() else 0
        )
        self._state = state
        if state & socket_events(sock):
            self.io_loop.add_callback(self._handle_events, sock, 0)

    def _handle_recv(self) -> None:
        sock = self.socket
        if self._flushed or sock is None:
            return
        try:
            frames = recv_frames(sock, noblock=True)
        except zmq.Again:
            return  # the message was taken since the poll said there was one
        callback = self._recv_callback
        if callback is not None:  # without one, flush() drops the message, as in ZMQStream
            self._run_callback(callback, frames)


class EngineKernel(IPythonKernel):
    """An IPython kernel that is also an ipar_widgets engine."""

    engine_id = Integer(-1, help="The id the controller gave this engine.")
    implementation = "ipar_widgets.engine"

    # apply_request is not listed: dispatch_shell takes it before ipykernel's handler table
    control_msg_types = [
        *IPythonKernel.control_msg_types,
        "abort_request",
        "clear_request",
        "signal_request",
        "stack_request",
        "registration_reply",  # the answer to a rejoin, sent on the control socket
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        session = self.session
        if not isinstance(session, CountingSession):
            raise TypeError(
                "an engine's kernel needs the engine's CountingSession (EngineApp gives it "
                f"one), found {session!r}: replies could not say how many outputs to wait for"
            )
        #: the kernel's session, typed: it counts each request's IOPub messages
        self.counting_session = session
        self.wire = Wire(session.key, session=session.session)
        self.aborted: set[str] = set()
        self._aborted_lock = threading.Lock()
        #: the controller's shared-memory area, when this engine is on the controller's host
        self.shared: SharedArea | None = None
        #: the task replies sent recently, for a restored controller (EngineApp sets it)
        self.journal: ReplyJournal | None = None
        #: msg_id of the task running now, told to a restored controller when rejoining
        self.current_task: str | None = None
        #: the name of the function the running apply task calls (usage reports name it)
        self.current_function: str | None = None
        #: time.monotonic() when the shell took the running task (stack_request reports it)
        self.task_began = 0.0

    # -- message topics carry the engine id, so clients know who published -------------------------
    def _topic(self, topic: str) -> bytes:
        return engine_topic(self.engine_id, topic)

    # -- dispatch -----------------------------------------------------------------------------------
    def _create_comm(self, *args: Any, **kwargs: Any) -> Any:
        """``comm.create_comm`` on an engine: ipykernel's comm, published under this engine's
        topic, so a client knows which engine a widget lives on (and can relay the notebook's
        answers to it: client/comms.py)."""
        from ipykernel.comm.comm import BaseComm

        comm_id = kwargs.get("comm_id") or uuid.uuid4().hex
        kwargs["comm_id"] = comm_id
        kwargs.setdefault("topic", self._topic(f"comm-{comm_id}"))
        return BaseComm(*args, **kwargs)

    def start(self) -> None:
        #: the thread that runs tasks (no subshells: the main thread's event loop), whose
        #: stack a stack_request reads from the control thread (set first: the control
        #: thread may serve a request as soon as super().start() listens)
        self.shell_thread_id = threading.get_ident()
        super().start()  # type: ignore[no-untyped-call]
        comm.create_comm = self._create_comm
        # Take the shell socket's messages ourselves: apply requests run right here, in the
        # stream's receive callback (no asyncio task, no lock, no status messages); anything
        # else, or anything arriving while an asynchronous request is in flight, takes
        # ipykernel's usual path, in arrival order.
        self._ipykernel_shell_handler = _async_in_context(partial(self.shell_main, None))
        self._in_flight = 0
        # Ctrl-C (SIGINT) interrupts an apply task; between tasks it is ignored, like the
        # kernel does.  One handler for the engine's life saves two signal() calls per task;
        # ipykernel's own execute path still swaps in Python's default handler around cells.
        self._apply_running = False
        signal.signal(signal.SIGINT, self._on_sigint)
        stream = self.shell_stream
        if stream is None:
            raise RuntimeError("the engine's kernel has no shell stream to take tasks from")
        # bound once: _on_shell_message reads from it on every message
        self._shell_socket = stream.socket
        stream.on_recv(self._on_shell_message, copy=False)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._apply_running:
            raise KeyboardInterrupt

    def _on_shell_message(self, msg: ReceivedFrames) -> None:
        # Handle this message, then whatever else already waits on the socket, in one go: a
        # stream of small tasks then costs one event-loop turn per batch, not per task.  The
        # stream re-checks the socket after this callback returns, so receiving and replying
        # on the raw socket here cannot swallow the wake-up of a later message.
        sock = self._shell_socket
        for batch_left in range(63, -1, -1):
            if not self._handle_now(msg) or not batch_left or not readable(sock):
                return  # what remains wakes the stream again
            # recv_frames gives bytes and zmq Frames only (its type admits any buffer)
            msg = cast(ReceivedFrames, recv_frames(sock))

    def _handle_now(self, msg: ReceivedFrames) -> bool:
        """Run an apply request at once, or queue the message for ipykernel's path; return
        whether later messages may still be handled at once."""
        if not self._in_flight and not self._main_asyncio_lock.locked():
            try:
                idents, delim = split_routing(msg)
                header = unpack(msg[delim + 2]) if len(msg) > delim + 2 else {}
            except (InvalidMessage, ValueError) as exc:
                self.log.error("dropped a malformed shell message: %s", exc)
                return True
            if header.get("msg_type") == "apply_request":
                self._apply(idents, msg, delim, header, raw_socket=True)
                return True
        # ipykernel reads a message received with copy=False: zmq Frames, not bytes
        self._queue_for_ipykernel([zmq.Frame(p) if isinstance(p, bytes) else p for p in msg])
        return False

    def _queue_for_ipykernel(self, msg: list[zmq.Frame]) -> None:
        """Hand a message to ipykernel's path: it runs after those queued before it."""
        self._in_flight += 1
        future = asyncio.ensure_future(self._ipykernel_shell_handler(msg))
        future.add_done_callback(self._async_done)

    def _async_done(self, future: asyncio.Future[None]) -> None:
        self._in_flight -= 1
        if not future.cancelled() and future.exception() is not None:
            self.log.error("error handling a shell message", exc_info=future.exception())

    async def dispatch_shell(
        self,
        msg: ReceivedFrames,
        /,
        subshell_id: str | None = None,
        *,
        concurrent: bool = False,
    ) -> None:
        if len(msg) == 1 and isinstance(msg[0], zmq.Frame) and msg[0].bytes == _STOP_ABORTING:
            await super().dispatch_shell(msg, subshell_id, concurrent=concurrent)
            return
        try:
            idents, delim = split_routing(msg)
            header = unpack(msg[delim + 2]) if len(msg) > delim + 2 else {}
        except (InvalidMessage, ValueError) as exc:
            self.log.error("dropped a malformed shell message: %s", exc)
            return
        msg_type = header.get("msg_type")
        if msg_type == "apply_request":
            self._apply(idents, msg, delim, header)
            return
        if msg_type == "sync_request":
            # a rejoined controller's marker: everything sent before it has been handled
            if self.wire.verify(msg, delim + 1):
                self._send_reply(idents, "sync_reply", {"status": "ok"}, msg[delim + 2], {})
            return
        if msg_type == "execute_request":
            self.current_task = header.get("msg_id")
            self.task_began = time.monotonic()
        if msg_type == "execute_request" and self._take_aborted(header.get("msg_id", "")):
            if not self.wire.verify(msg, delim + 1):
                self.log.error("dropped an execute_request with an invalid signature")
                return
            self.current_task = None  # it never runs: the engine stays idle
            self._reply_aborted(idents, header, "execute_reply")
            return
        await super().dispatch_shell(msg, subshell_id, concurrent=concurrent)

    def _take_aborted(self, msg_id: str) -> bool:
        if not self.aborted:  # the usual case, without taking the lock
            return False
        with self._aborted_lock:
            if msg_id in self.aborted:
                self.aborted.discard(msg_id)
                return True
        return False

    def _send_reply(
        self,
        idents: list[bytes],
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | bytes | zmq.Frame,
        metadata: dict[str, Any],
        buffers: Sequence[Frame] = (),
        raw_socket: bool = False,
        date: str | None = None,
    ) -> None:
        _, frames = self.wire.build(
            msg_type,
            content,
            parent=parent,
            metadata=metadata,
            idents=idents,
            buffers=buffers,
            header=self.wire.header(msg_type, date=date),
        )
        stream = self.shell_stream
        assert stream is not None
        if self.journal is not None and msg_type != "sync_reply":
            self.journal.note(frames)
        if raw_socket:
            send_frames(stream.socket, frames)
            return
        # Outside the stream's receive callback, send through the stream: a raw send would
        # consume the edge-triggered "readable" signal of a task that arrived meanwhile, and
        # the stream would never wake for it.
        stream.send_multipart(frames, copy=False)
        stream.flush(zmq.POLLOUT)

    def _reply_aborted(
        self, idents: list[bytes], header: dict[str, Any], reply_type: str, raw_socket: bool = False
    ) -> None:
        now = utcnow_iso()
        method = "apply" if reply_type == "apply_reply" else "execute"
        self._send_reply(
            idents,
            reply_type,
            {
                "status": "aborted",
                "ename": "TaskAborted",
                "evalue": f"task {header.get('msg_id')} was aborted before it started",
                "engine_info": {"engine_id": self.engine_id, "method": method},
                "origin": "cluster",
            },
            header,
            {
                "engine_id": self.engine_id,
                "status": "aborted",
                "started": None,
                "completed": now,
                "outputs": 0,
            },
            raw_socket=raw_socket,
        )

    def _abort_queues(self, subshell_id: str | None = None) -> None:
        """After a cell failed (``stop_on_error``): abort the requests already queued behind
        it, and only those.

        ipykernel (without subshells) stops aborting at the next turn of its event loop, so
        a request arriving a few milliseconds after the error reply (the next cell of a
        notebook's "run all") was sometimes aborted and sometimes not.  Here ipykernel's own
        "stop aborting" marker joins the queue behind the requests already received, as
        ipykernel does with subshells: those are aborted, whatever comes later runs.
        """
        self._aborting = True
        stream = self.shell_stream
        if stream is not None:
            stream.flush()  # what has arrived joins the queue now, in order
        self._queue_for_ipykernel([zmq.Frame(_STOP_ABORTING)])

    def _send_abort_reply(self, stream: Any, msg: dict[str, Any], idents: list[bytes]) -> None:
        """ipykernel's answer to a cell queued behind one that failed (``stop_on_error``):
        the same as for any task aborted before it started, so clients raise TaskAborted."""
        header = msg["header"]
        reply_type = str(header["msg_type"]).rsplit("_", 1)[0] + "_reply"
        self._reply_aborted(list(idents), header, reply_type)

    # -- apply ---------------------------------------------------------------------------------------
    def _apply(
        self,
        idents: list[bytes],
        frames: ReceivedFrames,
        delim: int,
        header: dict[str, Any],
        raw_socket: bool = False,
    ) -> None:
        if not self.wire.verify(frames, delim + 1):
            self.log.error("dropped an apply_request with a missing or invalid signature")
            return
        msg_id = header.get("msg_id", "")
        if self._take_aborted(msg_id):
            self._reply_aborted(idents, header, "apply_reply", raw_socket)
            return
        try:
            parent_header = unpack(frames[delim + 3])
            request_md = unpack(frames[delim + 4])
            content = unpack(frames[delim + 5])
        except ValueError as exc:
            self.log.error("dropped an apply_request whose JSON does not decode: %s", exc)
            return
        request = {
            "header": header,
            "parent_header": parent_header,
            "metadata": request_md,
            "content": content,
            "msg_id": msg_id,
            "msg_type": "apply_request",
        }
        self.set_parent(idents, request, channel="shell")  # type: ignore[no-untyped-call]
        shell = self.shell
        assert shell is not None
        started = utcnow_iso()
        result_frames: list[Frame] = []
        segments: list[Segment] = []
        self.current_task = msg_id
        self.task_began = time.monotonic()
        self._apply_running = True
        try:
            buffers: Sequence[Frame] = frames[delim + 6 :]
            if "shm" in request_md:
                buffers = self._attach(buffers, request_md["shm"])
            f, args, kwargs = unpack_apply(content, buffers, shell.user_ns)
            self.current_function = getattr(f, "__qualname__", None) or getattr(f, "__name__", None)
            result = list(map(f, *args)) if content.get("map") else f(*args, **kwargs)
            result_frames = dumps(result, f"the result of {getattr(f, '__name__', 'the task')}()")
            if self.shared is not None:
                result_frames, segments = self.shared.stage(result_frames)
            reply: dict[str, Any] = {"status": "ok"}
        except BaseException:  # KeyboardInterrupt (interrupted task) included
            reply = self._error_content("apply")
        finally:
            self._apply_running = False
            self.current_task = self.current_function = None
        for stream in (sys.stdout, sys.stderr):
            # flushing hands off to the IOPub thread and waits: only worth it with output pending
            if getattr(stream, "_buffers", True):
                stream.flush()
        completed = utcnow_iso()
        metadata = {
            "engine_id": self.engine_id,
            "status": reply["status"],
            "started": started,
            "completed": completed,
            "outputs": self.counting_session.take_count(msg_id),
        }
        if segments:
            metadata["shm"] = segments
        self._send_reply(
            idents,
            "apply_reply",
            reply,
            frames[delim + 2],  # the request's header as it came: the reply's parent
            metadata,
            result_frames,
            raw_socket,
            date=completed,
        )

    def _attach(self, buffers: Sequence[Frame], segments: object) -> list[Frame]:
        """Map the shared-memory segments a request's buffers were moved into."""
        if self.shared is None:
            raise SharedMemoryError(
                f"the request's buffers are in shared memory segments ({segments!r}), but "
                f"engine {self.engine_id} does not share /dev/shm with the controller"
            )
        return self.shared.attach(buffers, segments)

    def _error_content(self, method: str) -> dict[str, Any]:
        etype, evalue, tb = sys.exc_info()
        # skip this module's own frame, so the traceback starts in the user's function
        if tb is not None and tb.tb_frame.f_code.co_filename == __file__ and tb.tb_next is not None:
            tb = tb.tb_next
        shell = self.shell
        try:
            assert shell is not None and etype is not None
            stb = shell.InteractiveTB.structured_traceback(etype, evalue, tb)
        except Exception:
            import traceback

            stb = traceback.format_exception(etype, evalue, tb)
        return {
            "status": "error",
            "ename": etype.__name__ if etype else "Exception",
            "evalue": str(evalue),
            "traceback": stb,
            "engine_info": {"engine_id": self.engine_id, "method": method, "pid": os.getpid()},
        }

    # -- execute metadata ------------------------------------------------------------------------------
    def init_metadata(self, parent: dict[str, Any]) -> dict[str, Any]:
        md: dict[str, Any] = super().init_metadata(parent)  # type: ignore[no-untyped-call]
        md.update({"engine_id": self.engine_id, "started": utcnow_iso()})
        return md

    def finish_metadata(
        self, parent: dict[str, Any], metadata: dict[str, Any], reply_content: dict[str, Any]
    ) -> dict[str, Any]:
        md: dict[str, Any] = super().finish_metadata(  # type: ignore[no-untyped-call]
            parent, metadata, reply_content
        )
        md["completed"] = utcnow_iso()
        md["outputs"] = self.counting_session.take_count(parent["header"]["msg_id"])
        self.current_task = None
        if reply_content.get("status") == "error":
            reply_content.setdefault(
                "engine_info", {"engine_id": self.engine_id, "method": "execute"}
            )
        return md

    # -- control channel -----------------------------------------------------------------------------
    def registration_reply(self, stream: Any, ident: list[bytes], parent: dict[str, Any]) -> None:
        """The controller took this engine back after a lost connection (see rejoin.py)."""
        content = parent["content"]
        if content.get("status") == "ok":
            self.log.info("rejoined the controller as engine %s", content.get("id"))
        else:
            self.log.error("the controller did not take this engine back: %s", content)

    def abort_request(self, stream: Any, ident: list[bytes], parent: dict[str, Any]) -> None:
        """Mark tasks queued on this engine as aborted; they are answered when reached."""
        msg_ids = parent["content"].get("msg_ids") or []
        with self._aborted_lock:
            self.aborted.update(msg_ids)
        self.counting_session.send(
            stream, "abort_reply", {"status": "ok", "msg_ids": msg_ids}, parent, ident
        )

    def clear_request(self, stream: Any, ident: list[bytes], parent: dict[str, Any]) -> None:
        """Reset the engine's namespace (``Client.clear``)."""
        shell = self.shell
        assert shell is not None
        shell.reset(new_session=False)
        self.counting_session.send(stream, "clear_reply", {"status": "ok"}, parent, ident)

    def signal_request(self, stream: Any, ident: list[bytes], parent: dict[str, Any]) -> None:
        """Send a signal to this engine's process (``Client.send_signal``)."""
        signum = parent["content"].get("signum")
        try:
            sig = signal.Signals(signum if isinstance(signum, int) else signal.Signals[str(signum)])
        except (KeyError, ValueError):
            self.counting_session.send(
                stream,
                "signal_reply",
                {"status": "error", "ename": "ValueError", "evalue": f"unknown signal {signum!r}"},
                parent,
                ident,
            )
            return
        self.counting_session.send(
            stream, "signal_reply", {"status": "ok", "signum": int(sig)}, parent, ident
        )
        os.kill(os.getpid(), sig)

    def stack_request(self, stream: Any, ident: list[bytes], parent: dict[str, Any]) -> None:
        """Where the running task is (``Client.stacks``): its Python frames, read from this
        (control) thread while the task holds the shell (engine/stacks.py)."""
        msg_id, applying = self.current_task, self._apply_running
        task = None
        if msg_id is not None:
            method = "apply" if applying else "execute"
            task = ShellTask(msg_id, self.task_began, method, self.current_function)
        frame = sys._current_frames().get(self.shell_thread_id)
        shell = self.shell
        callers = [EngineKernel._apply.__code__]
        if shell is not None:
            callers.append(type(shell).run_code.__code__)  # execute_request's cells
        content = stack_reply(
            self.engine_id, task, frame, callers, parent["content"].get("max_frames")
        )
        self.counting_session.send(stream, "stack_reply", dict(content), parent, ident)
