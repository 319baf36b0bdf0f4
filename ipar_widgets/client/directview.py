"""DirectView: each call goes to every one of its target engines (``rc[0]``, ``rc[:]``,
``rc[::2]``); a map's sequences are split into one contiguous part per engine.  Also what
only a DirectView does: ``execute`` and ``run`` code, ``push``/``pull``, ``scatter``/``gather``
and ``sync_imports``."""

from __future__ import annotations

import builtins
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..protocol import serialize
from ..protocol.routing import direct_route
from ..protocol.wire import Frame
from . import engine_side, mapping
from .asyncresult import AsyncResult
from .baseview import View, getname
from .ledger import Submitted
from .mapresult import AsyncMapResult
from .targets import Targets

__all__ = ["DirectView"]

R = TypeVar("R", bound=AsyncResult)


class DirectView(View):
    """Sends each call to every target engine; ``rc[0]``, ``rc[:]``, ``rc[::2]``..."""

    def __repr__(self) -> str:
        return f"<DirectView {self.targets}>"

    def _target_list(self, targets: Targets = None) -> tuple[list[int], bool]:
        """Engine ids for this call, and whether the result is a single value."""
        targets = self.targets if targets is None else targets
        if isinstance(targets, int):
            return self.client._build_targets(targets), True
        return self.client._build_targets(targets), False

    def _send_each(
        self,
        tasks: list[tuple[int, str, dict[str, Any], list[Frame]]],
        make_result: Callable[[list[str]], R],
        track: bool = False,
    ) -> R:
        """Send one message to each engine (``(engine_id, msg_type, content, buffers)``) and
        return the AsyncResult ``make_result(msg_ids)`` makes for them: the one build loop
        of apply, execute, map and gather.  ``track``: see ``Submitter.submit``."""
        submitter = self.client._submitter
        msg_ids: list[str] = []
        messages: list[list[Frame]] = []
        notes: list[Submitted] = []
        for engine_id, msg_type, content, buffers in tasks:
            msg_id, frames, note = submitter.build(
                direct_route(engine_id), msg_type, content, buffers, engine_id=engine_id
            )
            msg_ids.append(msg_id)
            messages.append(frames)
            notes.append(note)
        return self._record(
            submitter.submit(messages, notes, lambda: make_result(msg_ids), track=track)
        )

    def _send_to_engines(
        self,
        ids: list[int],
        msg_type: str,
        content: dict[str, Any],
        buffers: list[Frame],
        fname: str,
        single: bool,
        track: bool = False,
    ) -> AsyncResult:
        """The same message to every engine of ``ids`` (a BroadcastView sends it once)."""
        client = self.client
        return self._send_each(
            [(engine_id, msg_type, content, buffers) for engine_id in ids],
            lambda msg_ids: AsyncResult(client, msg_ids, fname, ids[0] if single else ids),
            track,
        )

    def _apply(
        self,
        f: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        targets: Targets = None,
        track: bool | None = None,
    ) -> AsyncResult:
        ids, single = self._target_list(targets)
        content, buffers = serialize.pack_apply(
            serialize.pack_function(f), args, kwargs, getname(f)
        )
        return self._send_to_engines(
            ids,
            "apply_request",
            content,
            buffers,
            getname(f),
            single,
            self.track if track is None else bool(track),
        )

    def _map(
        self,
        f: Any,
        sequences: tuple[Any, ...],
        *,
        return_exceptions: bool = False,
        track: bool | None = None,
        **kwargs: Any,
    ) -> AsyncMapResult:
        if kwargs.pop("chunksize", None) is not None:
            raise TypeError("chunksize only applies to a LoadBalancedView's map")
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        seqs, n = self._prepare_sequences(sequences)
        ids, _ = self._target_list()
        fn = serialize.pack_function(f)
        client = self.client
        tasks, sizes, used = [], [], []
        for p, engine_id in enumerate(ids):
            parts = [mapping.partition(s, p, len(ids)) for s in seqs]
            size = min(len(part) for part in parts)
            if size == 0:
                continue
            content, buffers = serialize.pack_apply(fn, parts, {}, getname(f))
            content["map"] = True
            tasks.append((engine_id, "apply_request", content, buffers))
            sizes.append(size)
            used.append(engine_id)
        return self._send_each(
            tasks,
            lambda msg_ids: AsyncMapResult(
                client,
                msg_ids,
                sizes,
                getname(f),
                targets=used,
                return_exceptions=return_exceptions,
            ),
            self.track if track is None else bool(track),
        )

    # -- code ------------------------------------------------------------------------------------
    def execute(
        self, code: str, silent: bool = True, targets: Targets = None, block: bool | None = None
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

    # -- serializer switches (here and on the engines) ----------------------------------------------
    def _switch_serializer(self, switch: Callable[[], None]) -> Any:
        switch()
        return self.apply(switch)

    def use_cloudpickle(self) -> Any:
        """Pickle interactive functions with their globals captured by value, in this process
        and on this view's engines (ipyparallel's ``use_cloudpickle``)."""
        return self._switch_serializer(serialize.use_cloudpickle)

    def use_dill(self) -> Any:
        """Same as :meth:`use_cloudpickle`: capture by value is what ipyparallel's
        ``use_dill`` is for, and cloudpickle provides it (see docs/compatibility.md)."""
        return self._switch_serializer(serialize.use_dill)

    def use_pickle(self) -> Any:
        """Back to the default: interactive functions' globals resolve in each engine's
        namespace, here and on this view's engines."""
        return self._switch_serializer(serialize.use_pickle)

    def run(self, filename: str, targets: Targets = None, block: bool | None = None) -> Any:
        """Run a local Python file's code on the engines."""
        with open(filename) as f:
            code = f.read()
        return self.execute(code, targets=targets, block=block)

    # -- data -------------------------------------------------------------------------------------
    def push(
        self,
        ns: dict[str, Any],
        targets: Targets = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Define the names in ``ns`` in each engine's namespace."""
        if not isinstance(ns, dict):
            raise TypeError(f"push takes a dict of names to values, found {type(ns).__name__}")
        return self._finish(lambda: self._apply(engine_side.push, (ns,), {}, targets, track), block)

    def pull(
        self,
        names: str | list[str] | tuple[str, ...],
        targets: Targets = None,
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
        targets: Targets = None,
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
            ars.append(self._apply(engine_side.push, ({key: part},), {}, engine_id, track))
        ar = AsyncResult.join(*ars) if len(ars) > 1 else ars[0]
        return self._finish(ar, block)

    def gather(
        self, key: str, dist: str = "b", targets: Targets = None, block: bool | None = None
    ) -> Any:
        """Pull ``key`` from each engine and concatenate the parts (inverse of scatter)."""
        if dist != "b":
            raise ValueError(f"only dist='b' (contiguous blocks) is supported, found {dist!r}")
        ids, _ = self._target_list(targets)
        fn = serialize.pack_function(engine_side.pull)
        content, buffers = serialize.pack_apply(fn, (key,), {}, "gather")
        client = self.client

        def join_parts(parts: list[Any]) -> Any:
            return mapping.join(
                [p if isinstance(p, (list, tuple)) or mapping.is_array(p) else [p] for p in parts]
            )

        ar = self._send_each(
            [(engine_id, "apply_request", content, buffers) for engine_id in ids],
            lambda msg_ids: AsyncMapResult(
                client, msg_ids, [1] * len(msg_ids), "gather", joiner=join_parts, targets=ids
            ),
        )
        return self._finish(ar, block)

    @contextmanager
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Iterator[None]:
        """Inside ``with view.sync_imports():``, each import also runs on the engines.

        With ``local=False`` the modules are imported on the engines only.
        """
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

    def clear(self, targets: Targets = None, block: bool | None = None) -> None:
        """Reset the namespace of this view's engines."""
        self.client.clear(targets if targets is not None else self._engine_targets())
