"""The "done while you were away" notice (ipar_widgets/widgets/notify.py), and the static HTML
export of a finished widget.

What the notice says is a pure function of the final snapshot; in a real kernel (nbclient,
a real cluster) each ``ar.display()`` job sends exactly one notice, on its widget's comm, and
``wait_interactive`` none; nbclient, which has no use for it, says nothing about it.  The
executed notebook, exported by ``jupyter nbconvert --to html``, shows each job's final counts.
The toast itself is checked in the browser (test_widgets_browser.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from kernels import python3_notebook, run_notebook

from ipar_widgets.progress.snapshot import FirstError, Snapshot
from ipar_widgets.widgets.notify import EVENT, job_notice

pytestmark = pytest.mark.timeout(180)


def snap(**kw: Any) -> Snapshot:
    base: dict[str, Any] = {"fname": "simulate", "total": 40, "ready": True, "wall_time": 12.34}
    base.update(kw)
    return Snapshot(**base)


def test_the_notice_names_the_job_and_its_outcome() -> None:
    done = job_notice(snap(done=40))
    assert (done.message, done.type, done.outcome) == (
        "simulate: 40 tasks done in 12.3 s",
        "success",
        "done",
    )
    err = FirstError(
        engine_id=2, ename="ZeroDivisionError", evalue="division by zero", traceback=""
    )
    failed = job_notice(snap(done=37, failed=3, first_error=err, wall_time=125.0))
    assert (failed.message, failed.type, failed.outcome) == (
        "simulate: 3 of 40 tasks failed in 2m05s (first: ZeroDivisionError)",
        "error",
        "failed",
    )
    cancelled = job_notice(snap(done=8, aborted=32, wall_time=4.0), "cancelled")
    assert (cancelled.message, cancelled.type, cancelled.outcome) == (
        "simulate: cancelled after 4.0 s: 8 of 40 tasks done, 32 aborted",
        "warning",
        "cancelled",
    )
    aborted = job_notice(snap(done=39, aborted=1, total=40))
    assert aborted.message == "simulate: 1 of 40 tasks aborted, 39 done in 12.3 s"
    assert aborted.type == "warning"
    one = job_notice(snap(total=1, done=1, wall_time=None, elapsed=0.25))
    assert one.message == "simulate: 1 task done in 0.2 s"
    # JupyterLab cuts messages at 140 characters: a long name is cut first, with a mark
    long = job_notice(snap(fname="f" * 300, done=37, failed=3, first_error=err))
    assert len(long.message) <= 140 and long.message.startswith("f" * 39 + "…: 3 of 40")
    assert long.job == "f" * 300
    assert done.to_json() == {
        "message": "simulate: 40 tasks done in 12.3 s",
        "type": "success",
        "job": "simulate",
        "outcome": "done",
        "total": 40,
        "done": 40,
        "failed": 0,
        "aborted": 0,
        "wall": 12.34,
    }


def export_html(nb: Any, path: Path) -> str:
    """``jupyter nbconvert --to html`` of ``nb`` saved at ``path``: the HTML it wrote."""
    nbformat.write(nb, path)
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return path.with_suffix(".html").read_text()


def test_display_jobs_notify_once_and_the_export_shows_the_final_state(  # type: ignore[no-untyped-def]
    shared_cluster, tmp_path, caplog
) -> None:
    profile = shared_cluster.cluster.profile
    cells = [
        "import time, ipar_widgets as ipp\n"
        "from ipar_widgets.widgets.loop import get_loop\n"
        f"rc = ipp.Client(profile={profile!r})\n"
        "rc.wait_for_engines(4, timeout=30)\n"
        "lv = rc.load_balanced_view()\n"
        "def fragile(x):\n"
        "    if x % 3 == 0:\n"
        "        raise ValueError(f'bad input {x}')\n"
        "    return x",
        "ar = lv.map(time.sleep, [0.05] * 8)\nar.display()\nar.wait(30)\n"
        "assert get_loop().wait_idle(10)",
        "ar2 = lv.map(fragile, range(6))\nar2.display()\nar2.wait(30)\n"
        "assert get_loop().wait_idle(10)",
        # the user watches this one: no notice
        "ar3 = lv.map(abs, range(5))\nar3.wait_interactive()",
        # ... unless the wait stops before the end: the widget goes on, and notifies
        "ar4 = lv.map(time.sleep, [0.5] * 4)\n"
        "try:\n    ar4.wait_interactive(timeout=0.1)\nexcept TimeoutError:\n    print('stopped waiting')\n"
        "ar4.wait(30)\nassert get_loop().wait_idle(10)",
        # a job shorter than JobNotifications.min_seconds: no notice
        "from ipar_widgets.widgets.notify import JobNotifications\n"
        "JobNotifications.instance().min_seconds = 30.0\n"
        "ar5 = lv.map(abs, range(3))\nar5.display()\nar5.wait(30)\n"
        "assert get_loop().wait_idle(10)",
    ]
    nb = python3_notebook(cells)
    client = run_notebook(nb)

    custom = [
        m["content"]["data"]["content"]
        for m in client.comm_msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "custom"
    ]
    # none for the watched wait_interactive, one for the one that stopped waiting, none for
    # the one shorter than min_seconds (its widget shows its end all the same)
    assert nb.cells[5].outputs[0]["data"]["text/plain"].startswith("abs: 3/3 tasks done (0 failed)")
    assert [c["ipar_widgets"] for c in custom] == [EVENT, EVENT, EVENT]
    first, second, fourth = (c["notice"] for c in custom)
    assert "stopped waiting" in "".join(o.get("text", "") for o in nb.cells[4].outputs)
    assert re.fullmatch(r"sleep: 4 tasks done in \d+\.\d s", fourth["message"]), fourth
    assert first["type"] == "success" and first["outcome"] == "done"
    assert re.fullmatch(r"sleep: 8 tasks done in \d+\.\d s", first["message"]), first
    assert (first["total"], first["done"], first["failed"]) == (8, 8, 0)
    assert second["type"] == "error" and second["outcome"] == "failed"
    assert re.fullmatch(
        r"fragile: 2 of 6 tasks failed in \d+\.\d s \(first: ValueError\)", second["message"]
    ), second
    # each notice went on its own job's widget comm (the output's box)
    boxes = [
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for c in (nb.cells[1], nb.cells[2], nb.cells[4])
        for o in c.outputs
        if "data" in o
    ]
    notice_comms = [
        m["content"]["comm_id"]
        for m in client.comm_msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "custom"
    ]
    assert notice_comms == boxes
    assert not [r for r in caplog.records if "comm" in r.getMessage()], caplog.records

    # Exported as JupyterLab saves it by default (no widget state), the HTML shows the static
    # picture each output carries since its job ended
    plain = nbformat.from_dict(nb)
    plain.metadata.pop("widgets")
    html = export_html(plain, tmp_path / "as-saved.ipynb")
    assert "8/8 items done" in html
    assert '4/6 items done · <span class="ipar-failed">2 failed</span>' in html
    assert "5/5 items done" in html
    assert html.count('class="ipar-table"') == 5
    assert "widget-view+json" not in html
    # With the widget state nbclient saves, nbconvert embeds the widgets instead (rendered by
    # the ipywidgets HTML manager it loads from a CDN); their saved state is the final one
    html = export_html(nb, tmp_path / "with-state.ipynb")
    assert "widget-view+json" in html and 'class="ipar-table"' not in html
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    bars = sorted(
        (m["state"]["value"], m["state"]["max"], m["state"]["bar_style"])
        for m in state.values()
        if m["model_name"] == "IntProgressModel"
    )
    assert bars == [
        (3, 3, "success"),
        (4, 4, "success"),
        (5, 5, "success"),
        (6, 6, "danger"),
        (8, 8, "success"),
    ]


def test_the_settings_come_from_the_profile_s_ipython_config(tmp_path: Path) -> None:
    """``c.JobNotifications.*`` and ``c.TransferProgress.*`` in ipython_config.py reach the
    instances the displays use (a real IPython reading its profile)."""
    profile = tmp_path / "profile_default"
    profile.mkdir()
    (profile / "ipython_config.py").write_text(
        "c.JobNotifications.min_seconds = 12.5\nc.TransferProgress.min_bytes = 123\n"
    )
    code = (
        "from ipar_widgets.widgets.notify import JobNotifications\n"
        "from ipar_widgets.client.transfer import TransferProgress\n"
        "print(JobNotifications.instance().min_seconds, TransferProgress.instance().min_bytes)"
    )
    env = {**os.environ, "IPYTHONDIR": str(tmp_path)}
    ran = subprocess.run(
        [sys.executable, "-m", "IPython", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "12.5 123", ran.stdout
