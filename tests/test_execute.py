"""``view.execute`` and what comes back (ExecuteReply), and values published from running
tasks (``publish_data``, ``ar.data``), against a real cluster."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import wait_until

import ipar_widgets as ipp
from ipar_widgets.client.executereply import ExecuteReply


def test_execute_on_one_engine_returns_its_asyncresult_and_an_execute_reply(rc) -> None:  # type: ignore[no-untyped-def]
    e0 = rc[0]
    e0.block = True
    ar = e0.execute("5", silent=False)
    assert isinstance(ar, ipp.AsyncResult) and ar.ready()  # blocking: done, yet the result
    reply = ar.get()
    assert isinstance(reply, ExecuteReply)
    count = reply.execution_count
    assert isinstance(count, int) and count > 0
    assert str(reply) == repr(reply) == f"<ExecuteReply[{count}]: 5>"
    assert reply.execute_result["data"] == {"text/plain": "5"}
    assert reply["engine_id"] == reply.engine_id == 0
    assert reply.plaintext() == f"Out[0:{count}]: 5"
    assert reply._repr_mimebundle_() == ({"text/plain": f"Out[0:{count}]: 5"}, {})
    assert reply._repr_html_() is None  # no such representation
    with pytest.raises(AttributeError, match="no attribute 'no_such_key'"):
        reply.no_such_key  # noqa: B018
    printed = e0.execute("print(5)", silent=False).get()
    assert printed.stdout == "5\n" and printed.execute_result is None
    assert printed.plaintext() == "" and printed.data == {}


def test_silent_execute_has_no_value_and_counts_nothing(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc[:]
    loud = view.execute("7", silent=False, block=True)
    assert [out["data"] for out in loud.execute_result] == [{"text/plain": "7"}] * 4
    counts = [reply.execution_count for reply in loud.get()]
    quiet = view.execute("7", block=True)
    assert quiet.execute_result == [None] * 4
    assert [reply.execution_count for reply in quiet.get()] == counts  # not a new cell
    assert len(quiet.get()) == 4 and all(isinstance(r, ExecuteReply) for r in quiet.get())


def test_rich_values_keep_their_types_and_display_metadata(rc) -> None:  # type: ignore[no-untyped-def]
    e0 = rc[0]
    e0.execute("from IPython.display import HTML, Image", block=True)
    image = e0.execute("Image(data=b'garbage', format='png', width=10)", silent=False).get(10)
    data, metadata = image._repr_png_()
    assert data.strip() == base64.b64encode(b"garbage").decode("ascii")
    assert metadata == {"width": 10}
    html = e0.execute("HTML('<b>bold</b>')", silent=False).get(10)
    assert html._repr_html_() == "<b>bold</b>"
    bundle, _ = html._repr_mimebundle_()
    assert bundle["text/html"] == "<b>bold</b>"
    assert bundle["text/plain"].startswith("Out[0:")


def test_execute_collects_displays_and_runs_magics(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc[:]
    view.execute("from IPython.display import display", block=True)
    ar = view.execute("for i in range(3): display(i)", block=True)
    assert [[out["data"] for out in outputs] for outputs in ar.outputs] == [
        [{"text/plain": str(i)} for i in range(3)]
    ] * 4
    view.execute("magic_value = 5", block=True)
    whos = view.execute("%whos", block=True)
    for stdout in whos.stdout:
        assert ["magic_value", "int", "5"] in [line.split() for line in stdout.splitlines()]


def test_a_blocking_execute_raises_the_error(rc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ipp.RemoteError) as info:
        rc[1].execute("1/0", block=True)
    assert info.value.ename == "ZeroDivisionError" and info.value.engine_id == 1
    with pytest.raises(ipp.CompositeError):
        rc[:].execute("1/0", block=True)


# -- publish_data ------------------------------------------------------------------------------
PUBLISH_THEN_WAIT = """
import os, time
from ipar_widgets.datapub import publish_data
publish_data({"step": 1, "engine": __ipar_engine_id__})
deadline = time.monotonic() + 30
while not os.path.exists(GO) and time.monotonic() < deadline:
    time.sleep(0.01)
publish_data({"step": 2})
"""


def test_published_data_arrives_while_the_task_runs(rc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    go = tmp_path / "go"
    view = rc[2]
    view.push({"GO": str(go)}, block=True)
    ar = view.execute(PUBLISH_THEN_WAIT, block=False)
    assert ar.data == {}  # a dict from the start, for a single engine
    wait_until(lambda: ar.data.get("step") == 1, 10, what="the first published values")
    assert not ar.ready()  # the task still waits for us
    assert ar.data == {"step": 1, "engine": 2} and ar.metadata["data"] is ar.data
    go.touch()
    ar.get(timeout=10)
    assert ar.data == {"step": 2, "engine": 2}  # merged, and complete once get() returns


def test_published_data_of_several_engines_and_of_apply(rc) -> None:  # type: ignore[no-untyped-def]
    code = "from ipar_widgets.datapub import publish_data\nfor i in range(5):\n    publish_data(dict(i=i))"
    ar = rc[:].execute(code, block=False)
    assert isinstance(ar.data, list) and all(d == {} or "i" in d for d in ar.data)
    ar.get(timeout=10)
    assert ar.data == [{"i": 4}] * 4

    def publish_array(n: int) -> int:
        import numpy as np

        from ipar_widgets.datapub import publish_data

        values = np.arange(n)
        publish_data({"values": values})
        values[:] = -1  # what was published is what it was when published
        return n

    applied = rc[:2].apply_async(publish_array, 300_000)
    assert applied.get(timeout=10) == [300_000, 300_000]
    assert [list(d) for d in applied.data] == [["values"], ["values"]]
    assert all(int(d["values"][-1]) == 299_999 for d in applied.data)


def test_publish_data_needs_a_dict_and_an_engine(rc) -> None:  # type: ignore[no-untyped-def]
    from ipar_widgets.datapub import publish_data

    with pytest.raises(RuntimeError, match="only in code running on an ipar_widgets engine"):
        publish_data({"x": 1})
    ar = rc[0].execute("from ipar_widgets.datapub import publish_data\npublish_data([1])")
    with pytest.raises(ipp.RemoteError) as info:
        ar.get(timeout=10)
    assert info.value.ename == "TypeError" and "takes a dict" in info.value.evalue
