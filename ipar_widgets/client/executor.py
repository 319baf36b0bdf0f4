"""A concurrent.futures Executor backed by a view (``view.executor``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .baseview import View


class ViewExecutor(Executor):
    """Runs ``submit``/``map`` through a view; the futures are AsyncResults."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._submitted: list[AsyncResult] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        ar = self.view.apply_async(fn, *args, **kwargs)
        self._submitted.append(ar)
        return ar

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        kwargs: dict[str, Any] = {}
        if hasattr(self.view, "imap"):
            kwargs["chunksize"] = chunksize
        ar = self.view.map_async(fn, *iterables, **kwargs)
        self._submitted.append(ar)
        if timeout is not None and not ar.wait(timeout):
            raise TimeoutError(f"map did not finish within {timeout} s")
        return iter(ar)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ar in self._submitted:
                if not ar.ready():
                    ar.cancel()
        if wait:
            for ar in self._submitted:
                ar.wait()
        self._submitted = []
