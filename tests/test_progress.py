"""wait_interactive outside a notebook: the text display, its choice, and the estimates."""

from __future__ import annotations

import io
import re
import time

import pytest

from ipar_widgets.client.frontend import wait_interactive
from ipar_widgets.progress import ProgressTracker, widgets_wanted
from ipar_widgets.progress.snapshot import Snapshot, estimate_eta
from ipar_widgets.progress.terminal import TerminalDisplay, format_eta, status_line, summary_line


class FakeTTY(io.StringIO):
    """A StringIO that says it is a terminal (what a pty gives, without one)."""

    def isatty(self) -> bool:
        return True


def test_tty_redraws_one_line_then_prints_the_summary(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(time.sleep, [0.05] * 24)
    out = FakeTTY()
    wait_interactive(ar, interval=0.05, timeout=30, widget=False, stream=out)
    text = out.getvalue()
    frames = text.split("\r")
    assert len(frames) >= 4  # redrawn in place, several times
    assert "\n" not in "".join(frames[:-1])  # ... on one line
    assert frames[1].startswith("sleep: 0/24 done")
    summary = frames[-1]
    assert re.fullmatch(
        r"sleep: 24/24 tasks done \(0 failed\); serial \d+\.\d s, wall \d+\.\d s, "
        r"speedup \d+\.\dx\n",
        summary,
    ), summary


def test_logs_get_sparse_whole_lines(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc.load_balanced_view().map(time.sleep, [0.01] * 200)
    out = io.StringIO()
    wait_interactive(ar, interval=0.01, timeout=60, widget=False, stream=out)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 12  # at most one per tenth of the work, plus the summary
    assert lines[-1].startswith("sleep: 200/200 tasks done (0 failed); serial ")
    done = [int(m.group(1)) for line in lines[:-1] if (m := re.match(r"sleep: (\d+)/200", line))]
    assert done == sorted(done)


def test_timeout_and_return_when(rc) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import FIRST_COMPLETED

    ar = rc.load_balanced_view().map(time.sleep, [0.05, 1.0])
    out = io.StringIO()
    wait_interactive(ar, timeout=30, widget=False, return_when=FIRST_COMPLETED, stream=out)
    assert not ar.ready() and ar.progress == 1
    assert out.getvalue().splitlines()[-1].endswith("(stopped waiting before the end)")
    with pytest.raises(TimeoutError, match=r"sleep: not done after 0.1 s"):
        wait_interactive(ar, timeout=0.1, widget=False, stream=io.StringIO())
    ar.get(timeout=30)


def test_failures_and_speedup_in_the_summary(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].map(lambda x: 1 / x, [1, 0, 2, 4, 0, 5, 6, 7])
    out = io.StringIO()
    wait_interactive(ar, timeout=30, widget=False, stream=out)
    *_, summary, failures = out.getvalue().splitlines()
    assert summary.startswith("<lambda>: 8/8 tasks done (4 failed); serial ")
    assert failures == "failed: ZeroDivisionError: division by zero ×2"
    snap = ProgressTracker(ar).snapshot()
    assert (snap.done, snap.failed, snap.failed_tasks) == (4, 4, 2)
    assert snap.first_error is not None and snap.first_error.ename == "ZeroDivisionError"


def test_the_choice_of_display(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert widgets_wanted(None) is False  # pytest is not a kernel
    assert widgets_wanted(True) is True and widgets_wanted(False) is False
    monkeypatch.setenv("IPAR_NONINTERACTIVE", "1")
    assert widgets_wanted(True) is False


def test_eta_from_quartiles_and_its_text() -> None:
    assert estimate_eta([1.0, 1.0], remaining=10, workers=2) is None  # too few tasks yet
    assert estimate_eta([1.0, 2.0, 3.0], remaining=0, workers=2) == (0.0, 0.0, 0.0)
    # median 2.5, quartiles 1.75 and 3.25 of [1, 2, 3, 4]; 8 items left on 4 engines: 2 waves
    assert estimate_eta([1.0, 2.0, 3.0, 4.0], remaining=8, workers=4) == (3.5, 5.0, 6.5)
    assert format_eta((9.0, 12.0, 15.0)) == "about 12 s (9-15 s)"
    assert format_eta((0.4, 0.6, 0.9)) == "about 0.6 s (0.4-0.9 s)"
    assert format_eta((50.0, 75.0, 130.0)) == "about 1m15s (50.0 s-2m10s)"


def test_status_and_summary_lines() -> None:
    snap = Snapshot(
        fname="f",
        total=40,
        done=10,
        failed=2,
        aborted=3,
        elapsed=4.0,
        serial_time=12.0,
        eta=(3.0, 4.0, 5.0),
    )
    assert status_line(snap) == (
        "f: 15/40 done, 2 failed, 3 aborted, 4.0 s elapsed, about 4.0 s (3.0-5.0 s) left, 3.8/s"
    )
    done = Snapshot(
        fname="f", total=4, done=4, elapsed=2.0, wall_time=2.0, serial_time=7.0, ready=True
    )
    assert (
        summary_line(done) == "f: 4/4 tasks done (0 failed); serial 7.0 s, wall 2.0 s, speedup 3.5x"
    )
    assert TerminalDisplay(io.StringIO()).tty is False
