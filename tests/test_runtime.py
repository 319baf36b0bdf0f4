"""The cluster runtime under normal use and under failure: real controllers and engines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import zmq
from conftest import wait_until

import ipar_widgets as ipp
from ipar_widgets import paths
from ipar_widgets.protocol.wire import Wire


def test_engine_ids_and_engines_are_ipython_kernels(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=3)
    rc = handle.rc
    assert rc.ids == [0, 1, 2]
    assert rc[:].apply_sync(ipp.interactive(lambda: __ipar_engine_id__)) == [0, 1, 2]  # noqa: F821
    kinds = rc[:].apply_sync(ipp.interactive(lambda: type(get_ipython()).__name__))  # noqa: F821
    assert kinds == ["ZMQInteractiveShell"] * 3
    ar = rc[0].execute("%time x = 6 * 7\nx", silent=False, block=True)
    assert ar.execute_result["data"]["text/plain"] == "42"
    assert "Wall time" in ar.stdout
    pids = rc[:].apply_sync(os.getpid)
    assert len(set(pids)) == 3
    controller = psutil.Process(handle.pid)
    assert sorted(c.pid for c in controller.children()) == sorted(pids)


def test_messages_with_bad_signatures_or_garbage_are_dropped(make_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    rc = handle.rc
    data = handle.cluster._data
    witness = tmp_path / "executed"
    good = Wire(json.loads(Path(data["client_file"]).read_text())["key"].encode())
    forged = Wire(b"not the cluster key")
    code = {"code": f"open({str(witness)!r}, 'w').close()", "silent": False}

    def attack(port: int, kind: int, frames_list: list[list[bytes]]) -> None:
        sock = zmq.Context.instance().socket(kind)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        for frames in frames_list:
            sock.send_multipart(frames)
        time.sleep(0)  # let libzmq hand them over before closing
        sock.close(linger=1000)

    _, wrong = forged.build("execute_request", code, idents=[b"d0"])
    _, unsigned = good.build("execute_request", code, idents=[b"d0"])
    unsigned[2] = b""
    garbage = [
        [b"\x00\xff garbage"],
        [b"d0", b"<IDS|MSG>", b"sig"],
        [os.urandom(64) for _ in range(9)],
    ]
    ports = data["ports"]
    attack(ports["client"], zmq.DEALER, [wrong, unsigned, *garbage])
    _, fake_reg = forged.build("registration_request", {"uuid": "x", "pid": 1})
    attack(ports["engine"], zmq.DEALER, [fake_reg, *garbage])
    _, fake_out = forged.build(
        "stream", {"name": "stdout", "text": "forged"}, idents=[b"engine.0.stream.stdout"]
    )
    attack(ports["iopub"], zmq.PUB, [fake_out, *garbage])
    for port in ports.values():  # raw TCP bytes that are not even ZMTP
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(os.urandom(256))

    # the cluster still serves, and it executed none of it
    assert rc[0].apply_sync(lambda x: x + 1, 1) == 2
    assert rc.ids == [0]
    assert not witness.exists()
    status = rc.status()
    assert status["dropped_messages"] >= 5
    assert status["engines_registered"] == 1
    log = (Path(data["log_dir"]) / "ipar-controller.log").read_text()
    assert "missing or invalid HMAC signature" in log


def test_killed_engine_fails_its_task_and_others_keep_serving(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=3)
    rc = handle.rc
    pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
    view = rc[1]
    ar = view.apply_async(time.sleep, 30)
    wait_until(lambda: rc.queue_status()[1]["queue"] == 1, 5, what="the task to reach engine 1")
    killed_at = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(ipp.EngineError, match=r"engine 1 died while it held task"):
        ar.get(timeout=5)
    assert time.monotonic() - killed_at < 1.0
    assert ar.metadata["status"] == "error"
    wait_until(lambda: rc.ids == [0, 2], 2, what="engine 1 to be unregistered")
    assert rc[[0, 2]].apply_sync(lambda: "still here") == ["still here", "still here"]
    with pytest.raises(IndexError, match=r"No such engine: 1 \(registered engines: \[0, 2\]\)"):
        view.apply_sync(lambda: 1)


def test_load_balanced_task_with_retries_survives_its_engine(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2)
    rc = handle.rc
    pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
    view = rc.load_balanced_view()
    view.retries = 1

    def where_and_wait(t: float) -> int:
        import os
        import time

        time.sleep(t)
        return os.getpid()

    first = view.apply_async(where_and_wait, 2.0)
    wait_until(
        lambda: (
            first.engine_id is not None
            or rc.queue_status()[0]["tasks"] + rc.queue_status()[1]["tasks"] == 1
        ),
        5,
        what="the task to be dispatched",
    )
    status = rc.queue_status(verbose=True)
    engine = next(e for e in (0, 1) if status[e]["tasks"])
    os.kill(pids[engine], signal.SIGKILL)
    survivor = 1 - engine
    assert first.get(timeout=15) == pids[survivor]
    assert first.engine_id == survivor


def test_hung_engine_is_declared_dead_after_the_heartbeat_timeout(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2, controller_args=["--heartbeat-timeout=2"])
    rc = handle.rc
    pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
    ar = rc[0].apply_async(time.sleep, 20)
    engine = psutil.Process(pids[0])
    engine.suspend()
    stopped = time.monotonic()
    try:
        with pytest.raises(ipp.EngineError, match=r"did not answer heartbeats for 2\.\d s"):
            ar.get(timeout=10)
        # The last answer may have come up to one heartbeat period (0.5 s) before the
        # suspension, so the verdict can come that much before `stopped` + timeout.
        assert 1.5 <= time.monotonic() - stopped < 4.5  # timeout +/- one period, + slack
        wait_until(lambda: rc.ids == [1], 2, what="engine 0 to be unregistered")
        wait_until(
            lambda: not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE,
            5,
            what="the hung engine to be killed",
        )
    finally:
        try:
            engine.resume()
        except psutil.Error:
            pass
    assert rc[1].apply_sync(lambda: 5) == 5


def test_engines_outlive_a_dead_controller_for_controller_timeout_then_exit(make_cluster) -> None:  # type: ignore[no-untyped-def]
    from traitlets.config import Config

    config = Config()
    config.EngineLauncher.engine_args = ["--controller-timeout=3"]
    handle = make_cluster(n=2, config=config)
    pids = handle.rc[:].apply_sync(os.getpid)
    handle.rc.close()

    def alive() -> list[int]:
        return [
            p
            for p in pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]

    os.kill(handle.pid, signal.SIGKILL)
    killed = time.monotonic()
    # not killed with their parent: a controller restored in its place would find them
    time.sleep(0.5)  # what is measured is that they are still there after a while
    assert alive() == pids
    wait_until(lambda: not alive(), 15, what="the engines to exit after controller_timeout")
    assert time.monotonic() - killed >= 3


def test_an_engine_started_elsewhere_joins_and_leaves_with_its_controller(
    make_cluster, profile: str
) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    data = handle.cluster._data
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipar_widgets.engine",
            f"--file={data['engine_file']}",
            f"--profile-dir={data['profile_dir']}",
            "--controller-timeout=2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        handle.rc.wait_for_engines(1, timeout=30)
        assert handle.rc[0].apply_sync(os.getpid) == engine.pid
        assert handle.rc.status()["engines"][0]["local"] is False
        handle.rc.close()
        os.kill(handle.pid, signal.SIGKILL)
        started = time.monotonic()
        engine.wait(timeout=30)
        assert time.monotonic() - started < 30
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(5)


def test_cluster_api_and_context_manager(profile: str) -> None:
    with ipp.Cluster(n=2, profile=profile) as rc:
        assert rc.ids == [0, 1]
        assert rc[:].apply_sync(lambda: 1) == [1, 1]
        cid = rc.cluster.cluster_id
        assert paths.client_file(paths.profile_dir(profile), cid).exists()
        pids = rc[:].apply_sync(os.getpid)
    assert not paths.client_file(paths.profile_dir(profile), cid).exists()
    assert not any(
        psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids
    )

    cluster = ipp.Cluster(n=0, profile=profile, cluster_id="")
    try:
        cluster.start_controller_sync()
        rc = cluster.connect_client_sync()
        assert rc.ids == []
        with pytest.raises(ipp.NoEnginesRegistered):
            rc[:].apply_sync(lambda: 1)
        cluster.start_engines_sync(2)
        rc.wait_for_engines(2, timeout=30)
        attached = ipp.Cluster.from_file(profile=profile)
        assert attached.cluster_id == ""
        other = attached.connect_client_sync()
        assert other.ids == [0, 1]
        other.close()
        assert ipp.Client(profile=profile).ids == [0, 1]
        cluster.stop_engines_sync()
        wait_until(lambda: rc.ids == [], 10, what="engines to stop")
    finally:
        cluster.stop_cluster_sync()
    assert not paths.cluster_file(paths.profile_dir(profile)).exists()


def test_async_cluster_api(profile: str) -> None:
    import asyncio

    async def main() -> list[int]:
        async with ipp.Cluster(n=2, profile=profile) as rc:
            return list(await rc[:].apply_async(lambda: 3))

    assert asyncio.run(main()) == [3, 3]


def test_a_stale_cluster_file_is_reported(make_cluster, profile: str) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    handle.rc.close()
    os.kill(handle.pid, signal.SIGKILL)
    wait_until(
        lambda: (
            not psutil.pid_exists(handle.pid)
            or psutil.Process(handle.pid).status() == psutil.STATUS_ZOMBIE
        ),
        5,
        what="the controller to die",
    )
    with pytest.raises(OSError, match=f"is not running .*ipar stop --profile {profile}"):
        ipp.Client(profile=profile)
