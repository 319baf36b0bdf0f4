"""What each engine costs, live: CPU and memory reported by the engines (engine/usage.py),
kept by the controller, shown by ``rc.status()``, the progress widget and the lab panel's
server side.  Real clusters on loopback; every wait is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import wait_until
from enginetasks import hold_memory
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets.progress import ProgressTracker
from ipar_widgets.progress.costs import format_bytes, format_cpu
from ipar_widgets.progress.placement import query_placement
from ipar_widgets.server.operations import activity_json
from ipar_widgets.widgets.html import progress_html, progress_text
from ipar_widgets.widgets.progress import ProgressView

MB = 1_000_000


@ipp.interactive
def spin(seconds: float) -> int:
    """Keep one core busy in a Python loop."""
    import time

    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


def engines_of(status: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(e["id"]): e for e in status["engines"]}


def test_cpu_and_memory_reach_status_widget_and_panel(make_cluster) -> None:  # type: ignore[no-untyped-def]
    rc = make_cluster(n=2).rc
    rc.wait_for_engines(2, timeout=30)
    # the first reports come within about a second of the engines starting
    wait_until(
        lambda: all(e["rss"] for e in rc.status()["engines"]), 3, 0.05, "the first usage reports"
    )
    before = engines_of(rc.status())
    base_rss = before[1]["rss"]
    assert 10 * MB < base_rss < 500 * MB  # a real engine's resident memory

    rc[1].apply_sync(hold_memory, 200 * 1024 * 1024)
    ar = rc[0].apply_async(spin, 6.0)  # engine 0 spins while we look

    def spinning_and_grown() -> bool:
        engines = engines_of(rc.status())
        return bool(engines[0]["cpu"] > 50 and engines[1]["rss"] >= base_rss + 200 * MB)

    wait_until(spinning_and_grown, 5, 0.1, "engine 0 at > 50% CPU and engine 1 200 MB bigger")
    status = rc.status()
    engines = engines_of(status)
    assert engines[0]["cpu"] > 50
    assert engines[1]["cpu"] < 50  # idle: it holds memory, it does not compute
    assert engines[1]["peak_rss"] >= engines[1]["rss"] >= base_rss + 200 * MB
    assert engines[0]["gpu_memory"] is None  # no nvidia-smi on this machine: nothing, no error
    costs = status["costs"]
    assert costs["reporting"] == 2
    assert costs["rss"] == engines[0]["rss"] + engines[1]["rss"]
    assert costs["cpu"] == pytest.approx(engines[0]["cpu"] + engines[1]["cpu"], abs=0.11)

    # the progress widget's table: the same numbers, from the placement it asks for anyway
    placement = query_placement(rc)
    assert placement is not None and placement.cost_total is not None
    snap = ProgressTracker(ar).snapshot(placement)
    [row] = snap.engines
    assert row.engine_id == 0 and row.cost is not None and row.cost.cpu is not None
    assert row.cost.cpu > 50
    html = progress_html(snap)
    assert '<th class="">CPU</th><th class="">memory</th>' in html
    assert f'<td class="">{format_cpu(row.cost.cpu)}</td>' in html
    assert f'<td class="">{format_bytes(row.cost.rss)}</td>' in html
    total = placement.cost_total
    assert total.rss is not None and total.rss >= base_rss + 200 * MB
    line = f"cluster: 2 engines, CPU {format_cpu(total.cpu)}, memory {format_bytes(total.rss)}"
    assert f'<div class="ipar-costs">{line}' in html
    assert line in progress_text(snap)

    # the live widget (its Python model) shows the columns while the task runs
    view = ProgressView(ar)
    view.show()
    try:

        def shows_the_costs() -> bool:
            body, live = view.body.value, view.last_snapshot
            cost = live.engines[0].cost if live is not None and live.engines else None
            return (
                cost is not None
                and '<th class="">CPU</th><th class="">memory</th>' in body
                and f'<td class="">{format_cpu(cost.cpu)}</td>' in body
                and 'class="ipar-costs">cluster: 2 engines, CPU ' in body
            )

        # the body and last_snapshot are read apart: a refresh may fall in between
        wait_until(shows_the_costs, 5, 0.05, "the cost columns in the live widget")
    finally:
        view.loop.remove(view)

    # the JupyterLab panel's server side passes them on per engine, with the total
    activity = activity_json(status)
    assert [e["rss"] for e in activity["engines"]] == [engines[0]["rss"], engines[1]["rss"]]
    assert activity["costs"]["rss"] == costs["rss"]
    assert ar.get(timeout=30) > 0


def test_reports_turned_off_show_nothing(make_cluster) -> None:  # type: ignore[no-untyped-def]
    config = Config({"LocalEngineSetLauncher": {"engine_args": ["--usage-interval=0"]}})
    handle = make_cluster(n=1, config=config)
    rc = handle.rc
    rc.wait_for_engines(1, timeout=30)
    # with reports on, one would have come within 1 s of registering; give it 2.5 s
    ar = rc[0].apply_async(time.sleep, 2.5)
    assert ar.get(timeout=30) is None
    status = rc.status()
    [engine] = status["engines"]
    assert (engine["cpu"], engine["rss"], engine["peak_rss"]) == (None, None, None)
    assert status["costs"] == {
        "cpu": None,
        "rss": None,
        "peak_rss": None,
        "gpu_memory": None,
        "reporting": 0,
    }
    snap = ProgressTracker(ar).snapshot(query_placement(rc))
    assert snap.engines[0].cost is None
    html = progress_html(snap, style=False)
    assert ">CPU</th>" not in html and 'class="ipar-costs"' not in html
    assert '>busy</th><th class="">current task</th>' in html


def test_usage_interval_below_a_second_is_refused() -> None:
    """What someone starting an engine by hand with a bad interval sees."""
    done = subprocess.run(
        [sys.executable, "-m", "ipar_widgets.engine", "--usage-interval=0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert (
        "EngineApp.usage_interval: expected 0 (no usage reports) or at least 1 seconds, "
        "found 0.5" in done.stderr + done.stdout
    )


def test_gpu_memory_where_nvidia_smi_answers(make_cluster, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No GPU here: a stub ``nvidia-smi`` (the one system this cannot run for real) answers
    as the real one does for ``--query-compute-apps=pid,used_memory --format=csv,noheader,
    nounits``: one line per process on the GPU, the engine (its parent) holding 2048 MiB."""
    stub = tmp_path / "bin" / "nvidia-smi"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$PPID, 2048"\necho "1, 512"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    rc = make_cluster(n=1).rc
    rc.wait_for_engines(1, timeout=30)
    wait_until(
        lambda: rc.status()["engines"][0]["gpu_memory"] is not None, 3, 0.05, "a GPU reading"
    )
    status = rc.status()
    assert status["engines"][0]["gpu_memory"] == 2048 << 20  # its own line only
    assert status["costs"]["gpu_memory"] == 2048 << 20
    ar = rc[0].apply_async(time.sleep, 0.5)
    snap = ProgressTracker(ar).snapshot(query_placement(rc))
    assert snap.engines[0].cost is not None
    memory = format_bytes(snap.engines[0].cost.rss)
    assert f'<td class="">{memory}, GPU 2.1 GB</td>' in progress_html(snap)
    assert ", GPU memory 2.1 GB" in progress_text(snap)
    ar.get(timeout=10)
