"""Pickling of functions, arguments and results into message buffers.

Frames use pickle protocol 5: large buffers (numpy arrays, bytearrays, memoryviews) travel as
separate zero-copy frames next to the pickle stream instead of being copied into it.

Functions defined interactively (module ``__main__``, as in a notebook or with
:func:`interactive`) are sent as their code, defaults and closure only; on the engine they are
rebuilt with the engine's namespace as their globals, so a global name resolves to what the
engine has (``id`` scattered to each engine, a module imported there).  This is ipyparallel's
behaviour, and it also keeps client globals (locks, large arrays) out of every message.
Everything else goes through cloudpickle, so lambdas, closures and classes travel too.
:func:`use_cloudpickle` switches interactive functions to cloudpickle's capture-by-value.
"""

from __future__ import annotations

import functools
import io
import linecache
import marshal
import os
import pickle
import sys
import types
import weakref
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import cloudpickle

from ..error import SerializationError

#: buffers smaller than this stay inside the pickle stream (a frame costs more than a copy)
OOB_THRESHOLD = 64 * 1024

#: the serializer switches: interactive functions' globals captured by value (cloudpickle),
#: and dill for what plain pickle cannot do (instead of cloudpickle)
_state = {"interactive_by_value": False, "dill": False}


def use_cloudpickle() -> None:
    """Capture interactive functions' globals by value (cloudpickle) instead of resolving them
    in each engine's namespace."""
    _state["interactive_by_value"] = True
    _state["dill"] = False


def use_dill() -> None:
    """Pickle with dill what plain pickle cannot (closures over open files, ...).

    Interactive functions still resolve their globals in the receiving namespace, as dill
    pickles ``__main__``'s namespace by reference; the receiver needs dill too.
    """
    try:
        import dill  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "use_dill() needs the dill package, here and on the engines (pip install dill); "
            "use_cloudpickle() captures interactive functions' globals by value without it"
        ) from exc
    _state["interactive_by_value"] = False
    _state["dill"] = True


def use_pickle() -> None:
    """Restore the default: interactive functions resolve globals in the engine's namespace,
    and cloudpickle takes what plain pickle cannot do."""
    _state["interactive_by_value"] = False
    _state["dill"] = False


class Reference:
    """A name (or expression) evaluated in each engine's namespace when a task runs.

    Use it as an argument, inside a list/tuple/dict argument, or as the function itself:
    ``dv.apply(f, ipp.Reference("x"))`` passes each engine's own ``x``.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Reference takes a name (str), found {type(name).__name__}")
        self.name = name

    def __repr__(self) -> str:
        return f"<Reference: {self.name!r}>"

    def get_object(self, namespace: dict[str, Any] | None = None) -> Any:
        """Evaluate the name in ``namespace`` (the engine's user namespace)."""
        return eval(self.name, namespace if namespace is not None else {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reference, (self.name,))


F = TypeVar("F")


class PrePickled:
    """An object pickled once, now, to be sent many times without pickling it again
    (``view.apply(f, PrePickled(big))`` in a loop); what arrives is the object itself.

    The pickle is made when it is wrapped, and large buffers (array data) are kept by
    reference, not copied: after changing the object, wrap it again.
    """

    def __init__(self, obj: Any) -> None:
        #: the object's frames: the pickle stream, then its out-of-band buffers
        self.buffers = dumps(obj, "the object to pre-pickle")

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        stream, *buffers = self.buffers
        if isinstance(protocol, int) and protocol >= 5:
            # the buffers stay out of band (frames of their own) in the message, too
            return (_load_prepickled, (stream, *map(pickle.PickleBuffer, buffers)))
        return (_load_prepickled, (stream, *map(bytes, buffers)))

    def __repr__(self) -> str:
        return f"<PrePickled: {sum(memoryview(b).nbytes for b in self.buffers)} bytes>"


def _load_prepickled(stream: bytes, *buffers: Any) -> Any:
    return pickle.loads(stream, buffers=buffers)


def interactive(f: F) -> F:
    """Make a function defined in a module behave as if defined interactively: its globals
    are ``__main__``'s (the notebook's or the script's namespace) instead of its module's,
    and on an engine, where it travels as code, the engine's namespace.

    A function becomes a copy with those globals (code, defaults, closure and attributes
    kept), as in ipyparallel; a class is only marked as ``__main__``'s.
    """
    if isinstance(f, types.FunctionType):
        main = sys.modules["__main__"].__dict__
        if f.__globals__ is not main:
            g = types.FunctionType(f.__code__, main, f.__name__, f.__defaults__, f.__closure__)
            g.__kwdefaults__ = f.__kwdefaults__
            g.__qualname__ = f.__qualname__
            g.__doc__ = f.__doc__
            g.__annotations__ = dict(f.__annotations__)
            g.__dict__.update(f.__dict__)
            f = cast(F, g)
    cast(Any, f).__module__ = "__main__"
    return f


# -- interactive functions ------------------------------------------------------------------
class _EmptyCell:
    """Stands for a closure cell that has no value yet."""

    def __reduce__(self) -> str:
        return "_EMPTY_CELL"


_EMPTY_CELL = _EmptyCell()


def _cell_contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an unassigned cell (a name used before its definition)
        return _EMPTY_CELL


#: the namespace interactive functions are rebuilt in while unpickling, when it is not
#: ``__main__``'s (``uncan(canned, g)``, ``deserialize_object(frames, g)``)
rebuild_namespace: ContextVar[dict[str, Any] | None] = ContextVar(
    "ipar_widgets_rebuild_namespace", default=None
)


def _rebuild_function(code: bytes, name: str, n_cells: int) -> types.FunctionType:
    """Create an interactive function whose globals are this process's ``__main__`` (or the
    namespace :data:`rebuild_namespace` names)."""
    namespace = rebuild_namespace.get()
    if namespace is None:
        namespace = sys.modules["__main__"].__dict__
    cells = tuple(types.CellType() for _ in range(n_cells)) if n_cells else None
    return types.FunctionType(marshal.loads(code), namespace, name, None, cells)


def _cell_source(filename: str) -> list[str] | None:
    """The source lines of a notebook cell (in linecache, not on disk), to show in tracebacks."""
    entry = linecache.cache.get(filename)
    # a lazily loaded entry is a 1-tuple (a loader) and no cell's source
    if entry is None or len(entry) < 3 or os.path.exists(filename):
        return None
    return list(entry[2])


def _set_function_state(f: types.FunctionType, state: tuple[Any, ...]) -> None:
    qualname, defaults, kwdefaults, cell_values, fdict, doc, source = state
    if source is not None:
        filename = f.__code__.co_filename
        linecache.cache.setdefault(filename, (sum(map(len, source)), None, source, filename))
    f.__qualname__ = qualname
    f.__defaults__ = defaults
    f.__kwdefaults__ = kwdefaults
    f.__doc__ = doc
    if fdict:
        f.__dict__.update(fdict)
    f.__module__ = "__main__"
    for cell, value in zip(f.__closure__ or (), cell_values):
        if value is not _EMPTY_CELL:
            cell.cell_contents = value


def _reduce_interactive(f: types.FunctionType) -> tuple[Any, ...]:
    closure = f.__closure__ or ()
    state = (
        f.__qualname__,
        f.__defaults__,
        f.__kwdefaults__,
        tuple(_cell_contents(c) for c in closure),
        dict(f.__dict__) if f.__dict__ else None,
        f.__doc__,
        _cell_source(f.__code__.co_filename),
    )
    # The 6-tuple form sets the state after the skeleton is memoized, so a function that
    # refers to itself through its closure (recursion) pickles without infinite recursion.
    return (
        _rebuild_function,
        (marshal.dumps(f.__code__), f.__name__, len(closure)),
        state,
        None,
        None,
        _set_function_state,
    )


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no type hints
    def reducer_override(self, obj: Any) -> Any:
        if (
            type(obj) is types.FunctionType
            and obj.__module__ == "__main__"
            and not _state["interactive_by_value"]
        ):
            return _reduce_interactive(obj)
        return super().reducer_override(obj)


@functools.cache
def _dill_pickler() -> type[pickle.Pickler]:
    """dill's pickler, with interactive functions pickled as ours (code, rebuilt with the
    receiver's namespace as globals); made on first use, so dill is imported only then."""
    import dill

    class DillPickler(dill.Pickler):  # type: ignore[misc]  # dill has no type hints
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is types.FunctionType and obj.__module__ == "__main__":
                return _reduce_interactive(obj)
            return NotImplemented

    return DillPickler


def fallback_pickler() -> type[pickle.Pickler]:
    """The pickler for what plain pickle cannot do: cloudpickle's, or dill's after
    :func:`use_dill`."""
    return _dill_pickler() if _state["dill"] else _Pickler


# -- objects --------------------------------------------------------------------------------
def _describe(obj: Any) -> str:
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (a {type(obj).__module__}.{type(obj).__qualname__})"


class _NeedsCloudpickle(Exception):
    """Raised by the plain pickler on meeting something only cloudpickle (or our reducer for
    interactive functions) pickles correctly."""


# Kinds plain pickle gets wrong or cannot do: they always take cloudpickle.
_BY_VALUE_KINDS = (
    types.MethodType,
    types.ModuleType,
    types.CodeType,
    types.CellType,
    property,
    classmethod,
    staticmethod,
)


class _PlainPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj).__module__ == "__main__" or isinstance(obj, _BY_VALUE_KINDS):
            raise _NeedsCloudpickle
        if isinstance(obj, (types.FunctionType, type)) and (
            obj.__module__ in ("__main__", None) or "<" in obj.__qualname__
        ):
            raise _NeedsCloudpickle  # defined interactively, a lambda, or a local function
        return NotImplemented


#: types whose pickle never has out-of-band buffers nor needs cloudpickle (None: the result
#: of most tasks that are run for their effect)
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


def dumps(obj: Any, what: str = "object") -> list[Any]:
    """Pickle ``obj`` into ``[stream, *out_of_band_buffers]``.

    Plain data (numbers, strings, containers, arrays) takes the standard pickler, three times
    cheaper than cloudpickle's; anything with functions or classes in it takes cloudpickle.
    ``what`` names the object in the error raised when it cannot be pickled.
    """
    if type(obj) in _ATOMS:  # no buffers, no functions: skip setting up a pickler
        return [pickle.dumps(obj, 5)]
    buffers: list[Any] = [None]

    def keep_large_out_of_band(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < OOB_THRESHOLD:
            return True  # in-band
        buffers.append(view)
        return False

    stream = io.BytesIO()
    try:
        try:
            _PlainPickler(stream, protocol=5, buffer_callback=keep_large_out_of_band).dump(obj)
        except (_NeedsCloudpickle, pickle.PicklingError, AttributeError):
            del buffers[1:]
            stream = io.BytesIO()
            pickler = _dill_pickler() if _state["dill"] else _Pickler
            pickler(stream, protocol=5, buffer_callback=keep_large_out_of_band).dump(obj)
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {what}: {_describe(obj)} could not be pickled ({type(exc).__name__}: {exc})"
        ) from exc
    buffers[0] = stream.getvalue()
    return buffers


def loads(frames: Sequence[Any]) -> Any:
    """Inverse of :func:`dumps`; buffers are used in place (no copy)."""
    return pickle.loads(frames[0], buffers=frames[1:])


# -- apply requests --------------------------------------------------------------------------
#: function -> (what its pickle depends on, the pickle): see :func:`pack_function`
_function_pickles: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], list[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _stateless_key(f: Any) -> tuple[Any, ...] | None:
    """Everything the pickle of an interactive function without state depends on; None for a
    function whose pickle may change between calls: defaults, closure cells and attributes
    can mutate, and a function pickled by value (cloudpickle) carries its globals' values."""
    if (
        type(f) is not types.FunctionType
        or f.__module__ != "__main__"
        or _state["interactive_by_value"]
        or f.__closure__
        or f.__defaults__ is not None
        or f.__kwdefaults__ is not None
        or f.__dict__
    ):
        return None
    return (
        f.__code__,
        f.__name__,
        f.__qualname__,
        f.__doc__,
    )


def pack_function(f: Any) -> list[Any]:
    """Pickle a task's function (a map reuses the frames for every chunk).

    Calling the same interactive function again and again (``view.apply_sync(f)`` in a loop)
    reuses its pickle: one without defaults, closure or attributes is sent as its code and
    names only, so the pickle stays valid as long as those are the same.
    """
    if not callable(f) and not isinstance(f, (Reference, PrePickled)):
        raise TypeError(f"expected a callable to run on the engines, found {_describe(f)}")
    key = _stateless_key(f)
    if key is not None:
        cached = _function_pickles.get(f)
        if cached is not None and cached[0] == key:
            return list(cached[1])
    frames = dumps(f, f"the function {getattr(f, '__qualname__', f)!r}")
    if key is not None and len(frames) == 1:
        _function_pickles[f] = (key, frames)
        return list(frames)
    return frames


_NO_ARGUMENTS = pickle.dumps(((), {}), 5)


def pack_arguments(args: Sequence[Any], kwargs: dict[str, Any], fname: str = "f") -> list[Any]:
    """Pickle a task's arguments; the error names the argument that failed."""
    if not args and not kwargs:
        return [_NO_ARGUMENTS]
    try:
        return dumps((tuple(args), kwargs), "arguments")
    except SerializationError:
        for i, arg in enumerate(args):
            dumps(arg, f"argument {i} of {fname}()")
        for key, value in kwargs.items():
            dumps(value, f"keyword argument {key!r} of {fname}()")
        raise


def pack_apply(
    function_frames: list[Any], args: Sequence[Any], kwargs: dict[str, Any], fname: str = "f"
) -> tuple[dict[str, Any], list[Any]]:
    """Return ``(content, buffers)`` of an apply_request."""
    arg_frames = pack_arguments(args, kwargs, fname)
    return {"fn_frames": len(function_frames)}, [*function_frames, *arg_frames]


def _resolve(value: Any, namespace: dict[str, Any]) -> Any:
    if isinstance(value, Reference):
        return value.get_object(namespace)
    return value


def _resolve_one_level(value: Any, namespace: dict[str, Any]) -> Any:
    if isinstance(value, Reference):
        return value.get_object(namespace)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Reference) for v in value):
        return type(value)(_resolve(v, namespace) for v in value)
    if isinstance(value, dict) and any(isinstance(v, Reference) for v in value.values()):
        return {k: _resolve(v, namespace) for k, v in value.items()}
    return value


#: pickle -> (function, its code) for interactive functions without state, on the engine: a
#: map sends the same function with every chunk, and rebuilding it each time was a tenth of
#: an engine's work on tiny tasks
_rebuilt: dict[bytes, tuple[types.FunctionType, types.CodeType]] = {}
_REBUILT_ENTRIES = 64
_REBUILT_MAX_BYTES = 16384


def _has_no_state(f: Any, namespace: dict[str, Any]) -> bool:
    """Whether calling ``f`` cannot leave anything behind that a fresh copy would not have."""
    return (
        type(f) is types.FunctionType
        and f.__globals__ is namespace
        and f.__closure__ is None
        and f.__defaults__ is None
        and f.__kwdefaults__ is None
        and not f.__dict__
    )


def _load_function(frames: Sequence[Any]) -> Any:
    """Unpickle a task's function, reusing the one rebuilt from the same pickle before while
    it has no state (no closure, defaults or attributes, globals still ``__main__``'s)."""
    if len(frames) != 1 or len(frames[0]) > _REBUILT_MAX_BYTES:
        return loads(frames)
    raw = frames[0] if isinstance(frames[0], bytes) else bytes(frames[0])
    main = sys.modules["__main__"].__dict__
    known = _rebuilt.get(raw)
    if known is not None:
        f, code = known
        if f.__code__ is code and _has_no_state(f, main):
            return f
        del _rebuilt[raw]  # the last call gave it state: rebuild it
    f = loads(frames)
    if _has_no_state(f, main):
        if len(_rebuilt) >= _REBUILT_ENTRIES:
            del _rebuilt[next(iter(_rebuilt))]
        _rebuilt[raw] = (f, f.__code__)
    return f


def unpack_apply(
    content: dict[str, Any], buffers: Sequence[Any], namespace: dict[str, Any]
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """Rebuild ``(f, args, kwargs)`` on the engine, resolving References in ``namespace``."""
    n_fn = int(content.get("fn_frames", 1))
    f = _resolve(_load_function(buffers[:n_fn]), namespace)
    args, kwargs = loads(buffers[n_fn:])
    if args:
        args = tuple([_resolve_one_level(a, namespace) for a in args])
    if kwargs:
        kwargs = {k: _resolve_one_level(v, namespace) for k, v in kwargs.items()}
    return f, args, kwargs
