"""The public serialization functions (``ipar_widgets.serialize``), in-process: canning,
whole objects as frames, apply messages, PrePickled, ``interactive``."""

from __future__ import annotations

import functools
import os
import pickle
import sys
import types
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ipar_widgets as ipp
from ipar_widgets import serialize
from ipar_widgets.serialize import canning

Point = namedtuple("Point", "x y")


def make_interactive(src: str, name: str) -> types.FunctionType:
    """A function as a notebook cell defines it: module ``__main__``, no file."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(src, "<cell>", "exec"), namespace)
    f = namespace[name]
    assert isinstance(f, types.FunctionType)
    return f


def test_uncan_rebuilds_an_interactive_function_in_the_namespace_given() -> None:
    f = make_interactive("def f(x):\n    return x + offset\n", "f")
    canned = serialize.can(f)
    assert isinstance(canned, canning.CannedFunction)
    shipped = pickle.loads(pickle.dumps(canned))  # a canned object is plain-picklable
    g = {"offset": 10}
    rebuilt = serialize.uncan(shipped, g)
    assert rebuilt(1) == 11 and rebuilt.__globals__ is g
    assert serialize.uncan(shipped).__globals__ is sys.modules["__main__"].__dict__


def test_functions_from_modules_closures_and_signatures_survive() -> None:
    assert serialize.uncan(serialize.can(os.path.join)) is os.path.join  # found by name
    scale = 3

    def scaled(a: int, *, b: int = 2) -> int:
        return a * b * scale

    back = serialize.uncan(pickle.loads(pickle.dumps(serialize.can(scaled))))
    assert back(2) == 12 and back(2, b=1) == 6
    assert back.__annotations__ == scaled.__annotations__


def test_containers_are_canned_item_by_item_and_references_resolve() -> None:
    f = make_interactive("def f():\n    return 1\n", "f")
    canned = serialize.can({"f": f, "items": [f, 2], "plain": (1, "x")})
    assert isinstance(canned["f"], canning.CannedFunction)
    assert isinstance(canned["items"][0], canning.CannedFunction)
    assert canned["plain"] == (1, "x")
    back = serialize.uncan(canned, {})
    assert back["f"]() == 1 and back["items"][1] == 2
    assert serialize.uncan([ipp.Reference("a"), {"k": ipp.Reference("a * 2")}], {"a": 4}) == [
        4,
        {"k": 8},
    ]
    assert serialize.can(Point(1, 2)) == Point(1, 2)  # plain-picklable: left as it is


def test_large_buffers_of_canned_objects_are_kept_apart() -> None:
    data = os.urandom(2**20)
    view = memoryview(os.urandom(2**20))
    bound = functools.partial(lambda a, b, *, c: (a, len(b), c.nbytes), 5, data, c=view)
    canned = serialize.can(bound)
    assert isinstance(canned, canning.CannedPartial) and len(canned.buffers) == 2
    buffers, canned.buffers = canned.buffers, []
    shipped = pickle.loads(pickle.dumps(canned))
    assert len(shipped.pickled) < 10_000  # the megabytes were not in the pickle
    shipped.buffers = buffers
    assert serialize.uncan(shipped)() == (5, 2**20, 2**20)
    small = serialize.can(b"data")
    assert isinstance(small, canning.CannedBytes) and small.buffers == []
    assert serialize.uncan(small) == b"data"
    array = serialize.can(np.arange(1000))
    assert isinstance(array, canning.CannedArray) and len(array.buffers) == 1
    assert repr(array) == f"<CannedArray: {len(array.pickled) + 8000} bytes in 2 frames>"


def test_can_map_takes_new_kinds() -> None:
    class Box:
        def __init__(self, value: int) -> None:
            self.value = value

    class CannedBox(canning.CannedObject):
        pass

    serialize.can_map[Box] = CannedBox
    try:
        canned = serialize.can([Box(3)])
    finally:
        del serialize.can_map[Box]
    assert isinstance(canned[0], CannedBox)
    assert serialize.uncan(canned)[0].value == 3
    by_value = serialize.can(Box)  # a local class cannot be imported: it goes by value
    assert isinstance(by_value, canning.CannedClass)
    assert serialize.uncan(pickle.loads(pickle.dumps(by_value)))(4).value == 4
    assert serialize.can(Point) is Point  # an importable class is found by name


@pytest.mark.parametrize(
    ("obj", "n_frames"),
    [
        ("hello", 1),
        ({"a": b"x" * 1025}, 2),
        (b"hello" * 500, 2),
        ([b"hello" * 501, 1, 2, 3], 2),
        (memoryview(b"asdf" * 1025), 2),
        (np.ones((5, 5)), 1),
        (np.ones((512, 512)), 2),
    ],
)
def test_serialize_object_keeps_large_buffers_as_frames(obj: object, n_frames: int) -> None:
    frames = serialize.serialize_object(obj)
    assert len(frames) == n_frames
    back, rest = serialize.deserialize_object([memoryview(f) for f in frames])
    assert rest == []
    if isinstance(obj, memoryview):
        assert isinstance(back, memoryview) and back.tobytes() == obj.tobytes()
    elif isinstance(obj, np.ndarray):
        assert np.array_equal(back, obj) and back.dtype == obj.dtype
    else:
        assert back == obj


def test_objects_follow_each_other_in_one_list_of_frames() -> None:
    first = np.arange(10_000)
    frames = [*serialize.serialize_object(first), *serialize.serialize_object("second")]
    one, rest = serialize.deserialize_object(frames)
    assert np.array_equal(one, first) and len(rest) == 1
    two, rest = serialize.deserialize_object(rest)
    assert (two, rest) == ("second", [])
    with pytest.raises(ValueError, match="at least one frame"):
        serialize.deserialize_object([])
    assert len(serialize.serialize_object(b"x" * 2000, buffer_threshold=4096)) == 1


def test_apply_messages_round_trip_in_a_namespace() -> None:
    f = make_interactive("def f(a, b=0):\n    return a * factor + b\n", "f")
    frames = serialize.pack_apply_message(f, (ipp.Reference("n"),), {"b": np.arange(3)})
    g, args, kwargs = serialize.unpack_apply_message(frames, {"factor": 10, "n": 2})
    assert args == (2,) and list(g(*args, **kwargs)) == [20, 21, 22]
    extra = [*serialize.pack_apply_message(len, ("ab",), {}), *serialize.serialize_object(1)]
    with pytest.raises(ValueError, match="three objects"):
        serialize.unpack_apply_message(extra)


def test_pre_pickled_objects_are_pickled_once() -> None:
    calls = []

    class Counted:
        def __reduce__(self) -> tuple[object, ...]:
            calls.append(1)
            return (str, ("rebuilt",))

    once = serialize.PrePickled(Counted())
    for _ in range(3):
        assert pickle.loads(pickle.dumps(once, protocol=5)) == "rebuilt"
    assert pickle.loads(pickle.dumps([once], protocol=2)) == ["rebuilt"]
    assert len(calls) == 1
    assert serialize.serialize_object(once) == once.buffers


@pytest.fixture
def main_value() -> Iterator[None]:
    main = sys.modules["__main__"]
    main._h1_main_value = "from main"  # type: ignore[attr-defined]
    yield
    del main._h1_main_value  # type: ignore[attr-defined]


def test_interactive_gives_a_function_mains_globals(main_value: None) -> None:
    marker = "closure"

    def f(x: int = 1) -> tuple[str, str, int]:
        return _h1_main_value, marker, x  # type: ignore[name-defined]  # noqa: F821

    f.extra = "kept"  # type: ignore[attr-defined]
    g = ipp.interactive(f)
    assert g is not f and g.__globals__ is sys.modules["__main__"].__dict__
    assert g() == ("from main", "closure", 1)
    assert (g.__module__, g.__qualname__, g.extra) == ("__main__", f.__qualname__, "kept")  # type: ignore[attr-defined]
    assert ipp.interactive(g) is g  # already interactive

    class C:
        pass

    assert ipp.interactive(C) is C and C.__module__ == "__main__"


def test_use_dill_cans_what_only_dill_pickles(tmp_path: Path) -> None:
    pytest.importorskip("dill")
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def make(f):\n    return lambda: f.name\n", namespace)
    with open(tmp_path / "x.txt", "a") as f:
        reads_name = namespace["make"](f)  # type: ignore[operator]
        with pytest.raises(ipp.error.SerializationError):
            serialize.can(reads_name)
        serialize.use_dill()
        try:
            back = serialize.uncan(pickle.loads(pickle.dumps(serialize.can(reads_name))))
        finally:
            serialize.use_pickle()
    assert back() == reads_name()
    back.__closure__[0].cell_contents.close()  # the file dill opened again


def test_the_public_module_offers_ipyparallels_names() -> None:
    names = {
        "PrePickled", "Reference", "can", "can_map", "deserialize_object", "interactive",
        "pack_apply_message", "serialize_object", "uncan", "uncan_map",
        "unpack_apply_message", "use_cloudpickle", "use_dill", "use_pickle",
    }  # fmt: skip
    assert set(serialize.__all__) == names
    for name in names:
        assert getattr(ipp, name) is getattr(serialize, name)
