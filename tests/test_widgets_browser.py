"""The progress widget end to end: real JupyterLab, headless Chromium, a real 4-engine cluster.

The notebook's kernel is started by JupyterLab with this session's IPYTHONDIR, so
``ipp.Client(profile=...)`` in a cell finds the cluster the test started.  Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
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


# -- ar.display(): the final state, the notification, both themes ------------------------------

#: JS: the text of every JupyterLab toast now shown (react-toastify, JupyterLab 4.x)
_TOASTS = "() => Array.from(document.querySelectorAll('.Toastify__toast')).map(t => t.textContent)"


def toast_with(page: Any, text: str, timeout: float = 30) -> str:
    """The text of the toast that contains ``text``, once it is shown."""
    found: str = wait_for(
        lambda: next((t for t in page.evaluate(_TOASTS) if text in t), None),
        timeout,
        f"a toast saying {text!r}",
    )
    return found


def settle(page: Any) -> None:
    """Before a screenshot: the theme-change splash gone, the toasts' slide-in finished
    (spinners run forever: only animations that end are waited for, 5 s at most)."""
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
    page.evaluate(
        """() => Promise.race([
            Promise.all(document.getAnimations()
                .filter(a => a.effect && a.effect.getTiming().iterations !== Infinity)
                .map(a => a.finished.catch(() => null))),
            new Promise(r => setTimeout(r, 5000)),
        ])"""
    )


def _rgba(css: str) -> tuple[float, float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", css)]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0)


def contrast(fg_css: str, bg_css: str) -> float:
    """WCAG contrast ratio of text colour ``fg_css`` (alpha blended) on ``bg_css``."""
    fr, fgc, fb, fa = _rgba(fg_css)
    br, bgc, bb, _ = _rgba(bg_css)
    blended = [fa * f + (1 - fa) * b for f, b in ((fr, br), (fgc, bgc), (fb, bb))]

    def lum(rgb: list[float] | tuple[float, ...]) -> float:
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((lum(blended), lum((br, bgc, bb))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def widget_colors(page: Any, where: tuple[str, int]) -> dict[str, str] | None:
    """Computed colours of the finished widget's text parts and of the notebook behind it."""
    result: dict[str, str] | None = page.evaluate(
        f"""(args) => {{
            const c = {_CELL}(args);
            const get = sel => {{ const e = c && c.querySelector(sel); return e ? getComputedStyle(e).color : null; }};
            const out = {{
                head: get('.widget-html .ipar-head'),
                muted: get('.widget-html .ipar-head.ipar-muted'),
                state: get('.widget-html .ipar-state'),
                cell: get('.widget-html table.ipar-table td'),
                header: get('.widget-html table.ipar-table th'),
                label: get('.widget-hprogress .widget-label'),
                bg: getComputedStyle(document.querySelector('#' + args[0] + ' .jp-Notebook')).backgroundColor,
            }};
            return Object.values(out).every(v => v) ? out : null;
        }}""",
        list(where),
    )
    return result


@pytest.fixture
def desktop_notifications_on(lab: Any) -> Iterator[None]:
    """The extension's "Desktop notifications" setting on (as the Settings Editor saves it),
    back to its default afterwards."""
    url = "/lab/api/settings/ipar_widgets:notify"
    status, _ = lab.api(url, "PUT", {"raw": json.dumps({"desktopNotifications": True})})
    assert status == 204, status
    yield
    lab.api(url, "PUT", {"raw": "{}"})


#: JS: record each desktop notification made (then make it, with the browser's own API)
_SPY_DESKTOP = """() => {
    const Real = window.Notification;
    window.__desktop = [];
    class Recorded extends Real {
        constructor(title, options) {
            window.__desktop.push({title, body: options && options.body});
            super(title, options);
        }
        // the browser's static getter checks its receiver: ask the real class
        static get permission() { return Real.permission; }
    }
    window.Notification = Recorded;
}"""


def test_display_notifies_when_the_job_ends_light_and_dark(  # type: ignore[no-untyped-def]
    lab, page, shared_cluster, desktop_notifications_on
) -> None:
    """``ar.display()`` returns at once; when the job ends the widget shows its final state and
    JupyterLab shows a toast naming the job and its outcome (done, failed, cancelled).  The
    same outputs are then checked, and pictured, in the dark theme.  With the desktop setting
    on and the permission granted, a job that ends while the tab is not focused also makes a
    desktop notification."""
    profile = shared_cluster.cluster.profile
    page.context.grant_permissions(["notifications"], origin=lab.url)
    open_lab(page, lab)
    page.evaluate(_SPY_DESKTOP)
    panel = new_notebook(page)
    notebook_name = page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path")
    run_cell(
        page,
        panel,
        (
            "import time, ipar_widgets as ipp\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(4, timeout=30)\n"
            "lv = rc.load_balanced_view()\n"
            "ar = lv.map(time.sleep, [0.4] * 8)\n"
            "ar.display()\n"
            "print('display returned', ar.ready())"
        ),
    )
    first = cell(panel, 0)
    wait_for(lambda: "display returned False" in output_text(page, first), 60, "display()")
    toast = toast_with(page, "sleep: 8 tasks done in ")
    assert re.fullmatch(
        rf"sleep: 8 tasks done in \d+\.\d s — {re.escape(notebook_name)}\s*Show notebook", toast
    ), toast
    assert page.locator(".Toastify__toast--success", has_text="sleep: 8 tasks done").count() == 1
    assert bar_width(page, first) == "100%"
    assert "8/8 items done" in output_text(page, first)
    save_screenshot(page, "lab-light-progress")

    # failures: an error toast with the count and the first exception's type
    run_cell(
        page,
        panel,
        (
            "def fragile(x):\n"
            "    if x % 3 == 0:\n"
            "        raise ValueError(f'bad input {x}')\n"
            "    return x\n"
            "\n"
            "ar2 = lv.map(fragile, range(6))\n"
            "ar2.display()"
        ),
    )
    toast = toast_with(page, "fragile: 2 of 6 tasks failed")
    assert re.match(r"fragile: 2 of 6 tasks failed in \d+\.\d s \(first: ValueError\)", toast)
    assert page.locator(".Toastify__toast--error", has_text="fragile: 2 of 6").count() == 1
    settle(page)
    save_screenshot(page, "lab-light-notification")

    # wait_interactive: the user is watching, no toast (had it sent one, it would come before
    # the later job's toast below: iopub keeps the kernel's order)
    run_cell(page, panel, "lv.map(abs, range(3)).wait_interactive()\nprint('watched')")
    wait_for(lambda: "watched" in output_text(page, cell(panel, 2)), 30, "the watched job")

    # Cancel on a displayed job: the pending tasks are aborted, a warning toast says so
    run_cell(page, panel, "ar3 = lv.map(time.sleep, [2.0] * 24)\nar3.display()")
    third = cell(panel, 3)
    cancel = button(page, third, "Cancel")
    cancel.wait_for(state="visible", timeout=60_000)
    wait_for(lambda: "4 running" in output_text(page, third), 30, "the 4 engines to be busy")
    cancel.click()
    toast = toast_with(page, "sleep: cancelled after ", timeout=30)
    found = re.match(
        r"sleep: cancelled after \d+\.\d s: (\d+) of 24 tasks done, (\d+) aborted", toast
    )
    assert found, toast
    done, aborted = int(found.group(1)), int(found.group(2))
    assert done + aborted == 24 and aborted >= 16, toast
    assert f"{aborted} aborted" in output_text(page, third)
    assert page.locator(".Toastify__toast--warning", has_text="cancelled after").count() == 1
    assert not [t for t in page.evaluate(_TOASTS) if t.startswith("abs:")]

    # the light theme: our text on the notebook's background is readable
    light = widget_colors(page, first)
    assert light is not None
    for part in ("head", "cell", "label"):
        assert contrast(light[part], light["bg"]) >= 4.5, (part, light)

    # the dark theme: the same outputs follow it, and stay readable
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    page.wait_for_selector('body[data-jp-theme-name="JupyterLab Dark"]', state="attached")
    dark = wait_for(
        lambda: (c := widget_colors(page, first)) and _luminance(c["bg"]) < 0.3 and c,
        30,
        "the dark theme's colours",
    )
    for part in ("head", "cell", "label"):
        assert contrast(dark[part], dark["bg"]) >= 4.5, (part, dark)
    for part in ("muted", "state", "header"):
        assert contrast(dark[part], dark["bg"]) >= 3.0, (part, dark)
    page.locator(f"#{panel} .jp-Notebook .jp-Cell").nth(0).scroll_into_view_if_needed()
    settle(page)
    save_screenshot(page, "lab-dark-progress")
    page.locator(f"#{panel} .jp-Notebook .jp-Cell").nth(3).scroll_into_view_if_needed()
    settle(page)
    save_screenshot(page, "lab-dark-cancelled")

    # focused (Playwright's pages always are), no desktop notification was made; unfocused, one
    assert page.evaluate("() => window.__desktop.length") == 0
    page.evaluate("() => { document.hasFocus = () => false; }")  # the user went elsewhere
    run_cell(page, panel, "lv.map(abs, range(4)).display()")
    toast_with(page, "abs: 4 tasks done in ")
    desktop = page.evaluate("() => window.__desktop")
    assert len(desktop) == 1 and desktop[0]["title"] == "Parallel job done", desktop
    assert re.fullmatch(
        rf"abs: 4 tasks done in \d+\.\d s — {re.escape(notebook_name)}", desktop[0]["body"]
    )


# -- the "Where is it stuck?" and "Retry failed" buttons -----------------------------------------


def bar_classes(page: Any, where: tuple[str, int]) -> str:
    return str(
        page.evaluate(
            f"""(args) => {{
                const c = {_CELL}(args);
                const bar = c && c.querySelector('.jp-OutputArea-output .widget-hprogress .progress-bar');
                return bar ? bar.className : '';
            }}""",
            list(where),
        )
    )


def test_stacks_and_retry_buttons(lab, page, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    """ "Where is it stuck?" shows the running tasks' Python stacks (a pure-Python loop); "Retry
    failed" runs the failed tasks again once their cause is fixed, and the same widget ends
    green at 100% with all results in order."""
    profile = shared_cluster.cluster.profile
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
            "def spin_in_python(seconds):\n"
            "    import time\n"
            "    t0, n = time.monotonic(), 0\n"
            "    while time.monotonic() - t0 < seconds:\n"
            "        n += 1\n"
            "    return n\n"
            "\n"
            "spinning = lv.map(spin_in_python, [30.0] * 2)\n"
            "spinning.display()"
        ),
    )
    first = cell(panel, 0)
    wait_for(lambda: "2 running" in output_text(page, first), 30, "both tasks to run")
    button(page, first, "Where is it stuck?").click()
    stacks = page.locator(f"#{panel} .jp-Notebook .jp-Cell").nth(0).locator(".ipar-stacks")
    wait_for(
        lambda: stacks.inner_text().count("spin_in_python") >= 2,
        15,
        "the stacks of both tasks, in spin_in_python",
    )
    text = stacks.inner_text()
    assert "Where the running tasks were at" in text, text
    assert "while time.monotonic() - t0 < seconds" in text or "n += 1" in text, text
    settle(page)
    save_screenshot(page, "lab-light-stacks")
    # stop the spinning tasks (Cancel, then interrupt them), so the engines are free again
    button(page, first, "Cancel").click()
    interrupt = button(page, first, "Interrupt running tasks")
    interrupt.wait_for(state="visible", timeout=10_000)
    interrupt.click()
    toast_with(page, "spin_in_python: cancelled after ")

    run_cell(
        page,
        panel,
        (
            "rc[:].push({'FIXED': False}, block=True)\n"
            "@ipp.interactive\n"
            "def flaky(x):\n"
            "    if x % 4 == 0 and not FIXED:\n"
            "        raise ValueError(f'not yet: {x}')\n"
            "    return x * 10\n"
            "\n"
            "ar = lv.map(flaky, range(12))\n"
            "ar.display()"
        ),
    )
    second = cell(panel, 1)
    toast_with(page, "flaky: 3 of 12 tasks failed")
    assert "progress-bar-danger" in bar_classes(page, second)
    groups = page.locator(f"#{panel} .jp-Notebook .jp-Cell").nth(1).locator(".ipar-failure-groups")
    wait_for(lambda: "ValueError" in groups.inner_text(), 10, "the failure groups")
    retry = button(page, second, "Retry failed")
    retry.wait_for(state="visible", timeout=10_000)
    settle(page)
    save_screenshot(page, "lab-light-retry-before")

    run_cell(page, panel, "rc[:].push({'FIXED': True}, block=True)\nprint('fixed')")
    wait_for(lambda: "fixed" in output_text(page, cell(panel, 2)), 30, "the fix to be pushed")
    retry.click()
    wait_for(
        lambda: (
            "progress-bar-success" in bar_classes(page, second)
            and bar_width(page, second) == "100%"
        ),
        30,
        "the bar to end green at 100%",
    )
    assert "12/12 items done" in output_text(page, second)
    toast_with(page, "flaky: 12 tasks done in ")  # the retried job notifies again
    settle(page)
    save_screenshot(page, "lab-light-retry-after")
    run_cell(page, panel, "print('RESULTS', ar.get(timeout=30))")
    found = wait_for(
        lambda: re.search(r"RESULTS (\[.*\])", output_text(page, cell(panel, 3))), 30, "results"
    )
    assert json.loads(found.group(1)) == [x * 10 for x in range(12)]
