"""LoadBalancedView: each task, or each chunk of a map, goes to whichever engine the
controller finds free first (``rc.load_balanced_view()``), with retries, timeouts and
``after``/``follow`` dependencies; ``imap`` submits lazily as it is iterated."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol import serialize
from ..protocol.routing import BALANCED
from ..protocol.wire import Frame
from .asyncresult import AsyncResult
from .baseview import View, getname
from .dependency import as_metadata
from .imap import TaskStream
from .ledger import Submitted
from .mapresult import AsyncMapResult
from .targets import Targets

if TYPE_CHECKING:
    from .client import Client

__all__ = ["LoadBalancedView"]

R = TypeVar("R", bound=AsyncResult)


class LoadBalancedView(View):
    """Sends each task (or each chunk of a map) to the least-loaded engine.

    Flags: ``retries`` (resubmit a failed task up to this many times, elsewhere if possible),
    ``timeout`` (seconds a task may wait for an engine and its dependencies before it fails),
    ``after`` (tasks that must finish first) and ``follow`` (tasks whose engine it must run on).
    """

    _flag_names = View._flag_names | {"retries", "timeout", "after", "follow"}

    def __init__(self, client: Client, targets: Targets = None, **flags: Any) -> None:
        self.retries = 0
        self.timeout: float | None = None
        self.after: Any = None
        self.follow: Any = None
        super().__init__(client, targets, **flags)

    def __repr__(self) -> str:
        return f"<LoadBalancedView {self.targets if self.targets is not None else 'None'}>"

    def set_flags(self, **kwargs: Any) -> None:
        if "retries" in kwargs:
            r = kwargs["retries"]
            if not isinstance(r, int) or isinstance(r, bool) or r < 0:
                raise ValueError(f"retries must be a whole number >= 0, found {r!r}")
        if "timeout" in kwargs and kwargs["timeout"] is not None:
            t = kwargs["timeout"]
            if not isinstance(t, (int, float)) or t < 0:
                raise ValueError(f"timeout must be a number of seconds >= 0 or None, found {t!r}")
        for key in ("after", "follow"):
            if kwargs.get(key) is not None:
                as_metadata(kwargs[key])  # raises on a value that is not a dependency
        super().set_flags(**kwargs)

    def _metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {}
        if self.targets is not None:
            md["targets"] = self.client._build_targets(self.targets)
        if self.retries:
            md["retries"] = self.retries
        if self.timeout:
            md["timeout"] = float(self.timeout)
        after, follow = as_metadata(self.after), as_metadata(self.follow)
        if after:
            md["after"] = after
        if follow:
            md["follow"] = follow
        return md

    def _submit(
        self,
        tasks: list[tuple[dict[str, Any], list[Frame]]],
        md: dict[str, Any],
        make_result: Callable[[list[str]], R],
    ) -> R:
        """Send one balanced task per ``(content, buffers)`` and return the AsyncResult
        ``make_result(msg_ids)`` makes for them: the one build loop of apply, map and imap."""
        submitter = self.client._submitter
        msg_ids: list[str] = []
        messages: list[list[Frame]] = []
        notes: list[Submitted] = []
        for content, buffers in tasks:
            msg_id, frames, note = submitter.build(
                BALANCED, "apply_request", content, buffers, metadata=md
            )
            msg_ids.append(msg_id)
            messages.append(frames)
            notes.append(note)
        return self._record(submitter.submit(messages, notes, lambda: make_result(msg_ids)))

    def _apply(self, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncResult:
        content, buffers = serialize.pack_apply(
            serialize.pack_function(f), args, kwargs, getname(f)
        )
        client = self.client
        return self._submit(
            [(content, buffers)],
            self._metadata(),
            lambda msg_ids: AsyncResult(client, msg_ids, getname(f), single=True),
        )

    def _map(
        self,
        f: Any,
        sequences: tuple[Any, ...],
        *,
        chunksize: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> AsyncMapResult:
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        chunksize = 1 if chunksize is None else chunksize
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a whole number >= 1, found {chunksize!r}")
        seqs, n = self._prepare_sequences(sequences)
        fn = serialize.pack_function(f)
        tasks, sizes = [], []
        for start in range(0, n, chunksize):
            stop = min(start + chunksize, n)
            parts = [s[start:stop] for s in seqs]
            content, buffers = serialize.pack_apply(fn, parts, {}, getname(f))
            content["map"] = True
            tasks.append((content, buffers))
            sizes.append(stop - start)
        client = self.client
        return self._submit(
            tasks,
            self._metadata(),
            lambda msg_ids: AsyncMapResult(
                client,
                msg_ids,
                sizes,
                getname(f),
                ordered=ordered,
                return_exceptions=return_exceptions,
            ),
        )

    def imap(
        self,
        f: Callable[..., Any],
        *sequences: Any,
        ordered: bool = True,
        max_outstanding: int | str = "auto",
        return_exceptions: bool = False,
    ) -> Iterator[Any]:
        """Lazy parallel ``map``: reads the inputs as it goes (generators, even endless ones)
        with at most ``max_outstanding`` tasks in flight (default: one per engine), and yields
        results in order or, with ``ordered=False``, as they finish.  The iterator's
        ``display()`` shows a live progress widget over its tasks."""
        stream = TaskStream(self.client, getname(f), sequences)
        return stream.attach(
            self._imap(
                f,
                sequences,
                ordered,
                max_outstanding,
                return_exceptions,
                stream.add,
                lambda: stream.cancelled,
            )
        )

    def _imap(
        self,
        f: Callable[..., Any],
        sequences: tuple[Any, ...],
        ordered: bool,
        max_outstanding: int | str,
        return_exceptions: bool,
        on_submit: Callable[[AsyncResult], None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[Any]:
        if not sequences:
            raise TypeError("imap() needs at least one iterable")
        if max_outstanding == "auto":
            max_outstanding = max(1, len(self))
        limit = int(max_outstanding)
        fn = serialize.pack_function(f)
        md = self._metadata()
        client = self.client
        inputs = zip(*sequences)
        pending: deque[AsyncResult] = deque()
        finished: deque[AsyncResult] = deque()
        cond = threading.Condition()

        def on_done(ar: Any) -> None:
            with cond:
                finished.append(ar)
                cond.notify()

        def submit_one() -> bool:
            try:
                args = next(inputs)
            except StopIteration:
                return False
            content, buffers = serialize.pack_apply(fn, args, {}, getname(f))
            ar = self._submit(
                [(content, buffers)],
                md,
                lambda msg_ids: AsyncResult(
                    client, msg_ids, getname(f), single=True, return_exceptions=return_exceptions
                ),
            )
            pending.append(ar)
            on_submit(ar)
            if not ordered:
                ar.add_done_callback(on_done)
            return True

        exhausted = False
        while True:
            while not exhausted and (limit <= 0 or len(pending) < limit):
                exhausted = cancelled() or not submit_one()
            if not pending:
                return
            if ordered:
                ar = pending.popleft()
            else:
                with cond:
                    cond.wait_for(lambda: bool(finished))
                    ar = finished.popleft()
                pending.remove(ar)
            yield ar.get(return_exceptions=return_exceptions)
