"""Progress wherever the user waits for engines: ``rc.wait_for_engines`` and a cluster's start,
per engine set, as the widget (its Python model, and in a real kernel through nbclient) and
as the terminal line."""

from __future__ import annotations

import re
from collections.abc import Iterator

import nbformat
import pytest
from conftest import kill_group_of
from enginegate import gate_engines
from kernels import follow_cell, kernel, stop_cluster_of_profile
from nbclient import NotebookClient

import ipar_widgets as ipp
from ipar_widgets.client.waitprogress import engine_set_rows
from ipar_widgets.progress.enginewait import (
    EngineSetState,
    EngineWaitSnapshot,
    EngineWaitTerminal,
    wait_line,
)

pytestmark = pytest.mark.timeout(120)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_the_line_and_the_widget_render_the_same_snapshot() -> None:
    from ipar_widgets.widgets.engines_wait import EngineWaitView, engine_wait_html
    from ipar_widgets.widgets.loop import UpdateLoop, apply

    waiting = EngineWaitSnapshot(
        1,
        4,
        (
            EngineSetState("local", 1, 2, "running (2 of 2 engine processes)"),
            EngineSetState("gpu", 0, 2, "PENDING (Resources)"),
        ),
        2.04,
    )
    assert wait_line(waiting) == (
        "engines: 1/4 registered, 2.0 s; local: 1/2 engines registered "
        "(running (2 of 2 engine processes)); gpu: 0/2 engines registered (PENDING (Resources))"
    )
    view = EngineWaitView(loop=UpdateLoop())
    view.snap = waiting
    changes = dict((id(widget), traits) for widget, traits in view.changes())
    assert changes[id(view.bar)] == {"max": 4, "value": 1}  # bar_style stays "info"
    html = changes[id(view.body)]["value"]
    assert html == engine_wait_html(waiting, style=False)
    assert "<td>gpu</td><td>0/2</td><td>PENDING (Resources)</td>" in html
    apply(view.changes())  # what the loop sends
    assert view.changes() == []  # nothing differs any more

    timed_out = EngineWaitSnapshot(1, 4, waiting.sets, 30.0, "EnginesNotReady: 1 of 4")
    view.snap = timed_out
    (bar, traits), *_ = view.changes(final=True)
    assert bar is view.bar and traits == {"bar_style": "danger"}
    assert wait_line(timed_out).startswith(
        "engines: 1/4 registered, 30.0 s [EnginesNotReady: 1 of 4]"
    )


@pytest.fixture
def controller_only(profile: str) -> Iterator[ipp.Cluster]:
    cluster = ipp.Cluster(n=2, profile=profile, cluster_id="")
    cluster.start_controller_sync()
    try:
        yield cluster
    finally:
        pid = cluster._data["controller_pid"] if cluster._data else None
        try:
            cluster.stop_cluster_sync()
        finally:
            if pid:
                kill_group_of(pid)


def test_wait_for_engines_line_per_engine_set(controller_only, capsys) -> None:  # type: ignore[no-untyped-def]
    cluster = controller_only
    rc = cluster.connect_client_sync()
    try:
        rc.wait_for_engines(0, timeout=5, interactive=True)
        assert capsys.readouterr().err == ""  # nothing to wait for: no display
        first = cluster.start_engines_sync(2)
        rc.wait_for_engines(2, timeout=60, interactive=True)
        err = capsys.readouterr().err.splitlines()
        # not a TTY: a line at each change, the last one the state that ended the wait
        assert re.fullmatch(
            rf"engines: 2/2 registered, \d+\.\d s; {first}: 2/2 engines registered \(.+\)",
            err[-1],
        ), err
        assert all(line.startswith("engines: ") for line in err)
        second = cluster.start_engines_sync(1)
        rc.wait_for_engines(3, timeout=60)  # interactive unset, stderr not a TTY: quiet
        assert capsys.readouterr().err == ""
        # the controller's engines name no set: each set counts its own engines' uuids
        rows = [row[:3] for row in engine_set_rows(rc)]
        assert rows == [(first, 2, 2), (second, 1, 1)]
    finally:
        rc.close()


def test_terminal_display_redraws_on_a_tty() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    line = EngineWaitTerminal(out)
    sets = (EngineSetState("s", 0, 2, "RUNNING"),)
    line.update(EngineWaitSnapshot(0, 2, sets, 0.5))
    line.update(EngineWaitSnapshot(1, 2, (EngineSetState("s", 1, 2, "RUNNING"),), 1.0))
    line.finish(EngineWaitSnapshot(2, 2, (EngineSetState("s", 2, 2, "RUNNING"),), 1.5, "ready"))
    text = out.getvalue()
    assert text.startswith("\rengines: 0/2 registered, 0.5 s; s: 0/2 engines registered (RUNNING)")
    assert "\rengines: 1/2 registered, 1.0 s; s: 1/2" in text
    assert text.endswith("\rengines: 2/2 registered, 1.5 s; s: 2/2 engines registered (RUNNING)\n")


def test_a_log_gets_a_line_per_change_at_most_one_a_second() -> None:
    import io

    out = io.StringIO()  # not a terminal
    line = EngineWaitTerminal(out)

    def snap(registered: int, elapsed: float, outcome: str | None = None) -> EngineWaitSnapshot:
        sets = (EngineSetState("s", registered, 4, "RUNNING"),)
        return EngineWaitSnapshot(registered, 4, sets, elapsed, outcome)

    line.update(snap(0, 0.1))
    line.update(snap(0, 0.6))  # the same: no line
    line.update(snap(1, 0.7))  # changed within the second: held back
    line.update(snap(2, 1.1))  # a second after the last line: shown
    line.update(snap(3, 1.5))  # held back, then the wait ends
    line.finish(snap(4, 1.6, "ready"))
    assert out.getvalue().splitlines() == [
        "engines: 0/4 registered, 0.1 s; s: 0/4 engines registered (RUNNING)",
        "engines: 2/4 registered, 1.1 s; s: 2/4 engines registered (RUNNING)",
        "engines: 4/4 registered, 1.6 s; s: 4/4 engines registered (RUNNING)",
    ]


@pytest.mark.timeout(150)
def test_cluster_start_and_wait_show_the_widget_in_a_kernel(profile: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in [
            "import ipar_widgets as ipp\n"
            "from ipar_widgets.widgets.loop import get_loop\n"
            f"cluster = ipp.Cluster(n=2, profile={profile!r}, cluster_id='')\n"
            "rc = cluster.start_and_connect_sync()\n"
            "assert get_loop().wait_idle(10)",
            "more = cluster.start_engines_sync(1)\n"
            "rc.wait_for_engines(3, timeout=60)\n"
            "assert get_loop().wait_idle(10)",
            "%%px --progress-after 0.2\nimport time; time.sleep(0.8)",
            "import numpy as np\n"
            "from ipar_widgets.client.transfer import TransferProgress\n"
            "settings = TransferProgress.instance()\n"
            "settings.min_bytes, settings.after = 1_000_000, 0.0\n"
            "rc[:].push({'big': np.arange(500_000, dtype='float64')}, block=True)\n"
            "rc[:].scatter('part', np.arange(1_500_000, dtype='float64'), block=True)\n"
            "assert get_loop().wait_idle(10)",
            "assert get_loop().wait_idle(10)\nrc.close(); cluster.stop_cluster_sync()",
        ]
    ]
    try:
        NotebookClient(nb, timeout=90, kernel_name="python3").execute()
    finally:
        stop_cluster_of_profile(profile)

    def widgets(i: int) -> list[dict[str, str]]:
        return [dict(o["data"]) for o in nb.cells[i].outputs if WIDGET_VIEW in o.get("data", {})]

    def widget_data(i: int) -> dict[str, str]:
        (data,) = widgets(i)
        return data

    # the start shows its wait unless the engines registered before it began (a race a
    # loaded machine can win either way); the wait below always has one to wait for
    starts = widgets(0)
    assert len(starts) <= 1
    for start in starts:
        assert re.fullmatch(
            r"engines: 2/2 registered, \d+\.\d s; \S+: 2/2 engines registered \(.+\)",
            start["text/plain"],
        ), start["text/plain"]
        assert "<b>engines</b>: 2/2 registered" in start["text/html"]
    wait = widget_data(1)
    sets = wait["text/plain"].split("; ")
    assert sets[0].startswith("engines: 3/3 registered, ")
    assert sorted(s.split(" (")[0].split(": ")[1] for s in sets[1:]) == [
        "1/1 engines registered",
        "2/2 engines registered",
    ]
    px = widget_data(2)  # the blocking %%px after --progress-after: bar and per-engine table
    text = px["text/plain"].splitlines()
    assert text[0].startswith("%px: 3/3 tasks done (0 failed); serial ")
    assert [row.split()[:2] for row in text[2:]] == [["0", "1"], ["1", "1"], ["2", "1"]]

    # large data: the bar counts bytes, up to the values' serialized size, exactly
    np = pytest.importorskip("numpy")
    push_total = 3 * pushed_size({"big": np.arange(500_000, dtype="float64")})
    whole = np.arange(1_500_000, dtype="float64")
    scatter_total = sum(
        pushed_size({"part": whole[i * 500_000 : (i + 1) * 500_000]}) for i in range(3)
    )
    push, scatter = (o["data"] for o in nb.cells[3].outputs if WIDGET_VIEW in o.get("data", {}))
    assert f'title="{push_total} bytes of {push_total}"' in push["text/html"]
    assert push["text/plain"].startswith("push: 12.0 MB of 12.0 MB delivered to 3/3 engines, ")
    assert f'title="{scatter_total} bytes of {scatter_total}"' in scatter["text/html"]

    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    bars = sorted(
        (m["state"]["description"], m["state"]["value"], m["state"]["max"], m["state"]["bar_style"])
        for m in state.values()
        if m["model_name"] == "IntProgressModel"
    )
    assert bars == [
        ("%px", 3, 3, "success"),
        *[("engines", 2, 2, "success")] * len(starts),
        ("engines", 3, 3, "success"),
        ("push", push_total, push_total, "success"),
        ("scatter", scatter_total, scatter_total, "success"),
    ]


@pytest.mark.timeout(150)
def test_awaited_cluster_start_shows_the_wait_as_it_goes(profile, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``await cluster.start_and_connect()`` (the wait runs in a worker thread) shows the
    widget in the awaiting cell: first with no engine registered (the engines wait for a go
    file, created once the widget is seen), at the end with both."""
    go = gate_engines(tmp_path, monkeypatch)
    bars: dict[str, list[dict[str, object]]] = {}  # the wait's bar: its states, by comm
    shown: list[str] = []  # the cell's display's text, as displayed then updated

    def handle(msg: dict[str, object]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        assert isinstance(content, dict)
        if kind == "comm_open":
            state = content["data"]["state"]
            if state.get("_model_name") == "IntProgressModel":
                bars[content["comm_id"]] = [state]
                if state.get("description") == "engines":
                    go.touch()  # seen waiting: the engines may start
        elif kind == "comm_msg" and content["comm_id"] in bars:
            bars[content["comm_id"]].append(content["data"].get("state", {}))
        elif kind in ("display_data", "update_display_data"):
            shown.append(content["data"]["text/plain"])

    start = (
        "from ipar_widgets.widgets.loop import get_loop\n"
        f"cluster = ipp.Cluster(n=2, profile={profile!r}, cluster_id='')\n"
        "rc = await cluster.start_and_connect()\n"
        "assert get_loop().wait_idle(10)\n"
        "print(rc.ids)"
    )
    try:
        with kernel("import ipar_widgets as ipp") as kc:
            printed = follow_cell(kc, kc.execute(start), handle)
            follow_cell(kc, kc.execute("rc.close(); await cluster.stop_cluster()"), handle)
    finally:
        stop_cluster_of_profile(profile)
    assert printed == "[0, 1]\n"
    [states] = bars.values()  # one wait, one bar: what it showed after each message
    seen: list[tuple[object, ...]] = []
    bar: dict[str, object] = {}
    for state in states:
        bar.update(state)
        seen.append((bar["description"], bar["value"], bar["max"], bar["bar_style"]))
    assert ("engines", 0, 2, "info") in seen[:2], seen  # at its first update: none of 2
    assert seen[-1] == ("engines", 2, 2, "success"), seen
    set_text = r"\S+: {n}/2 engines registered \(running \(2 of 2 engine processes\)\)"
    assert re.fullmatch(r"engines: 0/2 registered, \d+\.\d s; " + set_text.format(n=0), shown[0]), (
        shown
    )
    assert re.fullmatch(
        r"engines: 2/2 registered, \d+\.\d s; " + set_text.format(n=2), shown[-1]
    ), shown


# -- large data: push / scatter / pull / gather -----------------------------------------------------


@pytest.fixture
def transfer_settings() -> Iterator[object]:
    """The transfer display's settings, shown from 1 MB at once; restored after."""
    from ipar_widgets.client.transfer import TransferProgress

    settings = TransferProgress.instance()
    saved = (settings.enabled, settings.min_bytes, settings.after)
    settings.min_bytes, settings.after = 1_000_000, 0.0
    yield settings
    settings.enabled, settings.min_bytes, settings.after = saved


class Tty:
    """A stderr that says it is a terminal."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass


def pushed_size(ns: dict[str, object]) -> int:
    """The serialized size of one engine's push message: what the display counts."""
    from ipar_widgets.client import engine_side
    from ipar_widgets.client.transfer import frames_size
    from ipar_widgets.protocol import serialize

    _, buffers = serialize.pack_apply(serialize.pack_function(engine_side.push), (ns,), {}, "push")
    return frames_size(buffers)


def test_push_and_pull_lines_in_a_terminal(rc, transfer_settings, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    np = pytest.importorskip("numpy")
    from ipar_widgets.progress.transfer import format_bytes

    data = {"big": np.arange(500_000, dtype="float64")}  # 4 MB per engine
    per_engine = pushed_size(data)
    assert per_engine >= 4_000_000
    view = rc[:]
    view.push(data, block=True)
    assert capsys.readouterr().err == ""  # stderr is a log here: nothing drawn

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    view.push(data, block=True)
    final = tty.buffer.getvalue().rsplit("\r", 1)[-1]
    total = format_bytes(4 * per_engine)
    assert re.fullmatch(
        rf"push: {total} of {total} delivered to 4/4 engines, \d+\.\d s(, [\d.]+ [kMG]?B/s)?\n",
        final,
    ), final

    tty.buffer.seek(0)
    tty.buffer.truncate()
    import time

    busy = rc[3].apply_async(time.sleep, 0.8)  # engine 3's part comes last, after it
    parts = view.pull("big", block=True)
    busy.get(timeout=10)
    assert all((p == data["big"]).all() for p in parts)
    frames = tty.buffer.getvalue().split("\r")
    # shown once 3 engines' parts (12 MB, past min_bytes) had come back, then the whole
    assert any(re.match(r"pull: 12\.\d MB received from 3/4 engines, ", f) for f in frames), frames
    final = frames[-1]
    # what came back: the replies' buffers as they arrived (the array and a little pickle)
    match = re.fullmatch(
        r"pull: ([\d.]+) MB received from 4/4 engines, \d+\.\d s(, [\d.]+ [kMG]?B/s)?\n", final
    )
    assert match and 4 * 4.0 <= float(match.group(1)) < 4 * 4.1, final

    tty.buffer.seek(0)
    tty.buffer.truncate()
    busy = rc[3].apply_async(time.sleep, 0.8)
    whole = view.gather("big", block=True)
    busy.get(timeout=10)
    assert len(whole) == 4 * 500_000
    final = tty.buffer.getvalue().rsplit("\r", 1)[-1]
    assert re.match(r"gather: 16\.\d MB received from 4/4 engines, ", final), final

    tty.buffer.seek(0)
    tty.buffer.truncate()
    transfer_settings.enabled = False
    view.push(data, block=True)
    assert tty.buffer.getvalue() == ""  # switched off


# -- a batch job's state in the wait (a real single-node Slurm, as tests/test_slurm.py) ------------


def test_cluster_start_shows_the_batch_jobs_state_per_set(tmp_path, profile, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    from conftest import wait_until
    from schedulers import running_slurm
    from test_slurm import engine_config, state, submit

    with running_slurm(tmp_path / "slurm") as slurm:
        blocker = submit(
            slurm, f"--ntasks={slurm.cpus}", f"--output={tmp_path}/%j.out", "--wrap", "sleep 300"
        )
        try:
            wait_until(lambda: state(slurm, blocker) == "RUNNING None", 30, 0.1, "the blocker")
            tty = Tty()
            monkeypatch.setattr("sys.stderr", tty)
            cluster = ipp.Cluster(
                n=2, engines="slurm", profile=profile, cluster_id="", config=engine_config()
            )
            outcome: dict[str, object] = {}

            def start() -> None:
                try:
                    outcome["rc"] = cluster.start_and_connect_sync()
                except BaseException as exc:  # reported by the test's thread
                    outcome["error"] = exc

            starter = threading.Thread(target=start, daemon=True)
            starter.start()
            try:
                wait_until(lambda: bool(cluster.engine_sets), 60, what="the engine job")
                [set_id] = cluster.engine_sets
                queued = f"{set_id}: 0/2 engines registered (PENDING (Resources))"
                wait_until(lambda: queued in tty.buffer.getvalue(), 20, what=queued)
                assert slurm.run("scancel", blocker).returncode == 0
                starter.join(60)
                assert "rc" in outcome, outcome
                final = tty.buffer.getvalue().rsplit("\r", 1)[-1]
                assert re.fullmatch(
                    rf"engines: 2/2 registered, \d+\.\d s; {set_id}: 2/2 engines registered "
                    r"\(RUNNING\)\n",
                    final,
                ), final
            finally:
                cluster.stop_cluster_sync()
                starter.join(30)
        finally:
            slurm.run("scancel", blocker)
