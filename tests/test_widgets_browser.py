"""The progress widget end to end: real JupyterLab, headless Chromium, a real 4-engine cluster.

The notebook's kernel is started by JupyterLab with this session's IPYTHONDIR, so
``ipp.Client(profile=...)`` in a cell finds the cluster the test started.  Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from lab import new_notebook, open_lab, run_cell, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


# JS: the index-th cell of the notebook panel, or null
_CELL = (
    "(([panel, index]) => document.querySelectorAll('#' + panel + ' .jp-Notebook .jp-Cell')[index])"
)


def cell(panel: str, index: int) -> tuple[str, int]:
    return (panel, index)


def bar_width(page: Any, where: tuple[str, int]) -> str | None:
    return page.evaluate(
        f"""(args) => {{
            const c = {_CELL}(args);
            const bar = c && c.querySelector('.jp-OutputArea-output .widget-hprogress .progress-bar');
            return bar ? bar.style.width : null;
        }}""",
        list(where),
    )


def table_rows(page: Any, where: tuple[str, int]) -> list[list[str]]:
    return page.evaluate(
        f"""(args) => {{
            const c = {_CELL}(args);
            if (!c) return [];
            return Array.from(c.querySelectorAll('.jp-OutputArea-output .widget-html table.ipar-table tbody tr'))
              .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.textContent));
        }}""",
        list(where),
    )


def output_text(page: Any, where: tuple[str, int]) -> str:
    return page.evaluate(
        f"""(args) => {{
            const c = {_CELL}(args);
            if (!c) return '';
            return Array.from(c.querySelectorAll('.jp-OutputArea-output')).map(e => e.textContent).join('\\n');
        }}""",
        list(where),
    )


def button(page: Any, where: tuple[str, int], text: str) -> Any:
    panel, index = where
    return (
        page.locator(f"#{panel} .jp-Notebook .jp-Cell")
        .nth(index)
        .locator(".jp-OutputArea-output button", has_text=text)
    )


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)  # polling the DOM from outside the page: nothing to be notified by


def test_live_progress_and_cancel_in_jupyterlab(lab, page, make_cluster, profile) -> None:  # type: ignore[no-untyped-def]
    make_cluster(n=4)
    open_lab(page, lab)
    panel = new_notebook(page)
    run_cell(
        page,
        panel,
        (
            "import time, ipar_widgets as ipp\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(4, timeout=30)\n"
            "lv = rc.load_balanced_view()\n"
            "ar = lv.map(time.sleep, [0.1] * 40)\n"
            "ar.wait_interactive()"
        ),
    )
    first = cell(panel, 0)
    # the bar: record every width it shows until it reaches 100%
    seen: list[str] = []

    def reached_full() -> bool:
        width = bar_width(page, first)
        if width is not None and (not seen or seen[-1] != width):
            seen.append(width)
            if len(seen) == 2:
                save_screenshot(page, "progress-running")
        return width == "100%"

    wait_for(reached_full, 90, "the progress bar to reach 100%", poll=0.03)
    percents = [float(w.rstrip("%")) for w in seen]
    assert percents == sorted(percents), seen
    assert any(0 < p < 100 for p in percents), f"the bar never showed an intermediate value: {seen}"
    rows = wait_for(
        lambda: (r := table_rows(page, first)) and sum(int(x[1]) for x in r) == 40 and r,
        10,
        "the final table",
    )
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    assert sum(int(r[1]) for r in rows) == 40  # done
    assert all(r[2] == "0" and r[3] == "0" for r in rows)  # none running, none failed
    text = output_text(page, first)
    assert "40/40 items done" in text and "speedup" in text
    save_screenshot(page, "progress-done")

    # a longer map: Cancel aborts what has not started, then interrupt what runs
    run_cell(
        page,
        panel,
        (
            "t0 = time.monotonic()\n"
            "ar2 = lv.map(time.sleep, [3.0] * 40)\n"
            "ar2.wait_interactive()\n"
            "print('returned after', round(time.monotonic() - t0, 1))"
        ),
    )
    second = cell(panel, 1)
    cancel = button(page, second, "Cancel")
    cancel.wait_for(state="visible", timeout=60_000)
    wait_for(lambda: "4 running" in output_text(page, second), 30, "the 4 engines to be busy")
    cancel.click()
    wait_for(lambda: "cancelled" in output_text(page, second), 10, "the widget to say cancelled")
    interrupt = button(page, second, "Interrupt running tasks")
    interrupt.wait_for(state="visible", timeout=10_000)
    save_screenshot(page, "progress-cancelled")
    interrupt.click()
    out = wait_for(
        lambda: re.search(r"returned after ([\d.]+)", output_text(page, second)),
        30,
        "the cell to return",
    )
    assert float(out.group(1)) < 6.0  # 40 tasks of 3 s on 4 engines would take 30 s
    save_screenshot(page, "progress-interrupted")

    run_cell(
        page,
        panel,
        (
            "import json\n"
            "res = ar2.get(return_exceptions=True)\n"
            "kinds = [type(r).__name__ if isinstance(r, BaseException) else 'ok' for r in res]\n"
            "print('COUNTS', json.dumps({k: kinds.count(k) for k in set(kinds)}))"
        ),
    )
    third = cell(panel, 2)
    found = wait_for(
        lambda: re.search(r"COUNTS (\{.*\})", output_text(page, third)), 30, "the counts"
    )
    counts = json.loads(found.group(1))
    assert sum(counts.values()) == 40
    assert counts.get("TaskAborted", 0) == 40 - counts.get("ok", 0) - counts.get("RemoteError", 0)
    assert counts["TaskAborted"] >= 32  # at most the 4 running tasks (and 4 more) were not aborted
    assert counts.get("RemoteError", 0) == 4, counts  # the interrupted ones: KeyboardInterrupt
    text = output_text(page, second)
    assert f"{counts['TaskAborted']} aborted" in text


def _luminance(css_color: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"[\d.]+", css_color)[:3])
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def test_reprs_and_timeline_follow_the_dark_theme(lab, page, make_cluster, profile) -> None:  # type: ignore[no-untyped-def]
    make_cluster(n=2)
    open_lab(page, lab, theme="JupyterLab Dark")
    panel = new_notebook(page)
    run_cell(
        page,
        panel,
        (
            "import ipar_widgets as ipp\n"
            "from IPython.display import display\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(2, timeout=30)\n"
            "ar = rc[:].map(abs, range(8))\n"
            "ar.wait(30)\n"
            "display(rc)\n"
            "display(ar)\n"
            "display(ar.timeline())"
        ),
    )
    colors = wait_for(
        lambda: page.evaluate(
            f"""() => {{
                const out = document.querySelectorAll('#{panel} .jp-OutputArea-output');
                const td = document.querySelectorAll('#{panel} .jp-OutputArea-output table.ipar-table td');
                const text = document.querySelector('#{panel} .jp-OutputArea-output svg.ipar-timeline text');
                const bg = document.querySelector('#{panel} .jp-OutputArea-output');
                if (td.length < 4 || !text) return null;
                return {{td: getComputedStyle(td[0]).color, svg: getComputedStyle(text).fill,
                         bg: getComputedStyle(document.querySelector('#{panel} .jp-Notebook')).backgroundColor,
                         rows: td.length, outputs: out.length}};
            }}"""
        ),
        60,
        "the reprs and the timeline",
    )
    save_screenshot(page, "reprs-dark-theme")
    assert _luminance(colors["bg"]) < 0.3, colors  # the dark theme is on
    assert _luminance(colors["td"]) > 0.6, colors  # and our text follows it
    assert _luminance(colors["svg"]) > 0.6, colors
    text = output_text(page, (panel, 0))
    assert "2 engines (0 busy)" in text and "8/8 items done" in text
    assert "abs: 2 tasks on 2 engines" in text
