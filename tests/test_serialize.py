"""Pickling of functions and arguments (in-process: the engine side is the same code)."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from ipar_widgets.error import SerializationError
from ipar_widgets.protocol import serialize


def roundtrip(obj: object) -> object:
    return serialize.loads(serialize.dumps(obj))


def make_interactive(src: str, name: str, namespace: dict[str, object]) -> types.FunctionType:
    code = compile(src, "<cell>", "exec")
    exec(code, namespace)
    f = namespace[name]
    assert isinstance(f, types.FunctionType)
    f.__module__ = "__main__"
    return f


def test_interactive_function_resolves_globals_in_the_receiving_namespace() -> None:
    client_ns: dict[str, object] = {"__name__": "__main__", "scale": 2}
    f = make_interactive("def f(x):\n    return x * scale\n", "f", client_ns)
    frames = serialize.dumps(f)
    main = sys.modules["__main__"].__dict__
    main["scale"] = 10  # what the "engine" namespace holds
    try:
        g = serialize.loads(frames)
        assert g(3) == 30
        assert g.__globals__ is main
    finally:
        del main["scale"]


def test_closures_defaults_and_recursion_travel() -> None:
    ns: dict[str, object] = {"__name__": "__main__"}
    src = (
        "def outer(k):\n"
        "    def fact(n, acc=1):\n"
        "        return acc if n <= 1 else fact(n - 1, acc * n) + k\n"
        "    return fact\n"
    )
    outer = make_interactive(src, "outer", ns)
    fact = outer(0)
    fact.__module__ = "__main__"
    g = roundtrip(fact)
    assert g(5) == 120
    lam = eval("lambda x, y=3: x + y", ns)
    assert roundtrip(lam)(1) == 4


def test_large_buffers_go_out_of_band_and_come_back_writable() -> None:
    arr = np.arange(1_000_000, dtype=np.float64)
    frames = serialize.dumps({"a": arr})
    assert len(frames) == 2  # the stream and one buffer: the array was not copied into it
    assert frames[1].nbytes == arr.nbytes
    back = serialize.loads([frames[0], bytearray(frames[1])])["a"]
    assert np.array_equal(back, arr)
    back[0] = -1.0  # writable, like any array a user owns


@pytest.mark.parametrize("value", [None, True, 0, -(2**70), 1.5, 2j, "", "é" * 3, b"\x00raw"])
def test_plain_values_take_the_short_path_and_come_back_equal(value: object) -> None:
    frames = serialize.dumps(value)
    assert len(frames) == 1 and isinstance(frames[0], bytes)
    back = serialize.loads(frames)
    assert back == value and type(back) is type(value)


def test_a_call_without_arguments_unpacks_to_empty_args_and_kwargs() -> None:
    content, buffers = serialize.pack_apply(serialize.pack_function(len), (), {})
    f, args, kwargs = serialize.unpack_apply(content, buffers, {})
    assert (f, args, kwargs) == (len, (), {})
    kwargs["x"] = 1  # each call gets its own dict, whatever the receiver does with it
    assert serialize.unpack_apply(content, buffers, {})[2] == {}


def test_reference_resolves_one_level_deep() -> None:
    content, buffers = serialize.pack_apply(
        serialize.pack_function(serialize.Reference("f")),
        (serialize.Reference("x"), [serialize.Reference("x"), 1], {"k": serialize.Reference("x")}),
        {"kw": serialize.Reference("x")},
    )
    ns = {"x": 7, "f": lambda *a, **k: (a, k)}
    f, args, kwargs = serialize.unpack_apply(content, buffers, ns)
    assert f is ns["f"]
    assert args == (7, [7, 1], {"k": 7})
    assert kwargs == {"kw": 7}


def test_unpicklable_argument_is_named() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError, match=r"argument 1 of work\(\).*_thread\.lock"):
        serialize.pack_arguments((1, lock), {}, "work")
    with pytest.raises(SerializationError, match=r"keyword argument 'guard' of work\(\)"):
        serialize.pack_arguments((), {"guard": lock}, "work")


def test_not_callable_function_is_refused() -> None:
    with pytest.raises(TypeError, match="expected a callable"):
        serialize.pack_function(42)


def test_use_cloudpickle_captures_globals_by_value() -> None:
    ns: dict[str, object] = {"__name__": "__main__", "offset": 5}
    f = make_interactive("def f(x):\n    return x + offset\n", "f", ns)
    serialize.use_cloudpickle()
    try:
        g = roundtrip(f)
    finally:
        serialize.use_pickle()
    assert g(1) == 6


def test_an_interactive_functions_pickle_is_reused_only_while_it_cannot_change() -> None:
    ns: dict[str, object] = {"__name__": "__main__"}
    f = make_interactive("def f(x):\n    return x + 1\n", "f", ns)
    first = serialize.pack_function(f)
    assert serialize.pack_function(f)[0] is first[0]  # same pickle, not pickled again
    f.__doc__ = "now documented"  # part of the pickle: pickled afresh
    documented = serialize.pack_function(f)
    assert documented[0] is not first[0]
    assert serialize.loads(documented).__doc__ == "now documented"
    f.__defaults__ = (41,)  # defaults can mutate: never reused
    assert serialize.pack_function(f)[0] is not serialize.pack_function(f)[0]
    assert serialize.loads(serialize.pack_function(f))() == 42
    f.__defaults__ = None
    f.__code__ = compile("def f(x):\n    return x * 100\n", "<cell2>", "exec").co_consts[0]
    assert serialize.loads(serialize.pack_function(f))(2) == 200  # new code: new pickle

    lam = eval("lambda: 1", {"__name__": "module"})  # pickled by value: never reused
    assert serialize.pack_function(lam)[0] is not serialize.pack_function(lam)[0]


def test_the_engine_reuses_a_rebuilt_function_only_while_it_has_no_state() -> None:
    ns: dict[str, object] = {"__name__": "__main__"}
    f = make_interactive("def f(x):\n    return x + 1\n", "f", ns)
    frames = serialize.pack_function(f)
    main = sys.modules["__main__"].__dict__
    first, _, _ = serialize.unpack_apply(
        {"fn_frames": 1}, [*frames, *serialize.dumps(((), {}))], main
    )
    again = serialize._load_function(list(frames))
    assert again is first and again(1) == 2  # the same pickle: not rebuilt
    again.calls = 1  # a call gave it an attribute: a fresh copy has none
    fresh = serialize._load_function(list(frames))
    assert fresh is not again and not fresh.__dict__
    fresh.__defaults__ = (5,)  # a default set on it: rebuilt, without the default
    rebuilt = serialize._load_function(list(frames))
    assert rebuilt is not fresh and rebuilt.__defaults__ is None
    assert serialize._load_function(list(frames)) is rebuilt

    with_default = make_interactive("def g(x=1):\n    return x\n", "g", ns)
    g_frames = serialize.pack_function(with_default)
    assert serialize._load_function(list(g_frames)) is not serialize._load_function(list(g_frames))
    closure = make_interactive(
        "def outer():\n    n = 0\n    def inner():\n        return n\n    return inner\n",
        "outer",
        ns,
    )()
    closure.__module__ = "__main__"
    c_frames = serialize.pack_function(closure)
    assert serialize._load_function(list(c_frames)) is not serialize._load_function(list(c_frames))
