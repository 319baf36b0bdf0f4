"""Splitting sequences into parts for engines, and joining the parts' results back.

``partition(seq, p, q)`` is the p-th of q contiguous parts (the first ``len % q`` parts get
one item more); slicing keeps the sequence's type, so a numpy array is sent as array slices.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from itertools import chain, islice
from typing import Any, cast


def is_array(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def as_sequence(obj: Any) -> Sequence[Any]:
    """Sequences stay as they are (sliceable, with a length); other iterables become lists."""
    if is_array(obj) or isinstance(obj, (list, tuple, range, str, bytes)):
        return cast(Sequence[Any], obj)
    if hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        return cast(Sequence[Any], obj)
    return list(obj)


def bounds(n: int, p: int, q: int) -> tuple[int, int]:
    if not 0 <= p < q:
        raise ValueError(f"must have 0 <= p < q, but have p={p}, q={q}")
    base, extra = divmod(n, q)
    if p < extra:
        low = p * (base + 1)
        return low, low + base + 1
    low = p * base + extra
    return low, low + base


def partition(seq: Sequence[Any], p: int, q: int) -> Any:
    low, high = bounds(len(seq), p, q)
    try:
        return seq[low:high]
    except TypeError:
        return list(islice(seq, low, high))


def chunks(seq: Sequence[Any], size: int) -> list[Any]:
    """Consecutive slices of ``size`` items (the last may be shorter)."""
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def join(parts: list[Any]) -> Any:
    """Inverse of partitioning: concatenate lists/tuples, or numpy arrays."""
    if not parts:
        return []
    first = parts[0]
    if is_array(first):
        import numpy

        return numpy.concatenate(parts)
    if isinstance(first, (list, tuple)):
        return list(chain.from_iterable(parts))
    return parts


def map_chunk(f: Any, *parts: Any) -> list[Any]:
    """Run on an engine: ``f`` over one chunk of each sequence."""
    return list(map(f, *parts))
