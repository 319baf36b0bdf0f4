"""Client: the connection to a cluster, and the bookkeeping of every task it submitted."""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any

import zmq

from ..error import (
    EngineError,
    NoEnginesRegistered,
    RemoteError,
    unwrap_exception,
)
from ..protocol import serialize
from ..protocol.sharedmem import SharedArea, SharedMemoryError
from ..protocol.wire import (
    InvalidMessage,
    Message,
    Wire,
    as_bytes,
    parse_date,
    send_frames,
    utcnow,
)
from .asyncresult import AsyncHubResult, AsyncResult
from .connect import find_client_file, load_connection_file
from .display import ExecuteReply
from .metadata import Metadata
from .transport import Transport

log = logging.getLogger("ipar_widgets.client")

_TOPIC_ENGINE = re.compile(rb"engine\.(\d+)\.")
#: seconds a reply waits for outputs its engine counted but that have not arrived
OUTPUT_GRACE = 5.0

OutputListener = Callable[[int | None, str | None, str, dict[str, Any]], None]


class Client:
    """A connection to a cluster's controller.

    ``Client(profile="x")`` finds the running cluster of profile ``x``; ``Client(url_file)``
    uses a connection file directly.  ``rc[i]``, ``rc[:]`` and ``rc.load_balanced_view()``
    make views to submit work through.  ``metadata``, ``results``, ``outstanding`` and
    ``history`` record what this client submitted.  All socket work happens in one background
    thread; every method is safe to call from any thread.
    """

    block = False

    def __init__(
        self,
        url_file: str | None = None,
        profile: str | None = None,
        profile_dir: str | None = None,
        ipython_dir: str | None = None,
        context: zmq.Context[Any] | None = None,
        debug: bool = False,
        sshserver: str | None = None,
        sshkey: str | None = None,
        password: str | None = None,
        paramiko: bool | None = None,
        timeout: float = 10,
        cluster_id: str | None = None,
        **extra_args: Any,
    ) -> None:
        if sshserver or sshkey or password or paramiko:
            raise ValueError(
                "ipar_widgets does not tunnel over SSH; start the controller with --ip=0.0.0.0 "
                "(or tunnel its ports yourself) and pass the connection file"
            )
        if extra_args:
            raise TypeError(f"unexpected arguments to Client: {', '.join(sorted(extra_args))}")
        if ipython_dir:
            import os

            os.environ["IPYTHONDIR"] = ipython_dir
        if url_file is None:
            url_file = str(find_client_file(profile, cluster_id, profile_dir, timeout=timeout))
        self.url_file = url_file
        self.profile = profile or "default"
        self.cluster_id = cluster_id or ""
        self.debug = debug
        info = load_connection_file(url_file)
        self._info = info
        self.session = Wire(info["key"].encode())
        #: the controller's shared-memory area, when this client is on the controller's host
        self._shared = SharedArea.join(info.get("shm"))
        self._context = context or zmq.Context.instance()
        self._lock = threading.RLock()
        self._engines: dict[int, str] = {}
        self._engines_changed = threading.Condition(self._lock)
        self.metadata: dict[str, Metadata] = {}
        self.results: dict[str, Any] = {}
        self.outstanding: set[str] = set()
        self.history: list[str] = []
        self._trackers: dict[str, list[AsyncResult]] = {}
        #: msg_id -> the AsyncResult that owns its result (results it owns are not in .results)
        self._owners: weakref.WeakValueDictionary[str, AsyncResult] = weakref.WeakValueDictionary()
        self._handing_out: dict[str, Any] = {}
        self._queries: dict[str, Future[Message]] = {}
        self._output_counts: dict[str, int] = {}
        self._held: dict[str, tuple[Any, int, float]] = {}
        self._output_listeners: list[OutputListener] = []
        self._closed = False
        #: per thread: the AsyncResults sent inside _waiting() (None outside it)
        self._thread_state = threading.local()
        base = f"tcp://{info['location']}"
        self._transport = Transport(
            self._context,
            self.session.session.encode(),
            f"{base}:{info['ports']['client']}",
            f"{base}:{info['ports']['notify']}",
            self._on_reply,
            self._on_notify,
        )
        self._transport.next_deadline = self._next_deadline
        self._transport.on_deadline = self._release_overdue
        try:
            reply = self._query(
                "connection_request", {"shm": self._shared is not None}, timeout=timeout
            )
        except TimeoutError:
            self._transport.close()
            raise TimeoutError(
                f"the controller at {base}:{info['ports']['client']} (from {url_file}) did not "
                f"answer within {timeout:g} s; is the cluster running? (see: ipar list)"
            ) from None
        with self._lock:
            self._engines.update({int(k): v for k, v in reply.content["engines"].items()})
        self._transport.direct = True  # the answer came: the I/O thread's socket is connected
        from ..magics import _register_magics_if_ipython  # inside IPython: %px for this client

        _register_magics_if_ipython(self)

    # -- engines ----------------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Ids of the registered engines, kept current by the controller's notices."""
        with self._lock:
            return sorted(self._engines)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<Client: {len(self)} engines, profile {self.profile!r}>"

    def _repr_html_(self) -> str | None:
        try:
            from ..widgets.html import client_html
        except ImportError:
            return None
        return client_html(self)

    def _build_targets(self, targets: Any) -> list[int]:
        """Engine ids from 'all'/None, an int, a list, a slice or a range."""
        ids = self.ids
        if not ids:
            raise NoEnginesRegistered("Can't build targets without any engines")
        if targets is None or targets == "all":
            return ids
        if isinstance(targets, int):
            if targets < 0:
                targets = ids[targets]
            if targets not in ids:
                raise IndexError(f"No such engine: {targets} (registered engines: {ids})")
            return [targets]
        if isinstance(targets, slice):
            return ids[targets]
        if isinstance(targets, (list, tuple, range, set)):
            out = []
            for t in targets:
                if not isinstance(t, int):
                    raise TypeError(f"targets must be engine ids (int), found {t!r}")
                if t not in ids:
                    raise IndexError(f"No such engine: {t} (registered engines: {ids})")
                out.append(t)
            return out
        raise TypeError(
            f"targets must be an int, a list of ints, a slice or 'all', found {targets!r}"
        )

    def __getitem__(self, key: Any) -> Any:
        from .view import DirectView

        if not isinstance(key, (int, slice, tuple, list, range)):
            raise TypeError(f"key by int/slice/iterable of ints only, not {type(key).__name__}")
        if isinstance(key, int):
            return DirectView(self, self._build_targets(key)[0])
        return DirectView(self, self._build_targets(key))

    def __iter__(self) -> Any:
        for engine_id in self.ids:
            yield self[engine_id]

    def direct_view(self, targets: Any = "all", **kwargs: Any) -> Any:
        """A DirectView on ``targets``; 'all' follows engines as they come and go."""
        from .view import DirectView

        if targets != "all" and targets is not None:
            targets = self._build_targets(targets) if not isinstance(targets, int) else targets
        return DirectView(self, "all" if targets is None else targets, **kwargs)

    def load_balanced_view(self, targets: Any = None, **kwargs: Any) -> Any:
        """A LoadBalancedView: each task goes to the least-loaded engine (of ``targets``)."""
        from .view import LoadBalancedView

        if targets == "all":
            targets = None
        if targets is not None:
            targets = self._build_targets(targets)
        return LoadBalancedView(self, targets, **kwargs)

    def wait_for_engines(
        self,
        n: int | None = None,
        timeout: float = -1,
        block: bool = True,
        interactive: Any = None,
        widget: Any = None,
    ) -> Any:
        """Wait until ``n`` engines are registered (default: as many as the cluster started).

        Raises TimeoutError after ``timeout`` seconds (-1: no limit), and EngineError at once if
        an engine the controller started exits before registering.  ``block=False`` returns a
        Future instead.
        """
        if not block:
            future: Future[None] = Future()

            def run() -> None:
                try:
                    self.wait_for_engines(n, timeout, block=True)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(None)

            threading.Thread(target=run, daemon=True).start()
            return future
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        status = self._query("status_request", timeout=10).content
        if n is None:
            n = int(status.get("engines_requested") or 0)
        failures_seen = len(status.get("launch_failures", []))
        while True:
            with self._lock:
                if len(self._engines) >= n:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{len(self._engines)} engine(s) registered of the {n} waited for, after {timeout:g} s"
                    )
                # notices wake us at once; the re-check covers a notice sent before we subscribed
                self._engines_changed.wait(0.5 if remaining is None else min(0.5, remaining))
            status = self._query("status_request", timeout=10).content
            with self._lock:
                for engine in status.get("engines", []):
                    self._engines.setdefault(int(engine["id"]), engine["uuid"])
            failures = status.get("launch_failures", [])
            if (
                len(failures) > failures_seen
                and len(self._engines) + status.get("engines_starting", 0) < n
            ):
                f = failures[-1]
                raise EngineError(
                    f"an engine exited with code {f['returncode']} before registering "
                    f"(log: {f['log']}):\n{f['log_tail']}"
                )

    # -- bookkeeping used by views and AsyncResults -----------------------------------------------
    def _metadata_for(self, msg_id: str) -> Metadata:
        md = self.metadata.get(msg_id)
        if md is None:
            md = self.metadata.setdefault(msg_id, Metadata(msg_id=msg_id))
        return md

    def _known_result(self, msg_id: str) -> tuple[bool, Any]:
        """``(True, result)`` if this client holds the task's result (call with the lock)."""
        if msg_id in self.results:
            return True, self.results[msg_id]
        if msg_id in self._handing_out:
            return True, self._handing_out[msg_id]
        owner = self._owners.get(msg_id)
        if owner is not None and msg_id in owner._results:
            return True, owner._results[msg_id]
        return False, None

    def _track(self, ar: AsyncResult) -> None:
        """Register an AsyncResult for its msg_ids; results already here are delivered now."""
        ready = []
        with self._lock:
            for msg_id in ar.msg_ids:
                known, value = self._known_result(msg_id)
                if known:
                    ready.append((msg_id, value))
                else:
                    self._trackers.setdefault(msg_id, []).append(ar)
        for msg_id, value in ready:
            ar._deliver(msg_id, value)
        if not ar.msg_ids:  # nothing to wait for (a map over an empty sequence)
            ar._finalize()

    def _new_task(
        self, msg_id: str, submitted: str, engine_id: int | None, extra: dict[str, Any]
    ) -> None:
        md = self._metadata_for(msg_id)
        # dict.update: Metadata's checked __setitem__ costs a Python call per key
        dict.update(
            md,
            submitted=parse_date(submitted),
            engine_id=engine_id,
            engine_uuid=None if engine_id is None else self._engines.get(engine_id),
        )
        for key in ("after", "follow"):
            if extra.get(key):
                md[key] = extra[key]
        self.outstanding.add(msg_id)
        self.history.append(msg_id)

    def _build_task(
        self,
        route: bytes,
        msg_type: str,
        content: dict[str, Any],
        buffers: Sequence[Any],
        metadata: dict[str, Any] | None = None,
        engine_id: int | None = None,
        later: list[tuple[Any, ...]] | None = None,
    ) -> tuple[str, list[Any]]:
        """Sign a task's message and note it as submitted; with ``later``, the noting is
        appended there for :meth:`_submit_tasks`, which may do it while the task travels."""
        if self._closed:
            raise RuntimeError("this client is closed")
        header = self.session.header(msg_type)
        if self._shared is not None and buffers:
            buffers, segments = self._shared.stage(buffers)
            if segments:  # big buffers went into shared memory: the engine maps them
                metadata = {**(metadata or {}), "shm": segments}
        _, frames = self.session.build(
            msg_type, content, header=header, metadata=metadata, idents=[route], buffers=buffers
        )
        note = (header["msg_id"], header["date"], engine_id, metadata or {})
        if later is None:
            self._new_task(*note)
        else:
            later.append(note)
        return header["msg_id"], frames

    def _send_tasks(self, messages: list[list[Any]], ar: AsyncResult | None = None) -> None:
        if self._closed:
            raise RuntimeError("this client is closed")
        if ar is not None and self._waiting_here():
            sock = self._send_waited(messages)
            self._claim_waiter(ar, sock)
            return
        self._transport.send_many(messages, on_sent=ar._set_sent if ar is not None else None)

    def _submit_tasks(
        self,
        messages: list[list[Any]],
        notes: list[tuple[Any, ...]],
        make_result: Callable[[], AsyncResult],
    ) -> AsyncResult:
        """Send tasks and return the AsyncResult ``make_result`` makes for them; ``notes``
        are what ``_build_task(later=...)`` left to note about them.

        A thread that will wait for them sends them first: their replies come to its own
        socket, so the bookkeeping can overlap their travel.  Otherwise it comes first, so
        the I/O thread knows the tasks when their replies come.
        """
        if self._closed:
            raise RuntimeError("this client is closed")
        if self._waiting_here():
            sock = self._send_waited(messages)
            try:
                for note in notes:
                    self._new_task(*note)
                ar = make_result()
            except BaseException:
                self._transport.end_wait(sock, complete=False)
                raise
            self._claim_waiter(ar, sock)
            return ar
        for note in notes:
            self._new_task(*note)
        ar = make_result()
        self._transport.send_many(messages, on_sent=ar._set_sent)
        return ar

    def _waiting_here(self) -> bool:
        """Whether tasks sent now go to this thread's waiter: the first ones sent inside
        ``_waiting()``, once the I/O thread's connection is up."""
        claims = getattr(self._thread_state, "claims", None)
        return claims is not None and not claims and self._transport.direct

    def _send_waited(self, messages: list[list[Any]]) -> Any:
        sock = self._transport.begin_wait()
        try:
            for frames in messages:
                send_frames(sock, frames)
        except BaseException:
            self._transport.end_wait(sock, complete=False)
            raise
        return sock

    def _claim_waiter(self, ar: AsyncResult, sock: Any) -> None:
        ar._waiter = sock
        ar._waiter_thread = threading.current_thread()
        self._thread_state.claims.append(ar)
        ar._set_sent()

    @contextmanager
    def _waiting(self) -> Iterator[list[AsyncResult]]:
        """Tasks this thread sends in the block and then waits for with ``get()``: their
        replies come to the thread's own socket, where its ``get()`` receives them."""
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

    # -- messages from the controller (I/O thread, or a thread receiving on its waiter) ---------
    def _on_reply(self, frames: list[Any]) -> str | None:
        """Handle one message on a reply socket; return the msg_id a task reply answers."""
        try:
            msg = self.session.decode(frames)
        except InvalidMessage as exc:
            log.warning("dropped a message from the controller: %s", exc)
            return None
        if msg.msg_type in ("apply_reply", "execute_reply"):
            return self._on_task_reply(msg)
        future = self._queries.pop(msg.parent_header.get("msg_id", ""), None)
        if future is not None and not future.done():
            future.set_result(msg)
        return None

    def _on_task_reply(self, msg: Message) -> str | None:
        msg_id = msg.parent_header.get("msg_id")
        if not isinstance(msg_id, str):
            return None
        md = self._metadata_for(msg_id)
        rmd = msg.metadata
        content = msg.content
        status = content.get("status", "ok")
        engine_id = rmd.get("engine_id")
        # one dict.update for the known keys: Metadata's checked __setitem__ costs a Python
        # call per key, on the I/O thread's path of every result
        dict.update(
            md,
            engine_id=engine_id,
            engine_uuid=self._engines.get(engine_id, md["engine_uuid"])
            if engine_id is not None
            else md["engine_uuid"],
            status=status,
            started=parse_date(rmd.get("started")),
            completed=parse_date(rmd.get("completed")),
            received=utcnow(),
        )
        if status == "ok":
            if msg.msg_type == "execute_reply":
                result: Any = ExecuteReply(msg_id, content, md)
            else:
                try:
                    result = serialize.loads(self._result_buffers(msg_id, msg))
                except Exception as exc:
                    result = RemoteError(
                        type(exc).__name__,
                        f"the result could not be unpickled on the client: {exc}",
                        "",
                        {"engine_id": engine_id, "method": "apply"},
                    )
        else:
            result = unwrap_exception(content)
            if msg.msg_type == "execute_reply" and md["error"] is None:
                md["error"] = content
        expected = int(rmd.get("outputs") or 0)
        with self._lock:
            if self._output_counts.get(msg_id, 0) < expected:
                self._held[msg_id] = (result, expected, time.monotonic() + OUTPUT_GRACE)
                if threading.current_thread() is not self._transport.thread:
                    self._transport.wake()  # so the I/O thread keeps the grace's deadline
                return msg_id
        self._complete(msg_id, result)
        return msg_id

    def _result_buffers(self, msg_id: str, msg: Message) -> list[Any]:
        """A reply's buffers, with those the engine put in shared memory mapped in place."""
        segments = msg.metadata.get("shm")
        if not segments:
            return msg.buffers
        try:
            if self._shared is None:
                raise SharedMemoryError(
                    f"the result is in shared memory segments {segments!r}, but this client "
                    "does not share /dev/shm with the controller"
                )
            return self._shared.attach(msg.buffers, segments)
        finally:
            # the controller keeps the files until every receiver has mapped them
            _, frames = self.session.build("segments_mapped", {"msg_id": msg_id}, idents=[b"c"])
            self._transport.send(frames)

    def _complete(self, msg_id: str, result: Any) -> None:
        with self._lock:
            self._output_counts.pop(msg_id, None)
            self._held.pop(msg_id, None)
            self.outstanding.discard(msg_id)
            trackers = self._trackers.pop(msg_id, ())
            owner = None
            for tracker in trackers:
                if tracker.owner:
                    owner = tracker
                    break
            if owner is None:
                self.results[msg_id] = result
            else:
                # The owning AsyncResult keeps the result; while it is being handed out (and
                # afterwards, through the owner) an AsyncResult made now still finds it.
                self._owners[msg_id] = owner
                self._handing_out[msg_id] = result
        for ar in trackers:
            ar._deliver(msg_id, result)
        if owner is not None:
            with self._lock:
                self._handing_out.pop(msg_id, None)

    def _next_deadline(self) -> float | None:
        with self._lock:
            if not self._held:
                return None
            return min(deadline for _, _, deadline in self._held.values())

    def _release_overdue(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [(m, r) for m, (r, _, d) in self._held.items() if d <= now]
        for msg_id, result in overdue:
            log.warning(
                "outputs of task %s did not all arrive; handing out its result anyway", msg_id
            )
            self._complete(msg_id, result)

    def _on_notify(self, frames: list[Any]) -> None:
        topic = as_bytes(frames[0]) if len(frames) else b""
        try:
            msg = self.session.decode(frames)
        except InvalidMessage as exc:
            log.warning("dropped a notice from the controller: %s", exc)
            return
        if topic.endswith(b"\x00controller"):
            self._on_cluster_notice(msg)
            return
        m = _TOPIC_ENGINE.search(topic)
        engine_id = int(m.group(1)) if m else None
        msg_id = msg.parent_header.get("msg_id")
        content = msg.content
        msg_type = msg.msg_type
        md = self.metadata.get(msg_id) if isinstance(msg_id, str) else None
        if md is not None:
            if md["engine_id"] is None and engine_id is not None:
                md["engine_id"] = engine_id  # a balanced task shows where it runs by its output
            _apply_output(md, msg_type, content)
        for listener in list(self._output_listeners):
            try:
                listener(engine_id, msg_id, msg_type, content)
            except Exception:
                log.exception("error in an output listener")
        if md is None or not isinstance(msg_id, str):
            return
        release = None
        with self._lock:
            count = self._output_counts.get(msg_id, 0) + 1
            self._output_counts[msg_id] = count
            held = self._held.get(msg_id)
            if held is not None and count >= held[1]:
                release = held[0]
        if release is not None:
            self._complete(msg_id, release)

    def _on_cluster_notice(self, msg: Message) -> None:
        content = msg.content
        with self._lock:
            if msg.msg_type == "engine_registered":
                self._engines[int(content["engine_id"])] = str(content.get("uuid", ""))
            elif msg.msg_type == "engine_unregistered":
                self._engines.pop(int(content["engine_id"]), None)
            self._engines_changed.notify_all()
        for listener in list(self._output_listeners):
            try:
                listener(None, None, msg.msg_type, content)
            except Exception:
                log.exception("error in an output listener")

    def add_output_listener(self, listener: OutputListener) -> None:
        """Call ``listener(engine_id, msg_id, msg_type, content)`` for every output and notice."""
        self._output_listeners.append(listener)

    def remove_output_listener(self, listener: OutputListener) -> None:
        try:
            self._output_listeners.remove(listener)
        except ValueError:
            pass

    # -- questions to the controller ----------------------------------------------------------------
    def _query(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        *,
        timeout: float | None = 10,
        route: bytes = b"c",
    ) -> Message:
        if self._closed:
            raise RuntimeError("this client is closed")
        header, frames = self.session.build(msg_type, content, idents=[route])
        future: Future[Message] = Future()
        self._queries[header["msg_id"]] = future
        self._transport.send(frames)
        try:
            msg = future.result(timeout)
        except FutureTimeout:
            self._queries.pop(header["msg_id"], None)
            raise TimeoutError(f"no answer to {msg_type} within {timeout} s") from None
        if msg.content.get("status") == "error":
            err = unwrap_exception(msg.content)
            if type(err) is RemoteError and msg.content.get("origin") == "cluster":
                raise ValueError(msg.content.get("evalue", "the controller refused the request"))
            raise err
        return msg

    def _control(
        self, engine_ids: Iterable[int], msg_type: str, content: dict[str, Any], timeout: float = 10
    ) -> dict[int, Message]:
        """Send a control message to each engine (answered even while it runs a task)."""
        futures: dict[int, tuple[str, Future[Message]]] = {}
        for engine_id in engine_ids:
            header, frames = self.session.build(msg_type, content, idents=[b"k%d" % engine_id])
            future: Future[Message] = Future()
            self._queries[header["msg_id"]] = future
            futures[engine_id] = (header["msg_id"], future)
            self._transport.send(frames)
        replies = {}
        deadline = time.monotonic() + timeout
        for engine_id, (msg_id, future) in futures.items():
            try:
                replies[engine_id] = future.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                self._queries.pop(msg_id, None)
                raise TimeoutError(
                    f"engine {engine_id} did not answer {msg_type} within {timeout} s"
                ) from None
        for msg in replies.values():
            if msg.content.get("status") == "error":
                raise unwrap_exception(msg.content)
        return replies

    def _jobs(self, jobs: Any) -> list[str]:
        """msg_ids from an AsyncResult, a msg_id, an index into history, or a list of those."""
        if jobs is None:
            return list(self.outstanding)
        if isinstance(jobs, (str, int, AsyncResult)):
            jobs = [jobs]
        out: list[str] = []
        for job in jobs:
            if isinstance(job, AsyncResult):
                out.extend(job.msg_ids)
            elif isinstance(job, int):
                out.append(self.history[job])
            elif isinstance(job, str):
                out.append(job)
            else:
                raise TypeError(f"expected msg_ids, AsyncResults or history indices, found {job!r}")
        return out

    def wait(self, jobs: Any = None, timeout: float = -1) -> bool:
        """Wait for the given tasks (default: all outstanding); True if all finished in time."""
        msg_ids = [m for m in self._jobs(jobs) if m in self.outstanding]
        if not msg_ids:
            return True
        ar = AsyncResult(self, msg_ids, owner=False)
        return bool(ar.wait(timeout))

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None) -> Any:
        """Abort tasks that have not started (default: every outstanding task of this client).

        ``targets`` limits it to tasks waiting on those engines.
        """
        msg_ids = self._jobs(jobs)
        if targets is not None:
            engines = set(self._build_targets(targets))
            msg_ids = [m for m in msg_ids if self._metadata_for(m)["engine_id"] in engines]
        if not msg_ids:
            return None
        self._query("abort_request", {"msg_ids": msg_ids})
        return None

    def clear(self, targets: Any = None, block: bool | None = None) -> None:
        """Reset the namespace of the target engines."""
        self._control(self._build_targets(targets), "clear_request", {})

    def send_signal(self, sig: int, targets: Any = None, block: bool | None = None) -> None:
        """Send a signal (e.g. ``signal.SIGINT`` to interrupt a task) to the target engines."""
        self._control(self._build_targets(targets), "signal_request", {"signum": int(sig)})

    def shutdown(
        self,
        targets: Any = "all",
        restart: bool = False,
        hub: bool = False,
        block: bool | None = None,
    ) -> None:
        """Stop the target engines; with ``hub=True`` stop the whole cluster."""
        if restart:
            raise ValueError("engines cannot be restarted in place; stop them and add new ones")
        if hub:
            self._query("shutdown_request", {"hub": True}, timeout=30)
            return
        ids = self._build_targets(targets)
        self._query("shutdown_request", {"targets": ids}, timeout=30)
        with self._lock:
            for engine_id in ids:
                self._engines.pop(engine_id, None)

    def queue_status(self, targets: Any = "all", verbose: bool = False) -> dict[Any, Any]:
        """Per engine: tasks queued, load-balanced tasks held, and tasks completed;
        ``"unassigned"``: load-balanced tasks not yet handed to an engine."""
        content: dict[str, Any] = {"verbose": verbose}
        if targets not in ("all", None):
            content["targets"] = self._build_targets(targets)
        reply = self._query("queue_request", content).content
        status: dict[Any, Any] = {int(k): v for k, v in reply["engines"].items()}
        status["unassigned"] = reply["unassigned"]
        if isinstance(targets, int):
            return status[targets]
        return status

    def status(self) -> dict[str, Any]:
        """The controller's view of the cluster: engines, their state, task counts, uptime."""
        content = dict(self._query("status_request").content)
        content.pop("status", None)
        return content

    def hub_history(self) -> list[str]:
        """Every msg_id the controller holds a record of, oldest first."""
        return list(self._query("history_request").content["history"])

    def purge_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished tasks, here and in the controller's records ('all' for everything)."""
        if jobs == "all":
            self.purge_everything()
            return
        msg_ids = self._jobs(jobs) if jobs else []
        engine_ids = self._build_targets(targets) if targets else []
        if not msg_ids and not engine_ids:
            raise ValueError("purge_results needs jobs (msg_ids, AsyncResults or 'all') or targets")
        self._query("purge_request", {"msg_ids": msg_ids, "engine_ids": engine_ids})
        for msg_id in msg_ids:
            if msg_id not in self.outstanding:
                self.results.pop(msg_id, None)
                self.metadata.pop(msg_id, None)

    def purge_local_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished tasks in this client only."""
        msg_ids = (
            self._jobs(jobs)
            if jobs not in ((), "all")
            else [m for m in self.metadata if m not in self.outstanding]
        )
        for msg_id in msg_ids:
            if msg_id not in self.outstanding:
                self.results.pop(msg_id, None)
                self.metadata.pop(msg_id, None)

    def purge_hub_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished tasks in the controller's records only."""
        if jobs == "all":
            self._query("purge_request", {"msg_ids": "all"})
            return
        self._query(
            "purge_request",
            {
                "msg_ids": self._jobs(jobs) if jobs else [],
                "engine_ids": self._build_targets(targets) if targets else [],
            },
        )

    def purge_everything(self) -> None:
        """Forget every finished task, here and in the controller."""
        self.purge_local_results("all")
        self._query("purge_request", {"msg_ids": "all"})

    def get_result(
        self, indices_or_msg_ids: Any = None, block: bool | None = None, owner: bool = False
    ) -> AsyncResult:
        """An AsyncResult for tasks by msg_id (or history index), also tasks submitted by
        another client: their results and outputs come from the controller's records."""
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        # one msg_id (or history index) gives a single value; a list gives a list
        single = isinstance(indices_or_msg_ids, (str, int)) or (
            isinstance(indices_or_msg_ids, AsyncResult) and indices_or_msg_ids._single_result
        )
        msg_ids = self._jobs(indices_or_msg_ids)
        with self._lock:
            local = all(m in self._trackers or self._known_result(m)[0] for m in msg_ids)
        if local:
            ar: AsyncResult = AsyncResult(self, msg_ids, owner=owner, single=single)
        else:
            self._fetch_records(msg_ids)
            ar = AsyncHubResult(self, msg_ids, owner=owner, single=single)
        if block if block is not None else self.block:
            ar.wait()
        return ar

    def result_status(self, msg_ids: Any, status_only: bool = True) -> dict[str, Any]:
        """Which tasks are pending and which completed, per the controller's records."""
        ids = self._jobs(msg_ids)
        records = self._query("result_request", {"msg_ids": ids}).content["results"]
        pending = [m for m in ids if records[m]["status"] in ("pending", "running")]
        completed = [m for m in ids if records[m]["status"] in ("ok", "error", "aborted")]
        out: dict[str, Any] = {"pending": pending, "completed": completed}
        if not status_only:
            self._fetch_records([m for m in completed if m not in self.results])
            for m in completed:
                out[m] = self.results.get(m)
        return out

    def _fetch_records(self, msg_ids: list[str]) -> None:
        """Replay the controller's record of tasks (reply and outputs) as if they arrived now,
        and ask the controller to forward the replies of those still running."""
        reply = self._query("result_request", {"msg_ids": msg_ids, "watch": True})
        frames = list(reply.buffers)
        records = reply.content["results"]
        pos = 0
        for msg_id in msg_ids:
            entry = records.get(msg_id, {"status": "unknown"})
            if entry["status"] == "unknown":
                raise KeyError(f"the controller has no record of task {msg_id!r}")
            md = self._metadata_for(msg_id)
            if md["submitted"] is None:
                md["submitted"] = parse_date(entry.get("submitted"))
            messages = []
            for n in entry.get("frames", []):
                messages.append(frames[pos : pos + n])
                pos += n
            if not entry.get("reply"):
                self.outstanding.add(msg_id)
                for output in messages:
                    self._on_notify([b"*\x00replay", *output])
                continue
            self.outstanding.add(msg_id)
            for output in messages[1:]:
                self._on_notify([b"*\x00replay", *output])
            self._on_reply(list(messages[0]))

    # -- magics and lifecycle -------------------------------------------------------------------------
    def activate(self, targets: Any = "all", suffix: str = "") -> Any:
        """Make the %px magics act on a DirectView of ``targets`` (suffix: ``%px<suffix>``)."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def spin(self) -> None:
        """Kept for compatibility: results arrive in the background, nothing to do."""

    def close(self, linger: float | None = None) -> None:
        """Disconnect from the controller; the cluster keeps running."""
        if self._closed:
            return
        self._closed = True
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._transport.close(timeout=0)
        except Exception:
            pass


def _apply_output(md: Metadata, msg_type: str, content: dict[str, Any]) -> None:
    """Record one output message of a task in its metadata."""
    if msg_type == "stream":
        name = content.get("name", "stdout")
        if name in ("stdout", "stderr"):
            md[name] = md[name] + content.get("text", "")
    elif msg_type == "display_data":
        md["outputs"].append(content)
    elif msg_type == "update_display_data":
        # replace the display it updates (same display_id), as a notebook would
        display_id = (content.get("transient") or {}).get("display_id")
        for i, shown in enumerate(md["outputs"]):
            if (
                display_id is not None
                and (shown.get("transient") or {}).get("display_id") == display_id
            ):
                md["outputs"][i] = {
                    **shown,
                    "data": content.get("data", {}),
                    "metadata": content.get("metadata", {}),
                }
    elif msg_type == "execute_result":
        md["execute_result"] = content
    elif msg_type == "error":
        md["error"] = content
    elif msg_type == "execute_input":
        md["execute_input"] = content.get("code")
    elif msg_type == "clear_output":
        md["stdout"] = ""
        md["stderr"] = ""
        md["outputs"] = []
    elif msg_type == "data_message":
        md["data"].update(content.get("data", {}))
