"""The seed tutorial as a notebook, run in a real kernel with nbclient; and ``ipar demo``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def cell_text(cell: nbformat.NotebookNode) -> str:
    """What the cell printed and returned; the progress widgets (the wait for engines of a
    cluster's start, a large push) are not what these tests compare."""
    parts = []
    for out in cell.get("outputs", []):
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
            continue
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"] + "\n")
    return "".join(parts)


def find_cell(nb: nbformat.NotebookNode, marker: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "code" and marker in cell.source:
            return cell_text(cell)
    raise AssertionError(f"no code cell contains {marker!r}")


@pytest.mark.timeout(180)
def test_asyncresult_notebook_runs_with_the_seed_pages_output(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / "asyncresult.ipynb", as_version=4)
    assert nb.cells[1].source.count("Cluster(n=4") == 1
    assert "stop_cluster_sync()" in nb.cells[-1].source
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    assert cell_text(nb.cells[1]).strip() == "[0, 1, 2, 3]"
    pids = find_cell(nb, "get_dict()")
    assert re.fullmatch(r"\{0: \d+, 1: \d+, 2: \d+, 3: \d+\}\n", pids)
    assert find_cell(nb, 'print("Engine IDs: "') == "Engine IDs:  [0, 1, 2, 3]\n"

    arrivals = find_cell(nb, 'Reference("id")').splitlines()
    assert arrivals[0] == "sleeping for `id` seconds on each engine"
    times = [float(line.split(": ")[1]) for line in arrivals[1:5]]
    assert [int(line.split(":")[0]) for line in arrivals[1:5]] == [0, 1, 2, 3]
    for i, t in enumerate(times):
        assert i <= t < i + 0.6, times
    assert arrivals[5] == "[None, None, None, None]"

    single = find_cell(nb, "one message per call").splitlines()
    engines = [
        int(m.group(1)) for m in map(re.compile(r"task \d on engine (\d)").match, single[1:11])
    ]
    assert sorted(engines[:4]) == [0, 1, 2, 3]

    pairs = find_cell(nb, "chunksize=2)\n").splitlines()
    chunk_engines = [int(line.split(" on engine ")[1].split(":")[0]) for line in pairs[1:11]]
    assert all(chunk_engines[i] == chunk_engines[i + 1] for i in range(0, 10, 2)), pairs
    chunk_times = [float(line.rsplit(": ", 1)[1]) for line in pairs[1:11]]
    assert all(abs(chunk_times[i] - chunk_times[i + 1]) < 0.05 for i in range(0, 10, 2)), pairs

    unordered = find_cell(nb, "ordered=False").splitlines()
    rows = [
        re.match(r"slept (\d\.\d\d)s on engine (\d): (\d+\.\d+)", line) for line in unordered[1:11]
    ]
    assert all(rows), unordered
    slept = [float(r.group(1)) for r in rows]  # type: ignore[union-attr]
    arrived = [float(r.group(3)) for r in rows]  # type: ignore[union-attr]
    assert arrived == sorted(arrived)  # printed in completion order
    assert slept[:2] == [0.4, 0.3] and slept[-2:] == [1.0, 0.9]
    assert sorted(slept) == [0.1 * t for t in range(1, 11)] or sorted(slept) == sorted(
        round(0.1 * t, 2) for t in range(1, 11)
    )

    assert find_cell(nb, "reduce(add, map(sq, X))").strip() == "58.028845747399714"
    assert find_cell(nb, "reduce(add, lview.map(sq, X))").strip() == "58.028845747399714"

    published = find_cell(nb, "publish_data").splitlines()
    progress = [json.loads(line.split(": ", 1)[1]) for line in published[:-2]]
    assert len(progress) >= 2 and progress[0] == [0, 0, 0, 0], published
    assert all(0 <= done <= 10 for row in progress for done in row)
    assert any(0 < done < 10 for row in progress for done in row)  # seen while running
    assert published[-2:] == [str(["finished"] * 4), str([{"done": 10, "of": 10}] * 4)]

    recipe = find_cell(nb, "for msg_id in amr.msg_ids").splitlines()
    assert len(recipe) == 5
    assert all(
        re.fullmatch(r"\S+: engine \d, 0\.4\d s of work, results \[0\.2, 0\.2\]", line)
        for line in recipe[:4]
    )
    speedup = float(re.search(r"speedup (\d+\.\d)x", recipe[4]).group(1))  # type: ignore[union-attr]
    assert 2.0 <= speedup <= 4.0


@pytest.mark.timeout(90)
def test_ipar_demo_tours_the_seed_page_in_under_30_seconds() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ipar_widgets", "demo", "--profile", "demo-test"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert took < 30, took
    for heading in (
        "get_dict",
        "Results as they arrive",
        "chunksize=2",
        "ordered=False",
        "map/reduce",
        "Serial time, wall time and speedup",
    ):
        assert f"== {heading}" in out
    assert "parallel: 58.028845747399714" in out
    assert "sleep_here: 12/12 tasks done (0 failed); serial" in out
    assert re.search(r"speedup \d\.\dx on 4 engines", out)
    assert "Stopping the cluster..." in out


@pytest.mark.timeout(180)
def test_task_records_notebook_queries_resubmits_and_purges(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / "task-records.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert find_cell(nb, "temp_flags(label=") == ("['int', 'int', 'int', 'RemoteError', 'int']\n")
    assert find_cell(nb, "rc.db_query({") == "5 records, 1 failed\n"
    looked_up = find_cell(nb, "other.hub_history()").splitlines()
    assert looked_up[:2] == ["True", "4"]
    assert re.fullmatch(r"\{'pending': \[\], 'completed': \['[0-9a-f_]+'\]\}", looked_up[2])
    assert find_cell(nb, "rc.resubmit(failed)") == (
        "still fails: ValueError no square for 3\nTrue\n"
    )
    # from a new controller in the same profile, a fresh client finds the finished job
    assert find_cell(nb, "fresh = ipp.Client(").splitlines()[1] == (
        "6 finished tasks labelled 'squares', on engines [0, 1]"
    )
    assert find_cell(nb, 'fresh.purge_results("all")') == "[]\n"
