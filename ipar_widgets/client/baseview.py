"""What every view shares: flags, ``apply`` and ``map`` in their three forms (``block`` or
not, ``_async``, ``_sync``), the view's history, and waiting, aborting and purging its tasks.

The two kinds of view (``directview.py``, ``lbview.py``) differ in how they build and route
the messages of one call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol import serialize
from . import frontend, mapping
from .asyncresult import AsyncResult, Jobs
from .mapresult import AsyncMapResult
from .targets import Targets

if TYPE_CHECKING:
    from .client import Client
    from .executor import ViewExecutor
    from .remotefunction import ParallelFunction, RemoteFunction

__all__ = ["View", "getname"]

R = TypeVar("R", bound=AsyncResult)


def getname(f: Any) -> str:
    """The name a task is shown under: the function's (or the Reference's) name."""
    if isinstance(f, serialize.Reference):
        return f.name
    return str(getattr(f, "__name__", None) or getattr(type(f), "__name__", "f"))


class View:
    """What DirectView and LoadBalancedView share: flags, apply, map, bookkeeping."""

    _flag_names: frozenset[str] = frozenset({"block", "track", "targets"})

    def __init__(self, client: Client, targets: Targets = None, **flags: Any) -> None:
        self.client = client
        self.block = False
        self.track = False
        self.targets: Targets = targets
        self.history: list[str] = []
        self._lock = threading.Lock()
        self._executor: ViewExecutor | None = None
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

    def _record(self, ar: R) -> R:
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
        with self.client._submitter.waiting() as claimed:
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
        values: list[Any] = self._submit_and_wait(lambda: self._map(f, sequences, **kwargs))
        return values

    def _map(self, f: Any, sequences: tuple[Any, ...], **kwargs: Any) -> AsyncMapResult:
        raise NotImplementedError

    @staticmethod
    def _prepare_sequences(sequences: tuple[Any, ...]) -> tuple[list[Sequence[Any]], int]:
        if not sequences:
            raise TypeError("map() needs at least one sequence to map over")
        seqs = [mapping.as_sequence(s) for s in sequences]
        return seqs, min(len(s) for s in seqs)

    # -- decorators ---------------------------------------------------------------------------------
    def remote(
        self, block: bool | None = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], RemoteFunction]:
        """Decorator: calling the function runs it remotely through this view."""
        from .remotefunction import remote

        return remote(self, block=block, **flags)

    def parallel(
        self, dist: str = "b", block: bool | None = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], ParallelFunction]:
        """Decorator: calling the function on sequences splits them over the engines; ``.map``
        applies it element-wise."""
        from .remotefunction import parallel

        return parallel(self, dist=dist, block=block, **flags)

    # -- waiting and control ------------------------------------------------------------------------
    def wait(self, jobs: Jobs = None, timeout: float = -1) -> bool:
        """Wait for tasks of this view (default: all of them that are outstanding)."""
        return self.client.wait(jobs if jobs is not None else list(self.outstanding), timeout)

    def abort(self, jobs: Jobs = None, targets: Targets = None, block: bool | None = None) -> None:
        """Abort tasks of this view that have not started (default: all outstanding)."""
        self.client.abort(jobs if jobs is not None else list(self.outstanding), targets=targets)

    def get_result(
        self, indices_or_msg_ids: Jobs = None, block: bool | None = None, owner: bool = False
    ) -> AsyncResult:
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        if isinstance(indices_or_msg_ids, int):
            indices_or_msg_ids = self.history[indices_or_msg_ids]
        return self.client.get_result(indices_or_msg_ids, block=block, owner=owner)

    def queue_status(self, targets: Targets = None, verbose: bool = False) -> dict[Any, Any]:
        return self.client.queue_status(targets if targets is not None else "all", verbose=verbose)

    def purge_results(self, jobs: Jobs | tuple[()] = (), targets: Targets | tuple[()] = ()) -> None:
        self.client.purge_results(jobs, targets)

    def shutdown(
        self,
        targets: Targets = None,
        restart: bool = False,
        hub: bool = False,
        block: bool | None = None,
    ) -> None:
        self.client.shutdown(
            targets if targets is not None else self._engine_targets(), restart, hub
        )

    def _engine_targets(self) -> Targets:
        return self.targets if self.targets is not None else "all"

    def spin(self) -> None:
        """Kept for compatibility: results arrive in the background."""

    @property
    def executor(self) -> ViewExecutor:
        """This view's :class:`concurrent.futures.Executor` (one per view, as in ipyparallel):
        ``submit`` is ``apply_async``, ``map`` a lazy map in input order."""
        with self._lock:
            if self._executor is None:
                from .executor import ViewExecutor

                self._executor = ViewExecutor(self)
            return self._executor

    def register_joblib_backend(
        self, name: str = "ipyparallel", make_default: bool = False
    ) -> None:
        """Make ``joblib.Parallel(backend=name)`` run its calls on this view's engines
        (needs joblib).  The default name is also registered as ``'ipar_widgets'``."""
        from .optional import require

        backend = require("ipar_widgets.client._joblib", "the joblib backend", "joblib")
        backend.register_view(self, name, make_default)

    def activate(self, suffix: str = "") -> None:
        """Point the %px magics (``%px<suffix>``) at this view (a DirectView)."""
        frontend.activate_magics(self, suffix)

    def __len__(self) -> int:
        return len(self.client._build_targets(self._engine_targets()))
