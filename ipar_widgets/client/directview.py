"""DirectView: each call goes to every one of its target engines (``rc[0]``, ``rc[:]``,
``rc[::2]``); a map's sequences are split into one contiguous part per engine.  Also what
only a DirectView does: ``execute`` and ``run`` code, ``push``/``pull``, ``scatter``/``gather``
and ``sync_imports``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from ..protocol import serialize
from ..protocol.routing import direct_route
from ..protocol.wire import Frame
from . import engine_side, mapping
from .asyncresult import AsyncResult
from .baseview import View, getname
from .imports import SynchronizedImports
from .ledger import Submitted
from .mapresult import AsyncMapResult
from .targets import Targets
from .transfer import frames_size, wait_showing_transfer

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
        md = self._label_metadata()
        for engine_id, msg_type, content, buffers in tasks:
            msg_id, frames, note = submitter.build(
                direct_route(engine_id), msg_type, content, buffers, md, engine_id=engine_id
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
        sizes: list[int] | None = None,
    ) -> AsyncResult:
        """``sizes`` (push, scatter) gets each engine's message size, for a transfer's
        progress display."""
        ids, single = self._target_list(targets)
        content, buffers = serialize.pack_apply(
            serialize.pack_function(f), args, kwargs, getname(f)
        )
        if sizes is not None:
            sizes.extend([frames_size(buffers)] * len(ids))
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
        self,
        code: str,
        silent: bool = True,
        targets: Targets = None,
        block: bool | None = None,
        label: Any = None,
    ) -> AsyncResult:
        """Run ``code`` on the engines as an IPython cell (magics, display, tracebacks);
        ``label=`` names the tasks (default: the view's ``label`` flag).

        Returns the AsyncResult, also when blocking (then once every engine has finished; an
        error is raised): its ``get()`` is an :class:`ExecuteReply` for one engine (``rc[0]``),
        a list of them for several.  ``silent=False`` makes the cell's last expression an
        ``execute_result`` (``ar.execute_result``, ``Out[engine:count]``) and counts it in the
        engine's history; the default ``silent=True`` does neither, as in ipyparallel.
        """
        with self._labelled(label):
            return self._execute(code, silent, targets, block)

    def _execute(
        self, code: str, silent: bool, targets: Targets, block: bool | None
    ) -> AsyncResult:
        ids, single = self._target_list(targets)
        content = {
            "code": code,
            "silent": bool(silent),
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": False,
            # as ipykernel's default: an error in a cell that is not silent (%px) aborts the
            # cells already queued on that engine, as with ipyparallel; silent ones never do
            "stop_on_error": True,
        }

        def submit() -> AsyncResult:
            return self._send_to_engines(ids, "execute_request", content, [], "execute", single)

        if not (self.block if block is None else block):
            return submit()
        ar = self._submit_claimed(submit)
        ar.get()
        return ar

    # -- serializer switches (here and on the engines) ----------------------------------------------
    def _switch_serializer(self, switch: Callable[[], None]) -> Any:
        switch()
        return self.apply(switch)

    def use_cloudpickle(self) -> Any:
        """Pickle interactive functions with their globals captured by value, in this process
        and on this view's engines (ipyparallel's ``use_cloudpickle``)."""
        return self._switch_serializer(serialize.use_cloudpickle)

    def use_dill(self) -> Any:
        """Pickle with dill what plain pickle cannot (closures over open files, ...), in this
        process and on this view's engines; interactive functions still resolve their globals
        in each engine's namespace.  Needs the dill package here and on the engines."""
        return self._switch_serializer(serialize.use_dill)

    def use_pickle(self) -> Any:
        """Back to the default: interactive functions' globals resolve in each engine's
        namespace, here and on this view's engines."""
        return self._switch_serializer(serialize.use_pickle)

    def run(
        self, filename: str, targets: Targets = None, block: bool | None = None, label: Any = None
    ) -> Any:
        """Run a local Python file's code on the engines."""
        with open(filename) as f:
            code = f.read()
        return self.execute(code, targets=targets, block=block, label=label)

    # -- data -------------------------------------------------------------------------------------
    def push(
        self,
        ns: dict[str, Any],
        targets: Targets = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Define the names in ``ns`` in each engine's namespace; a key like ``"a.b"`` or
        ``"a[0]"`` assigns to that target (``view["a.b"] = 0``)."""
        if not isinstance(ns, dict):
            raise TypeError(f"push takes a dict of names to values, found {type(ns).__name__}")
        for key in ns:
            if not isinstance(key, str):
                raise TypeError(
                    f"push takes names (str) as keys, found {key!r} ({type(key).__name__})"
                )
        sizes: list[int] = []
        return self._moved(
            "push",
            lambda: self._apply(engine_side.push, (ns,), {}, targets, track, sizes),
            block,
            sizes,
        )

    def pull(
        self,
        names: str | list[str] | tuple[str, ...],
        targets: Targets = None,
        block: bool | None = None,
    ) -> Any:
        """The value(s) of ``names`` in each engine's namespace."""
        if not isinstance(names, (str, list, tuple)):
            raise TypeError(f"pull takes a name or a list of names, found {type(names).__name__}")
        return self._moved(
            "pull", lambda: self._apply(engine_side.pull, (names,), {}, targets), block, None
        )

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
        sizes: list[int] = []
        for p, engine_id in enumerate(ids):
            part = mapping.partition(seq, p, len(ids))
            if flatten and len(part) == 1:
                part = part[0]
            ars.append(self._apply(engine_side.push, ({key: part},), {}, engine_id, track, sizes))
        ar = AsyncResult.join(*ars) if len(ars) > 1 else ars[0]
        return self._moved("scatter", ar, block, sizes)

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
        return self._moved("gather", ar, block, None)

    def _moved(
        self,
        what: str,
        submit: AsyncResult | Callable[[], AsyncResult],
        block: bool | None,
        sizes: list[int] | None,
    ) -> Any:
        """``_finish`` for data moved: blocking, the wait shows the bytes moved when they
        are many (``client/transfer.py`` says when); ``sizes`` is filled by ``submit``."""
        if not (self.block if block is None else block):
            return self._finish(submit, block)
        ar = submit if isinstance(submit, AsyncResult) else self._submit_claimed(submit)
        return wait_showing_transfer(ar, what, sizes, self.client._dispatch.reply_sizes)

    @property
    def importer(self) -> SynchronizedImports:
        """``with view.importer:``, the same as ``with view.sync_imports():``."""
        return self._sync_imports(sys._getframe(1), local=True, quiet=False)

    def sync_imports(self, local: bool = True, quiet: bool = False) -> SynchronizedImports:
        """Inside ``with view.sync_imports():``, each import statement also runs on the
        engines, binding the same names in their namespaces.

        ``import x as y`` binds ``x`` on the engines (the ``as`` part is not seen).  Each
        import is announced (``importing x on engine(s)``) unless ``quiet``; the engines
        import while the block runs, and an ImportError there is raised when it ends.  With
        ``local=False`` the modules are imported on the engines only (here the statement
        binds placeholders).
        """
        return self._sync_imports(sys._getframe(1), local=local, quiet=quiet)

    def _sync_imports(self, frame: FrameType, *, local: bool, quiet: bool) -> SynchronizedImports:
        def send(statement: str) -> AsyncResult:
            return self._apply(engine_side.import_module, (statement,), {})

        return SynchronizedImports(send, frame, local=local, quiet=quiet)

    def clear(self, targets: Targets = None, block: bool | None = None) -> None:
        """Reset the namespace of this view's engines."""
        self.client.clear(targets if targets is not None else self._engine_targets())
