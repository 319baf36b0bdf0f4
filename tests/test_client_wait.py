"""``Client.wait`` with other futures, and ``Client.wait_interactive`` in a terminal and in a
notebook."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(120)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def finish_later(future: Future[str], value: str, delay: float) -> None:
    threading.Timer(delay, future.set_result, (value,)).start()


def test_wait_takes_concurrent_futures_with_tasks(rc) -> None:  # type: ignore[no-untyped-def]
    f: Future[str] = Future()
    finish_later(f, "future", 0.1)
    assert rc.wait([f]) is True and f.result() == "future"
    assert rc.wait(f) is True  # a single one, already done
    g: Future[str] = Future()
    ar = rc[0].apply_async(time.sleep, 0.2)
    finish_later(g, "later", 0.3)
    assert rc.wait([ar, g], timeout=10) is True and ar.ready() and g.done()
    never: Future[str] = Future()
    t0 = time.monotonic()
    assert rc.wait([never], timeout=0.2) is False
    assert 0.2 <= time.monotonic() - t0 < 2
    # an executor's lazy map is a future-like job too
    it = rc.executor().map(time.sleep, [0.1, 0.1])
    assert rc.wait([it], timeout=10) is True and it.ready()
    with pytest.raises(TypeError, match="expected msg_ids, AsyncResults or history indices"):
        rc.wait([1.5])


def test_wait_takes_asyncio_futures_of_a_loop_running_elsewhere(rc) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        fut = asyncio.run_coroutine_threadsafe(_make_future(loop, 0.1), loop).result(5)
        assert rc.wait([fut], timeout=10) is True and fut.result() == 42
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


async def _make_future(loop: asyncio.AbstractEventLoop, delay: float) -> asyncio.Future[int]:
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_later(delay, fut.set_result, 42)
    return fut


def test_wait_refuses_an_asyncio_future_it_would_wait_for_forever(rc) -> None:  # type: ignore[no-untyped-def]
    async def inside_the_loop() -> None:
        fut = asyncio.get_running_loop().create_future()
        with pytest.raises(RuntimeError, match="use `await future`"):
            rc.wait([fut], timeout=5)
        fut.cancel()

    asyncio.run(inside_the_loop())
    idle = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="event loop is not running"):
            rc.wait([idle.create_future()], timeout=5)
    finally:
        idle.close()


def test_wait_interactive_in_a_terminal(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    rc.wait_interactive()  # nothing outstanding: returns at once, says nothing
    assert capsys.readouterr().out == ""
    ars = [rc[i].apply_async(time.sleep, 0.3) for i in range(3)]
    rc.wait_interactive(interval=0.05, timeout=30)
    assert rc.outstanding == set() and all(ar.ready() for ar in ars)
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-1].startswith("outstanding tasks: 3/3 tasks done (0 failed)")
    # given jobs: AsyncResults keep their name, msg_ids are named "tasks"
    a = rc.load_balanced_view().map_async(lambda x: x, range(6), chunksize=2)
    b = rc[1].apply_async(time.sleep, 0.1)
    rc.wait_interactive([a, b], interval=0.05)
    assert (
        capsys.readouterr()
        .out.rstrip()
        .splitlines()[-1]
        .startswith("<lambda>: 4/4 tasks done (0 failed)")
    )
    c = rc[2].apply_async(time.sleep, 0.1)
    rc.wait_interactive(c.msg_ids, interval=0.05)
    assert (
        capsys.readouterr()
        .out.rstrip()
        .splitlines()[-1]
        .startswith("tasks: 1/1 tasks done (0 failed)")
    )
    slow = rc[0].apply_async(time.sleep, 3)
    with pytest.raises(TimeoutError):
        rc.wait_interactive(timeout=0.2)
    slow.get(10)


def test_wait_interactive_in_a_notebook_shows_the_widget(make_cluster, profile) -> None:  # type: ignore[no-untyped-def]
    make_cluster(n=2)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import time, ipar_widgets as ipp\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(2, timeout=60)"
        ),
        nbformat.v4.new_code_cell(
            "ars = [rc[i % 2].apply_async(time.sleep, 0.2) for i in range(4)]\n"
            "rc.wait_interactive()"
        ),
        nbformat.v4.new_code_cell("print(rc.outstanding)\nrc.close()"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False).execute()
    outputs = nb.cells[1].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"]
    data = outputs[0]["data"]
    assert WIDGET_VIEW in data
    assert data["text/plain"].startswith("outstanding tasks: 4/4 tasks done (0 failed)")
    assert nb.cells[2].outputs[0]["text"] == "set()\n"
