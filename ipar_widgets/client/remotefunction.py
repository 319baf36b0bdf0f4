"""Functions that run remotely when called: ``@view.remote`` and ``@view.parallel``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import mapping
from .mapresult import AsyncMapResult

__all__ = ["RemoteFunction", "ParallelFunction", "remote", "parallel"]


class RemoteFunction:
    """Calling it runs the wrapped function through a view (``view.apply``)."""

    def __init__(
        self, view: Any, f: Callable[..., Any], block: bool | None = None, **flags: Any
    ) -> None:
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        functools.update_wrapper(self, f)
        # help(foo) says what foo has become, then the function's own text (as ipyparallel)
        self.__doc__ = f"{type(self).__name__} wrapping:\n{f.__doc__}" if f.__doc__ else None

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", getattr(self.func, "__name__", repr(self.func)))
        return f"<{type(self).__name__}({name}) on {self.view!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        block = self.view.block if self.block is None else self.block
        with self.view.temp_flags(**self.flags):
            ar = self.view.apply_async(self.func, *args, **kwargs)
        return ar.get() if block else ar


class ParallelFunction(RemoteFunction):
    """Calling it on sequences splits them over the view's engines (each engine calls the
    function on its part); ``.map(*sequences)`` calls it on every element instead."""

    def __init__(
        self,
        view: Any,
        f: Callable[..., Any],
        dist: str = "b",
        block: bool | None = None,
        chunksize: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        **flags: Any,
    ) -> None:
        super().__init__(view, f, block=block, **flags)
        if dist != "b":
            raise ValueError(f"only dist='b' (contiguous blocks) is supported, found {dist!r}")
        self.chunksize = chunksize
        self.ordered = ordered
        self.return_exceptions = return_exceptions

    def __call__(self, *sequences: Any) -> Any:
        from .view import DirectView

        block = self.view.block if self.block is None else self.block
        seqs = [mapping.as_sequence(s) for s in sequences]
        lengths = {len(s) for s in seqs}
        if len(lengths) > 1:
            raise ValueError(
                f"all sequences must have equal length, but have {[len(s) for s in seqs]}"
            )
        n = lengths.pop() if lengths else 0
        ids: list[int | None]
        if isinstance(self.view, DirectView):
            ids = list(self.view._target_list()[0])
            nparts = len(ids)
        else:
            size = self.chunksize or 1
            nparts = max(1, -(-n // size))
            ids = [None] * nparts
        ars, sizes = [], []
        with self.view.temp_flags(**self.flags):
            for p, engine_id in enumerate(ids):
                parts = [mapping.partition(s, p, nparts) for s in seqs]
                size = min((len(part) for part in parts), default=0)
                if size == 0:
                    continue
                if engine_id is None:
                    ar = self.view.apply_async(self.func, *parts)
                else:
                    ar = self.view._apply(self.func, tuple(parts), {}, engine_id)
                ars.append(ar)
                sizes.append(size)
        msg_ids = [m for ar in ars for m in ar.msg_ids]
        result = AsyncMapResult(
            self.view.client,
            msg_ids,
            sizes,
            getattr(self.func, "__name__", "f"),
            ordered=self.ordered,
            joiner=mapping.join,
            return_exceptions=self.return_exceptions,
            owner=False,
        )
        return result.get() if block else result

    def map(self, *sequences: Any) -> Any:
        block = self.view.block if self.block is None else self.block
        kwargs: dict[str, Any] = {"return_exceptions": self.return_exceptions}
        if self.chunksize is not None:
            kwargs["chunksize"] = self.chunksize
        if hasattr(self.view, "imap"):
            kwargs["ordered"] = self.ordered
        with self.view.temp_flags(**self.flags):
            ar = self.view.map_async(self.func, *sequences, **kwargs)
        return ar.get() if block else ar


def remote(
    view: Any, block: bool | None = None, **flags: Any
) -> Callable[[Callable[..., Any]], RemoteFunction]:
    """Decorator: turn a function into a RemoteFunction on ``view``."""

    def wrap(f: Callable[..., Any]) -> RemoteFunction:
        return RemoteFunction(view, f, block=block, **flags)

    return wrap


def parallel(
    view: Any, dist: str = "b", block: bool | None = None, ordered: bool = True, **flags: Any
) -> Callable[[Callable[..., Any]], ParallelFunction]:
    """Decorator: turn a function into a ParallelFunction on ``view``."""

    def wrap(f: Callable[..., Any]) -> ParallelFunction:
        return ParallelFunction(view, f, dist=dist, block=block, ordered=ordered, **flags)

    return wrap
