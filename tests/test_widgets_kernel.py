"""The progress widget in a real kernel, run headless through nbclient.

Checks what a saved notebook keeps (the widget view, the final static snapshot, the final
widget state) and the traffic the widgets sent (every comm message the kernel published).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import nbformat
import pytest
from kernels import click, follow_cell, kernel, python3_notebook, run_notebook
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(180)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def sent_at(msg: dict[str, Any]) -> float:
    date = msg["header"]["date"]
    if isinstance(date, str):
        date = datetime.fromisoformat(date)
    return float(date.timestamp())


def test_wait_interactive_and_display_in_a_kernel(make_cluster, profile) -> None:  # type: ignore[no-untyped-def]
    """Eight engines, three live widgets: the budget holds whatever the number of engines."""
    make_cluster(n=8)
    nb = python3_notebook(
        [
            "import time, ipar_widgets as ipp\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(8, timeout=60)\n"
            "lv = rc.load_balanced_view()\n"
            "@ipp.interactive\n"
            "def work(x):\n"
            "    import time\n"
            "    print('working on', x)\n"
            "    time.sleep(0.02)\n"
            "    return x",
            "ar = lv.map(work, range(240))\nar.wait_interactive()",
            # two live widgets at once, non-blocking; the cell waits for their final updates
            "from ipar_widgets.widgets.loop import get_loop\n"
            "a2 = rc[:].map(work, range(160))\na3 = lv.map(work, range(160), chunksize=5)\n"
            "a2.display()\na3.display()\n"
            "a2.wait(60); a3.wait(60)\n"
            "assert get_loop().wait_idle(10)",
        ]
    )
    client = run_notebook(nb)
    outputs = nb.cells[1].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"]
    data = outputs[0]["data"]
    assert set(data) == {WIDGET_VIEW, "text/plain", "text/html"}
    text = data["text/plain"].splitlines()
    assert text[0].startswith("work: 240/240 tasks done (0 failed); serial ")
    assert [line.split()[0] for line in text[2:]] == [str(i) for i in range(8)]
    assert sum(int(line.split()[1]) for line in text[2:]) == 240
    assert all(line.split()[-3:-1] == ["working", "on"] for line in text[2:])
    assert "240/240 items done" in data["text/html"] and 'class="ipar-table"' in data["text/html"]

    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    box = state[data[WIDGET_VIEW]["model_id"]]
    assert box["model_name"] == "VBoxModel"
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    assert len(bars) == 3
    assert sorted((b["value"], b["max"], b["bar_style"]) for b in bars) == [
        (160, 160, "success"),
        (160, 160, "success"),
        (240, 240, "success"),
    ]

    later = nb.cells[2].outputs  # each display() output, updated in place to its final state
    assert [o["output_type"] for o in later] == ["display_data", "display_data"]
    assert all(set(o["data"]) == {WIDGET_VIEW, "text/plain", "text/html"} for o in later)
    assert [o["data"]["text/plain"].split(";")[0] for o in later] == [
        "work: 160/160 tasks done (0 failed)"
    ] * 2
    # exported without widget state (nbconvert, GitHub), the output shows its static picture
    from nbconvert import HTMLExporter

    plain = nbformat.from_dict(nb)
    plain.metadata.pop("widgets")
    html, _ = HTMLExporter().from_notebook_node(plain)
    assert html.count('class="ipar-table"') == 3 and "240/240 items done" in html
    assert "Loading widget" not in html and "widget-view+json" not in html

    updates = [
        m
        for m in client.comm_msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
    ]
    times = sorted(sent_at(m) for m in updates)
    assert len(times) >= 6  # live refreshes happened, not only the final ones
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= 10, f"{busiest} update messages within one second"
    print(
        json.dumps(
            {
                "updates": len(times),
                "busiest_second": busiest,
                "comm_messages": len(client.comm_msgs),
            }
        )
    )


@pytest.mark.timeout(240)
def test_live_progress_notebook_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / "live-progress.ipynb"
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    finals = [
        o["data"]["text/plain"].splitlines()[0]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if WIDGET_VIEW in o.get("data", {})
    ]
    # first the wait for the cluster's engines (its own widget, unless they had registered
    # before it began), then one per job
    waits = [line for line in finals if line.startswith("engines: ")]
    finals = finals[len(waits) :]
    assert len(waits) <= 1, waits
    assert all(re.fullmatch(r"engines: (\d+)/\1 registered, .*\(.+\)", w) for w in waits), waits
    names = [line.split(":")[0] for line in finals]
    assert names == [
        "simulate",
        "fragile",
        "simulate",
        "execute",
        "sleep",
        "simulate",
        "fragile",
        "simulate",
        "sleep",
    ]
    assert all(re.match(r"\w+: (\d+)/\1 tasks done", line) for line in finals), finals
    assert finals[1].startswith("fragile: 40/40 tasks done (20 failed)")
    assert finals[2].startswith("simulate: 60/60 tasks done (0 failed)")
    texts = [
        "".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"
    ]
    assert "0 of 32 tasks aborted\n" in texts
    assert any(
        '<svg class="ipar-timeline"' in o.get("data", {}).get("text/html", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert texts[-2].splitlines()[-1].startswith("simulate: 40/40 tasks done (0 failed); serial ")


def test_cancel_click_reaches_a_blocked_cell(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    """The frontend's click on Cancel, sent while ``wait_interactive`` blocks the cell, is
    handled at once (in our kernel subshell): the pending tasks are aborted and the cell
    returns long before the job would have ended."""
    profile = shared_cluster.cluster.profile
    with kernel(
        "import time, ipar_widgets as ipp\n"
        f"rc = ipp.Client(profile={profile!r})\nrc.wait_for_engines(4, timeout=30)\n"
        "lv = rc.load_balanced_view()"
    ) as kc:
        msg_id = kc.execute(
            "t0 = time.monotonic()\nar = lv.map(time.sleep, [1.0] * 40)\n"
            "ar.wait_interactive()\nprint('took', round(time.monotonic() - t0, 1))\n"
            "print('aborted', sum(isinstance(r, ipp.TaskAborted) "
            "for r in ar.get(return_exceptions=True)))"
        )
        cancel_comm = None

        def on_message(msg: dict[str, Any]) -> None:
            nonlocal cancel_comm
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_open" and content["data"]["state"].get("description") == "Cancel":
                cancel_comm = content["comm_id"]
            elif (
                kind == "comm_msg"
                and cancel_comm
                and "4 running" in str(content["data"].get("state", {}).get("value", ""))
            ):
                # the widget shows the first wave running: click, as JupyterLab would
                click(kc, cancel_comm)
                cancel_comm = None

        text = follow_cell(kc, msg_id, on_message)
    took = float(re.search(r"took ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    aborted = int(re.search(r"aborted (\d+)", text).group(1))  # type: ignore[union-attr]
    assert took < 4.0, text  # 40 tasks of 1 s on 4 engines: 10 s without the click
    assert 32 <= aborted <= 36, text
