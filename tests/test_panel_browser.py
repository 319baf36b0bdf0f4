"""End to end in headless Chromium: the "Parallel Clusters" panel drives a real cluster.

One test walks the user's path: open the panel, start a 2-engine cluster, connect a new
notebook to it with "Insert client code", watch the activity change, grow and shrink it,
stop it, and check that no process of it is left.  Screenshots in the light and dark
themes go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import cluster_processes, wait_until
from lab import Lab, new_notebook, open_lab, run_cell, save_screenshot

from ipar_widgets.cluster import control
from ipar_widgets.cluster.discovery import find_clusters

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

PANEL = "#ipar-clusters"
TAB = '.jp-SideBar.jp-mod-left li[data-id="ipar-clusters"]'


@pytest.fixture
def panel_profile() -> Iterator[str]:
    """A profile for the clusters the panel starts; all stopped at the end, whatever happens."""
    profile = "t-panel"  # short, so the screenshots show it whole
    yield profile
    for info in find_clusters([profile], query=False):
        control.stop_cluster(info.data, grace=5)


def set_theme(page: Any, theme: str) -> None:
    page.evaluate(
        "(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme
    )
    page.wait_for_selector(f'body[data-jp-theme-name="{theme}"]', state="attached", timeout=30_000)
    page.wait_for_timeout(300)  # the theme's CSS applies after the attribute changes


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def count(card: Any, kind: str) -> int:
    return int(card.locator(f'.ipar-count[data-kind="{kind}"] .ipar-count-value').inner_text())


def shutdown_kernel_of(page: Any, lab: Lab, panel_id: str) -> None:
    path = page.evaluate(
        "(id) => { for (const w of window.jupyterapp.shell.widgets('main')) "
        "{ if (w.id === id) return w.context.path; } return null; }",
        panel_id,
    )
    status, sessions = lab.api("/api/sessions")
    for session in sessions if status == 200 else []:
        if session.get("path") == path:
            lab.api(f"/api/sessions/{session['id']}", "DELETE")


def test_the_panel_starts_watches_and_stops_a_cluster(
    page: Any, lab: Lab, panel_profile: str
) -> None:
    profile = panel_profile
    # GET /ipar/clusters: `sent` counts them as the browser sends them; `requests` has their
    # start times by the browser's clock (known once they finished), for the spacing
    sent: list[str] = []
    requests: list[float] = []

    def is_list(r: Any) -> bool:
        return bool(r.method == "GET" and r.url.split("?")[0].endswith("/ipar/clusters"))

    page.on("request", lambda r: sent.append(r.url) if is_list(r) else None)
    page.on(
        "requestfinished",
        lambda r: requests.append(r.timing["startTime"] / 1000) if is_list(r) else None,
    )

    open_lab(page, lab)
    page.click(TAB)
    page.wait_for_selector(f"{PANEL} .ipar-status:not(:has-text('Looking'))", timeout=30_000)
    _, listing = lab.api("/ipar/clusters")
    if not listing["clusters"]:  # other tests may have clusters of their own running
        assert "No clusters yet: start one" in text(page, f"{PANEL} .ipar-empty")
        assert text(page, f"{PANEL} .ipar-status") == "0 clusters"

    # A bad profile name: the server's explanation shows in the panel.
    form = page.locator(f"{PANEL} form.ipar-start-form")
    form.locator('input[name="profile"]').fill("bad name!")
    form.locator('button[type="submit"]').click()
    error = form.locator(".ipar-error")
    error.wait_for(timeout=15_000)
    assert "invalid profile name 'bad name!'" in error.inner_text()
    form.locator(".ipar-dismiss").click()
    error.wait_for(state="detached", timeout=5_000)

    # Start a 2-engine cluster with the keyboard only: type, then Enter submits the form.
    form.locator('input[name="profile"]').fill(profile)
    form.locator('input[name="n"]').fill("2")
    form.locator('input[name="n"]').press("Enter")
    card = page.locator(f'{PANEL} li.ipar-cluster[data-profile="{profile}"]')
    page.wait_for_selector(
        f'{PANEL} li.ipar-cluster[data-profile="{profile}"][data-state="running"]', timeout=60_000
    )
    wait_until(
        lambda: card.locator(".ipar-engines-count").inner_text().startswith("2 / 2"),
        timeout=15,
        interval=0.2,
        what="2 / 2 engines in the panel",
    )
    assert card.locator("tr.ipar-engine").count() == 2
    assert count(card, "done") == 0
    [info] = [c for c in find_clusters([profile]) if c.cluster_id == ""]
    assert info.engines_registered == 2
    assert card.locator(".ipar-address").inner_text().startswith(info.address)
    save_screenshot(page, "panel-light")

    # With no notebook open, "Insert client code" says what to do.
    card.locator(".ipar-insert-code").click()
    card.locator(".ipar-error").wait_for(timeout=5_000)
    assert "Open a notebook first" in card.locator(".ipar-error").inner_text()
    card.locator(".ipar-dismiss").click()

    panel_id = new_notebook(page)

    # Insert the client code into the new notebook, run it, and use the cluster.
    card.locator(".ipar-insert-code").click()
    source = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.getSource()"
    )
    assert source == f'import ipar_widgets as ipp\n\nrc = ipp.Client(profile="{profile}")'
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell-and-select-next')")
    run_cell(
        page, panel_id, "import os\npids = rc[:].apply_sync(os.getpid)\nprint('PIDS', sorted(pids))"
    )
    out = page.locator(f"#{panel_id} .jp-OutputArea-output", has_text="PIDS")
    out.wait_for(timeout=60_000)
    pids = sorted(int(p) for p in re.findall(r"\d+", out.inner_text()))
    assert pids == sorted(p.pid for p in _engine_processes(profile))
    wait_until(
        lambda: count(card, "done") == 2,
        timeout=10,
        interval=0.2,
        what="the panel's done count to reach 2",
    )

    # Busy engines: which task, for how long; then the counts move on.
    run_cell(page, panel_id, "import time\nar = rc[:].apply_async(time.sleep, 5)")
    wait_until(
        lambda: card.locator('tr.ipar-engine[data-state="busy"]').count() == 2,
        timeout=10,
        interval=0.2,
        what="both engines busy in the panel",
    )
    quiet_from = len(requests)  # no action until the tasks end: every refresh is automatic
    assert count(card, "running") == 2
    row = card.locator('tr.ipar-engine[data-state="busy"]').first
    assert re.fullmatch(r"[0-9a-f]{6}", row.locator(".ipar-task").inner_text().strip())
    assert re.fullmatch(r"\d+(\.\d)? s", row.locator(".ipar-busy-for").inner_text().strip())
    try:
        set_theme(page, "JupyterLab Dark")
        save_screenshot(page, "panel-dark")
    finally:
        set_theme(page, "JupyterLab Light")  # the theme is a user setting shared by later tests
    wait_until(
        lambda: count(card, "done") == 4, timeout=15, interval=0.2, what="the done count to reach 4"
    )
    # It refreshed by itself while visible, every 2 s.  (A busy page, e.g. while the theme
    # changes, delays when a request leaves by a few 100 ms, hence the mean and the margin.)
    auto = requests[quiet_from - 1 :]
    gaps = [round(b - a, 2) for a, b in zip(auto, auto[1:])]
    assert len(gaps) >= 2 and max(gaps) < 5, gaps
    assert sum(gaps) / len(gaps) >= 1.95 and min(gaps) >= 1.5, gaps
    assert card.locator('tr.ipar-engine[data-state="idle"]').count() == 2

    # Grow by one engine, then stop that engine.
    card.locator(".ipar-add-engines").click()
    wait_until(
        lambda: card.locator(".ipar-engines-count").inner_text().startswith("3 / 3"),
        timeout=30,
        interval=0.2,
        what="3 / 3 engines",
    )
    card.locator('tr.ipar-engine[data-engine-id="2"] .ipar-stop-engine').click()
    wait_until(
        lambda: card.locator("tr.ipar-engine").count() == 2,
        timeout=30,
        interval=0.2,
        what="engine 2 to leave the panel",
    )

    # The panel does not poll while it is hidden.
    page.click(TAB)  # collapses the sidebar
    page.wait_for_selector(PANEL, state="hidden")
    page.wait_for_timeout(300)  # a request sent just before is not the panel's doing
    before = len(sent)
    page.wait_for_timeout(4500)
    assert len(sent) == before
    page.click(TAB)
    wait_until(
        lambda: len(sent) > before,
        timeout=5,
        interval=0.1,
        what="a refresh when the panel shows again",
    )

    # Stop the cluster from the panel: its card goes, and so does every process.
    shutdown_kernel_of(page, lab, panel_id)
    controller = info.data["controller_pid"]
    card.locator(".ipar-stop-cluster").click()
    card.wait_for(state="detached", timeout=30_000)
    assert not find_clusters([profile], query=False)
    assert not control.pid_alive(controller)
    assert not _engine_processes(profile) and not [
        p for p in cluster_processes() if profile in " ".join(p.cmdline())
    ]
    _, listing = lab.api("/ipar/clusters")
    if not listing["clusters"]:
        page.locator(f"{PANEL} .ipar-empty").wait_for(timeout=5_000)
        save_screenshot(page, "panel-empty-light")


def _engine_processes(profile: str) -> list[Any]:
    return [
        p
        for p in cluster_processes()
        if "ipar_widgets.engine" in " ".join(p.cmdline()) and profile in " ".join(p.cmdline())
    ]
