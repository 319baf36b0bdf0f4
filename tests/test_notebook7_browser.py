"""The progress widget in Notebook 7 (real server, headless Chromium, a real cluster).

Notebook 7 is built from JupyterLab's components and loads prebuilt lab extensions, ours
included: the widget renders, updates live and ends in its final state, and the job-ended
toast of ``ar.display()`` appears there too.  Screenshots go to test-artifacts/nb7-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from kernels import python3_notebook
from lab import ARTIFACTS, Lab, save_screenshot, start_lab, stop_lab
from test_widgets_browser import bar_width, output_text, settle, toast_with, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory, isolated_dirs: Any) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("nb7"), app="notebook")
    yield server
    stop_lab(server)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "notebook7-server.log").write_bytes(server.log.read_bytes())


def test_the_widget_and_the_notification_in_notebook7(notebook7, page, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    profile = shared_cluster.cluster.profile
    nb = python3_notebook(
        [
            "import time, ipar_widgets as ipp\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(4, timeout=30)\n"
            "lv = rc.load_balanced_view()\n"
            "ar = lv.map(time.sleep, [0.3] * 24)\n"
            "ar.display()"
        ]
    )
    nbformat.write(nb, notebook7.root / "nb7.ipynb")
    page.goto(f"{notebook7.url}/notebooks/nb7.ipynb?token={notebook7.token}")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=90_000)
    page.evaluate("() => window.jupyterapp.restored")
    # our lab extension is loaded and running here
    assert page.evaluate(
        "() => ['ipar_widgets:notify', 'ipar_widgets:clusters']"
        ".map(id => window.jupyterapp.isPluginActivated(id))"
    ) == [True, True]
    panel = page.evaluate(
        """async () => {
            for (let i = 0; i < 600 && !window.jupyterapp.shell.currentWidget?.sessionContext; i++) {
                await new Promise(r => setTimeout(r, 100));
            }
            const w = window.jupyterapp.shell.currentWidget;
            await w.context.ready;
            await w.sessionContext.ready;
            return w.id;
        }"""
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    where = (panel, 0)
    seen: list[str] = []

    def reached_full() -> bool:
        width = bar_width(page, where)
        if width is not None and (not seen or seen[-1] != width):
            seen.append(width)
        return width == "100%"

    wait_for(reached_full, 90, "the progress bar to reach 100%", poll=0.03)
    percents = [float(w.rstrip("%")) for w in seen]
    assert percents == sorted(percents) and any(0 < p < 100 for p in percents), seen
    toast = toast_with(page, "sleep: 24 tasks done in ")
    assert re.fullmatch(r"sleep: 24 tasks done in \d+\.\d s — nb7\.ipynb\s*Show notebook", toast)
    text = wait_for(
        lambda: (t := output_text(page, where)) and "24/24 items done" in t and t,
        10,
        "the final text",
    )
    assert "done" in text and "speedup" in text
    rows = page.evaluate(
        f"""() => Array.from(document.querySelectorAll('#{panel} .widget-html table.ipar-table tbody tr'))
              .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.textContent))"""
    )
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3] and sum(int(r[1]) for r in rows) == 24
    settle(page)
    save_screenshot(page, "nb7-progress")
