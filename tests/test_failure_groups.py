"""Failed tasks grouped by exception type and message pattern (progress/failures.py): the
normalisation and the groups alone, then a real cluster's map through the snapshot, the
widget's model, the static HTML and the terminal line."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import wait_until
from test_job import HandMadeJob

import ipar_widgets as ipp
from ipar_widgets.client.job import RetriedTasks
from ipar_widgets.client.metadata import Metadata
from ipar_widgets.error import RemoteError
from ipar_widgets.progress import ProgressTracker, wait_in_terminal
from ipar_widgets.progress.failures import FailureGroups, groups_line, message_pattern
from ipar_widgets.widgets.html import progress_html, progress_text
from ipar_widgets.widgets.loop import UpdateLoop, apply
from ipar_widgets.widgets.progress import ProgressView


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ("bad input 17", "bad input <n>"),
        ("bad input -4.5e3 at step 2", "bad input <n> at step <n>"),
        ("'key-3'", "<str>"),
        ('no file "data/run 7.csv" here', "no file <str> here"),
        ("object at 0x7f3a2b10 is gone", "object at <hex> is gone"),
        ("hash deadbeef1234 differs", "hash <hex> differs"),
        ("task 3f2a1b2c-1111-2222-3333-444455556666 lost", "task <uuid> lost"),
        ("float64 and x2 stay, 12 goes", "float64 and x2 stay, <n> goes"),
        ("id 12345678", "id <n>"),
        (
            "engine 3 died while it held task 5f3ca2b14e1f_17: killed by SIGKILL",
            "engine <n> died while it held task <msg_id>: killed by SIGKILL",
        ),
        ("first line 1\n  detail 2", "first line <n>"),
        ("  spaced\t  out  ", "spaced out"),
        ("", ""),
    ],
)
def test_the_message_pattern_folds_what_varies(message: str, pattern: str) -> None:
    assert message_pattern(message) == pattern


def test_a_long_message_is_cut() -> None:
    assert message_pattern("x" * 500) == "x" * 119 + "…"


def _err(ename: str, evalue: str, engine_id: int = 0) -> RemoteError:
    return RemoteError(ename, evalue, f"Traceback\n{ename}: {evalue}", {"engine_id": engine_id})


def test_groups_count_by_type_and_pattern_most_frequent_first() -> None:
    groups = FailureGroups()
    groups.add("a", _err("KeyError", "'x'", 1), 1)
    for i, n in enumerate([17, 42, 3]):
        groups.add(f"v{i}", _err("ValueError", f"bad input {n}", 2), 2)
    groups.add("m", _err("MemoryError", ""), None)
    groups.add("v0", _err("ValueError", "bad input 99"))  # once per task
    got = groups.groups()
    assert [(g.label, g.msg_ids) for g in got] == [
        ("ValueError: bad input <n> ×3", ("v0", "v1", "v2")),
        ("KeyError: <str> ×1", ("a",)),
        ("MemoryError ×1", ("m",)),
    ]
    assert (got[0].engine_id, got[0].evalue) == (2, "bad input 17")
    assert got[0].traceback == "Traceback\nValueError: bad input 17"
    assert groups.groups() is got  # nothing changed: the same tuple
    assert groups_line(got, limit=2) == "ValueError: bad input <n> ×3, KeyError: <str> ×1, +1 more"
    # a retried task leaves its group; the next one becomes the group's first
    assert groups.remove("v0") and not groups.remove("v0")
    groups.remove("a")
    got = groups.groups()
    assert [g.label for g in got] == ["ValueError: bad input <n> ×2", "MemoryError ×1"]
    assert got[0].evalue == "bad input 42"


def test_arguments_notes_then_reprs() -> None:
    groups = FailureGroups()
    for i in range(5):
        groups.add(f"t{i}", _err("ValueError", f"bad input {i}"))
    assert groups.wanting_arguments() == ["t0", "t1", "t2"]  # the first three are shown
    groups.note_arguments(["t0", "t1", "t2"], "fetching arguments…")
    assert groups.wanting_arguments() == []
    assert groups.groups()[0].args_note == "fetching arguments…"
    groups.set_arguments({"t0": "[0]", "t1": None, "t2": "[2]"}, "no record")
    [group] = groups.groups()
    assert (group.args, group.args_note) == (("[0]", "[2]"), "no record")


@ipp.interactive
def picky(x: int) -> int:
    if x == 5:
        raise KeyError(f"key-{x}")
    if x % 4 == 0:
        raise ValueError(f"bad input {x}")
    return x


def test_a_map_with_two_kinds_of_failure(rc) -> None:  # type: ignore[no-untyped-def]
    # 12 items one per task: 0, 4, 8 raise ValueError with their number, 5 a KeyError
    ar = rc.load_balanced_view().map(picky, range(12))
    out = io.StringIO()
    wait_in_terminal(ar, timeout=30, stream=out)
    assert out.getvalue().splitlines()[-1] == (
        "failed: ValueError: bad input <n> ×3, KeyError: <str> ×1"
    )

    view = ProgressView(ar, loop=UpdateLoop(), placement=False)
    apply(view.changes(final=True))
    snap = view.last_snapshot
    assert snap is not None and (snap.failed, snap.failed_tasks, snap.done) == (4, 4, 8)
    # item i is task i; a group's first task is the first to arrive (any of 0, 4, 8)
    item = {msg_id: i for i, msg_id in enumerate(ar.msg_ids)}
    values, keys = snap.failure_groups
    assert sorted(item[m] for m in values.msg_ids) == [0, 4, 8]
    assert [(g.label, g.evalue) for g in snap.failure_groups] == [
        ("ValueError: bad input <n> ×3", f"bad input {item[values.msg_ids[0]]}"),
        ("KeyError: <str> ×1", "'key-5'"),
    ]
    assert view.failure is not None and view.failure in view.box.children
    assert view.failure._dom_classes == ("ipar-failure-groups",)
    assert view.failure.titles == ("ValueError: bad input <n> ×3", "KeyError: <str> ×1")
    first = view.failure.children[0].value
    assert f"ValueError: {values.evalue}" in first and "\x1b[" not in first
    assert view.retry_button.description == "Retry failed"
    assert view.retry_button.layout.display == ""

    # showing the groups fetched their first tasks' arguments, off this thread
    def args_in() -> bool:
        return all(g.args for g in view.tracker.snapshot().failure_groups)

    wait_until(args_in, 10, what="the failed tasks' arguments")
    apply(view.changes(final=True))
    snap = view.last_snapshot
    assert snap is not None
    assert [g.args for g in snap.failure_groups] == [
        tuple(str(item[m]) for m in values.msg_ids),
        ("5",),
    ]
    assert f"<code>{item[values.msg_ids[0]]}</code>" in view.failure.children[0].value
    assert "<code>5</code>" in view.failure.children[1].value

    page = progress_html(snap)
    assert 'class="ipar-failure-groups"' in page
    summaries = re.findall(r'<summary class="ipar-failed">(.*?)</summary>', page)
    assert [html.unescape(t) for t in summaries] == [
        "ValueError: bad input <n> ×3",
        "KeyError: <str> ×1",
    ]
    assert progress_text(snap).splitlines()[-1] == (
        "failed: ValueError: bad input <n> ×3, KeyError: <str> ×1"
    )


@ipp.interactive
def in_case(x: int) -> int:
    """Thirteen kinds of failure: "case a" .. "case m"; item 13 is "case a" again."""
    raise ValueError("case " + "abcdefghijklm"[x % 13])


def test_more_groups_than_shown_are_counted_under_them(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(in_case, range(14))
    ar.wait(30)
    view = ProgressView(ar, loop=UpdateLoop(), placement=False)
    apply(view.changes(final=True))
    snap = view.last_snapshot
    assert snap is not None and len(snap.failure_groups) == 13
    assert view.failure is not None and len(view.failure.titles) == 10
    assert view.failure.titles[0] == "ValueError: case a ×2"
    # the three groups not shown are counted on a line of their own, under the groups
    more = view.more_failures
    assert more is not None
    children = list(view.box.children)
    assert children.index(more) == children.index(view.failure) + 1
    line = '<div class="ipar-muted">and 3 more kinds of failure (3 tasks)</div>'
    assert more.value == line
    assert line in progress_html(snap)  # the static picture says the same


class RetriedHandMadeJob(HandMadeJob):
    """test_job's hand-made job, with the RetriedTasks seam: the test replaces tasks."""

    def __init__(self) -> None:
        super().__init__([0, 1])
        self.replacements: list[tuple[str, str]] = []

    def replaced_since(self, count: int) -> list[tuple[str, str]]:
        return self.replacements[count:]

    def retry_failed(self, block: bool = False, timeout: float | None = -1) -> object:
        raise AssertionError("the test replaces tasks itself")

    def add_retry_callback(self, fn: Callable[[Any], object]) -> None:
        raise AssertionError("not used here")

    def replace(self, position: int, new: str, at: datetime) -> None:
        with self._cond:
            self.replacements.append((self.msg_ids[position], new))
            self.msg_ids[position] = new
            self.task_metadata[position] = Metadata(msg_id=new, submitted=at)
            self.over = False

    def finish(self, msg_id: str, value: Any) -> None:
        with self._cond:
            self.arrived.append((msg_id, value))
            self.over = set(self.msg_ids) <= {m for m, _ in self.arrived}


def test_a_retry_takes_failures_out_of_the_snapshot() -> None:
    job = RetriedHandMadeJob()
    assert isinstance(job, RetriedTasks)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(4):
        md = job.submit(f"m{i}", t0)
        md.update(engine_id=i % 2, started=t0, completed=t0 + timedelta(seconds=1))
    job.finish("m0", 0)
    job.finish("m1", _err("ValueError", "bad input 1", 1))
    job.finish("m2", _err("ValueError", "bad input 2", 0))
    job.finish("m3", _err("KeyError", "'k'", 1))
    tracker = ProgressTracker(job)
    snap = tracker.snapshot()
    assert (snap.done, snap.failed, snap.ready, snap.serial_time) == (1, 3, True, 4.0)
    assert [g.label for g in snap.failure_groups] == [
        "ValueError: bad input <n> ×2",
        "KeyError: <str> ×1",
    ]
    assert [(r.engine_id, r.failed) for r in snap.engines] == [(0, 1), (1, 2)]

    job.replace(1, "n1", t0)  # m1 runs again as n1
    snap = tracker.snapshot()
    assert (snap.done, snap.failed, snap.pending, snap.retried) == (1, 2, 1, 1)
    assert (snap.ready, snap.state, snap.serial_time) == (False, "running", 3.0)
    assert [(g.label, g.evalue) for g in snap.failure_groups] == [
        ("ValueError: bad input <n> ×1", "bad input 2"),
        ("KeyError: <str> ×1", "'k'"),
    ]
    assert [(r.engine_id, r.failed) for r in snap.engines] == [(0, 1), (1, 1)]
    assert snap.first_error is not None and snap.first_error.evalue == "bad input 2"

    # replaced before any snapshot saw the failure, and the replacement fails again
    job.replace(2, "n2", t0)
    job.replace(3, "n3", t0)
    job.finish("n2", _err("ValueError", "bad input 22", 1))
    job.replace(2, "p2", t0)
    job.finish("n1", 10)
    job.finish("n3", 30)
    job.finish("p2", 20)
    snap = tracker.snapshot()
    assert (snap.done, snap.failed, snap.ready, snap.state) == (4, 0, True, "done")
    assert snap.failure_groups == () and snap.first_error is None and snap.retried == 4
    # a tracker made after the retries sees the same (the replaced failures never count)
    fresh = ProgressTracker(job).snapshot()
    assert (fresh.done, fresh.failed, fresh.retried, fresh.failure_groups) == (4, 0, 4, ())
