"""Views: the ways of sending work to engines.

A DirectView sends each call to every one of its target engines (and splits a map's
sequence between them); a LoadBalancedView sends each task, or each chunk of a map, to
whichever engine is free first.  Both return AsyncResults, or wait for the values when
``block`` is true.
"""

from __future__ import annotations

import builtins
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..protocol import serialize
from . import engine_side, mapping
from .asyncresult import AsyncMapResult, AsyncResult
from .dependency import as_metadata

if TYPE_CHECKING:
    from .client import Client

__all__ = ["View", "DirectView", "LoadBalancedView"]


def getname(f: Any) -> str:
    if isinstance(f, serialize.Reference):
        return f.name
    return str(getattr(f, "__name__", None) or getattr(type(f), "__name__", "f"))


class View:
    """What DirectView and LoadBalancedView share: flags, apply, map, bookkeeping."""

    _flag_names: frozenset[str] = frozenset({"block", "track", "targets"})

    def __init__(self, client: Client, targets: Any = None, **flags: Any) -> None:
        self.client = client
        self.block = False
        self.track = False
        self.targets = targets
        self.history: list[str] = []
        self._lock = threading.Lock()
        self.set_flags(**flags)

    # -- flags ------------------------------------------------------------------------------------
    def set_flags(self, **kwargs: Any) -> None:
        """Set this view's flags (``block``, ``targets``, ...); unknown names are errors."""
        for name, value in kwargs.items():
            if name not in self._flag_names:
                raise KeyError(
                    f"Invalid name: {name!r}; the flags of a {type(self).__name__} are "
                    f"{', '.join(sorted(self._flag_names))}"
                )
            setattr(self, name, value)

    @contextmanager
    def temp_flags(self, **kwargs: Any) -> Generator[None, None, None]:
        """Set flags for the duration of a ``with`` block."""
        saved = {name: getattr(self, name) for name in kwargs}
        self.set_flags(**kwargs)
        try:
            yield
        finally:
            self.set_flags(**saved)

    # -- bookkeeping --------------------------------------------------------------------------------
    @property
    def outstanding(self) -> set[str]:
        """msg_ids submitted through this view that have not finished."""
        pending = self.client.outstanding
        return {m for m in self.history if m in pending}

    @property
    def results(self) -> dict[str, Any]:
        return {m: self.client.results[m] for m in self.history if m in self.client.results}

    def _record(self, ar: AsyncResult) -> AsyncResult:
        with self._lock:
            self.history.extend(ar.msg_ids)
        return ar

    def _finish(self, submit: AsyncResult | Callable[[], AsyncResult], block: bool | None) -> Any:
        """The AsyncResult (made by ``submit`` when it is a function), or, when blocking, its
        value.  Blocking on tasks submitted here lets this thread receive their replies."""
        if not (self.block if block is None else block):
            return submit if isinstance(submit, AsyncResult) else submit()
        if isinstance(submit, AsyncResult):
            return submit.get()
        return self._submit_and_wait(submit)

    def _submit_and_wait(self, submit: Callable[[], AsyncResult]) -> Any:
        with self.client._waiting() as claimed:
            ar = submit()
            for other in claimed:
                if other is not ar:  # not what get() will be called on
                    other._abandon_waiter()
        return ar.get()

    # -- apply ------------------------------------------------------------------------------------
    def apply(self, __f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``__f(*args, **kwargs)`` remotely; blocks or not according to ``self.block``."""
        return self._finish(lambda: self._apply(__f, args, kwargs), None)

    def apply_async(self, __f: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """Call ``__f(*args, **kwargs)`` remotely and return an AsyncResult at once."""
        return self._apply(__f, args, kwargs)

    def apply_sync(self, __f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``__f(*args, **kwargs)`` remotely and wait for the result."""
        return self._submit_and_wait(lambda: self._apply(__f, args, kwargs))

    def _apply(self, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncResult:
        raise NotImplementedError

    # -- map --------------------------------------------------------------------------------------
    def map(
        self, f: Callable[..., Any], *sequences: Any, block: bool | None = None, **kwargs: Any
    ) -> Any:
        """Parallel ``map(f, *sequences)``; blocks or not according to ``block``/``self.block``."""
        return self._finish(lambda: self._map(f, sequences, **kwargs), block)

    def map_async(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> AsyncMapResult:
        """Parallel ``map``, returning an AsyncMapResult at once."""
        if "block" in kwargs:
            raise TypeError("map_async doesn't take a `block` keyword argument.")
        return self._map(f, sequences, **kwargs)

    def map_sync(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> list[Any]:
        """Parallel ``map``, waiting for the list of results."""
        if "block" in kwargs:
            raise TypeError("map_sync doesn't take a `block` keyword argument.")
        return self._submit_and_wait(lambda: self._map(f, sequences, **kwargs))  # type: ignore[no-any-return]

    def _map(self, f: Any, sequences: tuple[Any, ...], **kwargs: Any) -> AsyncMapResult:
        raise NotImplementedError

    @staticmethod
    def _prepare_sequences(sequences: tuple[Any, ...]) -> tuple[list[Any], int]:
        if not sequences:
            raise TypeError("map() needs at least one sequence to map over")
        seqs = [mapping.as_sequence(s) for s in sequences]
        return seqs, min(len(s) for s in seqs)

    # -- decorators ---------------------------------------------------------------------------------
    def remote(
        self, block: bool | None = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: calling the function runs it remotely through this view."""
        from .remotefunction import remote

        return remote(self, block=block, **flags)

    def parallel(
        self, dist: str = "b", block: bool | None = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: calling the function on sequences splits them over the engines; ``.map``
        applies it element-wise."""
        from .remotefunction import parallel

        return parallel(self, dist=dist, block=block, **flags)

    # -- waiting and control ------------------------------------------------------------------------
    def wait(self, jobs: Any = None, timeout: float = -1) -> bool:
        """Wait for tasks of this view (default: all of them that are outstanding)."""
        return self.client.wait(jobs if jobs is not None else list(self.outstanding), timeout)

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None) -> None:
        """Abort tasks of this view that have not started (default: all outstanding)."""
        self.client.abort(jobs if jobs is not None else list(self.outstanding), targets=targets)

    def get_result(
        self, indices_or_msg_ids: Any = None, block: bool | None = None, owner: bool = False
    ) -> AsyncResult:
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        if isinstance(indices_or_msg_ids, int):
            indices_or_msg_ids = self.history[indices_or_msg_ids]
        return self.client.get_result(indices_or_msg_ids, block=block, owner=owner)

    def queue_status(self, targets: Any = None, verbose: bool = False) -> dict[Any, Any]:
        return self.client.queue_status(targets if targets is not None else "all", verbose=verbose)

    def purge_results(self, jobs: Any = (), targets: Any = ()) -> None:
        self.client.purge_results(jobs, targets)

    def shutdown(
        self,
        targets: Any = None,
        restart: bool = False,
        hub: bool = False,
        block: bool | None = None,
    ) -> None:
        self.client.shutdown(
            targets if targets is not None else self._engine_targets(), restart, hub
        )

    def _engine_targets(self) -> Any:
        return self.targets if self.targets is not None else "all"

    def spin(self) -> None:
        """Kept for compatibility: results arrive in the background."""

    @property
    def executor(self) -> Any:
        """A :class:`concurrent.futures.Executor` that submits through this view."""
        from .executor import ViewExecutor

        return ViewExecutor(self)

    def activate(self, suffix: str = "") -> None:
        """Point the %px magics (``%px<suffix>``) at this view."""
        from ..magics import activate

        activate(self, suffix)

    def __len__(self) -> int:
        return len(self.client._build_targets(self._engine_targets()))


class DirectView(View):
    """Sends each call to every target engine; ``rc[0]``, ``rc[:]``, ``rc[::2]``..."""

    def __repr__(self) -> str:
        return f"<DirectView {self.targets}>"

    def _target_list(self, targets: Any = None) -> tuple[list[int], bool]:
        """Engine ids for this call, and whether the result is a single value."""
        targets = self.targets if targets is None else targets
        if isinstance(targets, int):
            return self.client._build_targets(targets), True
        return self.client._build_targets(targets), False

    def _send_to_engines(
        self,
        ids: list[int],
        msg_type: str,
        content: dict[str, Any],
        buffers: list[Any],
        fname: str,
        single: bool,
    ) -> AsyncResult:
        client = self.client
        msg_ids: list[str] = []
        messages: list[list[Any]] = []
        notes: list[tuple[Any, ...]] = []
        for engine_id in ids:
            msg_id, frames = client._build_task(
                b"d%d" % engine_id, msg_type, content, buffers, engine_id=engine_id, later=notes
            )
            msg_ids.append(msg_id)
            messages.append(frames)
        ar = client._submit_tasks(
            messages, notes, lambda: AsyncResult(client, msg_ids, fname, ids[0] if single else ids)
        )
        return self._record(ar)

    def _apply(
        self, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], targets: Any = None
    ) -> AsyncResult:
        ids, single = self._target_list(targets)
        content, buffers = serialize.pack_apply(
            serialize.pack_function(f), args, kwargs, getname(f)
        )
        return self._send_to_engines(ids, "apply_request", content, buffers, getname(f), single)

    def _map(
        self, f: Any, sequences: tuple[Any, ...], *, return_exceptions: bool = False, **kwargs: Any
    ) -> AsyncMapResult:
        if kwargs.pop("chunksize", None) is not None:
            raise TypeError("chunksize only applies to a LoadBalancedView's map")
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        seqs, n = self._prepare_sequences(sequences)
        ids, _ = self._target_list()
        fn = serialize.pack_function(f)
        client = self.client
        msg_ids, sizes, messages = [], [], []
        for p, engine_id in enumerate(ids):
            parts = [mapping.partition(s, p, len(ids)) for s in seqs]
            size = min(len(part) for part in parts)
            if size == 0:
                continue
            content, buffers = serialize.pack_apply(fn, parts, {}, getname(f))
            content["map"] = True
            msg_id, frames = client._build_task(
                b"d%d" % engine_id, "apply_request", content, buffers, engine_id=engine_id
            )
            msg_ids.append(msg_id)
            sizes.append(size)
            messages.append(frames)
        ar = AsyncMapResult(
            client,
            msg_ids,
            sizes,
            getname(f),
            targets=ids[: len(msg_ids)],
            return_exceptions=return_exceptions,
        )
        client._send_tasks(messages, ar)
        self._record(ar)
        return ar

    # -- code ------------------------------------------------------------------------------------
    def execute(
        self, code: str, silent: bool = True, targets: Any = None, block: bool | None = None
    ) -> Any:
        """Run ``code`` on the engines as an IPython cell (magics, display, tracebacks)."""
        ids, single = self._target_list(targets)
        content = {
            "code": code,
            "silent": bool(silent),
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,  # tasks are independent: an error must not abort later cells
        }
        return self._finish(
            lambda: self._send_to_engines(ids, "execute_request", content, [], "execute", single),
            block,
        )

    def run(self, filename: str, targets: Any = None, block: bool | None = None) -> Any:
        """Run a local Python file's code on the engines."""
        with open(filename) as f:
            code = f.read()
        return self.execute(code, targets=targets, block=block)

    # -- data -------------------------------------------------------------------------------------
    def push(
        self,
        ns: dict[str, Any],
        targets: Any = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Define the names in ``ns`` in each engine's namespace."""
        if not isinstance(ns, dict):
            raise TypeError(f"push takes a dict of names to values, found {type(ns).__name__}")
        return self._finish(lambda: self._apply(engine_side.push, (ns,), {}, targets), block)

    def pull(
        self,
        names: str | list[str] | tuple[str, ...],
        targets: Any = None,
        block: bool | None = None,
    ) -> Any:
        """The value(s) of ``names`` in each engine's namespace."""
        if not isinstance(names, (str, list, tuple)):
            raise TypeError(f"pull takes a name or a list of names, found {type(names).__name__}")
        return self._finish(lambda: self._apply(engine_side.pull, (names,), {}, targets), block)

    def update(self, ns: dict[str, Any]) -> Any:
        return self.push(ns, block=self.block)

    def get(self, key_s: str | list[str]) -> Any:
        return self.pull(key_s, block=True)

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise TypeError(f"key by names (str), not {type(key).__name__}")
        return self.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Any = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Split ``seq`` into contiguous parts, one per engine, stored as ``key`` on each.

        With ``flatten``, an engine whose part has one item gets the item itself.
        """
        if dist != "b":
            raise ValueError(f"only dist='b' (contiguous blocks) is supported, found {dist!r}")
        ids, _ = self._target_list(targets)
        seq = mapping.as_sequence(seq)
        ars = []
        for p, engine_id in enumerate(ids):
            part = mapping.partition(seq, p, len(ids))
            if flatten and len(part) == 1:
                part = part[0]
            ars.append(self._apply(engine_side.push, ({key: part},), {}, engine_id))
        ar = AsyncResult.join(*ars) if len(ars) > 1 else ars[0]
        return self._finish(ar, block)

    def gather(
        self, key: str, dist: str = "b", targets: Any = None, block: bool | None = None
    ) -> Any:
        """Pull ``key`` from each engine and concatenate the parts (inverse of scatter)."""
        if dist != "b":
            raise ValueError(f"only dist='b' (contiguous blocks) is supported, found {dist!r}")
        ids, _ = self._target_list(targets)
        fn = serialize.pack_function(engine_side.pull)
        content, buffers = serialize.pack_apply(fn, (key,), {}, "gather")
        client = self.client
        msg_ids, messages = [], []
        for engine_id in ids:
            msg_id, frames = client._build_task(
                b"d%d" % engine_id, "apply_request", content, buffers, engine_id=engine_id
            )
            msg_ids.append(msg_id)
            messages.append(frames)

        def join_parts(parts: list[Any]) -> Any:
            return mapping.join(
                [p if isinstance(p, (list, tuple)) or mapping.is_array(p) else [p] for p in parts]
            )

        ar = AsyncMapResult(
            client, msg_ids, [1] * len(msg_ids), "gather", joiner=join_parts, targets=ids
        )
        client._send_tasks(messages, ar)
        self._record(ar)
        return self._finish(ar, block)

    @contextmanager
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Iterator[None]:
        """Inside ``with view.sync_imports():``, each import also runs on the engines.

        With ``local=False`` the modules are imported on the engines only.
        """
        import sys

        real_import = builtins.__import__
        user_globals = sys._getframe(2).f_globals  # the frame with the `with` statement
        busy = threading.local()

        def remote_import(
            name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            module = real_import(name, globals, locals, fromlist, level) if local else None
            # only the user's own import statements travel; imports made while sending don't
            if globals is not user_globals or level != 0 or getattr(busy, "on", False):
                return module if local else real_import(name, globals, locals, fromlist, level)
            if fromlist:
                statement = f"from {name} import {', '.join(fromlist)}"
                message = f"importing {', '.join(fromlist)} from {name} on engine(s)"
            else:
                statement = f"import {name}"
                message = f"importing {name} on engine(s)"
            if not quiet:
                print(message)
            busy.on = True
            try:
                self._apply(engine_side.import_module, (statement,), {}).get()
            finally:
                busy.on = False
            return module

        builtins.__import__ = remote_import
        try:
            yield
        finally:
            builtins.__import__ = real_import

    def clear(self, targets: Any = None, block: bool | None = None) -> None:
        """Reset the namespace of this view's engines."""
        self.client.clear(targets if targets is not None else self._engine_targets())


class LoadBalancedView(View):
    """Sends each task (or each chunk of a map) to the least-loaded engine.

    Flags: ``retries`` (resubmit a failed task up to this many times, elsewhere if possible),
    ``timeout`` (seconds a task may wait for an engine and its dependencies before it fails),
    ``after`` (tasks that must finish first) and ``follow`` (tasks whose engine it must run on).
    """

    _flag_names = View._flag_names | {"retries", "timeout", "after", "follow"}

    def __init__(self, client: Client, targets: Any = None, **flags: Any) -> None:
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
        content: dict[str, Any],
        buffers: list[Any],
        md: dict[str, Any],
        later: list[tuple[Any, ...]] | None = None,
    ) -> tuple[str, list[Any]]:
        return self.client._build_task(
            b"b", "apply_request", content, buffers, metadata=md, later=later
        )

    def _apply(self, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncResult:
        content, buffers = serialize.pack_apply(
            serialize.pack_function(f), args, kwargs, getname(f)
        )
        notes: list[tuple[Any, ...]] = []
        msg_id, frames = self._submit(content, buffers, self._metadata(), notes)
        ar = self.client._submit_tasks(
            [frames], notes, lambda: AsyncResult(self.client, [msg_id], getname(f), single=True)
        )
        return self._record(ar)

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
        md = self._metadata()
        msg_ids, sizes, messages = [], [], []
        for start in range(0, n, chunksize):
            stop = min(start + chunksize, n)
            parts = [s[start:stop] for s in seqs]
            content, buffers = serialize.pack_apply(fn, parts, {}, getname(f))
            content["map"] = True
            msg_id, frames = self._submit(content, buffers, md)
            msg_ids.append(msg_id)
            sizes.append(stop - start)
            messages.append(frames)
        ar = AsyncMapResult(
            self.client,
            msg_ids,
            sizes,
            getname(f),
            ordered=ordered,
            return_exceptions=return_exceptions,
        )
        self.client._send_tasks(messages, ar)
        self._record(ar)
        return ar

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
        from ..progress.imap import TaskStream

        stream = TaskStream(self.client, getname(f), sequences)
        return stream.attach(
            self._imap(f, sequences, ordered, max_outstanding, return_exceptions, stream.add)
        )

    def _imap(
        self,
        f: Callable[..., Any],
        sequences: tuple[Any, ...],
        ordered: bool,
        max_outstanding: int | str,
        return_exceptions: bool,
        on_submit: Callable[[AsyncResult], None],
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
            msg_id, frames = self._submit(content, buffers, md)
            ar = AsyncResult(
                client, [msg_id], getname(f), single=True, return_exceptions=return_exceptions
            )
            client._send_tasks([frames], ar)
            self._record(ar)
            pending.append(ar)
            on_submit(ar)
            if not ordered:
                ar.add_done_callback(on_done)
            return True

        exhausted = False
        while True:
            while not exhausted and (limit <= 0 or len(pending) < limit):
                exhausted = not submit_one()
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
