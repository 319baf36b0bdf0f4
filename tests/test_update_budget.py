"""The widget update budget with every live display of the second round busy at once.

One real kernel (driven by its client, so the test can click like JupyterLab does) starts a
cluster (the engine wait's widget), runs two displayed jobs whose failures form groups (their
arguments fetched for the groups), a blocking ``wait_interactive`` job, a large push (the
transfer widget) and a blocking ``%%px`` past ``--progress-after``; while that runs the test
clicks "Where is it stuck?" and, once failures show, "Retry failed".  Every comm message the
kernel publishes (trait updates and our custom messages, the done-notification among them)
is counted: never more than 10 in any one second, as ``widgets/loop.py`` promises.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kernels import click, follow_cell, kernel, stop_cluster_of_profile

from ipar_widgets.widgets.loop import MESSAGES_PER_SECOND

pytestmark = pytest.mark.timeout(180)


def sent_at(msg: dict[str, Any]) -> float:
    date = msg["header"]["date"]
    if isinstance(date, str):
        date = datetime.fromisoformat(date)
    return float(date.timestamp())


def test_all_live_displays_at_once_stay_within_the_budget(profile: str, tmp_path: Path) -> None:
    healed = tmp_path / "healed"  # the engines' tasks stop failing once it exists
    setup = (
        "import time, numpy as np, ipar_widgets as ipp\n"
        "from ipar_widgets.widgets.loop import get_loop\n"
        "from ipar_widgets.client.transfer import TransferProgress\n"
        "settings = TransferProgress.instance()\n"
        "settings.min_bytes, settings.after = 1_000_000, 0.0\n"
        "@ipp.interactive\n"
        "def flaky(x):\n"
        "    import os, time\n"
        "    time.sleep(0.01)\n"
        f"    if x % 7 == 3 and not os.path.exists({str(healed)!r}):\n"
        "        raise ValueError(f'bad input {x}')\n"
        "    return x\n"
        "@ipp.interactive\n"
        "def work(x):\n"
        "    import time\n"
        "    time.sleep(0.02)\n"
        "    return x\n"
    )
    try:
        with kernel(setup) as kc:
            messages: list[dict[str, Any]] = []
            buttons: dict[str, str] = {}
            clicked: set[str] = set()

            def on_message(msg: dict[str, Any]) -> None:
                kind, content = msg["msg_type"], msg["content"]
                if not kind.startswith("comm"):
                    return
                messages.append(msg)
                state = content.get("data", {}).get("state", {})
                if kind == "comm_open" and state.get("description") in (
                    "Where is it stuck?",
                    "Retry failed",
                ):
                    buttons.setdefault(state["description"], content["comm_id"])
                value = str(state.get("value", ""))
                if (
                    "running" in value
                    and "Where is it stuck?" in buttons
                    and "stacks" not in clicked
                ):
                    clicked.add("stacks")
                    click(kc, buttons["Where is it stuck?"])
                # the failures are grouped (the accordion's titles) before Retry is clicked
                failures_shown = "ValueError: bad input <n>" in str(state.get("titles", ""))
                if failures_shown and "Retry failed" in buttons and "retry" not in clicked:
                    clicked.add("retry")
                    healed.touch()  # first, so that the retried tasks succeed
                    click(kc, buttons["Retry failed"])

            cell = (
                "a1 = lv.map(flaky, range(280))\n"
                "a2 = rc[:].map(work, range(160))\n"
                "a1.display()\na2.display()\n"
                "rc[:].push({'big': np.arange(1_000_000, dtype='float64')}, block=True)\n"
                "lv.map(work, range(120)).wait_interactive()\n"
                "a2.wait(60)\n"
                "deadline = time.monotonic() + 60\n"
                "while not (a1.ready() and a1.retried) and time.monotonic() < deadline:\n"
                "    time.sleep(0.05)\n"
                "print('results', a1.get(timeout=60) == list(range(280)))\n"
                "print('retried', len(a1.retried))\n"
                "assert get_loop().wait_idle(20)\n"
            )
            start = (  # the engine wait's widget, in the traffic counted too
                f"cluster = ipp.Cluster(n=4, profile={profile!r}, cluster_id='')\n"
                "rc = cluster.start_and_connect_sync()\n"
                "more = cluster.start_engines_sync(1)\n"
                "rc.wait_for_engines(5, timeout=60)\n"
                "lv = rc.load_balanced_view()\n"
            )
            follow_cell(kc, kc.execute(start), on_message)
            printed = follow_cell(kc, kc.execute(cell), on_message)
            px = kc.execute("%%px --progress-after 0.2\nimport time; time.sleep(1.0)")
            follow_cell(kc, px, on_message)
            done = kc.execute(
                "assert get_loop().wait_idle(20)\nrc.close(); cluster.stop_cluster_sync()"
            )
            follow_cell(kc, done, on_message)
    finally:
        stop_cluster_of_profile(profile)

    assert clicked == {"stacks", "retry"}, clicked
    results, retried = printed.splitlines()
    assert results == "results True"  # every task in its place, the retried ones succeeded
    # the failures up to the click were retried; those after it found the engines healed
    assert 1 <= int(retried.split()[1]) <= len(range(3, 280, 7)), retried
    sent = [m for m in messages if m["msg_type"] == "comm_msg"]
    opened = [m["content"]["data"]["state"] for m in messages if m["msg_type"] == "comm_open"]
    assert any("ipar-engine-wait" in str(state.get("_dom_classes")) for state in opened)
    methods = {m["content"]["data"].get("method") for m in sent}
    assert methods >= {"update", "custom"}, methods  # trait updates and the notifications
    times = sorted(sent_at(m) for m in sent)
    assert len(times) >= 30  # live refreshes of all those displays, not only final ones
    start = max(times, key=lambda t: sum(1 for u in times if t <= u < t + 1.0))
    window = [m for m in sent if start <= sent_at(m) < start + 1.0]
    described = [
        (m["content"]["data"].get("method"), sorted(m["content"]["data"].get("state", {})))
        for m in window
    ]
    assert len(window) <= MESSAGES_PER_SECOND, (
        f"{len(window)} comm messages within one second: {described}"
    )
