"""What lands in the engines' namespaces: imports (``view.importer``, ``sync_imports``),
assignments to nested names (``view["a.b"]``), globals captured by value
(``use_cloudpickle``), pre-pickled arguments; against a real cluster."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipar_widgets as ipp
from ipar_widgets.protocol import serialize


@ipp.interactive
def has_name(name: str) -> bool:
    return name in globals()


def test_importer_imports_here_and_on_the_engines(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    view = rc[-1]
    view.clear(block=True)
    with view.importer:
        import re  # noqa: F401
    assert capsys.readouterr().out == "importing re on engine(s)\n"

    @ipp.interactive
    def findall(pattern: str, text: str) -> list[str]:
        return globals()["re"].findall(pattern, text)  # type: ignore[no-any-return]

    assert view.apply_sync(findall, r"\w+", "hello world") == ["hello", "world"]


def test_sync_imports_forms_and_quiet(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    view = rc[:]
    with view.sync_imports():
        from json import dumps, loads  # noqa: F401, I001  (the order of the statements matters)
        import os.path  # noqa: F401
        import json  # noqa: F401
        import json  # noqa: F401,F811  (announced and sent once)
    assert capsys.readouterr().out == (
        "importing dumps,loads from json on engine(s)\n"
        "importing os.path on engine(s)\n"
        "importing json on engine(s)\n"
    )
    assert view.apply_sync(has_name, "dumps") == [True] * 4
    assert view.apply_sync(has_name, "os") == [True] * 4
    with view.sync_imports(quiet=True):
        import colorsys  # noqa: F401
    assert capsys.readouterr().out == ""
    assert view.apply_sync(has_name, "colorsys") == [True] * 4


@pytest.fixture
def local_only_module(tmp_path: Path) -> Iterator[str]:
    """A module only this process can import (it imports another module itself)."""
    (tmp_path / "h1_local_only.py").write_text("import textwrap\nVALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    yield "h1_local_only"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("h1_local_only", None)


def test_an_import_missing_on_the_engines_raises_at_the_end_of_the_block(
    rc, capsys, local_only_module: str
) -> None:  # type: ignore[no-untyped-def]
    ran_to_end = False
    with pytest.raises(ipp.CompositeError) as info, rc[:2].sync_imports():
        import h1_local_only  # noqa: F401

        ran_to_end = True
    assert ran_to_end
    assert [e.ename for e in info.value.elist] == ["ModuleNotFoundError"] * 2
    # the module's own `import textwrap` is not sent: only the block's statements travel
    assert capsys.readouterr().out == "importing h1_local_only on engine(s)\n"


def test_engines_only_imports_bind_placeholders_here(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc[0]
    with view.sync_imports(local=False, quiet=True):
        from colorsys import rgb_to_hsv
    assert rgb_to_hsv is None
    assert view.apply_sync(has_name, "rgb_to_hsv") is True


def test_nested_names_get_and_set(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc[-1]
    view.execute("class A: pass\na = A()\na.b = 128\nitems = [0, 1, 2]", block=True)
    assert view["a.b"] == 128
    view["a.b"] = 0
    assert view.apply_sync(lambda x: x.b, ipp.Reference("a")) == 0
    view.push({"items[1]": "one", "plain": 3}, block=True)
    assert view["items"] == [0, "one", 2] and view["plain"] == 3
    assert view.apply_sync(has_name, "_ipar_push_value") is False  # no helper name left
    with pytest.raises(TypeError, match=r"push takes names \(str\) as keys, found 1 \(int\)"):
        view.push({1: "x"})


@pytest.fixture
def client_global() -> Iterator[None]:
    main = sys.modules["__main__"]
    yield
    if hasattr(main, "_h1_value"):
        del main._h1_value


def test_use_cloudpickle_captures_globals_by_value(rc, client_global: None) -> None:  # type: ignore[no-untyped-def]
    view = rc[:]
    view["_h1_value"] = "engine"

    @ipp.interactive
    def get_value() -> str:
        return _h1_value  # type: ignore[name-defined,no-any-return]  # noqa: F821

    assert view.apply_sync(get_value) == ["engine"] * 4
    sys.modules["__main__"]._h1_value = "client"  # type: ignore[attr-defined]
    view.use_cloudpickle()
    try:
        assert view.apply_sync(get_value) == ["client"] * 4
        view.execute("del _h1_value", block=True)
        assert view.apply_sync(get_value) == ["client"] * 4
        view.push({"pushed": 1}, block=True)
        assert view.pull("pushed", block=True) == [1] * 4
    finally:
        view.use_pickle().get(timeout=10)
    assert not serialize._state["interactive_by_value"]
    with pytest.raises(ipp.CompositeError) as info:
        view.apply_sync(get_value)
    assert {e.ename for e in info.value.elist} == {"NameError"}


def test_pre_pickled_arguments_and_functions(rc) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    big = np.arange(500_000)
    once = ipp.PrePickled(big)
    view = rc[:2]
    for _ in range(2):
        assert view.apply_sync(lambda a: int(a.sum()), once) == [int(big.sum())] * 2
    double = ipp.PrePickled(lambda x: 2 * x)
    assert view.apply_sync(double, 21) == [42, 42]
    assert repr(once).startswith("<PrePickled: ")


def test_a_blocking_call_runs_after_what_the_thread_sent_before_it(rc) -> None:  # type: ignore[no-untyped-def]
    # The blocking call goes out on another socket than the non-blocking ones before it
    # (its replies come straight to the waiting thread); it must still run after them.
    view = rc[1]
    get = ipp.interactive(lambda: _h1_order)  # noqa: F821
    for i in range(150):
        view.execute(f"_h1_order = {i}", block=False)
        assert view.apply_sync(get) == i
        view.push({"_h1_order": -i}, block=False)
        view["a_name"] = i  # view.block is False: not waited for either
        assert view.apply_sync(get) == -i


CLOSURE_OVER_A_FILE = """
def make_writer(log):
    def write(x):
        log.write(f"{x}\\n")
        log.flush()
        return 2 * x
    return write
"""


def test_use_dill_sends_what_only_dill_pickles(rc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("dill")
    namespace: dict[str, object] = {"__name__": "__main__"}  # as a notebook cell defines it
    exec(CLOSURE_OVER_A_FILE, namespace)
    path = tmp_path / "log.txt"
    view = rc[:2]
    with open(path, "a") as log:
        write = namespace["make_writer"](log)  # type: ignore[operator]
        with pytest.raises(ipp.error.SerializationError, match="could not be pickled"):
            view.apply_sync(write, 1)  # cloudpickle cannot send an open file
        view.use_dill().get(timeout=10)
        try:
            assert view.apply_sync(write, 5) == [10, 10]
            assert sorted(path.read_text().split()) == ["5", "5"]  # each engine reopened it
            view["_h1_engine_only"] = 7
            exec("def get():\n    return _h1_engine_only\n", namespace)
            assert view.apply_sync(namespace["get"]) == [7, 7]  # globals still resolve there
        finally:
            view.use_pickle().get(timeout=10)
    assert not serialize._state["dill"]
