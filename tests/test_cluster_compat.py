"""The Cluster's ipyparallel-shaped API: engine sets, the controller's launcher, to_dict /
from_dict across processes, profile configuration, launcher abbreviations, and waits that
stop when the engines can no longer come."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive, kill_group_of, wait_until
from traitlets.config import Config

import ipar_widgets as ipp
from ipar_widgets.cluster.launcher import LocalEngineSetLauncher, find_launcher_class
from ipar_widgets.cluster.mpilauncher import MPIEngineSetLauncher

pytestmark = pytest.mark.timeout(120)


def _stop(cluster: ipp.Cluster) -> None:
    pid = (cluster._data or {}).get("controller_pid")
    cluster.stop_cluster_sync()
    if pid:
        kill_group_of(pid)


def _set_pids(cluster: ipp.Cluster, set_id: str) -> list[int]:
    return [int(p["pid"]) for p in cluster.engines[set_id].processes]  # type: ignore[attr-defined]


def test_an_engine_set_is_started_named_signalled_and_stopped(profile: str, tmp_path: Path) -> None:
    config = Config()
    config.EngineLauncher.engine_args = ["--log-level=DEBUG"]  # wins over the cluster's level
    cluster = ipp.Cluster(
        profile=profile, cluster_id="", controller_args=["--log-level=DEBUG"], config=config
    )
    assert repr(cluster) == f"<Cluster(cluster_id='', profile={profile!r})>"
    try:
        cluster.start_controller_sync()
        assert cluster.controller is not None and cluster.controller.process is not None
        controller_process = cluster.controller.process
        assert controller_process.is_running()
        # controller_args' level replaces the cluster's (the controller refuses it twice)
        levels = [a for a in cluster.controller.args if a.startswith("--log-level")]
        assert levels == ["--log-level=DEBUG"]
        with pytest.raises(RuntimeError, match="already running"):
            cluster.start_controller_sync()

        assert cluster.start_engines_sync(2, "first") == "first"
        engine_set = cluster.engines["first"]
        assert isinstance(engine_set, find_launcher_class("local", "engine"))
        assert cluster.engine_set is engine_set and engine_set.n == 2
        assert repr(cluster) == (
            f"<Cluster(cluster_id='', profile={profile!r}, controller=<running>, "
            "engine_sets=['first'])>"
        )
        rc = cluster.connect_client_sync()
        rc.wait_for_engines(2, timeout=60)
        pids = _set_pids(cluster, "first")
        assert sorted(rc[:].apply_sync(os.getpid)) == sorted(pids)

        # a signal to the set reaches its engines: SIGINT interrupts what they run
        def _mark_then_sleep(folder: str, seconds: float) -> None:  # sent by value
            import os
            import time

            open(os.path.join(folder, str(os.getpid())), "w").close()
            time.sleep(seconds)

        ar = rc[:].apply_async(_mark_then_sleep, str(tmp_path), 30)
        wait_until(lambda: len(list(tmp_path.iterdir())) == 2, 20, what="both tasks running")
        cluster.signal_engines_sync(signal.SIGINT, "first")
        with pytest.raises(ipp.error.CompositeError) as info:
            ar.get(timeout=20)
        assert {e.ename for e in info.value.elist} == {"KeyboardInterrupt"}  # type: ignore[attr-defined]

        cluster.restart_engines_sync("first")
        assert list(cluster.engines) == ["first"]
        new_pids = _set_pids(cluster, "first")
        assert not set(new_pids) & set(pids)
        wait_until(lambda: not alive(pids), 20, what="the old engines to exit")
        rc.wait_for_engines(2, timeout=60)
        assert sorted(rc[:].apply_sync(os.getpid)) == sorted(new_pids)
        assert not alive(pids)

        cluster.stop_engines_sync("first")
        assert cluster.engines == {} and not alive(new_pids)
        with pytest.raises(KeyError, match="no engine set 'first'"):
            cluster.stop_engines_sync("first")
        out = engine_set.get_output()
        assert "Completed registration with id 0" in out
        assert "Completed registration with id 1" in out
        assert "Searching path" in out  # a debug line: the engines took engine_args' level
    finally:
        _stop(cluster)
    assert cluster.controller is None
    assert controller_process.wait(timeout=5) is not None and not controller_process.is_running()


def test_a_cluster_described_by_to_dict_is_stopped_from_another_process(profile: str) -> None:
    cluster = ipp.Cluster(n=1, profile=profile, cluster_id="")
    try:
        rc = cluster.start_and_connect_sync()
        description = cluster.to_dict()
        assert list(description["engines"]) == list(cluster.engines)
        controller_pid = cluster.controller.process.pid  # type: ignore[union-attr]
        engine_pids = _set_pids(cluster, next(iter(cluster.engines)))
        script = (
            "import json, sys\n"
            "import ipar_widgets as ipp\n"
            "c = ipp.Cluster.from_dict(json.loads(sys.stdin.read()))\n"
            "assert not c.shutdown_atexit\n"
            "print(c.controller.process.pid, c.engine_set.n, c.engine_launcher_class.__name__)\n"
            "c.stop_cluster_sync()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(description),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str(controller_pid), "1", "LocalEngineSetLauncher"]
        assert not alive([controller_pid, *engine_pids])
        rc.close()
    finally:
        _stop(cluster)  # stopping a cluster stopped elsewhere does not raise


def test_waiting_for_engines_fails_once_every_engine_set_has_ended(
    profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("import os\nos._exit(3)\n")  # IPython runs $PYTHONSTARTUP in each engine
    monkeypatch.setenv("PYTHONSTARTUP", str(crash))
    cluster = ipp.Cluster(n=1, profile=profile, cluster_id="")
    try:
        cluster.start_cluster_sync()
        rc = cluster.connect_client_sync()
        started = time.monotonic()
        with pytest.raises(ipp.error.EngineError, match="engine sets have all stopped"):
            rc.wait_for_engines(2, timeout=60)
        assert time.monotonic() - started < 30
        rc.close()
    finally:
        _stop(cluster)


def test_the_profile_config_is_under_what_is_given(tmp_path: Path) -> None:
    (tmp_path / "ipcluster_config.json").write_text(
        json.dumps(
            {"Cluster": {"controller_args": ["--from-profile"], "n": 5, "engine_timeout": 10}}
        )
    )
    config = Config()
    config.Cluster.engine_timeout = 20
    cluster = ipp.Cluster(profile_dir=str(tmp_path), n=10, config=config)
    assert (cluster.controller_args, cluster.engine_timeout, cluster.n) == (
        ["--from-profile"],
        20,
        10,
    )
    ignored = ipp.Cluster(profile_dir=str(tmp_path), load_profile=False)
    assert (ignored.controller_args, ignored.n) == ([], None)


def test_launcher_names_become_classes_at_once() -> None:
    assert ipp.Cluster(engines="MPI").engine_launcher_class is MPIEngineSetLauncher
    path = "ipyparallel.cluster.launcher.LocalEngineSetLauncher"
    assert ipp.Cluster(engines=path).engine_launcher_class is LocalEngineSetLauncher
    assert ipp.Cluster().engine_launcher_class is LocalEngineSetLauncher
    with pytest.raises(ValueError, match="unknown EngineSet launcher 'nosuch'"):
        ipp.Cluster(engines="nosuch")


def test_a_cluster_made_in_an_ipython_session_logs_to_its_stdout() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        cluster = ipp.Cluster(parent=shell, cluster_id="logs", log_level=logging.DEBUG)
        assert cluster.log.name == "ipar_widgets.cluster.cluster.logs"
        [handler] = cluster.log.handlers  # type: ignore[union-attr]
        assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout
        assert cluster.log.level == logging.DEBUG  # type: ignore[union-attr]
        assert ipp.Cluster().log.handlers == []  # type: ignore[union-attr]
    finally:
        InteractiveShell.clear_instance()
