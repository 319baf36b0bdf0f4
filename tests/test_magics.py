"""The parallel magics through IPython's InteractiveShell, against a real 4-engine cluster.

Output is captured with ``capture_output`` and compared as exact text.  Streamed output
arrives in whatever order the engines finish, so it is compared as a multiset of labelled
sections; output shown at the end (``--no-stream``, ``%pxresult``) is compared in order.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets.magics import _registry

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LABEL = re.compile(r"^\[(?:stdout|stderr|output):\d+\]", re.M)
# a 1x1 PNG, for a rich output that is not text
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201b1a3d6"
    "5f0000000049454e44ae426082"
)


@dataclass
class Ran:
    stdout: str
    stderr: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def texts(self) -> list[str]:
        return [o.get("text/plain", "") for o in self.outputs]


def sections(text: str) -> list[str]:
    """Streamed text cut at each ``[stdout:0]``-style label, sorted (arrival order varies)."""
    starts = [m.start() for m in LABEL.finditer(text)]
    assert not starts or starts[0] == 0, f"text before the first label: {text!r}"
    return sorted(text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True))


@ipp.interactive
def next_count() -> int:
    from IPython import get_ipython

    return int(get_ipython().execution_count)


@pytest.fixture(scope="module")
def shell(shared_cluster) -> Iterator[InteractiveShell]:  # type: ignore[no-untyped-def]
    main = sys.modules["__main__"]
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    atexit.unregister(ip.atexit_operations)
    yield ip
    _registry.pop(ip, None)
    ip.input_transformers_cleanup[:] = [
        t for t in ip.input_transformers_cleanup if type(t).__name__ != "AutoPx"
    ]
    ip.history_manager.end_session()
    InteractiveShell.clear_instance()
    sys.modules["__main__"] = main


@pytest.fixture(scope="module")
def client(shell, shared_cluster) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A Client created inside IPython, as a user creates one: it activates the magics."""
    rc = ipp.Client(profile=shared_cluster.cluster.profile)
    rc.wait_for_engines(4, timeout=30)
    yield rc
    rc.close()


@pytest.fixture
def px(shell, client) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The magics with their defaults, bound to ``client``; engines idle afterwards."""
    _registry.get(shell, {}).clear()
    client.activate()
    yield client
    client.wait(timeout=30)


def load_ext(shell: InteractiveShell) -> Ran:
    """``%load_ext ipar_widgets`` as in a fresh session (IPython loads an extension once)."""
    shell.extension_manager.loaded.discard("ipar_widgets")
    return run(shell, "%load_ext ipar_widgets")


def run(shell: InteractiveShell, cell: str) -> Ran:
    with capture_output() as io:
        result = shell.run_cell(cell)
    return Ran(
        io.stdout,
        io.stderr,
        [o.data for o in io.outputs],
        [o.metadata or {} for o in io.outputs],
        result.error_in_exec,
    )


def counts(rc: Any) -> list[int]:
    """The execution count each engine gives its next cell."""
    return list(rc[:].apply_sync(next_count))


# -- registration -------------------------------------------------------------------------------------


def test_client_created_in_ipython_activates_the_magics_on_all_engines(shell, client) -> None:  # type: ignore[no-untyped-def]
    magics = shell.magics_manager.magics
    for name in ("px", "pxresult", "pxconfig", "autopx", "result"):
        assert name in magics["line"], name
    assert "px" in magics["cell"]
    view = _registry[shell][""].view
    assert view.client is client
    assert (view.targets, view.block) == ("all", True)  # evaluated at each execution


def test_new_client_takes_over_from_a_closed_one_and_leaves_foreign_px_alone(
    shell, px, shared_cluster
) -> None:  # type: ignore[no-untyped-def]
    profile = shared_cluster.cluster.profile
    first = ipp.Client(profile=profile)
    assert _registry[shell][""].view.client is px  # an open client stays active
    px.activate()
    first.close()
    _registry[shell][""].bind(first.direct_view("all"))
    second = ipp.Client(profile=profile)
    try:
        assert _registry[shell][""].view.client is second  # the closed one was replaced
        _registry.pop(shell)
        shell.magics_manager.register_function(lambda line: "theirs", "line", "px")
        third = ipp.Client(profile=profile)
        third.close()
        assert shell.run_line_magic("px", "") == "theirs"
    finally:
        second.close()
        px.activate()


def test_outside_ipython_a_client_does_not_import_ipython_and_activate_says_why(
    shared_cluster,
) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys, ipar_widgets as ipp\n"
        f"rc = ipp.Client(profile={shared_cluster.cluster.profile!r})\n"
        "print('IPython' in sys.modules)\n"
        "try:\n"
        "    rc[:].activate()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
        "rc.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out == (
        "False\n"
        "the parallel magics (%px, %%px, %autopx, ...) work in IPython only; outside it, "
        "use view.execute(code) and ar.display_outputs()\n"
    )


def test_load_ext_binds_to_the_next_client(shell, px, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    _registry.pop(shell)
    assert load_ext(shell).error is None
    assert _registry[shell][""]._view is None  # nothing connected yet
    rc = ipp.Client(profile=shared_cluster.cluster.profile)
    try:
        assert _registry[shell][""].view.client is rc
        ran = run(shell, "%px print('bound')")
        assert sections(ran.stdout) == [f"[stdout:{i}] bound\n" for i in range(4)]
    finally:
        rc.close()
        px.activate()


def test_load_ext_alone_connects_to_the_default_profile(shell, px, make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1, profile_name="default")
    _registry.pop(shell)
    load_ext(shell)
    ran = run(shell, "%px print('default profile')")
    assert ran.stdout == "[stdout:0] default profile\n"
    view = _registry[shell][""].view
    assert view.client.url_file != px.url_file
    assert view.client.ids == handle.rc.ids
    view.client.close()


def test_a_load_balanced_view_cannot_be_activated(shell, px) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        TypeError,
        match=r"needs a DirectView \(rc\[:\], rc.direct_view\(\)\), "
        r"not a LoadBalancedView",
    ):
        px.load_balanced_view().activate()


def test_view_activate_with_a_suffix_adds_a_second_set(shell, px) -> None:  # type: ignore[no-untyped-def]
    px[::2].activate("_even")
    try:
        for name in ("px_even", "pxresult_even", "pxconfig_even", "autopx_even"):
            assert name in shell.magics_manager.magics["line"]
        ran = run(shell, "%px_even print('even')")  # rc[::2] does not block
        assert ran.outputs == [] and ran.stdout.startswith("Out[")
        assert isinstance(shell.user_ns["_"], ipp.AsyncResult)
        ran = run(shell, "%pxresult_even")
        assert ran.stdout == "[stdout:0] even\n[stdout:2] even\n"
        ran = run(shell, "%px print('all')")
        assert sections(ran.stdout) == [f"[stdout:{i}] all\n" for i in range(4)]
        assert run(shell, "%autopx_even").stdout == "%autopx_even enabled\n"
        assert run(shell, "%autopx_even").stdout == "%autopx_even disabled\n"
    finally:
        _registry[shell].pop("_even", None)


def test_activate_resolves_a_negative_id_and_starts_from_the_defaults(shell, px) -> None:  # type: ignore[no-untyped-def]
    view = px.activate(-1, "_last")
    try:
        assert (view.targets, view.block) == (3, True)
        run(shell, "%pxconfig_last --verbose --no-stream")
        magics = _registry[shell]["_last"]
        assert (magics.verbose, magics.stream) == (True, False)
        ran = run(shell, "%px_last print('last')")
        assert ran.stdout == "Parallel execution on engine(s): 3\nlast\n"
        # as in ipyparallel, activating again (any view) forgets what %pxconfig set
        again = px[-1:]
        again.block = True
        again.activate("_last")
        magics = _registry[shell]["_last"]
        assert (magics.verbose, magics.stream, magics.view.targets) == (False, True, [3])
        assert run(shell, "%px_last print('again')").stdout == "[stdout:3] again\n"
    finally:
        _registry[shell].pop("_last", None)


def test_activate_keeps_a_running_autopx(shell, px) -> None:  # type: ignore[no-untyped-def]
    assert run(shell, "%autopx").stdout == "%autopx enabled\n"
    try:
        px.activate([0, 1])
        ran = run(shell, "print('still on the engines')")
        assert sections(ran.stdout) == [f"[stdout:{i}] still on the engines\n" for i in (0, 1)]
    finally:
        assert run(shell, "%autopx").stdout == "%autopx disabled\n"


# -- output formats -----------------------------------------------------------------------------------


def test_streamed_stdout_stderr_and_results(shell, px) -> None:  # type: ignore[no-untyped-def]
    n = counts(px)
    ran = run(
        shell,
        "%%px\nimport sys\nprint('hi')\nprint('two\\nlines')\n"
        "print('oops', file=sys.stderr)\n6 * 7",
    )
    assert sections(ran.stdout) == [f"[stdout:{i}]\nhi\ntwo\nlines\n" for i in range(4)]
    assert sections(ran.stderr) == [f"[stderr:{i}] oops\n" for i in range(4)]
    assert sorted(ran.texts) == [f"Out[{i}:{n[i]}]: 42" for i in range(4)]
    assert ran.error is None


def test_line_magic_streams_as_it_arrives(shell, px) -> None:  # type: ignore[no-untyped-def]
    # engine i prints at 0.4*i s: streamed, the order is the engines' order
    ran = run(
        shell,
        "%px import time; time.sleep(0.4 * __ipar_engine_id__); print('at', __ipar_engine_id__)",
    )
    assert ran.stdout == "".join(f"[stdout:{i}] at {i}\n" for i in range(4))


def test_streamed_lines_of_engines_do_not_cut_into_each_other(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = run(
        shell,
        "%%px --targets [0,1]\nimport time\nif __ipar_engine_id__ == 0:\n"
        "    print('a', end='', flush=True); time.sleep(0.3); print('b')\n"
        "else:\n    time.sleep(0.1); print('c')",
    )
    assert ran.stdout == "[stdout:1] c\n[stdout:0] ab\n"


def test_no_stream_shows_everything_at_the_end_grouped_by_type(shell, px) -> None:  # type: ignore[no-untyped-def]
    n = counts(px)
    ran = run(shell, "%%px --no-stream\nimport sys\nprint('out')\nprint('err', file=sys.stderr)\n7")
    assert ran.stdout == "".join(f"[stdout:{i}] out\n" for i in range(4))
    assert ran.stderr == "".join(f"[stderr:{i}] err\n" for i in range(4))
    assert ran.texts == [f"Out[{i}:{n[i]}]: 7" for i in range(4)]


DISPLAY_TWICE = (
    "from IPython.display import display, HTML\n"
    "e = __ipar_engine_id__\n"
    "print('p', e)\n"
    "display(HTML(f'<b>first {e}</b>'))\n"
    "display(HTML(f'<i>second {e}</i>'))\n"
    "e"
)


@pytest.mark.parametrize(
    "flag", ["--group-outputs=type", "--group-outputs=engine", "-e", "--group-outputs=order", "-r"]
)
def test_group_outputs(shell, px, flag) -> None:  # type: ignore[no-untyped-def]
    n = counts(px)
    ran = run(shell, f"%%px --no-stream {flag}\n{DISPLAY_TWICE}")
    first = [f"<b>first {i}</b>" for i in range(4)]
    second = [f"<i>second {i}</i>" for i in range(4)]
    results = [f"Out[{i}:{n[i]}]: {i}" for i in range(4)]
    html = [o.get("text/html") for o in ran.outputs]
    if flag in ("--group-outputs=engine", "-e"):
        assert ran.stdout == "".join(f"[stdout:{i}] p {i}\n[output:{i}]\n" for i in range(4))
        assert html == [x for i in range(4) for x in (first[i], second[i], None)]
        assert ran.texts[2::3] == results
    elif flag in ("--group-outputs=order", "-r"):
        assert ran.stdout == "".join(f"[stdout:{i}] p {i}\n" for i in range(4)) + "".join(
            f"[output:{i}]\n" for i in [0, 1, 2, 3, 0, 1, 2, 3]
        )
        assert html == first + second + [None] * 4
        assert ran.texts[8:] == results
    else:
        assert ran.stdout == "".join(f"[stdout:{i}] p {i}\n" for i in range(4)) + "".join(
            f"[output:{i}]\n" for i in range(4)
        )
        assert html == [x for i in range(4) for x in (first[i], second[i])] + [None] * 4
        assert ran.texts[8:] == results
    engines = [md["engine"] for md in ran.metadata if "engine" in md]
    if flag in ("--group-outputs=order", "-r"):
        assert engines == [0, 1, 2, 3, 0, 1, 2, 3]
    else:
        assert engines == [0, 0, 1, 1, 2, 2, 3, 3]


def test_streamed_displays_and_images_are_republished_with_their_engine(shell, px) -> None:  # type: ignore[no-untyped-def]
    px[:].push({"png": PNG}, block=True)
    ran = run(shell, "%px from IPython.display import display, Image; display(Image(data=png))")
    assert sections(ran.stdout) == [f"[output:{i}]\n" for i in range(4)]
    assert sorted(md["engine"] for md in ran.metadata) == [0, 1, 2, 3]
    assert all("image/png" in o for o in ran.outputs)


def test_one_engine_is_labelled_when_streamed_and_not_at_the_end(shell, px) -> None:  # type: ignore[no-untyped-def]
    # as ipyparallel: streamed output always carries its engine; shown at the end, the output
    # of one engine (an int target) is that engine's alone
    n = counts(px)[1]
    ran = run(shell, "%%px --targets 1 --stream\nprint('only one')\n1")
    assert ran.stdout == "[stdout:1] only one\n"
    assert ran.texts == [f"Out[1:{n}]: 1"]
    ran = run(shell, "%%px --targets 1 --no-stream\nprint('only one')\n1")
    assert ran.stdout == "only one\n"
    assert ran.texts == [f"Out[1:{n + 1}]: 1"]
    ran = run(shell, "%%px --targets [1] --no-stream\nprint('a list of one')")
    assert ran.stdout == "[stdout:1] a list of one\n"


@pytest.mark.parametrize(
    ("targets", "engines"),
    [
        ("all", [0, 1, 2, 3]),
        ("2", [2]),
        ("[0,3]", [0, 3]),
        ("::2", [0, 2]),
        ("1:3", [1, 2]),
        ("-1", [3]),
        ("(1,2)", [1, 2]),
        ('"[0, 1]"', [0, 1]),
    ],
)
def test_targets(shell, px, targets, engines) -> None:  # type: ignore[no-untyped-def]
    ran = run(shell, f"%%px --no-stream --targets {targets}\nprint('here')")
    if len(engines) == 1 and targets in ("2", "-1"):
        assert ran.stdout == "here\n"
        assert px.metadata[_registry[shell][""].last_result.msg_ids[0]]["engine_id"] == engines[0]
    else:
        assert ran.stdout == "".join(f"[stdout:{i}] here\n" for i in engines)


def test_bad_targets_are_a_usage_error(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = run(shell, "%%px --targets 7\nprint(1)")
    assert ran.stderr == "UsageError: No such engine: 7 (registered engines: [0, 1, 2, 3])\n"
    ran = run(shell, "%%px --targets evens\nprint(1)")
    assert ran.stderr == (
        "UsageError: --targets 'evens': expected 'all', an engine id (1), a list of ids "
        "([0, 2]) or a slice (::2)\n"
    )


# -- errors ------------------------------------------------------------------------------------------


def test_streamed_errors_show_the_first_tracebacks_then_one_line_each_then_a_count(
    shell, px, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ipp.CompositeError, "tb_limit", 2)
    ran = run(shell, "%px 1/0")
    err = ANSI.sub("", ran.stderr)
    headers = re.findall(r"^\[(\d):execute\]$", err, re.M)
    one_liners = re.findall(r"^\[(\d):execute\] ZeroDivisionError: division by zero$", err, re.M)
    assert len(headers) == 2 and len(one_liners) == 2
    assert sorted(headers + one_liners) == ["0", "1", "2", "3"]
    assert err.count("Traceback (most recent call last)") == 2
    assert ran.stdout == "4 errors\n"
    assert isinstance(ran.error, ipp.AlreadyDisplayedError)
    assert len(ran.error.original_error.elist) == 4


def test_errors_at_the_end_show_the_first_engines_then_how_many_more(
    shell, px, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ipp.CompositeError, "tb_limit", 2)
    ran = run(shell, "%%px --no-stream\nprint('before')\n1/0")
    lines = ANSI.sub("", ran.stdout).splitlines()
    assert lines[:4] == [f"[stdout:{i}] before" for i in range(4)]
    assert [line for line in lines if re.fullmatch(r"\[\d:execute\]", line)] == [
        "[0:execute]",
        "[1:execute]",
    ]
    assert lines[-1] == "... 2 more exceptions ..."
    assert lines.count("ZeroDivisionError: division by zero") == 2
    assert isinstance(ran.error, ipp.CompositeError)


def test_one_engine_raises_its_own_error(shell, px) -> None:  # type: ignore[no-untyped-def]
    # streamed, its traceback comes as it happens (stderr); then, as in ipyparallel, the cell
    # raises the engine's RemoteError itself, which IPython shows in full
    ran = run(shell, "%%px --targets 2\nraise ValueError('bad value')")
    err = ANSI.sub("", ran.stderr)
    assert err.startswith("[2:execute]\n") and err.endswith("ValueError: bad value\n")
    out = ANSI.sub("", ran.stdout)
    assert out.startswith("[2:execute]\n") and out.endswith("ValueError: bad value\n")
    assert type(ran.error) is ipp.RemoteError
    assert (ran.error.ename, ran.error.engine_id) == ("ValueError", 2)
    ran = run(shell, "%%px --targets 2 --no-stream\nraise ValueError('bad value')")
    assert ran.stderr == ""
    out = ANSI.sub("", ran.stdout)
    assert out.startswith("[2:execute]\n") and out.endswith("ValueError: bad value\n")
    assert type(ran.error) is ipp.RemoteError


# -- blocking, results, config -------------------------------------------------------------------------


def test_noblock_returns_the_asyncresult_and_pxresult_shows_it(shell, px) -> None:  # type: ignore[no-untyped-def]
    n = counts(px)
    ran = run(shell, "%%px --noblock\nimport time; time.sleep(0.5)\nprint('later')\n'done'")
    assert re.fullmatch(r"Out\[\d+\]: <AsyncResult\(%px\): pending>\n", ran.stdout)
    ar = shell.user_ns["_"]
    assert isinstance(ar, ipp.AsyncResult) and not ar.ready()
    ran = run(shell, "%pxresult")
    assert ran.stdout == "".join(f"[stdout:{i}] later\n" for i in range(4))
    assert ran.texts == [f"Out[{i}:{n[i]}]: 'done'" for i in range(4)]
    ran = run(shell, "%pxresult -e")
    assert ran.stdout == "".join(f"[stdout:{i}] later\n[output:{i}]\n" for i in range(4))
    assert run(shell, "%result").stdout == "".join(f"[stdout:{i}] later\n" for i in range(4))


def test_out_stores_the_asyncresult(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = run(shell, "%%px -o kept\nx = 1")
    assert (ran.stdout, ran.outputs, ran.error) == ("", [], None)
    kept = shell.user_ns["kept"]
    assert isinstance(kept, ipp.AsyncResult) and kept.ready() and len(kept.msg_ids) == 4
    run(shell, "%pxresult -o again")
    assert shell.user_ns["again"] is kept


def test_pxresult_before_any_execution_is_a_usage_error(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = run(shell, "%pxresult")
    assert ran.stderr == (
        "UsageError: %pxresult shows the last %px execution, and there has been none yet.\n"
    )


def test_local_also_runs_the_cell_here(shell, px) -> None:  # type: ignore[no-untyped-def]
    shell.user_ns.pop("where", None)
    ran = run(shell, "%%px --local\nimport os\nwhere = os.getpid()\nprint('ran')")
    assert ran.stdout.startswith("ran\n")
    assert sections(ran.stdout[len("ran\n") :]) == [f"[stdout:{i}] ran\n" for i in range(4)]
    assert shell.user_ns["where"] == os.getpid()
    remote = px[:]["where"]
    assert len(set(remote)) == 4 and os.getpid() not in remote


def test_verbose_says_where_code_runs(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = run(shell, "%%px --verbose --targets ::2 --no-stream\nprint('v')")
    assert ran.stdout == "Parallel execution on engine(s): [0, 2]\n[stdout:0] v\n[stdout:2] v\n"
    ran = run(shell, "%%px --verbose --noblock\nprint('v')")
    assert ran.stdout.startswith("Async parallel execution on engine(s): all\nOut[")


def test_pxconfig_sets_the_defaults(shell, px) -> None:  # type: ignore[no-untyped-def]
    magics = _registry[shell][""]
    run(
        shell,
        "%pxconfig --noblock --targets ::2 --verbose --no-stream -e "
        "--progress-after -1 --signal-on-interrupt TERM",
    )
    # a slice is taken of the engines there are now, as in ipyparallel
    assert (magics.view.block, magics.view.targets) == (False, [0, 2])
    assert (magics.verbose, magics.stream, magics.groupby) == (True, False, "engine")
    assert (magics.progress_after, magics.signal_on_interrupt) == (-1, "TERM")
    ran = run(shell, "%px print('cfg')")
    assert ran.stdout.startswith("Async parallel execution on engine(s): [0, 2]\nOut[")
    run(shell, "%pxconfig --block --no-verbose --targets all --signal-on-interrupt 2")
    ran = run(shell, "%px print('cfg'); 5")
    assert ran.stdout == "".join(f"[stdout:{i}] cfg\n[output:{i}]\n" for i in range(4))
    assert [t.split(": ")[1] for t in ran.texts] == ["5"] * 4
    assert magics.signal_on_interrupt == 2
    ran = run(shell, "%pxconfig --signal-on-interrupt SIGNOPE")
    assert ran.stderr.startswith("UsageError: --signal-on-interrupt 'SIGNOPE': expected")


def test_no_var_expand_in_px(shell, px) -> None:  # type: ignore[no-untyped-def]
    shell.user_ns["here_only"] = "local"
    ran = run(shell, "%px print('$here_only')")
    assert sections(ran.stdout) == [f"[stdout:{i}] $here_only\n" for i in range(4)]


# -- %autopx -----------------------------------------------------------------------------------------


def test_autopx_sends_every_cell_until_called_again(shell, px) -> None:  # type: ignore[no-untyped-def]
    shell.user_ns.pop("on_engines", None)
    assert run(shell, "%autopx").stdout == "%autopx enabled\n"
    try:
        assert shell.check_complete("for i in range(3):\n")[0] == "incomplete"
        ran = run(shell, "on_engines = __ipar_engine_id__ * 10\nprint(on_engines)")
        assert sections(ran.stdout) == [f"[stdout:{i}] {i * 10}\n" for i in range(4)]
        assert "on_engines" not in shell.user_ns
    finally:
        assert run(shell, "%autopx").stdout == "%autopx disabled\n"
    assert px[:]["on_engines"] == [0, 10, 20, 30]
    ran = run(shell, "print('local again')")
    assert ran.stdout == "local again\n"


def test_autopx_blocking_shows_an_engine_error_and_goes_on(shell, px) -> None:  # type: ignore[no-untyped-def]
    view = px[3]
    view.block = True
    view.activate()  # one engine: its error is raised, and IPython shows it
    assert run(shell, "%autopx").stdout == "%autopx enabled\n"
    try:
        run(shell, "b = 12345\nc = 0")
        ran = run(shell, "b / c")
        assert "ZeroDivisionError: division by zero" in ANSI.sub("", ran.stdout)
        assert type(ran.error) is ipp.RemoteError
        ran = run(shell, "b * 2")
        assert re.fullmatch(r"Out\[3:\d+\]: 24690\n", ran.texts[0] + "\n"), ran.texts
    finally:
        assert run(shell, "%autopx").stdout == "%autopx disabled\n"
    assert view["b"] == 12345


def test_autopx_nonblocking_shows_nothing_and_an_error_aborts_the_queued_cells(shell, px) -> None:  # type: ignore[no-untyped-def]
    view = px[3]
    view.activate()
    view.block = False
    ran = [run(shell, "%autopx")]
    try:
        for cell in ("a = 5\nb = 10\nc = 0", "import time; time.sleep(0.5)", "b / c", "b *= 2"):
            ran.append(run(shell, cell))
    finally:
        ran.append(run(shell, "%autopx"))
    # no Out[...] for the AsyncResults (%pxresult has the last one), no error here
    assert "".join(r.stdout for r in ran) == "%autopx enabled\n%autopx disabled\n"
    last = _registry[shell][""].last_result
    assert last.wait(10)
    # as ipykernel (and so ipyparallel) does: the cell queued behind the failed one is aborted
    with pytest.raises(ipp.TaskAborted):
        last.get()
    assert view.pull("b", block=True) == 10


def test_execute_aborts_queued_cells_after_a_non_silent_error_only(px) -> None:  # type: ignore[no-untyped-def]
    view = px[2]
    # silent (view.execute's default): cells are independent
    ars = [
        view.execute(code, block=False) for code in ("import time; time.sleep(0.3)", "1/0", "x = 1")
    ]
    assert ars[2].get(timeout=10).status == "ok"
    # not silent (what %px sends): an error aborts what was queued behind it, as ipykernel does
    ars = [
        view.execute(code, silent=False, block=False)
        for code in ("import time; time.sleep(0.3)", "1/0", "x = 2")
    ]
    with pytest.raises(ipp.TaskAborted, match="was aborted before it started"):
        ars[2].get(timeout=10)
    assert ars[2].metadata["status"] == "aborted" and ars[2].metadata["engine_id"] == 2
    assert view["x"] == 1
    assert view.execute("x = 3", silent=False).get().status == "ok"  # later cells run again


def test_a_blocking_call_never_overtakes_a_non_blocking_px(shell, px) -> None:  # type: ignore[no-untyped-def]
    view = px[-1:]
    view.activate()
    view.block = False
    for i in range(30):
        shell.run_line_magic("px", f"a = {i}")
        assert view["a"] == [i]


# -- interrupting --------------------------------------------------------------------------------------


def interrupted(shell: InteractiveShell, cell: str, after: float = 1.0) -> Ran:
    """Run ``cell`` and press Ctrl-C ``after`` seconds in (a SIGINT to this process)."""
    timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGINT))
    tic = time.monotonic()
    timer.start()
    try:
        ran = run(shell, cell)
    finally:
        timer.cancel()
    assert time.monotonic() - tic < 10
    return ran


def test_keyboard_interrupt_signals_the_engines_says_so_and_returns(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = interrupted(shell, "%%px\nimport time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    assert sections(ran.stdout) == [f"[stdout:{i}] sleeping\n" for i in range(4)]
    # ipyparallel's line; the cell ends normally (a notebook's "run all" goes on)
    assert ran.stderr == "Received Keyboard Interrupt. Sending signal SIGINT to engines...\n"
    assert ran.error is None
    ar = _registry[shell][""].last_result
    assert ar.wait(10), "the engines did not stop"
    assert [e.ename for e in ar.get(return_exceptions=True)] == ["KeyboardInterrupt"] * 4


@pytest.mark.parametrize("flag", ["--signal-on-interrupt 2", "--signal-on-interrupt SIGINT"])
def test_signal_on_interrupt_is_named_as_given(shell, px, flag) -> None:  # type: ignore[no-untyped-def]
    ran = interrupted(shell, f"%%px --targets 0 {flag}\nimport time\ntime.sleep(60)")
    spec = flag.split()[1]
    assert ran.stderr == f"Received Keyboard Interrupt. Sending signal {spec} to engines...\n"
    ar = _registry[shell][""].last_result
    assert ar.wait(10) and ar.get(return_exceptions=True).ename == "KeyboardInterrupt"


def test_signal_0_leaves_the_engines_running_and_no_stream_shows_what_came(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = interrupted(
        shell,
        "%%px --targets [0,1] --no-stream --signal-on-interrupt 0\n"
        "import time\nprint('started')\ntime.sleep(2)\nprint('finished')",
        after=0.5,
    )
    assert ran.stderr == "Received Keyboard Interrupt. Sending signal 0 to engines...\n"
    assert ran.stdout == ""  # the engines were still running a second later: nothing shown
    ar = _registry[shell][""].last_result
    assert ar.wait(10)
    assert [r.stdout for r in ar.get()] == ["started\nfinished\n"] * 2


def test_interrupted_no_stream_shows_the_output_of_the_stopped_engines(shell, px) -> None:  # type: ignore[no-untyped-def]
    ran = interrupted(
        shell, "%%px --no-stream --targets [2,3]\nprint('before')\nimport time; time.sleep(60)"
    )
    assert ran.stderr == "Received Keyboard Interrupt. Sending signal SIGINT to engines...\n"
    assert ran.stdout == "[stdout:2] before\n[stdout:3] before\n"
    assert ran.error is None


def test_pxconfig_signal_on_interrupt_is_the_default(shell, px) -> None:  # type: ignore[no-untyped-def]
    run(shell, "%pxconfig --signal-on-interrupt 0")
    ran = interrupted(shell, "%%px --targets 1\nimport time\ntime.sleep(1.5)\n'done'", after=0.5)
    assert ran.stderr == "Received Keyboard Interrupt. Sending signal 0 to engines...\n"
    ar = _registry[shell][""].last_result
    assert ar.wait(10) and ar.get().data["text/plain"] == "'done'"


def test_noninteractive_environment_turns_streaming_off(shell, px, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("IPAR_NONINTERACTIVE", "1")
    _registry[shell].clear()
    px.activate()
    assert _registry[shell][""].stream is False
    ran = run(shell, "%px print('at the end')")
    assert ran.stdout == "".join(f"[stdout:{i}] at the end\n" for i in range(4))


# -- the text of the live displays (pure functions) ------------------------------------------------


def test_block_text_matches_the_layout_shown_at_the_end() -> None:
    from ipar_widgets.magics.text import block_text

    runs = [("stdout", "a\n"), ("stderr", "warn\n"), ("stdout", "b\nc\n")]
    assert block_text(3, runs) == "[stdout:3] a\n[stderr:3] warn\n[stdout:3]\nb\nc\n"
    assert block_text(3, [("stdout", "no newline")]) == "[stdout:3] no newline"
    assert block_text(0, [("stdout", " 10%\r 50%\r100%\nnext\r\n")]) == "[stdout:0]\n100%\nnext\n"


def test_tail_keeps_whole_lines_and_says_what_it_left_out() -> None:
    from ipar_widgets.magics.text import tail

    text = "".join(f"line {i}\n" for i in range(1000))
    assert tail(text, len(text)) == text
    cut = tail(text, 30)
    assert (
        cut
        == f"[... {len(text) - 27} characters above, shown when the cell ends ...]\n"
        + "line 997\nline 998\nline 999\n"
    )


def test_progress_text() -> None:
    from ipar_widgets.magics.text import progress_text
    from ipar_widgets.progress.snapshot import EngineRow, Snapshot

    rows = (
        EngineRow(0, done=1),
        EngineRow(1, running=1),
        EngineRow(2, failed=1),
        EngineRow(3, running=1),
    )
    live = Snapshot(
        fname="execute", total=4, done=1, failed=1, running=2, elapsed=2.04, engines=rows
    )
    assert progress_text("%px", live) == "%px: 2/4 engines done (1 failed), 2.0 s; waiting for 1, 3"
    assert progress_text("%px", live, interrupted=True) == (
        "%px: interrupted after 2.0 s; 2/4 engines done (1 failed)"
    )
    done = Snapshot(fname="execute", total=4, done=4, elapsed=3.14, ready=True)
    assert progress_text("%px_even", done) == "%px_even: 4/4 engines done in 3.1 s"
