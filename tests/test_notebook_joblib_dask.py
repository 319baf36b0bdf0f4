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


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(
        out["text"] if out.get("output_type") == "stream" else out["data"]["text/plain"] + "\n"
        for out in cell.get("outputs", [])
    )


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
    # what the saved notebook shows is what a run shows (up to the varying numbers)
    assert saved[:2] == got[:2] and saved[4] == got[4] and saved[6:] == got[6:]
