"""The public surface: names kept from ipyparallel's API, error rendering, output display."""

from __future__ import annotations

import pickle
import re

import pytest

import ipar_widgets as ipp
from ipar_widgets import error

ANSI = re.compile(r"\x1b\[[0-9;]*m")

# the public names of ipyparallel that code written for it uses with `ipp.<name>`
IPYPARALLEL_NAMES = {
    "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "AlreadyDisplayedError",
    "AsyncHubResult", "AsyncMapResult", "AsyncResult", "BroadcastView", "Client", "Cluster",
    "CompositeError",
    "Dependency", "DependencyTimeout", "DirectView", "EngineError", "IPythonError",
    "ImpossibleDependency", "InvalidDependency", "KernelError", "LoadBalancedView",
    "NoEnginesRegistered", "ParallelFunction", "Reference", "RemoteError", "RemoteFunction",
    "TaskAborted", "TaskRejectError", "TaskTimeout", "TimeoutError", "UnmetDependency",
    "ViewExecutor", "depend", "dependent", "interactive", "parallel", "register_joblib_backend",
    "remote", "require", "ClusterManager",
    "use_cloudpickle", "use_dill", "use_pickle", "error", "version_info",
    # ipyparallel.serialize's functions, which ipyparallel also offers at its top level
    "PrePickled", "can", "can_map", "deserialize_object", "pack_apply_message",
    "serialize_object", "uncan", "uncan_map", "unpack_apply_message",
}  # fmt: skip


def test_public_names() -> None:
    assert set(ipp.__all__) == IPYPARALLEL_NAMES | {"Metadata", "View", "__version__"}
    for name in ipp.__all__:
        assert getattr(ipp, name) is not None
    assert ipp.TimeoutError is TimeoutError
    assert "├── IPythonError" in error.__doc__


def remote(i: int) -> ipp.RemoteError:
    tb = [f"\x1b[31mTraceback\x1b[0m of task {i}", f"ValueError: bad {i}"]
    return ipp.RemoteError("ValueError", f"bad {i}", tb, {"engine_id": i, "method": "apply"})


def test_composite_error_shows_the_first_tracebacks_and_a_count() -> None:
    comp = ipp.CompositeError("one or more exceptions raised in: f", [remote(i) for i in range(6)])
    text = str(comp)
    assert text.splitlines() == [
        "one or more exceptions raised in: f (6 errors)",
        "[0:apply] ValueError: bad 0",
        "[1:apply] ValueError: bad 1",
        "[2:apply] ValueError: bad 2",
        "[3:apply] ValueError: bad 3",
        "... 2 more exceptions ...",
    ]
    lines = [ANSI.sub("", line) for line in comp._render_traceback_()]
    assert [line for line in lines if line.startswith("[")] == [f"[{i}:apply]" for i in range(4)]
    assert lines[-2:] == ["", "... 2 more exceptions ..."]  # the last line, as in ipyparallel
    with pytest.raises(ipp.RemoteError, match=r"\[4:apply\] ValueError: bad 4"):
        comp.raise_exception(4)
    single = ipp.CompositeError("raised in: f", [remote(0)])
    assert single._render_traceback_()[-1] == "1 error"


def test_unwrap_exception_keeps_cluster_errors_apart() -> None:
    dead = error.unwrap_exception(
        {
            "ename": "EngineError",
            "evalue": "engine 2 died",
            "origin": "cluster",
            "engine_info": {"engine_id": 2},
        }
    )
    assert isinstance(dead, ipp.EngineError) and dead.engine_id == 2  # type: ignore[attr-defined]
    # ... and a RemoteError too, as ipyparallel reports it: ename names the kind
    assert isinstance(dead, ipp.RemoteError) and type(dead).__name__ == "EngineError"
    assert (dead.ename, dead.evalue, str(dead)) == (
        "EngineError",
        "engine 2 died",
        "[2:?] EngineError: engine 2 died",
    )
    assert pickle.loads(pickle.dumps(dead)).__class__ is type(dead)
    user = error.unwrap_exception({"ename": "EngineError", "evalue": "raised by user code"})
    assert type(user) is ipp.RemoteError and user.ename == "EngineError"


def test_display_outputs_groupings(rc, capsys) -> None:  # type: ignore[no-untyped-def]
    ar = rc[[0, 1]].execute(
        "import sys\nprint('out', 1)\nprint('err', file=sys.stderr)", silent=False
    )
    ar.get(timeout=10)
    ar.display_outputs("type")
    captured = capsys.readouterr()
    assert captured.out == "[stdout:0] out 1\n[stdout:1] out 1\n"
    assert captured.err == "[stderr:0] err\n[stderr:1] err\n"
    ar.display_outputs("engine")
    captured = capsys.readouterr()
    assert captured.out == "[stdout:0] out 1\n[stdout:1] out 1\n"
    assert captured.err == "[stderr:0] err\n[stderr:1] err\n"
    multi = rc[0].execute("print('a')\nprint('b')", silent=False)
    multi.get(timeout=10)
    multi.display_outputs()
    assert capsys.readouterr().out == "a\nb\n"
    with pytest.raises(ValueError, match="groupby must be one of"):
        ar.display_outputs("bogus")


def test_importing_the_package_loads_none_of_the_layers_that_show_jobs() -> None:
    # the client reaches progress displays, widgets and magics through one door
    # (client/frontend.py) that imports them when called, so scripts pay for none of them
    import subprocess
    import sys

    code = (
        "import sys, ipar_widgets\n"
        "shown = ('ipar_widgets.widgets', 'ipar_widgets.magics', 'ipar_widgets.progress',"
        " 'ipar_widgets.server', 'ipywidgets')\n"
        "print(sorted(m for m in sys.modules if m.startswith(shown)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
