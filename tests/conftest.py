"""Shared fixtures: isolated Jupyter/IPython directories, real clusters, leak checks.

Every test runs with its own IPYTHONDIR and Jupyter directories under a temporary folder, so
nothing touches the user's profiles.  Clusters are real processes on 127.0.0.1; whatever a
test starts is stopped by process group at the end, even when the test fails, and the session
ends by checking that no process of any test cluster is left.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("home")
    saved = {
        k: os.environ.get(k)
        for k in (
            "IPYTHONDIR",
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_DATA_DIR",
            "JUPYTER_RUNTIME_DIR",
            "IPAR_NONINTERACTIVE",
        )
    }
    os.environ["IPYTHONDIR"] = str(base / "ipython")
    os.environ["JUPYTER_CONFIG_DIR"] = str(base / "jupyter-config")
    os.environ["JUPYTER_DATA_DIR"] = str(base / "jupyter-data")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(base / "jupyter-runtime")
    os.environ.pop("IPAR_NONINTERACTIVE", None)
    yield base
    leftovers = cluster_processes(base)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            pass
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    assert not leftovers, f"processes of test clusters were left running: {leftovers}"


def cluster_processes(base: Path | None = None) -> list[psutil.Process]:
    """Controller and engine processes started under this test session's IPYTHONDIR."""
    base = base or Path(os.environ["IPYTHONDIR"]).parent
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if ("ipar_widgets.controller" in cmd or "ipar_widgets.engine" in cmd) and str(base) in cmd:
            found.append(proc)
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie has exited: PID 1 may reap it late)."""
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            pass
    return found


def kill_group_of(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> str:
    """A profile name unique to the test (a long name is cut, and keeps a hash of the whole:
    the parameters of a parametrized test come last, where the cut would drop them)."""
    name = "t-" + request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    if len(name) > 60:
        name = name[:51].rstrip("-_.") + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


class ClusterHandle:
    """A started cluster, its client, and a guaranteed teardown."""

    def __init__(self, profile: str, n: int, **kwargs: object) -> None:
        import ipar_widgets as ipp

        self.cluster = ipp.Cluster(n=n, profile=profile, cluster_id="", **kwargs)
        self.rc = self.cluster.start_and_connect_sync()
        self.pid = self.cluster._data["controller_pid"]  # type: ignore[index]

    def stop(self) -> None:
        try:
            self.cluster.stop_cluster_sync()
        finally:
            kill_group_of(self.pid)


@pytest.fixture
def make_cluster(profile: str) -> Iterator[object]:
    """Factory: ``make_cluster(n=2)`` starts a cluster in this test's profile."""
    handles: list[ClusterHandle] = []

    def make(n: int = 2, profile_name: str | None = None, **kwargs: object) -> ClusterHandle:
        handle = ClusterHandle(profile_name or profile, n, **kwargs)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


@pytest.fixture(scope="module")
def shared_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterHandle]:
    """One 4-engine cluster shared by the tests of a module that do not break engines."""
    name = "m-" + request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    handle = ClusterHandle(name, 4)
    yield handle
    handle.stop()


@pytest.fixture
def rc(shared_cluster: ClusterHandle) -> Iterator[object]:
    """The shared cluster's client, with engines checked and namespaces left as found."""
    client = shared_cluster.rc
    client.wait_for_engines(4, timeout=30)
    yield client
    client.wait(timeout=30)


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true; fail after ``timeout`` seconds (for external state such
    as processes and files, which give no notification)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def python() -> str:
    return sys.executable


def ipar(*args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``ipar`` command (as ``python -m ipar_widgets``); with ``check``, a failure
    raises with its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "ipar_widgets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ipar {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


# browser fixtures (JupyterLab + Chromium), and the failure hook the page fixture reads
from lab import browser, lab, page  # noqa: E402,F401


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + report.when, report)
