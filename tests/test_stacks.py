"""Where is it stuck?  ``rc.stacks()``, ``ar.stacks()`` and the progress widget's button, on a
real 4-engine cluster: tasks in a pure-Python loop, asleep in C code, holding the GIL in C
code, and idle engines.

The tasks end by being interrupted (``send_signal(SIGINT)``) or by running out, never by a
sleep of the test; every wait for a task to be seen running is bounded.
"""

from __future__ import annotations

import inspect
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import wait_until
from kernels import click, follow_cell, kernel

import ipar_widgets as ipp
from ipar_widgets.client.stacks import EngineStack, Stacks
from ipar_widgets.widgets.loop import UpdateLoop
from ipar_widgets.widgets.progress import ProgressView


@ipp.interactive
def spin(seconds: float) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:  # the spinning line
        pass


@ipp.interactive
def nap(seconds: float) -> None:
    import time

    time.sleep(seconds)  # the sleeping line


@ipp.interactive
def hold_gil(seconds: float) -> int:
    """About ``seconds`` of one C call that never releases the GIL (sum over a range),
    whatever the speed of the machine; returns how many numbers it summed."""
    import time

    def timed() -> float:
        t0 = time.perf_counter()
        sum(range(10**6))
        return time.perf_counter() - t0

    # the fastest of a few: a slow run (another process had the core) would shorten it
    n = int(seconds / max(min(timed() for _ in range(5)), 1e-6) * 10**6)
    sum(range(n))  # the GIL-holding line
    return n


@pytest.fixture(scope="module", autouse=True)
def engines_answer(shared_cluster: Any) -> None:
    """An engine registers before its kernel is up, and reads its control channel once it
    is: wait (once per module) until all four answer, so a test's first question is."""
    rc = shared_cluster.rc
    rc.wait_for_engines(4, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        found = rc.stacks(timeout=2)
        if [s.state for s in found.values()] == ["idle"] * 4:
            return
        assert time.monotonic() < deadline, f"the engines never all answered:\n{found}"


def line_of(fn: Callable[..., Any], marker: str) -> tuple[int, str]:
    """The line number and the stripped text of the line of ``fn`` that holds ``marker``."""
    lines, first = inspect.getsourcelines(fn)
    [(i, text)] = [(i, t) for i, t in enumerate(lines) if marker in t]
    return first + i, text.strip()


def wait_for_stack(rc: Any, engine: int, function: str, timeout: float = 15) -> EngineStack:
    """Ask until ``engine`` answers that it runs ``function`` with a frame of it (the task
    may still be on its way to the engine)."""
    deadline = time.monotonic() + timeout
    while True:
        stack = rc.stacks(targets=[engine], timeout=2)[engine]
        if stack.function == function and any(f.function == function for f in stack.frames):
            return stack
        assert time.monotonic() < deadline, f"engine {engine} never showed {function}: {stack}"
        time.sleep(0.02)


def interrupt(rc: Any, engine: int, ar: Any) -> None:
    """End a task by Ctrl-C, and check it ended that way."""
    rc.send_signal(signal.SIGINT, targets=[engine])
    with pytest.raises(ipp.RemoteError) as info:
        ar.get(timeout=30)
    assert info.value.ename == "KeyboardInterrupt"


def test_a_pure_python_loop_shows_the_function_and_its_line(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[1].apply_async(spin, 60)
    try:
        stack = wait_for_stack(rc, 1, "spin")
    finally:
        interrupt(rc, 1, ar)
    lineno, text = line_of(spin, "the spinning line")
    assert stack.state == "busy" and stack.task == ar.msg_ids[0]
    assert stack.running_for is not None and 0 <= stack.running_for < 30
    # a loop of C calls that create no frames: the user's frame is the innermost one
    assert [(f.function, f.lineno, f.line) for f in stack.frames] == [("spin", lineno, text)]
    assert stack.frames[0].filename == __file__
    lines = str(stack).splitlines()
    assert lines[0].startswith("engine 1: spin, running for ")
    assert lines[0].endswith(f" (task {ar.msg_ids[0]})")
    assert lines[1:] == [f"    {__file__}:{lineno} in spin", f"        {text}"]
    html = stack._repr_html_()
    assert f"test_stacks.py:{lineno}" in html and "while time.monotonic() &lt; end:" in html


def test_a_task_asleep_in_c_code_shows_the_sleeping_line(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[2].apply_async(nap, 60)
    try:
        stack = wait_for_stack(rc, 2, "nap")
    finally:
        interrupt(rc, 2, ar)
    lineno, text = line_of(nap, "the sleeping line")
    assert text == "time.sleep(seconds)  # the sleeping line"
    assert stack.innermost is not None
    assert (stack.innermost.function, stack.innermost.lineno, stack.innermost.line) == (
        "nap",
        lineno,
        text,
    )


def test_straggler_first_and_each_job_lists_its_own_engines(rc) -> None:  # type: ignore[no-untyped-def]
    first = rc[2].apply_async(spin, 60)
    second = None
    try:
        wait_for_stack(rc, 2, "spin")
        second = rc[0].apply_async(nap, 60)
        wait_for_stack(rc, 0, "nap")
        found = rc.stacks(timeout=5)
        assert isinstance(found, Stacks)
        # engine 2's task started first: it is the straggler; the idle engines come last
        assert list(found) == [2, 0, 1, 3]
        assert [s.state for s in found.values()] == ["busy", "busy", "idle", "idle"]
        assert found[2].running_for > found[0].running_for  # type: ignore[operator]
        mine = first.stacks(timeout=5)
        assert list(mine) == [2] and mine[2].task == first.msg_ids[0]
        theirs = second.stacks(timeout=5)
        assert list(theirs) == [0] and theirs[0].function == "nap"
        text = str(found).splitlines()
        assert text[0].startswith("engine 2: spin, running for ")
        assert text[-2:] == ["engine 1: idle: runs no task", "engine 3: idle: runs no task"]
    finally:
        interrupt(rc, 2, first)
        if second is not None:
            interrupt(rc, 0, second)
    assert first.stacks(timeout=5) == {}  # over: no engine runs its tasks
    assert str(first.stacks(timeout=5)) == "None of the tasks asked about is running now."


def test_idle_and_unknown_engines(rc) -> None:  # type: ignore[no-untyped-def]
    found = rc.stacks(targets=[3], timeout=5)
    assert list(found) == [3]
    assert found[3] == EngineStack(3, "idle", note="idle: runs no task")
    assert str(found[3]) == "engine 3: idle: runs no task"
    with pytest.raises(
        IndexError, match=r"No such engine: 99 \(registered engines: \[0, 1, 2, 3\]\)"
    ):
        rc.stacks(targets=[99])
    with pytest.raises(ValueError, match="must be a positive number of seconds, found 0"):
        rc.stacks(timeout=0)


def test_a_task_holding_the_gil_gets_an_answer_within_the_timeout(rc) -> None:  # type: ignore[no-untyped-def]
    # the test needs 2 s of it; more, since a loaded machine makes the measured speed vary
    ar = rc[3].apply_async(hold_gil, 6.0)
    deadline = time.monotonic() + 15
    while True:  # until the engine is inside sum(): it stops answering
        stack = rc.stacks(targets=[3], timeout=0.5)[3]
        if stack.state == "no answer":
            break
        # idle: the task is on its way; busy: it is measuring the machine
        assert stack.state in ("idle", "busy") and not ar.ready(), stack
        assert time.monotonic() < deadline, f"engine 3 kept answering: {stack}"
        time.sleep(0.02)
    t0 = time.monotonic()
    found = rc.stacks(timeout=1.0)
    took = time.monotonic() - t0
    mine = ar.stacks(timeout=0.5)
    assert not ar.ready(), "the task ended before the test asked: make it longer"
    assert took < 1.5
    # the other engines answered in the same call; engine 3 says why it could not
    assert [(e, s.state) for e, s in found.items()] == [
        (3, "no answer"),
        (0, "idle"),
        (1, "idle"),
        (2, "idle"),
    ]
    silent = found[3]
    assert silent.task == ar.msg_ids[0] and silent.frames == ()
    assert silent.running_for is not None and silent.running_for > 0
    title, note = str(silent).splitlines()
    assert title == (
        f"engine 3: no answer (task {ar.msg_ids[0]}, busy for "
        f"{silent.running_for:.1f} s per the controller)"
    )
    gil = (
        "    did not answer within 1 s: probably its task holds the GIL in C code (a long "
        "call into a C extension, a regular expression that backtracks), which keeps the "
        "engine's control thread from running; its Python stack can be read once that call "
        "returns"
    )
    assert note == gil
    assert list(mine) == [3] and mine[3].state == "no answer"
    assert ar.get(timeout=60) > 10**6
    # the late answers were dropped: the engine answers for what it does now
    assert str(rc.stacks(targets=[3], timeout=5)) == "engine 3: idle: runs no task"


def test_the_widgets_button_fills_the_stacks_area(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].apply_async(spin, 60)  # one task per engine
    loop = UpdateLoop()
    view = ProgressView(ar, loop=loop, placement=False)
    assert view.stacks_button.description == "Where is it stuck?"
    assert view.stacks_button.layout.display == ""
    assert view.stacks_button in view.controls.children
    assert view.stacks_area is None  # made at the first click, complete
    loop.add(view)
    try:
        for engine in range(4):
            wait_for_stack(rc, engine, "spin")
        view._on_stacks()  # what a click runs (in a subshell, in a kernel)
        assert not view.stacks_asking

        # the loop's refresh during the wait may have shown "Asking..." first: the answer
        # comes with the refresh after the click returned
        def answer_shown() -> bool:
            area = view.stacks_area
            return (
                area is not None
                and area in view.box.children
                and "Where the running tasks were at " in area.value
            )

        wait_until(answer_shown, 10, 0.05, "the update loop to show the stacks' answer")
        assert "ipar-stacks" in view.stacks_area._dom_classes
        lineno, _ = line_of(spin, "the spinning line")
        value = view.stacks_area.value
        assert "Where the running tasks were at " in value
        assert value.count("<details") == 4 and value.count("<details open>") == 1
        for engine in range(4):
            assert f"engine {engine}: spin, running for " in value
        assert value.count(f"at test_stacks.py:{lineno}</span>") == 4
    finally:
        rc.send_signal(signal.SIGINT)
        assert ar.wait(timeout=30)
        loop.finish(view)
        loop.remove(view)
    assert view.controls.children == ()  # the final update: no button once the job ended
    assert view.stacks_button not in view.controls.children


def test_a_dead_engine_is_gone(make_cluster) -> None:  # type: ignore[no-untyped-def]
    import psutil

    handle = make_cluster(n=2)
    rc = handle.rc
    rc.wait_for_engines(2, timeout=30)
    pids = rc[:].apply_sync(os.getpid)  # both kernels are up: they answer
    proc = psutil.Process(pids[1])
    proc.kill()
    proc.wait(timeout=10)
    # (asked before the controller noticed, it says "gone": engine 1's control connection
    # is closed; how soon it notices varies, so only what follows is checked)
    deadline = time.monotonic() + 30
    while 1 in rc.ids:  # the controller's notice that the engine left
        assert time.monotonic() < deadline, "the controller never noticed the dead engine"
        time.sleep(0.05)
    with pytest.raises(IndexError, match=r"No such engine: 1 \(registered engines: \[0\]\)"):
        rc.stacks(targets=[1])
    assert str(rc.stacks(timeout=5)) == "engine 0: idle: runs no task"


def test_a_builtin_as_the_task_has_no_frame_of_its_own(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[0].apply_async(time.sleep, 60)
    try:
        deadline = time.monotonic() + 15
        while (stack := rc.stacks(targets=[0], timeout=2)[0]).function != "sleep":
            assert time.monotonic() < deadline, f"engine 0 never showed the task: {stack}"
            time.sleep(0.02)
    finally:
        interrupt(rc, 0, ar)
    assert stack.state == "busy" and stack.frames == ()
    assert stack.note == (
        "no Python frame of its own: the task's function is C code (a built-in such as "
        "time.sleep), called directly"
    )
    assert str(stack).splitlines()[1] == f"    {stack.note}"


def test_the_button_answers_while_the_cell_blocks(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    """In a real kernel: the click on "Where is it stuck?", sent while ``wait_interactive``
    blocks the cell, is handled at once (our subshell), and the stacks area shows each
    engine's line, read from the notebook's own cell (the engines do not have its file)."""
    profile = shared_cluster.cluster.profile
    with kernel(
        "import time, ipar_widgets as ipp\n"
        f"rc = ipp.Client(profile={profile!r})\nrc.wait_for_engines(4, timeout=30)\n"
        "def work(seconds):\n"
        "    import time\n"
        "    time.sleep(seconds)  # where it waits\n"
    ) as kc:
        msg_id = kc.execute("rc[:].apply_async(work, 6).wait_interactive()")
        button: str | None = None
        area: str | None = None
        shown, ended = "", None
        t0 = time.monotonic()

        def on_message(msg: dict[str, Any]) -> None:
            nonlocal button, area, shown, ended
            kind, content = msg["msg_type"], msg["content"]
            state = content.get("data", {}).get("state", {}) if kind.startswith("comm") else {}
            if kind == "comm_open" and state.get("description") == "Where is it stuck?":
                button = content["comm_id"]
            elif kind == "comm_msg" and button and "4 running" in str(state.get("value", "")):
                click(kc, button)  # the first wave runs: click, as JupyterLab would
                button = None
            if kind == "comm_open" and "ipar-stacks" in state.get("_dom_classes", ()):
                area = content["comm_id"]  # made at the click, opened with its first value
            if (
                kind in ("comm_open", "comm_msg")
                and content["comm_id"] == area
                and "<details" in str(state.get("value", ""))
            ):
                shown, ended = state["value"], time.monotonic() - t0

        follow_cell(kc, msg_id, on_message)
        cell_took = time.monotonic() - t0
    assert shown, "the stacks area was never filled"
    assert ended is not None and ended < cell_took - 1.0  # while the cell still blocked
    for engine in range(4):
        assert f"engine {engine}: work, running for " in shown
    assert shown.count("time.sleep(seconds)  # where it waits") == 4


def test_code_run_with_execute_shows_the_cells_line(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[1].execute("import time\nx = 1\ntime.sleep(60)\n", block=False)
    try:
        deadline = time.monotonic() + 15
        while not (stack := rc.stacks(targets=[1], timeout=2)[1]).frames:
            assert time.monotonic() < deadline, f"engine 1 never showed the cell: {stack}"
            time.sleep(0.02)
    finally:
        interrupt(rc, 1, ar)
    assert (stack.method, stack.function, stack.task) == ("execute", None, ar.msg_ids[0])
    [frame] = stack.frames
    assert (frame.function, frame.lineno, frame.line) == ("<module>", 3, "time.sleep(60)")
    assert str(stack).splitlines()[0].startswith("engine 1: code (execute), running for ")
