"""The error tree: written out in error.py's docstring exactly as the classes are, and raised
the same way whoever asks the controller."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psutil
import pytest

import ipar_widgets as ipp
from ipar_widgets import error, paths
from ipar_widgets.cluster import control


def documented_tree() -> dict[str, list[str]]:
    """name -> its documented bases, read from error.py's docstring: the parent in the
    tree, plus those in "(also X)"; "(X)" names the only base."""
    assert error.__doc__ is not None
    tree: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    for line in error.__doc__.splitlines():
        m = re.match(r"^\s*((?:│   |    )*)(?:├── |└── )(\w+)(?: \(([^)]*)\))?", line)
        if not m:
            if line.strip() == "Exception":
                stack = [(-1, "Exception")]
            continue
        depth = len(m.group(1)) // 4
        name, note = m.group(2), m.group(3) or ""
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if note.startswith("also "):
            tree[name] = [stack[-1][1], note.removeprefix("also ")]
        elif note and note != "builtin":
            tree[name] = [note]
        else:
            tree[name] = [stack[-1][1]]
        stack.append((depth, name))
    return tree


def test_the_docstring_tree_is_the_class_tree() -> None:
    tree = documented_tree()
    defined = {
        name
        for name, obj in vars(error).items()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == error.__name__
    }
    assert defined == set(tree) - {"TimeoutError"}  # every class is in the tree, and only they
    for name, documented in tree.items():
        cls = getattr(error, name)
        if name == "TimeoutError":
            assert cls is TimeoutError
            continue
        assert [b.__name__ for b in cls.__bases__] == documented, name
    assert set(error.__all__) >= defined


def test_a_refusal_is_the_same_error_whoever_asks(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    expected = "purge_request needs 'msg_ids' (a list, or 'all') or 'engine_ids'"
    with pytest.raises(error.ControllerRefused) as from_client:
        handle.rc.purge_hub_results()  # neither tasks nor engines to purge
    with pytest.raises(error.ControllerRefused) as from_control:
        control.request(handle.cluster._data, "purge_request", {"msg_ids": [], "engine_ids": []})
    for caught in (from_client.value, from_control.value):
        assert str(caught) == caught.reason == expected
        assert caught.request == "purge_request"
        assert isinstance(caught, ValueError) and isinstance(caught, error.ClusterError)
    # True is an int to Python, not an engine id
    with pytest.raises(error.ControllerRefused) as not_an_id:
        control.request(handle.cluster._data, "shutdown_request", {"targets": [True]})
    assert str(not_an_id.value) == "'targets' must be an engine id or a list of them, found [True]"


def test_silence_is_the_same_error_whoever_asks(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    data = handle.cluster._data
    address = f"tcp://{data['location']}:{data['ports']['client']}"
    controller = psutil.Process(handle.pid)
    controller.suspend()
    try:
        with pytest.raises(error.NoAnswer) as from_control:
            control.request(data, "status_request", timeout=0.3)
        with pytest.raises(error.NoAnswer) as from_client:
            handle.rc.status(timeout=0.3)
    finally:
        controller.resume()
    assert str(from_control.value) == (
        f"the controller at {address} did not answer within 0.3 s; is the cluster running? "
        "(see: ipar list; the request was status_request)"
    )
    assert str(from_client.value).startswith(f"the controller at {address} (from ")
    for caught in (from_client.value, from_control.value):
        assert isinstance(caught, TimeoutError) and caught.timeout == 0.3
        assert caught.request == "status_request"


def test_an_engine_that_fails_to_start_ends_the_wait_with_its_log(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    config = Path(handle.cluster.profile_dir) / "ipython_config.py"
    config.write_text("raise SystemExit('broken engine configuration')\n")
    try:
        set_id = handle.cluster.start_engines_sync(1)
        assert isinstance(set_id, str) and set_id in handle.cluster.engines
        started = time.monotonic()
        with pytest.raises(error.EngineStartFailed) as caught:
            handle.rc.wait_for_engines(1, timeout=60)
    finally:
        config.unlink()
    assert time.monotonic() - started < 30  # at once, not at the timeout
    failure = caught.value
    assert isinstance(failure, ipp.EngineError) and failure.returncode not in (0, None)
    assert "broken engine configuration" in failure.log_tail
    assert str(failure).startswith(f"engine 0 exited with code {failure.returncode}")
    assert Path(failure.log).parent == paths.profile_dir(handle.cluster.profile) / "log"


def test_waiting_too_long_for_engines_says_how_many_came(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    with pytest.raises(error.EnginesNotReady) as caught:
        handle.rc.wait_for_engines(2, timeout=0.3)
    assert (caught.value.registered, caught.value.wanted, caught.value.timeout) == (1, 2, 0.3)
    assert str(caught.value) == "1 engine(s) registered of the 2 waited for, after 0.3 s"


def test_a_closed_client_says_so(make_cluster) -> None:  # type: ignore[no-untyped-def]
    rc = make_cluster(n=1).rc
    rc.close()
    assert rc.closed
    with pytest.raises(error.ClientClosed) as caught:
        rc[0].apply_async(abs, -1)
    assert str(caught.value) == (
        "this client is closed: cannot submit tasks; connect a new Client to go on"
    )
    with pytest.raises(error.ClientClosed, match="cannot ask the controller \\(status_request\\)"):
        rc.status()
