"""The joblib / executor / dask tour (``notebooks/joblib-and-dask.ipynb``), run in a real
kernel with nbclient."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytest.importorskip("joblib")
pytest.importorskip("distributed")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "joblib-and-dask.ipynb"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def text_of(cell: nbformat.NotebookNode) -> str:
    """What the cell printed and returned (the progress widgets apart: see widgets_of)."""
    return "".join(
        out["text"] if out.get("output_type") == "stream" else out["data"]["text/plain"] + "\n"
        for out in cell.get("outputs", [])
        if WIDGET_VIEW not in out.get("data", {})
    )


def widgets_of(cell: nbformat.NotebookNode) -> list[str]:
    """The first line of each progress widget's final static text."""
    return [
        out["data"]["text/plain"].splitlines()[0]
        for out in cell.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {})
    ]


@pytest.mark.timeout(240)
def test_the_joblib_and_dask_notebook_runs_with_its_saved_outputs(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    saved = [text_of(c) for c in nb.cells if c.cell_type == "code"]
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    got = [text_of(c) for c in nb.cells if c.cell_type == "code"]
    assert got[0] == "[0, 1, 2, 3]\n"
    assert got[1] == "[0, 1, 4, 9, 16, 25, 36, 49] ... 40 results\n"
    assert re.fullmatch(r"ran on [1-4] engine processes: True\nin this kernel: False\n", got[2]), (
        got[2]
    )
    assert re.fullmatch(r"RemoteError from engine [0-3]: ValueError: 13 is unlucky\n", got[3])
    assert got[4] == "submit: 144\nmap: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
    assert re.fullmatch(r"\[0, 1, 4, 9, 16\] and \d more already sent\n", got[5]), got[5]
    assert got[6] == "4 dask workers\nsum of squares: 285\n"
    assert got[7:] == ["", ""]
    # the wait for engines' widget, and one widget per Parallel call, whatever its batching
    codes = [c for c in nb.cells if c.cell_type == "code"]
    waits = widgets_of(codes[0])  # none when the engines had registered before the wait began
    assert len(waits) <= 1, waits
    assert all(
        re.fullmatch(r"engines: 4/4 registered, .*: 4/4 engines registered \(.+\)", w)
        for w in waits
    ), waits
    (squares,) = widgets_of(codes[1])
    assert squares.startswith("Parallel(slow_square): 40/40 tasks done (0 failed)"), squares
    (pids,) = widgets_of(codes[2])
    assert pids.startswith("Parallel(getpid): 20/20 tasks done (0 failed)"), pids
    (unlucky,) = widgets_of(codes[3])
    assert re.match(r"Parallel\(check\): \d+/\d+ tasks done \([1-9]\d* failed", unlucky), unlucky
    assert all(widgets_of(c) == [] for c in codes[4:])
    # what the saved notebook shows is what a run shows (up to the varying numbers)
    assert saved[:2] == got[:2] and saved[4] == got[4] and saved[6:] == got[6:]
