"""The serialization functions ipyparallel offers its users (``ipar_widgets.serialize``):
``can``/``uncan``, ``serialize_object``/``deserialize_object`` and
``pack_apply_message``/``unpack_apply_message``, built on the pickling tasks travel with
(:mod:`.serialize`).

In ipyparallel, *canning* turns what plain pickle cannot carry (functions, classes defined
interactively, arrays with their buffers) into stand-ins that it can.  Here a canned object
is simply that object already pickled by our pickler, which handles all of those: an
interactive function travels as code and is rebuilt with the receiver's namespace as its
globals; lambdas, closures and interactive classes go by value (cloudpickle); buffers of at
least ``buffer_threshold`` bytes stay apart in ``.buffers`` (zero-copy frames of a message).
``uncan(canned, g)`` unpickles it, rebuilding interactive functions with ``g`` as their
globals and evaluating :class:`Reference` objects in ``g``.

``serialize_object(obj)`` is one pickle stream followed by the large buffers it refers to;
``deserialize_object`` reads one such object off the front of a list of frames and returns
the frames that remain, so several objects can follow each other in one message.

None of this is on the path of a task (``view.apply`` uses :mod:`.serialize` directly).
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..error import SerializationError
from .serialize import (
    PrePickled,
    Reference,
    fallback_pickler,
    interactive,
    rebuild_namespace,
    use_cloudpickle,
    use_dill,
    use_pickle,
)

__all__ = [
    "MAX_BYTES",
    "MAX_ITEMS",
    "CannedArray",
    "CannedBytes",
    "CannedCell",
    "CannedClass",
    "CannedFunction",
    "CannedMemoryView",
    "CannedObject",
    "CannedPartial",
    "PrePickled",
    "Reference",
    "can",
    "can_map",
    "deserialize_object",
    "interactive",
    "pack_apply_message",
    "serialize_object",
    "uncan",
    "uncan_map",
    "unpack_apply_message",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]

#: buffers of at least this many bytes travel as frames of their own (ipyparallel's default)
MAX_BYTES = 1024
#: containers with fewer items have each item's large bytes sent as frames of their own
MAX_ITEMS = 64


# -- pickling with buffers kept apart ---------------------------------------------------------
class _Buffer:
    """Stands for a ``bytes`` object large enough to travel as a frame of its own (pickle
    writes ``bytes`` inline; a PickleBuffer it can keep out of band)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (bytes, (pickle.PickleBuffer(self.data),))


def _memoryview_of(buffer: Any) -> memoryview:
    return memoryview(buffer)


#: task pickler -> the same plus memoryviews (see _buffer_pickler)
_buffer_picklers: dict[type[pickle.Pickler], type[pickle.Pickler]] = {}


def _buffer_pickler(base: type[pickle.Pickler]) -> type[pickle.Pickler]:
    """Our task pickler (``base``: cloudpickle's or dill's), plus memoryviews, which pickle
    does not carry."""
    known = _buffer_picklers.get(base)
    if known is not None:
        return known

    class BufferPickler(base):  # type: ignore[valid-type,misc]  # a class made at run time
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is memoryview:
                data = pickle.PickleBuffer(obj) if obj.contiguous else obj.tobytes()
                return (_memoryview_of, (data,))
            return super().reducer_override(obj)

    _buffer_picklers[base] = BufferPickler
    return BufferPickler


def _lift(obj: Any, threshold: int, item_threshold: int) -> Any:
    """``obj`` with its large ``bytes`` (itself, or the items of a small container, or the
    arguments of a partial) marked to travel as frames of their own."""
    kind = type(obj)
    if kind is bytes:
        return _Buffer(obj) if len(obj) >= threshold else obj
    if kind in (list, tuple, set, frozenset) and len(obj) < item_threshold:
        return kind(_lift(item, threshold, item_threshold) for item in obj)
    if kind is dict and len(obj) < item_threshold:
        return {key: _lift(value, threshold, item_threshold) for key, value in obj.items()}
    if kind is functools.partial:
        return functools.partial(
            obj.func,
            *(_lift(a, threshold, item_threshold) for a in obj.args),
            **{k: _lift(v, threshold, item_threshold) for k, v in obj.keywords.items()},
        )
    return obj


def _pickle_frames(obj: Any, threshold: int, item_threshold: int = MAX_ITEMS) -> list[Any]:
    """``[stream, *buffers]``: buffers of at least ``threshold`` bytes out of band."""
    buffers: list[Any] = []

    def keep_large_apart(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < threshold:
            return True  # in the stream
        buffers.append(view)
        return False

    stream = io.BytesIO()
    try:
        pickler = _buffer_pickler(fallback_pickler())
        pickler(stream, protocol=5, buffer_callback=keep_large_apart).dump(
            _lift(obj, threshold, item_threshold)
        )
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {type(obj).__module__}.{type(obj).__qualname__} object "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return [stream.getvalue(), *buffers]


@contextmanager
def _rebuilding_in(g: dict[str, Any] | None) -> Iterator[None]:
    """Interactive functions unpickled in this block get ``g`` as their globals."""
    token = rebuild_namespace.set(g)
    try:
        yield
    finally:
        rebuild_namespace.reset(token)


def _unpickle(stream: Any, buffers: Any, g: dict[str, Any] | None) -> Any:
    with _rebuilding_in(g):
        return pickle.loads(stream, buffers=buffers)


# -- canned objects ------------------------------------------------------------------------------
class CannedObject:
    """An object pickled now, to be rebuilt by :func:`uncan` (``get_object``).

    ``pickled`` is the pickle stream, ``buffers`` the large buffers it refers to, kept apart
    so they can travel as frames of their own; a CannedObject itself pickles with plain
    :mod:`pickle`.
    """

    def __init__(self, obj: Any, buffer_threshold: int = MAX_BYTES) -> None:
        frames = _pickle_frames(obj, buffer_threshold)
        self.pickled: bytes = frames[0]
        self.buffers: list[Any] = frames[1:]

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        """The object again; interactive functions in it get ``g`` as their globals
        (default: ``__main__``'s namespace)."""
        return _unpickle(self.pickled, self.buffers, g)

    def __getstate__(self) -> dict[str, Any]:
        # memoryviews do not pickle: the buffers travel as bytes when the canned object
        # itself is pickled
        return {"pickled": self.pickled, "buffers": [bytes(b) for b in self.buffers]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.pickled = state["pickled"]
        self.buffers = list(state["buffers"])

    def __repr__(self) -> str:
        size = len(self.pickled) + sum(memoryview(b).nbytes for b in self.buffers)
        return f"<{type(self).__name__}: {size} bytes in {1 + len(self.buffers)} frames>"


class CannedFunction(CannedObject):
    """A canned function: an interactive one is rebuilt with the namespace given to
    :func:`uncan` as its globals; one from an importable module is that function."""


class CannedPartial(CannedObject):
    """A canned :func:`functools.partial`; its large arguments are among the buffers."""


class CannedClass(CannedObject):
    """A canned class defined interactively (``__main__``) or inside a function, which
    cannot be imported by name: sent by value."""


class CannedCell(CannedObject):
    """A canned closure cell."""


class CannedArray(CannedObject):
    """A canned numpy array: its data is a buffer when large enough."""


class CannedBytes(CannedObject):
    """Canned ``bytes``: the data is a buffer when large enough."""


class CannedMemoryView(CannedBytes):
    """A canned memoryview; it comes back as a memoryview."""


def _can_class(cls: type) -> Any:
    # a class that can be imported is found by name on the other side; one defined
    # interactively or inside a function travels by value
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return CannedClass(cls)
    return cls


#: what :func:`can` wraps, by exact type (or ``"module.Name"``, looked up only once that
#: module is imported): a type to its canner; add entries to can more kinds
can_map: dict[type | str, Callable[[Any], Any]] = {
    types.FunctionType: CannedFunction,
    functools.partial: CannedPartial,
    type: _can_class,
    types.CellType: CannedCell,
    bytes: CannedBytes,
    memoryview: CannedMemoryView,
    "numpy.ndarray": CannedArray,
}

#: what :func:`uncan` unwraps, by class (subclasses included): a class to
#: ``uncanner(obj, g)``
uncan_map: dict[type, Callable[[Any, dict[str, Any] | None], Any]] = {
    CannedObject: lambda obj, g: obj.get_object(g),
    Reference: lambda obj, g: obj.get_object(_namespace(g)),
}


def _namespace(g: dict[str, Any] | None) -> dict[str, Any]:
    return g if g is not None else sys.modules["__main__"].__dict__


def _lookup(key: type | str) -> type | None:
    if isinstance(key, type):
        return key
    module, _, name = key.rpartition(".")
    found = getattr(sys.modules.get(module), name, None)  # never imports the module
    return found if isinstance(found, type) else None


def can(obj: Any) -> Any:
    """``obj`` made ready for plain :mod:`pickle`: functions, partials, classes that cannot
    be imported by name, closure cells, bytes, memoryviews and numpy arrays become
    :class:`CannedObject` objects (see :data:`can_map`); dicts, lists, tuples and sets are
    canned item by item; anything else is returned as it is."""
    kind = type(obj)
    for key, canner in can_map.items():
        if kind is _lookup(key):
            return canner(obj)
    if kind is dict:
        return {key: can(value) for key, value in obj.items()}
    if kind in (list, tuple, set, frozenset):
        return kind(can(item) for item in obj)
    return obj


def uncan(obj: Any, g: dict[str, Any] | None = None) -> Any:
    """The inverse of :func:`can`: canned objects rebuilt (interactive functions with ``g``
    as their globals, default ``__main__``'s namespace), :class:`Reference` objects
    evaluated in ``g``; dicts, lists, tuples and sets item by item."""
    for cls, uncanner in uncan_map.items():
        if isinstance(obj, cls):
            return uncanner(obj, g)
    kind = type(obj)
    if kind is dict:
        return {key: uncan(value, g) for key, value in obj.items()}
    if kind in (list, tuple, set, frozenset):
        return kind(uncan(item, g) for item in obj)
    return obj


# -- whole objects and apply messages ---------------------------------------------------------------
def serialize_object(
    obj: Any, buffer_threshold: int = MAX_BYTES, item_threshold: int = MAX_ITEMS
) -> list[Any]:
    """``obj`` as frames: a pickle stream, then each buffer of at least
    ``buffer_threshold`` bytes it refers to (array data, large bytes of ``obj`` or of the
    items of a container with fewer than ``item_threshold`` items).  A :class:`PrePickled`
    object gives the frames it was pickled into."""
    if isinstance(obj, PrePickled):
        return list(obj.buffers)
    return _pickle_frames(obj, buffer_threshold, item_threshold)


def deserialize_object(
    buffers: Sequence[Any], g: dict[str, Any] | None = None
) -> tuple[Any, list[Any]]:
    """``(obj, remaining_frames)``: the object whose frames start ``buffers``, and the
    frames after them.  Interactive functions get ``g`` as their globals and References
    are evaluated in it (default: ``__main__``'s namespace)."""
    frames = list(buffers)
    if not frames:
        raise ValueError("deserialize_object needs at least one frame (the pickle stream)")
    rest = iter(frames[1:])
    obj = _unpickle(frames[0], rest, g)  # takes the buffers it refers to from `rest`
    return uncan(obj, g), list(rest)


def pack_apply_message(
    f: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    buffer_threshold: int = MAX_BYTES,
    item_threshold: int = MAX_ITEMS,
) -> list[Any]:
    """The frames of a call ``f(*args, **kwargs)``: the function's, the arguments', the
    keyword arguments' (each as :func:`serialize_object` makes them)."""
    return [
        *serialize_object(f, buffer_threshold, item_threshold),
        *serialize_object(tuple(args), buffer_threshold, item_threshold),
        *serialize_object(dict(kwargs), buffer_threshold, item_threshold),
    ]


def unpack_apply_message(
    bufs: Sequence[Any], g: dict[str, Any] | None = None, copy: bool = True
) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """``(f, args, kwargs)`` from :func:`pack_apply_message`'s frames, rebuilt in namespace
    ``g`` (References evaluated there).  ``copy`` is accepted for compatibility: frames are
    always read in place."""
    f, rest = deserialize_object(bufs, g)
    args, rest = deserialize_object(rest, g)
    kwargs, rest = deserialize_object(rest, g)
    if rest:
        raise ValueError(
            f"an apply message has three objects (function, args, kwargs), found "
            f"{len(rest)} frames more"
        )
    return f, tuple(args), dict(kwargs)
