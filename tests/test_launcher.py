"""ipyparallel's launcher names (``ipar_widgets.cluster.launcher``) and the configuration a
Cluster takes from them, with real processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets.cluster import launcher
from ipar_widgets.controller.app import ControllerApp


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_local_process_launcher_runs_watches_and_stops(tmp_path: Path) -> None:
    proc = launcher.LocalProcessLauncher(
        cmd_and_args=script(
            "import signal, sys, time\n"
            "signal.signal(signal.SIGUSR1, lambda *a: (print('usr1', flush=True), sys.exit(3)))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)"
        ),
        work_dir=str(tmp_path),
        identifier="sleeper",
    )
    assert proc.state == "before" and proc.args[0] == sys.executable
    stopped: list[dict[str, object]] = []
    proc.on_stop(stopped.append)
    proc.start()
    assert proc.running and proc.poll() is None and proc.process_pid == proc.process.pid  # type: ignore[union-attr]
    with pytest.raises(launcher.ProcessStateError, match="can start once; it is already 'running'"):
        proc.start()
    described = proc.to_dict()
    assert described["state"] == "running" and described["output_file"] == str(
        tmp_path / "sleeper.log"
    )
    watcher = launcher.LocalProcessLauncher.from_dict(described)
    assert watcher.running and watcher.poll() is None
    assert wait_for(lambda: proc.get_output() == "up\n", 10)  # its handler is in place
    proc.signal("SIGUSR1")
    assert proc.wait_for_stop(10)
    assert proc.state == "after" and proc.poll() == 3
    assert stopped == [{"exit_code": 3, "pid": proc.process_pid}]
    assert proc.get_output() == "up\nusr1\n"
    assert watcher.wait_for_stop(10) and watcher.state == "after"
    late: list[dict[str, object]] = []
    proc.on_stop(late.append)  # after the end: called at once
    assert late == stopped


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    proc = launcher.LocalProcessLauncher(
        cmd_and_args=script(
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)"
        ),
        work_dir=str(tmp_path),
        stop_timeout=0.5,
    )
    proc.start()
    assert wait_for(lambda: proc.get_output() == "ready\n", 10)  # SIGTERM is ignored from now
    proc.stop()
    assert proc.state == "after" and proc.poll() == -signal.SIGKILL


def test_launcher_errors_say_what_to_do() -> None:
    with pytest.raises(launcher.LauncherError, match="has no command to run"):
        launcher.LocalProcessLauncher().start()
    with pytest.raises(
        launcher.ProcessStateError, match="cannot signal a process that is 'before'"
    ):
        launcher.LocalProcessLauncher(cmd_and_args=["true"]).signal(signal.SIGINT)
    assert launcher.find_launcher_class("local", "EngineSet") is launcher.LocalEngineSetLauncher
    found = launcher.find_launcher_class(
        "ipyparallel.cluster.launcher.LocalControllerLauncher", "Controller"
    )
    assert found is launcher.LocalControllerLauncher
    with pytest.raises(ValueError, match="unknown EngineSet launcher 'winhpc'"):
        launcher.find_launcher_class("winhpc", "EngineSet")
    with pytest.raises(ValueError, match="unknown EngineSet launcher 'sshproxy'"):
        ipp.Cluster(engines="sshproxy")


def test_engine_launcher_config_reaches_the_engines(profile: str) -> None:
    cfg = Config()
    cfg.EngineLauncher.engine_args = ["--InteractiveShell.colors=nocolor"]
    cluster = ipp.Cluster(
        profile=profile, n=1, controller_args=["--ping=250", "--dictdb"], config=cfg
    )
    assert launcher.LocalEngineSetLauncher(parent=cluster).engine_args == [
        "--InteractiveShell.colors=nocolor"
    ]
    with cluster as rc:
        colors = rc[:].apply_sync(lambda: __import__("IPython").get_ipython().colors)
        assert colors == ["nocolor"]
        assert rc[0].apply_sync(os.getpid) != os.getpid()


def test_controller_launcher_config_reaches_the_controller(profile: str) -> None:
    import psutil

    cfg = Config()
    cfg.ControllerLauncher.controller_args = ["--ping=300"]
    cluster = ipp.Cluster(profile=profile, n=0, controller_args=["--dictdb"], config=cfg)
    cluster.start_controller_sync()
    try:
        assert cluster.controller is not None
        cmdline = psutil.Process(cluster.controller.process.pid).cmdline()
        assert cmdline[-2:] == ["--ping=300", "--dictdb"]  # configured first, then the trait
    finally:
        cluster.stop_cluster_sync()


def test_controller_accepts_ipyparallels_flags() -> None:
    app = ControllerApp()
    app.parse_command_line(["--ping=250", "--dictdb"])
    assert (app.ping, app.heartbeat_period, app.db_class) == (250, 0.25, "DictDB")
    app = ControllerApp()
    app.parse_command_line(["--ControllerApp.db_class=ipyparallel.controller.dictdb.DictDB"])
    assert app.db_class == "DictDB"
    with pytest.raises(TraitError, match="expected one of 'SQLiteDB', 'sqlite', .*'NoDB'"):
        ControllerApp(db_class="MongoDB")
    with pytest.raises(TraitError, match="expected a positive number of ms, found 0"):
        ControllerApp(ping=0)
