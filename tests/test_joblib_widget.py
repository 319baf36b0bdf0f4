"""One progress display per joblib ``Parallel`` call, whatever its batching: in a real kernel
(nbclient, the widget state a saved notebook keeps), in a terminal (the text line), and
Cancel through the widget's Python model."""

from __future__ import annotations

import re
import threading
import time

import nbformat
import pytest
from nbclient import NotebookClient

import ipar_widgets as ipp

pytest.importorskip("joblib")
from joblib import Parallel, delayed, parallel_config  # noqa: E402

from ipar_widgets.client._joblib import IPythonParallelBackend  # noqa: E402
from ipar_widgets.error import TaskAborted  # noqa: E402

pytestmark = pytest.mark.timeout(120)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@ipp.interactive
def neg(x: int) -> int:
    return -x


@ipp.interactive
def nap(x: int) -> int:
    import time

    time.sleep(0.2)
    return x


def run_cells(cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=90, kernel_name="python3", allow_errors=False).execute()
    return nb


def widget_outputs(cell: nbformat.NotebookNode) -> list[dict[str, object]]:
    return [o["data"] for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]


def stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream")


@pytest.mark.timeout(150)
def test_one_widget_per_parallel_call_in_a_kernel(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("sklearn")
    profile = shared_cluster.cluster.profile
    nb = run_cells(
        [
            "import ipar_widgets as ipp\n"
            "from joblib import Parallel, delayed, parallel_config\n"
            "from ipar_widgets.client._joblib import IPythonParallelBackend\n"
            "from ipar_widgets.widgets.loop import get_loop\n"
            f"rc = ipp.Client(profile={profile!r})\n"
            "rc.wait_for_engines(4, timeout=60)\n"
            "lv = rc.load_balanced_view()\n"
            "lv.register_joblib_backend()\n"
            "backend = IPythonParallelBackend(view=lv)\n"
            "def sq(x):\n"
            "    return x * x\n"
            "def fail_on(x, bad):\n"
            "    if x == bad:\n"
            "        raise ValueError(f'{x} is the bad one')\n"
            "    return x",
            # 12 tasks in batches of (at most) 3: four applies or more, one widget
            "with parallel_config(backend=backend):\n"
            "    out = Parallel(n_jobs=2, batch_size=3)(delayed(sq)(i) for i in range(12))\n"
            "print(out, len(backend.call_job.jobs), 'batches')\n"
            "assert get_loop().wait_idle(10)",
            "with parallel_config(backend=backend):\n"
            "    try:\n"
            "        Parallel(n_jobs=2, batch_size=2)(delayed(fail_on)(i, 0) for i in range(8))\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__, str(exc).splitlines()[0])\n"
            "assert get_loop().wait_idle(10)",
            # scikit-learn's search on the registered backend: 3 candidates x 3 folds
            "from sklearn.datasets import load_iris\n"
            "from sklearn.model_selection import GridSearchCV\n"
            "from sklearn.tree import DecisionTreeClassifier\n"
            "X, y = load_iris(return_X_y=True)\n"
            "search = GridSearchCV(DecisionTreeClassifier(random_state=0),\n"
            "                      {'max_depth': [1, 2, 3]}, cv=3, n_jobs=2)\n"
            "with parallel_config(backend='ipyparallel'):\n"
            "    search.fit(X, y)\n"
            "print(search.best_params_)\n"
            "assert get_loop().wait_idle(10)",
        ]
    )
    ok, failing, grid = nb.cells[1], nb.cells[2], nb.cells[3]
    # joblib splits the last tasks finer to balance the engines: several batches, any number
    result, batches = stream_text(ok).rsplit(" ", 2)[0], stream_text(ok).split()[-2]
    assert result == str([i * i for i in range(12)]) and int(batches) >= 4
    (data,) = widget_outputs(ok)
    text = str(data["text/plain"]).splitlines()
    assert text[0].startswith("Parallel(sq): 12/12 tasks done (0 failed); serial ")
    # the per-engine table counts joblib tasks, not batches
    assert text[1].split()[:2] == ["engine", "done"]
    assert sum(int(line.split()[1]) for line in text[2:]) == 12
    assert "12/12 items done" in str(data["text/html"])

    assert stream_text(failing).startswith("RemoteError ")
    (fdata,) = widget_outputs(failing)
    ftext = str(fdata["text/plain"]).splitlines()
    # the first batch, (0, 1), fails whole: its two tasks count as failed; what joblib had
    # sent besides ran or was aborted, the call's end is the display's end
    assert re.match(r"Parallel\(fail_on\): \d+/8 tasks done \(2 failed", ftext[0]), ftext[0]
    # the failure shown: its type in the text, the engine's traceback in the HTML
    assert "ValueError" in ftext[-1] and "0 is the bad one" in str(fdata["text/html"])

    assert stream_text(grid) == "{'max_depth': 3}\n"
    (gdata,) = widget_outputs(grid)
    assert str(gdata["text/plain"]).startswith(
        "Parallel(_fit_and_score): 9/9 tasks done (0 failed)"
    )

    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    assert len(bars) == 3  # one per Parallel call, however many batches each sent
    by_label = {b["description"]: b for b in bars}
    assert (by_label["Parallel(sq)"]["value"], by_label["Parallel(sq)"]["max"]) == (12, 12)
    assert by_label["Parallel(sq)"]["bar_style"] == "success"
    assert by_label["Parallel(fail_on)"]["bar_style"] == "danger"
    grid_bar = by_label["Parallel(_fit_and_score)"]
    assert (grid_bar["value"], grid_bar["max"], grid_bar["bar_style"]) == (9, 9, "success")


def test_terminal_line_only_when_asked(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    quiet = IPythonParallelBackend(view=rc.load_balanced_view())
    with parallel_config(backend=quiet):
        assert Parallel(batch_size=2)(delayed(neg)(i) for i in range(6)) == [0, -1, -2, -3, -4, -5]
    assert capsys.readouterr().err == ""  # not in a notebook: no display by default
    loud = IPythonParallelBackend(view=rc.load_balanced_view(), progress=True)
    with parallel_config(backend=loud):
        assert Parallel(batch_size=2)(delayed(neg)(i) for i in range(6)) == [0, -1, -2, -3, -4, -5]
    err = capsys.readouterr().err
    assert len(loud.jobs) >= 3  # batches of 2 at most
    # not a TTY: whole lines, the last one the summary over all the batches
    assert err.endswith("\n") and err.splitlines()[-1].startswith(
        "Parallel(neg): 6/6 tasks done (0 failed); serial "
    )
    with pytest.raises(ValueError, match="progress must be None"):
        IPythonParallelBackend(view=rc.load_balanced_view(), progress="yes")  # type: ignore[arg-type]


def test_cancel_in_the_widget_aborts_the_rest_of_the_call(rc) -> None:  # type: ignore[no-untyped-def]
    from ipar_widgets.widgets.loop import UpdateLoop
    from ipar_widgets.widgets.progress import ProgressView

    backend = IPythonParallelBackend(view=rc.load_balanced_view(), progress=False)
    clicked: list[ProgressView] = []
    sent_at_click: list[int] = []

    def click_cancel_after_the_first_result() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = backend.call_job
            if job is not None and job.arrived_count() >= 1:
                view = ProgressView(job, loop=UpdateLoop(), placement=False)
                view._on_cancel()  # what the Cancel button runs
                sent_at_click.append(len(job.jobs))
                clicked.append(view)
                return
            time.sleep(0.01)

    clicker = threading.Thread(target=click_cancel_after_the_first_result)
    clicker.start()
    started = time.monotonic()
    with (
        parallel_config(backend=backend),
        pytest.raises(TaskAborted, match=r"Parallel\(nap\) was cancelled .* batches sent"),
    ):
        # one batch per engine running and as many queued (joblib sends 2 x n_jobs at first)
        Parallel(batch_size=1)(delayed(nap)(i) for i in range(40))
    clicker.join(10)
    took = time.monotonic() - started
    assert clicked and took < 40 * 0.2 / 4  # far less than running them all on four engines
    job = backend.call_job
    assert job is not None and job.cancelled and job.ready()
    # nothing sent after the click (but a batch already on its way as it happened)
    assert len(job.jobs) <= sent_at_click[0] + 1 < 40
    snap = clicked[0].tracker.snapshot()
    assert snap.aborted >= 1 and snap.failed == 0 and snap.finished < 40
    assert clicked[0].note.startswith("Cancelled: the tasks not yet started are aborted.")
