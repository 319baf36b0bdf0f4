"""The parallel magics in a real Jupyter kernel, driven by nbclient, against a real cluster.

One notebook runs once for the module; each test reads the outputs of its cells as saved (after
every in-place update) and, where liveness matters, the messages the kernel sent meanwhile.
The demo notebook ``notebooks/parallel-magics.ipynb`` runs too, against its own cluster.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROGRESS_DONE = re.compile(r"%px: 4/4 tasks done \(0 failed\); serial \d+\.\d s, wall \d+\.\d s")

# Each engine counts the cells it runs: the Out[engine:count] below follow from the cells
# before ("single" runs on engine 1 only, "display-update" on engine 0 only).
CELLS: dict[str, str] = {
    "setup": "import ipar_widgets as ipp\nrc = ipp.Client(profile={profile!r})\n"
    "rc.wait_for_engines(4, timeout=30)",
    "hi": "%px print('hi')",
    "live": "%%px\nimport sys, time\nfor i in range(3):\n    print(i, end=' ', flush=True)\n"
    "    time.sleep(0.4)\nprint()\nprint('warn', file=sys.stderr)\n__ipar_engine_id__ * 2",
    "single": "%%px --targets 1\nprint('one')\n'single'",
    "noblock": "%%px --noblock\nimport time; time.sleep(0.3)\nprint('nb')\n5",
    "pxresult": "%pxresult",
    "error": "%px 1/0",
    "error-at-end": "%%px --no-stream\n1/0",
    "autopx-on": "%autopx",
    "autopx-cell": "x = __ipar_engine_id__ + 100\nprint(x)",
    "autopx-off": "%autopx",
    "progress": "%%px --progress-after 0\nimport time; time.sleep(0.4 + 0.3 * __ipar_engine_id__)\n"
    "'slept'",
    "display": "%%px\nfrom IPython.display import display, HTML\n"
    "display(HTML(f'<b>{__ipar_engine_id__}</b>'))",
    "display-update": "%%px --targets 0\nfrom IPython.display import display\n"
    "h = display('first', display_id=True)\nh.update('second')",
    "carriage-return": "%px print('50%', end='\\r', flush=True); print('100%')",
    "local": "%%px --local\nprint('both')",
    "grouped": "%%px --no-stream -e\nprint('e')\n__ipar_engine_id__",
}
RAISES = {"error", "error-at-end"}


class RecordingClient(NotebookClient):
    """Keeps every message of every cell, besides the saved outputs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: dict[int, list[tuple[str, dict[str, Any]]]] = {}

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.messages.setdefault(cell_index, []).append((msg["msg_type"], msg["content"]))
        return super().process_message(msg, cell, cell_index)


class Ran:
    def __init__(self, nb: Any, client: RecordingClient) -> None:
        self.nb = nb
        self.client = client
        self.index = {name: i for i, name in enumerate(CELLS)}

    def outputs(self, name: str) -> list[dict[str, Any]]:
        return [dict(o) for o in self.nb.cells[self.index[name]].outputs]

    def messages(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        return self.client.messages.get(self.index[name], [])


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def without_widgets(outputs: list[Any]) -> list[Any]:
    """The outputs but the live widgets' (whose final text holds elapsed times)."""
    return [o for o in outputs if WIDGET_VIEW not in o.get("data", {})]


def plain(outputs: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(type, text, engine) of each output: stream text, or a display's text/plain.

    Consecutive text of one stream is joined, as frontends show it: where the kernel cuts it
    into messages depends on when its output buffer happens to be flushed.
    """
    rows: list[tuple[str, Any, Any]] = []
    for o in outputs:
        if o["output_type"] == "stream":
            if rows and rows[-1][0] == o["name"]:
                rows[-1] = (o["name"], rows[-1][1] + o["text"], None)
            else:
                rows.append((o["name"], o["text"], None))
        elif o["output_type"] == "error":
            rows.append(("error", o["ename"], [ANSI.sub("", line) for line in o["traceback"]]))
        else:
            rows.append(
                (o["output_type"], o["data"].get("text/plain"), o["metadata"].get("engine"))
            )
    return rows


@pytest.fixture(scope="module")
def ran(shared_cluster) -> Ran:  # type: ignore[no-untyped-def]
    profile = shared_cluster.cluster.profile
    cells = []
    for name, source in CELLS.items():
        cell = nbformat.v4.new_code_cell(
            source.format(profile=profile) if name == "setup" else source
        )
        if name in RAISES:
            cell.metadata["tags"] = ["raises-exception"]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    client = RecordingClient(nb, kernel_name="python3", timeout=60)
    client.execute()
    return Ran(nb, client)


def test_each_engine_streams_into_one_block(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("hi")) == [("display_data", f"[stdout:{i}] hi\n", i) for i in range(4)]


def test_blocks_update_live_and_end_in_engine_order(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("live")) == [
        ("display_data", f"[stdout:{i}] 0 1 2 \n[stderr:{i}] warn\n", i) for i in range(4)
    ] + [("display_data", f"Out[{i}:2]: {2 * i}", None) for i in range(4)]
    # while the engines ran, their blocks showed the numbers so far
    shown = [
        c["data"]["text/plain"]
        for t, c in ran.messages("live")
        if t in ("display_data", "update_display_data")
    ]
    assert "[stdout:0] 0 " in shown or "[stdout:0] 0 1 " in shown, shown
    updates = [t for t, _ in ran.messages("live") if t == "update_display_data"]
    assert 1 <= len(updates) <= 40  # a handful per engine, not one per character


def test_one_target_streamed_is_labelled(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("single")) == [
        ("display_data", "[stdout:1] one\n", 1),
        ("display_data", "Out[1:3]: 'single'", None),
    ]


def test_noblock_returns_the_asyncresult_and_pxresult_shows_it(ran) -> None:  # type: ignore[no-untyped-def]
    [out] = ran.outputs("noblock")
    assert out["output_type"] == "execute_result"
    assert out["data"]["text/plain"] == "<AsyncResult(%px): pending>"
    assert plain(ran.outputs("pxresult")) == [
        ("stdout", "".join(f"[stdout:{i}] nb\n" for i in range(4)), None),
    ] + [("display_data", f"Out[{i}:{3 + (i == 1)}]: 5", None) for i in range(4)]


def test_streamed_errors_then_a_count(ran) -> None:  # type: ignore[no-untyped-def]
    *streams, error = plain(ran.outputs("error"))
    assert error == ("error", "AlreadyDisplayedError", ["4 errors"])
    text = "".join(s[1] for s in streams if s[0] == "stderr")
    assert sorted(re.findall(r"^\[(\d):execute\]$", ANSI.sub("", text), re.M)) == [
        "0",
        "1",
        "2",
        "3",
    ]
    assert ANSI.sub("", text).count("ZeroDivisionError: division by zero") == 4


def test_errors_at_the_end(ran) -> None:  # type: ignore[no-untyped-def]
    [(kind, ename, lines)] = plain(ran.outputs("error-at-end"))
    assert (kind, ename) == ("error", "CompositeError")
    assert [line for line in lines if re.fullmatch(r"\[\d:execute\]", line)] == [
        f"[{i}:execute]" for i in range(4)
    ]
    assert lines[-1] == "4 errors"


def test_autopx(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("autopx-on")) == [("stdout", "%autopx enabled\n", None)]
    assert plain(ran.outputs("autopx-cell")) == [
        ("display_data", f"[stdout:{i}] {100 + i}\n", i) for i in range(4)
    ]
    assert plain(ran.outputs("autopx-off")) == [("stdout", "%autopx disabled\n", None)]


def test_progress_widget_updates_then_stays_as_a_summary(ran) -> None:  # type: ignore[no-untyped-def]
    """After --progress-after seconds a blocking %px shows the progress widget: the bar and
    the per-engine table, kept as the final static picture."""
    (kind, text, _), *results = plain(ran.outputs("progress"))
    first = ran.outputs("progress")[0]
    assert kind == "display_data" and PROGRESS_DONE.match(text), text
    assert WIDGET_VIEW in first["data"]
    table = text.splitlines()[1:]
    assert table[0].split()[:2] == ["engine", "done"], text
    assert [row.split()[:2] for row in table[1:]] == [[str(i), "1"] for i in range(4)], text
    assert "4/4 items done" in first["data"]["text/html"]
    assert results == [
        ("display_data", f"Out[{i}:{7 + (i == 1)}]: 'slept'", None) for i in range(4)
    ]
    shown = [
        c["data"]["text/plain"]
        for t, c in ran.messages("progress")
        if t == "display_data" and "%px:" in c["data"]["text/plain"]
    ]
    # shown while running (the live form of the line), then updated in place to the summary
    assert len(shown) == 1 and re.match(r"%px: [0-3]/4 done, ", shown[0]), shown


def test_rich_displays_carry_their_engine(ran) -> None:  # type: ignore[no-untyped-def]
    outputs = ran.outputs("display")
    labels = [o["text"] for o in outputs if o["output_type"] == "stream"]
    displays = [
        (o["metadata"]["engine"], o["data"]["text/html"])
        for o in outputs
        if o["output_type"] == "display_data"
    ]
    assert sorted(labels) == [f"[output:{i}]\n" for i in range(4)]
    assert sorted(displays) == [(i, f"<b>{i}</b>") for i in range(4)]
    assert [o["output_type"] for o in outputs] == ["stream", "display_data"] * 4


def test_an_engine_updating_its_display_updates_it_here(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("display-update")) == [
        ("stdout", "[output:0]\n", None),
        ("display_data", "'second'", 0),
    ]


def test_carriage_returns_overwrite_like_a_terminal(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("carriage-return")) == [
        ("display_data", f"[stdout:{i}] 100%\n", i) for i in range(4)
    ]


def test_local_runs_here_first(ran) -> None:  # type: ignore[no-untyped-def]
    assert plain(ran.outputs("local")) == [("stdout", "both\n", None)] + [
        ("display_data", f"[stdout:{i}] both\n", i) for i in range(4)
    ]


def test_group_by_engine_at_the_end(ran) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for i, count in enumerate([12, 12, 11, 11]):  # cells on engine 1, then engine 0 only
        rows += [
            ("stdout", f"[stdout:{i}] e\n[output:{i}]\n", None),
            ("display_data", f"Out[{i}:{count}]: {i}", None),
        ]
    assert plain(ran.outputs("grouped")) == rows


def test_keyboard_interrupt_in_a_kernel_signals_the_engines(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup = CELLS["setup"].format(profile=shared_cluster.cluster.profile)
        assert kc.execute_interactive(setup, timeout=60)["content"]["status"] == "ok"
        msg_id = kc.execute(
            "%%px --targets 0\nimport time\nprint('sleeping', flush=True)\ntime.sleep(60)"
        )
        seen: list[tuple[str, dict[str, Any]]] = []

        def until(predicate: Any, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
                if msg["parent_header"].get("msg_id") == msg_id:
                    seen.append((msg["msg_type"], msg["content"]))

        until(lambda: any(t == "display_data" for t, _ in seen), 30)
        tic = time.monotonic()
        km.interrupt_kernel()
        until(lambda: ("status", {"execution_state": "idle"}) in seen, 30)
        assert time.monotonic() - tic < 10
        # ipyparallel's line on stderr, and the cell ends without an error
        assert [t for t, _ in seen if t == "error"] == []
        assert (
            "stream",
            {
                "name": "stderr",
                "text": "Received Keyboard Interrupt. Sending signal SIGINT to engines...\n",
            },
        ) in seen
        # the engine stopped: the next cell runs at once
        reply = kc.execute_interactive("%%px --targets 0\n1", timeout=30)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_demo_notebook_runs_and_matches_its_saved_outputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    saved = nbformat.read(ROOT / "notebooks" / "parallel-magics.ipynb", as_version=4)
    nb = nbformat.read(ROOT / "notebooks" / "parallel-magics.ipynb", as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    for before, after in zip(saved.cells, nb.cells, strict=True):
        if before.cell_type != "code" or "nondeterministic" in before.metadata.get("tags", []):
            continue
        # the progress widgets (the cluster's wait for its engines) show times that vary
        assert plain(without_widgets(after.outputs)) == plain(without_widgets(before.outputs)), (
            before.source
        )
    # the cluster's start shows its wait, unless the engines had registered before it began
    first = next(c for c in nb.cells if c.cell_type == "code")
    waits = [o["data"]["text/plain"] for o in first.outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(waits) <= 1 and all(w.startswith("engines: 4/4 registered, ") for w in waits)
