"""``ar.retry_failed()`` and the widget's "Retry failed" button on real clusters: the failed
tasks run again (elsewhere when their engine died), the same AsyncResult and widget follow
them, and ``get()`` keeps the original order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import ClusterHandle
from kernels import click, follow_cell, kernel
from nbclient import NotebookClient

import ipar_widgets as ipp
from ipar_widgets.progress import ProgressTracker
from ipar_widgets.widgets.loop import UpdateLoop, apply
from ipar_widgets.widgets.progress import ProgressView


@ipp.interactive
def thirds(x: int) -> int:
    """Fails for multiples of 3 until the engine's namespace says ``fixed``."""
    if x % 3 == 0 and not globals().get("fixed"):
        raise ValueError(f"bad input {x}")
    return x * 10


@ipp.interactive
def dies_once(marker: str, x: int) -> int:
    """The task of item 0 kills its engine the first time (the marker file says it did)."""
    import os

    if x == 0 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return x


PROFILE = "m-retry-failed"


@pytest.fixture(scope="module")
def three() -> Iterator[object]:
    """One 3-engine cluster for the tests that break no engine."""
    handle = ClusterHandle(PROFILE, 3)
    handle.rc.wait_for_engines(3, timeout=30)
    yield handle.rc
    handle.stop()


@pytest.fixture
def rc3(three):  # type: ignore[no-untyped-def]
    three[:].execute("fixed = False", block=True)
    yield three
    three.wait(timeout=30)


def test_retry_keeps_the_order_and_can_be_repeated(rc3) -> None:  # type: ignore[no-untyped-def]
    ar = rc3.load_balanced_view().map(thirds, range(9))
    assert ar.wait(timeout=30)
    original = list(ar.msg_ids)
    assert not ar.successful()
    tracker = ProgressTracker(ar)
    assert [g.label for g in tracker.snapshot().failure_groups] == ["ValueError: bad input <n> ×3"]

    first = ar.retry_failed(block=True, timeout=30)  # the cause is still there
    assert first and first.message == "Retried 3 failed tasks of thirds."
    assert set(first.retried) == {original[0], original[3], original[6]}
    snap = tracker.snapshot()
    assert (snap.failed, snap.done, snap.retried, snap.state) == (3, 6, 3, "failed")
    assert [g.label for g in snap.failure_groups] == ["ValueError: bad input <n> ×3"]

    rc3[:].execute("fixed = True", block=True)
    second = ar.retry_failed(block=True, timeout=30)
    assert len(second.retried) == 3
    assert ar.get(timeout=30) == [x * 10 for x in range(9)]
    assert ar.successful() and ar.progress == 9 and len(ar.msg_ids) == 9
    # the retried places hold the new msg_ids; the others are the originals
    assert [m == o for m, o in zip(ar.msg_ids, original)] == [False, True, True] * 3
    assert ar.original_msg_ids == original
    assert len(ar.retried) == 6
    assert ar.metadata[0] is rc3.metadata[ar.msg_ids[0]]
    assert ar.metadata[0]["status"] == "ok"
    snap = tracker.snapshot()
    assert (snap.done, snap.failed, snap.retried, snap.state) == (9, 0, 6, "done")
    assert snap.failure_groups == () and snap.first_error is None

    nothing = ar.retry_failed()
    assert not nothing and nothing.retried == {}
    assert str(nothing) == "Nothing to retry: no task of thirds has failed."
    assert ar.get(timeout=1) == [x * 10 for x in range(9)]


def test_a_direct_task_is_retried_where_it_ran(rc3) -> None:  # type: ignore[no-untyped-def]
    ids = rc3.ids
    ar = rc3[:].map(thirds, range(6))  # engine k gets items 2k, 2k+1
    assert ar.wait(timeout=30)
    engines = [md["engine_id"] for md in ar.metadata]
    rc3[:].execute("fixed = True", block=True)
    outcome = ar.retry_failed(block=True, timeout=30)
    assert len(outcome.retried) == 2  # the chunks [0, 1] and [2, 3]
    assert ar.get(timeout=30) == [x * 10 for x in range(6)]
    assert [md["engine_id"] for md in ar.metadata] == engines == ids


def test_the_widget_follows_the_retried_tasks(rc3) -> None:  # type: ignore[no-untyped-def]
    ar = rc3.load_balanced_view().map(thirds, range(6))
    assert ar.wait(timeout=30)
    loop = UpdateLoop()
    view = ProgressView(ar, loop=loop, placement=False)
    apply(view.changes(final=True))
    assert (view.bar.bar_style, view.bar.value) == ("danger", 6)
    assert view.retry_button.layout.display == "" and view.failure in view.box.children
    assert view.controls.children == ()

    rc3[:].execute("fixed = True", block=True)
    view.retry_button.click()  # what a click runs (in the kernel's subshell)
    assert view.note == "Retried 2 failed tasks of thirds."
    # the loop took the view back and follows it to its final update
    assert loop.wait_idle(timeout=30)
    assert ar.get(timeout=1) == [x * 10 for x in range(6)]
    assert (view.bar.bar_style, view.bar.value, view.bar.max) == ("success", 6, 6)
    assert view.failure not in view.box.children
    assert view.retry_button.layout.display == "none"
    assert "6/6 items done" in view.body.value and "2 retried" in view.body.value
    assert (
        view.bundle()["text/plain"]
        .splitlines()[0]
        .startswith("thirds: 6/6 tasks done (0 failed); serial ")
    )


def test_a_shown_widget_follows_a_retry_in_code(rc3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """In a real kernel: the widget ``wait_interactive`` left in one cell follows
    ``ar.retry_failed()`` run in the next, and its saved output ends in the final state."""
    cells = [
        "import ipar_widgets as ipp\n"
        f"rc = ipp.Client(profile={PROFILE!r})\n"
        "rc.wait_for_engines(3, timeout=30)\n"
        "@ipp.interactive\n"
        "def thirds(x):\n"
        "    if x % 3 == 0 and not globals().get('fixed'):\n"
        "        raise ValueError(f'bad input {x}')\n"
        "    return x * 10\n"
        "ar = rc.load_balanced_view().map(thirds, range(6))",
        "ar.wait_interactive()\nprint(ar.progress, ar.successful())",
        "rc[:].execute('fixed = True', block=True)\n"
        "print(ar.retry_failed())\n"
        "from ipar_widgets.widgets.loop import get_loop\n"
        "print(ar.get(timeout=30), get_loop().wait_idle(30))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    shown, printed = nb.cells[1].outputs
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
    assert shown["data"]["text/plain"].startswith("thirds: 6/6 tasks done (0 failed); serial ")
    assert "failed: " not in shown["data"]["text/plain"]
    assert printed["text"] == "6 False\n"  # what the cell saw before the retry
    assert "".join(o["text"] for o in nb.cells[2].outputs) == (
        "Retried 2 failed tasks of thirds.\n[0, 10, 20, 30, 40, 50] True\n"
    )


def test_a_retry_click_reaches_a_blocked_cell(rc3) -> None:  # type: ignore[no-untyped-def]
    """The frontend's click on Retry failed, sent while ``wait_interactive`` blocks the cell,
    is handled at once (in the kernel's subshell): the cell's wait then covers the retried
    task, and the cell sees every result."""
    with kernel(
        "import ipar_widgets as ipp\n"
        f"rc = ipp.Client(profile={PROFILE!r})\nrc.wait_for_engines(3, timeout=30)\n"
        "@ipp.interactive\n"
        "def slow(x):\n"
        "    import time\n"
        "    if x == 0 and not globals().get('fixed'):\n"
        "        raise ValueError(f'bad input {x}')\n"
        "    time.sleep(0.4)\n"
        "    return x * 10"
    ) as kc:
        msg_id = kc.execute(
            "ar = rc.load_balanced_view().map(slow, range(9))\nar.wait_interactive()\n"
            "print(ar.get(timeout=1), len(ar.retried))"
        )
        retry_comm = None

        def on_message(msg: dict[str, Any]) -> None:
            nonlocal retry_comm
            kind, content = msg["msg_type"], msg["content"]
            state = content.get("data", {}).get("state", {}) if kind.startswith("comm") else {}
            if kind == "comm_open" and state.get("description") == "Retry failed":
                retry_comm = content["comm_id"]
            elif kind == "comm_msg" and retry_comm and "1 failed" in str(state.get("value", "")):
                # the widget shows the failure while the rest runs: fix the cause, click
                rc3[:].execute("fixed = True", block=True)
                click(kc, retry_comm)
                retry_comm = None

        text = follow_cell(kc, msg_id, on_message)
    assert text == "[0, 10, 20, 30, 40, 50, 60, 70, 80] 1\n"


def test_tasks_of_a_dead_engine_run_on_other_engines(make_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rc = make_cluster(n=3).rc
    rc.wait_for_engines(3, timeout=30)
    e0, e1, e2 = rc.ids
    # a direct view on engines 0 and 1: engine 0's chunk (items 0, 1) kills it
    ar = rc[[e0, e1]].map(dies_once, [str(tmp_path / "first")] * 4, range(4))
    assert ar.wait(timeout=30)
    assert isinstance(ar.get(return_exceptions=True)[0], ipp.EngineError)
    # keep engine 1 busy: retried anywhere, the task would go to idle engine 2
    busy = rc[e1].apply_async(time.sleep, 1.0)
    outcome = ar.retry_failed(block=True, timeout=30)
    assert (
        outcome.message
        == "Retried 1 failed task of dies_once (1 whose engine died, on other engines)."
    )
    assert ar.get(timeout=30) == [0, 1, 2, 3]
    assert [md["engine_id"] for md in ar.metadata] == [e1, e1]  # the view's other engine
    busy.get(timeout=30)

    # load-balanced: the task that killed its engine runs on one of the others
    lv = rc.load_balanced_view()
    ar = lv.map(dies_once, [str(tmp_path / "second")] * 3, range(3))
    assert ar.wait(timeout=30)
    dead = ar.metadata[0]["engine_id"]
    assert isinstance(ar.get(return_exceptions=True)[0], ipp.EngineError)
    ar.retry_failed(block=True, timeout=30)
    assert ar.get(timeout=30) == [0, 1, 2]
    assert ar.metadata[0]["engine_id"] in {e1, e2} - {dead}
