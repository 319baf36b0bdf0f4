"""The progress widget's Python model, the static pictures and the update loop's budget.

These run the widgets in the test process (ipywidgets without a kernel: the models hold
their state, nothing is sent) against a real 4-engine cluster.
"""

from __future__ import annotations

import re
import time

import pytest

import ipar_widgets as ipp
from ipar_widgets.progress import ProgressTracker
from ipar_widgets.progress.placement import query_placement
from ipar_widgets.widgets.html import client_html, job_html, progress_html, progress_text
from ipar_widgets.widgets.loop import FINAL_RESERVE, MessageBudget, UpdateLoop
from ipar_widgets.widgets.progress import ProgressView, wait_with_widget
from ipar_widgets.widgets.timeline import timeline


@ipp.interactive
def fails_on_13(x: int) -> int:
    import time

    print(f"item {x}")
    time.sleep(0.01)
    if x == 13:
        raise ValueError(f"bad item {x}")
    return x


def rows_of(html: str) -> list[list[str]]:
    body = html.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in body.split("</tr>")[:-1]]


def test_final_state_of_a_direct_map_with_a_failure(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].map(fails_on_13, range(20))
    ar.wait(timeout=30)
    view = ProgressView(ar, loop=UpdateLoop())
    changes = view.changes(final=True)
    changed = {type(widget).__name__ for widget, _ in changes}
    assert {"IntProgress", "HTML", "HBox", "VBox"} <= changed
    for widget, traits in changes:
        with widget.hold_sync():
            for name, value in traits.items():
                setattr(widget, name, value)
    assert (view.bar.value, view.bar.max, view.bar.bar_style) == (20, 20, "danger")
    assert view.controls.children == ()  # no Cancel once the job ended
    rows = rows_of(view.body.value)
    # engines 0-3 get items 0-4, 5-9, 10-14, 15-19: engine 2's whole chunk failed on item 13
    assert [r[:4] for r in rows] == [
        ["0", "5", "0", "0"],
        ["1", "5", "0", "0"],
        ["2", "0", "0", "5"],
        ["3", "5", "0", "0"],
    ]
    assert [r[-1] for r in rows] == ["item 4", "item 9", "item 13", "item 19"]
    assert "15/20 items done" in view.body.value
    assert '<span class="ipar-failed">5 failed in 1 task</span>' in view.body.value
    assert view.failure is not None and view.failure in view.box.children
    assert view.failure.titles == ("ValueError: bad item <n> ×1",)  # the failure groups
    traceback = view.failure.children[0].value
    assert "first on engine 2: ValueError: bad item 13" in traceback
    assert "ValueError" in traceback and "\x1b[" not in traceback
    # the group's arguments come (a fetch started by showing it), then nothing is left
    deadline = time.monotonic() + 10
    while any(not g.args for g in view.tracker.snapshot().failure_groups):
        assert time.monotonic() < deadline, "the failed task's arguments did not come"
        time.sleep(0.02)
    for widget, traits in view.changes(final=True):
        with widget.hold_sync():
            for name, value in traits.items():
                setattr(widget, name, value)
    assert "<code>[10, 11, 12, 13, 14]</code>" in view.failure.children[0].value
    assert view.changes(final=True) == []  # nothing left to send

    bundle = view.bundle()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.box.model_id
    lines = bundle["text/plain"].splitlines()
    assert lines[0].startswith("fails_on_13: 20/20 tasks done (5 failed); serial ")
    assert lines[1].split() == [
        "engine",
        "done",
        "running",
        "failed",
        "busy",
        "current",
        "task",
        "last",
        "output",
    ]
    assert lines[4].split()[:4] == ["2", "0", "0", "5"]
    assert lines[-1] == "failed: ValueError: bad item <n> ×1"
    assert bundle["text/html"].startswith("<style>")
    assert "<details" in bundle["text/html"] and 'class="ipar-table"' in bundle["text/html"]


def test_failures_of_one_kind_are_one_group(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(fails_on_13, [13, 1, 13, 2, 13])
    ar.wait(timeout=30)
    view = ProgressView(ar, loop=UpdateLoop())
    for widget, traits in view.changes(final=True):
        with widget.hold_sync():
            for name, value in traits.items():
                setattr(widget, name, value)
    assert view.failure is not None
    assert view.failure.titles == ("ValueError: bad item <n> ×3",)
    assert re.search(r"first on engine \d: ValueError: bad item 13", view.failure.children[0].value)
    assert "2/5 items done" in view.body.value and "3 failed" in view.body.value


def test_load_balanced_chunks_count_in_items(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(abs, range(10), chunksize=3)
    assert len(ar.msg_ids) == 4
    ar.get(timeout=30)
    snap = ProgressTracker(ar).snapshot()
    assert (snap.total, snap.done, snap.failed, snap.running, snap.pending) == (10, 10, 0, 0, 0)
    assert sum(r.done for r in snap.engines) == 10
    assert snap.state == "done" and snap.wall_time is not None and snap.eta is None


def test_execute_shows_each_engines_last_line(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].execute("print('first')\nprint('engine says hi')")
    ar.wait(timeout=30)
    snap = ProgressTracker(ar).snapshot()
    assert snap.fname == "execute" and snap.total == 4 and snap.done == 4
    assert [r.last_stdout for r in snap.engines] == ["engine says hi"] * 4


def test_running_tasks_eta_and_straggler(rc) -> None:  # type: ignore[no-untyped-def]
    lv = rc.load_balanced_view()
    ar = lv.map(time.sleep, [0.05] * 12 + [1.5])
    tracker = ProgressTracker(ar)
    results = iter(ar)
    assert [next(results) for _ in range(12)] == [None] * 12  # the short tasks are done
    assert not ar.wait(timeout=0.5)  # the long task runs on: > 3x the 0.05 s median
    snap = tracker.snapshot(query_placement(rc))
    assert (snap.done, snap.running, snap.pending) == (12, 1, 0)
    [slow] = [r for r in snap.engines if r.running]
    assert slow.straggler and slow.current_for is not None and slow.current_for >= 0.5
    assert not any(r.straggler for r in snap.engines if r is not slow)
    assert snap.eta is not None and snap.eta[0] <= snap.eta[1] <= snap.eta[2]
    assert "straggler" in progress_html(snap)
    assert 'class="ipar-straggler"' in progress_html(snap)
    assert snap.busy_engines == 1
    assert ar.wait(timeout=30)


def test_cancel_aborts_what_has_not_started(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(time.sleep, [0.5] * 40)
    view = ProgressView(ar)
    view.show()
    try:
        view._on_cancel()  # at once: at most the first wave (4 tasks) has started
        assert ar.wait(timeout=30)
        results = ar.get(return_exceptions=True)
        aborted = sum(isinstance(r, ipp.TaskAborted) for r in results)
        assert aborted >= 28 and aborted + results.count(None) == 40
        assert view.state_word == "cancelled" and view.cancel_requested
        assert view.note.startswith("Cancelled: the tasks not yet started are aborted.")
        snap = ProgressTracker(ar).snapshot()
        assert snap.aborted == aborted and snap.state == "aborted"
    finally:
        view.loop.remove(view)


def test_timeline_draws_a_row_per_engine_and_a_bar_per_task(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(fails_on_13, range(16))
    ar.wait(timeout=30)
    chart = timeline(ar)
    assert len(chart.bars) == 16 and chart.engines == [0, 1, 2, 3]
    assert [b.status for b in chart.bars].count("error") == 1
    svg = chart.svg()
    assert svg.count('class="ipar-bar-ok"') == 15 and svg.count('class="ipar-bar-error"') == 1
    assert re.findall(r'text-anchor="end">engine (\d+)<', svg) == ["0", "1", "2", "3"]
    html = chart._repr_html_()
    assert html.startswith("<style>") and "16 tasks on 4 engines" in html
    assert all(b.submitted <= b.started <= b.end for b in chart.bars)


def test_reprs_of_client_and_asyncresult(rc) -> None:  # type: ignore[no-untyped-def]
    html = client_html(rc)
    assert "4 engines" in html and len(rows_of(html)) == 4
    assert "var(--jp-ui-font-color1" in html  # themed with JupyterLab's variables
    ar = rc[:].apply_async(lambda: 7)
    ar.get(timeout=30)
    assert rc._repr_html_() is not None
    html = ar._repr_html_()
    assert html == job_html(ar)
    assert "4/4 items done" in html and len(rows_of(html)) == 4


def test_message_budget_is_a_sliding_window() -> None:
    now = [0.0]
    budget = MessageBudget(limit=10, window=1.0, clock=lambda: now[0])
    assert budget.room() == 10 and budget.delay_for(10) == 0.0
    budget.spend(6)
    now[0] = 0.5
    budget.spend(4)
    assert budget.room() == 0
    assert budget.delay_for(1) == pytest.approx(0.5)  # the first 6 leave the window at 1.0
    assert budget.delay_for(7) == pytest.approx(1.0)  # needs the 4 of t=0.5 gone too
    assert budget.delay_for(1, reserve=FINAL_RESERVE) == pytest.approx(0.5)
    now[0] = 1.0
    assert budget.room() == 6


def test_live_widgets_share_one_budget(rc) -> None:  # type: ignore[no-untyped-def]
    """Three live widgets over a map of many short printing tasks: at most 10 messages in
    any second, all of them together; each ends with its final state."""
    loop = UpdateLoop()
    loop.log = []
    lv = rc.load_balanced_view()
    ars = [lv.map(fails_on_13, range(60)) for _ in range(3)]
    views = [ProgressView(ar, loop=loop) for ar in ars]
    for view in views:
        loop.add(view)
    for ar in ars:
        assert ar.wait(timeout=60)
    assert loop.wait_idle(timeout=10)  # the loop sends each final update, then drops the view
    times = [t for t, n in loop.log for _ in range(n)]
    assert times and max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 10
    for view in views:
        assert (view.bar.value, view.bar.bar_style) == (60, "danger")
        assert "59/60 items done" in view.body.value


def test_wait_with_widget_outside_a_kernel_returns_and_times_out(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(time.sleep, [0.05] * 8)
    wait_with_widget(ar, timeout=30)
    assert ar.ready()
    slow = rc.load_balanced_view().map(time.sleep, [1.0])
    with pytest.raises(TimeoutError, match="sleep: not done after 0.2 s"):
        wait_with_widget(slow, timeout=0.2)
    slow.get(timeout=10)


def test_static_text_of_a_running_job() -> None:
    from ipar_widgets.progress.snapshot import EngineRow, Snapshot

    snap = Snapshot(
        fname="f",
        total=40,
        done=12,
        failed=1,
        running=4,
        pending=23,
        elapsed=3.0,
        serial_time=10.0,
        eta=(9.0, 12.0, 15.0),
        engines_total=4,
        engines=(
            EngineRow(0, done=6, running=2, current_for=1.5, last_stdout="x"),
            EngineRow(1, done=6, failed=1, running=2),
        ),
    )
    assert progress_text(snap).splitlines()[0] == (
        "f: 13/40 done, 1 failed, 3.0 s elapsed, about 12 s (9-15 s) left, 4.3/s"
    )
    html = progress_html(snap)
    assert "about 12 s (9-15 s) left" in html and "speedup 3.3x" in html
    assert "2/4 engines busy" in html and "4 running · 23 pending" in html


def test_imap_display_follows_the_iteration(rc) -> None:  # type: ignore[no-untyped-def]
    from ipar_widgets.client.view import LazyMapIterator

    loop = UpdateLoop()
    it = rc.load_balanced_view().imap(fails_on_13, range(10, 30), return_exceptions=True)
    assert isinstance(it, LazyMapIterator) and len(it) == 20 and not it.ready()
    view = ProgressView(it, loop=loop)
    loop.add(view)
    results = list(it)
    assert results[:3] == [10, 11, 12] and isinstance(results[3], ipp.RemoteError)
    assert it.ready() and len(it.msg_ids) == 20
    assert loop.wait_idle(timeout=10)
    assert (view.bar.value, view.bar.max, view.bar.bar_style) == (20, 20, "danger")
    snap = ProgressTracker(it).snapshot()
    assert (snap.fname, snap.done, snap.failed, snap.total) == ("fails_on_13", 19, 1, 20)
    assert snap.first_error is not None and snap.first_error.evalue == "bad item 13"


def test_imap_of_an_endless_generator_counts_what_was_submitted(rc) -> None:  # type: ignore[no-untyped-def]
    import itertools

    it = rc.load_balanced_view().imap(abs, itertools.count(), max_outstanding=2)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    snap = ProgressTracker(it).snapshot()
    # the 5 consumed, and perhaps the (at most 2) tasks in flight
    assert 5 <= snap.done <= len(it.msg_ids) <= 7 and snap.total == len(it.msg_ids)
    assert not snap.ready
