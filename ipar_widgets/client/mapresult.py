"""AsyncMapResult: the result of a map, one message per chunk, flattened back into items.

``ipar_widgets.client.asyncresult.AsyncMapResult`` names the same class, as in ipyparallel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .asyncresult import AsyncResult
from .waiting import wait_until

if TYPE_CHECKING:
    from .client import Client

__all__ = ["AsyncMapResult"]

#: a msg_id in the arrival log whose result a retry set aside
_REPLACED = object()


class AsyncMapResult(AsyncResult):
    """The result of a map: one message per chunk, results flattened back into one list.

    Iterating yields each item as soon as its chunk (and, if ``ordered``, every chunk before
    it) has arrived.  ``progress`` and ``len`` count items, not messages.
    """

    def __init__(
        self,
        client: Client,
        msg_ids: Sequence[str],
        chunk_sizes: Sequence[int],
        fname: str = "unknown",
        *,
        ordered: bool = True,
        joiner: Callable[[list[Any]], Any] | None = None,
        targets: Sequence[int] | None = None,
        owner: bool = True,
        return_exceptions: bool = False,
    ) -> None:
        self._chunk_sizes = dict(zip(msg_ids, chunk_sizes))
        self.ordered = ordered
        self._joiner = joiner
        super().__init__(
            client, msg_ids, fname, targets, owner=owner, return_exceptions=return_exceptions
        )
        self._single_result = False

    def _reconstruct(self, raw: list[Any]) -> Any:
        if any(isinstance(r, BaseException) for r in raw):
            flat: list[Any] = []
            for r in raw:
                flat.extend([r] if isinstance(r, BaseException) else r)
            return flat
        if self._joiner is not None:
            return self._joiner(raw)
        return [item for chunk in raw for item in chunk]

    def _items_of(self, msg_id: str, value: Any) -> list[Any]:
        if isinstance(value, BaseException):
            raise value
        return list(value)

    def __iter__(self) -> Iterator[Any]:
        if self.ordered:
            yield from super().__iter__()
            return

        def more_than(n: int) -> Callable[[], bool]:
            return lambda: len(self._arrival) > n

        seen = taken = 0
        while taken < len(self.msg_ids):
            wait_until(self, more_than(seen))
            with self._cond:
                msg_id = self._arrival[seen]
                value = self._results.get(msg_id, _REPLACED)
            seen += 1
            if value is _REPLACED:
                continue  # a failure that retry_failed replaced: its new task comes later
            taken += 1
            yield from self._items_of(msg_id, value)

    def __len__(self) -> int:
        return sum(self._chunk_sizes.values())

    def _task_replaced(self, old: str, new: str) -> None:
        self._chunk_sizes[new] = self._chunk_sizes.pop(old)

    def task_size(self, msg_id: str) -> int:
        """Items in one chunk."""
        return self._chunk_sizes.get(msg_id, 1)

    @property
    def progress(self) -> int:
        """How many items have finished."""
        with self._cond:
            return sum(self._chunk_sizes[m] for m in self._results)

    _split_flattens = False  # a part of a map is its chunk: get() gives [chunk]
