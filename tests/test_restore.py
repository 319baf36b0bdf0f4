"""A controller killed with SIGKILL mid-job, and `ipar start --restore` in its place.

Real processes throughout: the cluster is started and restored with the ``ipar`` command,
the controller is killed with SIGKILL while a 2,000-task load-balanced map runs on 4
engines, and the client that submitted the map carries on by itself.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import alive, ipar, kill_group_of, wait_until

import ipar_widgets as ipp
from ipar_widgets import paths
from ipar_widgets.progress.snapshot import ProgressTracker
from ipar_widgets.progress.terminal import status_line
from ipar_widgets.widgets.html import head_html

pytestmark = pytest.mark.timeout(240)


def running_on_disk(profile: str, msg_ids: list[str]) -> int:
    """How many of ``msg_ids`` the profile's task database has as running (read from the
    file itself)."""
    path = paths.profile_dir(profile) / "tasks.sqlite"
    marks = ", ".join("?" * len(msg_ids))
    query = f"SELECT count(*) FROM tasks WHERE status = 'running' AND msg_id IN ({marks})"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute(query, msg_ids).fetchone()[0])


@pytest.fixture
def sweep(profile: str) -> Iterator[dict[str, object]]:
    """A 4-engine cluster started with ``ipar start``; stopped (every process group it ever
    had) and checked by process at the end, also when the test fails."""
    started = ipar("start", "-n", "4", "--profile", profile, check=False)
    assert started.returncode == 0, started.stderr
    cluster_path = paths.cluster_file(paths.profile_dir(profile))
    state: dict[str, object] = {"profile": profile, "groups": set(), "pids": []}
    state["groups"].add(paths.read_json(cluster_path)["pgid"])  # type: ignore[attr-defined]
    try:
        yield state
    finally:
        ipar("stop", "--profile", profile, check=False)
        for pgid in state["groups"]:  # type: ignore[attr-defined]
            kill_group_of(pgid)
        wait_until(lambda: not alive(state["pids"]), 10, what="every engine to exit")  # type: ignore[arg-type]


def _connect(sweep: dict[str, object]) -> tuple[str, Path, ipp.Client, list[int]]:
    """The sweep's profile, cluster file, a Client once the 4 engines are there, and the
    engines' pids (noted in ``sweep`` for the final check by process)."""
    profile = str(sweep["profile"])
    rc = ipp.Client(profile=profile)
    try:
        rc.wait_for_engines(4, timeout=30)
        pids = rc[:].apply_sync(os.getpid)
    except BaseException:
        rc.close()
        raise
    sweep["pids"] = pids
    return profile, paths.cluster_file(paths.profile_dir(profile)), rc, pids


def test_a_killed_controller_is_restored_and_the_job_completes_exactly_once(
    sweep: dict[str, object],
) -> None:
    def slow_square(x: int) -> tuple[int, int]:
        import os
        import time

        time.sleep(0.01)
        return x * x, os.getpid()

    profile, cluster_path, rc, engine_pids = _connect(sweep)
    try:
        view = rc.load_balanced_view()
        ar = view.map_async(slow_square, range(2000), chunksize=1, label="sweep")
        wait_until(lambda: ar.progress >= 400, 60, what="a fifth of the map to finish")
        old = paths.read_json(cluster_path)
        os.kill(old["controller_pid"], signal.SIGKILL)
        killed = time.monotonic()
        done_at_kill = ar.progress
        assert done_at_kill < 2000

        restored = ipar("start", "--restore", "--profile", profile, check=False)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "Controller restored" in restored.stdout
        new = paths.read_json(cluster_path)
        sweep["groups"].add(new["pgid"])  # type: ignore[attr-defined]
        assert new["controller_pid"] != old["controller_pid"]
        assert new["ports"] == old["ports"]
        assert old["pgid"] in new["engine_pgids"]

        results = ar.get(timeout=120)
        finished = time.monotonic()
        assert [r for r, _ in results] == [x * x for x in range(2000)]
        assert {pid for _, pid in results} == set(engine_pids)  # all four took part
        # the same engine processes, with the same ids, carried on
        assert sorted(rc.ids) == [0, 1, 2, 3]
        assert rc[:].apply_sync(os.getpid) == engine_pids
        # what the progress displays say: the terminal line and the widget's header
        assert rc.connection_note == "controller restarted, reconnected"
        snap = ProgressTracker(ar).snapshot()
        assert snap.connection == "controller restarted, reconnected"
        assert status_line(snap).endswith(", controller restarted, reconnected")
        assert "controller restarted, reconnected</span>" in head_html(snap)
        print(
            f"kill at {done_at_kill}/2000 done; restored and the last result in "
            f"{finished - killed:.1f} s"
        )
    finally:
        rc.close()

    # a new client finds every task, with its engine and times
    fresh = ipp.Client(profile=profile)
    try:
        found = fresh.db_query(
            {"label": "sweep", "completed": {"$ne": None}},
            keys=["msg_id", "engine_id", "started", "completed"],
        )
        assert sorted(r["msg_id"] for r in found) == sorted(ar.msg_ids)
        odd = [r for r in found if r["engine_id"] not in (0, 1, 2, 3) or not r["started"]]
        assert odd == []
        again = fresh.get_result(ar.msg_ids[:5]).get(timeout=30)
        assert [chunk[0][0] for chunk in again] == [0, 1, 4, 9, 16]  # map tasks hold lists
    finally:
        fresh.close()


def saved_engines(profile: str) -> int:
    """How many engines the profile's task database has (read from the file itself)."""
    path = paths.profile_dir(profile) / "tasks.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM engines").fetchone()[0])


@pytest.mark.parametrize("engines_saved", [True, False], ids=["engines-saved", "none-saved"])
def test_cluster_restore_controller_sync_brings_the_engines_back_and_stop_ends_them(
    profile: str, engines_saved: bool
) -> None:
    cluster = ipp.Cluster(n=2, profile=profile, cluster_id="")
    groups: set[int] = set()
    pids: list[int] = []
    rc: ipp.Client | None = None
    try:
        rc = cluster.start_and_connect_sync()
        groups.add(cluster._data["pgid"])  # type: ignore[index]
        pids = rc[:].apply_sync(os.getpid)
        rc[:].push({"kept": 42}, block=True)
        wait_until(lambda: saved_engines(profile) == 2, 10, what="the engines to be saved")
        dead = cluster._data["controller_pid"]  # type: ignore[index]
        os.kill(dead, signal.SIGKILL)
        wait_until(lambda: not alive([dead]), 10, what="the controller to die")
        if not engines_saved:  # as if it had died before its writer's first commit of them
            path = paths.profile_dir(profile) / "tasks.sqlite"
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM engines")
        cluster.restore_controller_sync()
        groups.add(cluster._data["pgid"])  # type: ignore[index]
        # direct tasks sent at once, while the engines may still be rejoining, wait for them
        # (a restored controller that does not know an engine id yet holds its tasks too);
        # the same processes, with their ids and namespaces (a task sent as the client finds
        # the controller again is not called lost because the catch-up query overtook it)
        assert rc[:].apply_sync(os.getpid) == pids
        assert rc[:].pull("kept", block=True) == [42, 42]
        assert sorted(rc.ids) == [0, 1]
        # the tasks may be answered before the client has noticed the outage: its note
        # follows once it has (it watches the controller's heartbeat)
        wait_until(
            lambda: rc.connection_note == "controller restarted, reconnected",  # type: ignore[union-attr]
            15,
            what="the client to say it reconnected",
        )
        rc.close()
        cluster.stop_cluster_sync()
        wait_until(lambda: not alive(pids), 10, what="the restored cluster's engines to exit")
    finally:
        if rc is not None:
            rc.close()
        for pgid in groups:
            kill_group_of(pgid)
        cluster.stop_cluster_sync()


def test_a_client_whose_controller_never_returns_fails_its_pending_tasks(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    rc = ipp.Client(profile=handle.cluster.profile, controller_timeout=2)
    try:
        rc.wait_for_engines(1, timeout=30)
        ar = rc[0].apply_async(time.sleep, 30)
        wait_until(lambda: rc.status()["engines"][0]["running"] is not None, 10, what="the task")
        address = f"tcp://127.0.0.1:{handle.cluster._data['ports']['client']}"
        os.kill(handle.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(ipp.error.ControllerLost) as info:
            ar.get(timeout=20)
        waited = time.monotonic() - started
        assert 2 <= waited < 10
        text = str(info.value)
        assert re.search(
            rf"the controller at {re.escape(address)} has been unreachable for \d+ s", text
        )
        assert info.value.waited >= 2
        assert ar.msg_ids[0] in text and "ipar start --restore" in text
        assert info.value.address == address
    finally:
        rc.close()


def test_a_new_controller_without_restore_aborts_what_the_dead_one_left(
    sweep: dict[str, object],
) -> None:
    profile, cluster_path, rc, pids = _connect(sweep)
    try:
        done = rc.load_balanced_view().apply_async(os.getpid)
        done.get(timeout=30)
        stuck = rc.load_balanced_view().map_async(time.sleep, [30] * 8)
        wait_until(
            lambda: rc.status()["tasks"]["running"] == 4, 30, what="four tasks to be running"
        )
        wait_until(
            lambda: running_on_disk(profile, stuck.msg_ids) == 4,
            10,
            what="the running tasks to be on disk",
        )
        old = paths.read_json(cluster_path)
        os.kill(old["controller_pid"], signal.SIGKILL)
    finally:
        rc.close()
    wait_until(lambda: not alive([old["controller_pid"]]), 10, what="the controller to die")
    assert ipar("stop", "--profile", profile).returncode == 0  # the old engines too
    wait_until(lambda: not alive(pids), 10, what="the old engines to exit")
    started = ipar("start", "-n", "1", "--profile", profile, check=False)
    assert started.returncode == 0, started.stderr
    sweep["groups"].add(paths.read_json(cluster_path)["pgid"])  # type: ignore[attr-defined]
    fresh = ipp.Client(profile=profile)
    try:
        assert fresh.get_result(done.msg_ids[0]).get(timeout=30) == done.get()
        with pytest.raises(ipp.error.TaskAborted, match="started without --restore"):
            fresh.get_result(stuck.msg_ids[0]).get(timeout=30)
        unfinished = fresh.db_query({"completed": None}, keys=["msg_id"])
        assert unfinished == []
        assert fresh.ids == [0]  # a new controller numbers its engines from 0, as ipyparallel
    finally:
        fresh.close()


def test_a_task_whose_engine_died_with_the_controller_fails_and_says_why(
    sweep: dict[str, object],
) -> None:
    profile, cluster_path, rc, pids = _connect(sweep)
    try:
        doomed = rc[3].apply_async(time.sleep, 3)
        # both long enough to be written while they run (after SQLiteTaskStore.pending_delay)
        kept = rc[0].apply_async(lambda: (time.sleep(2.5), 42)[1])
        wait_until(
            lambda: running_on_disk(profile, doomed.msg_ids + kept.msg_ids) == 2,
            10,
            what="both running tasks to be on disk",
        )
        old = paths.read_json(cluster_path)
        os.kill(old["controller_pid"], signal.SIGKILL)
        os.kill(pids[3], signal.SIGKILL)  # engine 3 dies with its controller
        restored = ipar("start", "--restore", "--profile", profile, check=False)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        sweep["groups"].add(paths.read_json(cluster_path)["pgid"])  # type: ignore[attr-defined]
        assert kept.get(timeout=60) == 42
        with pytest.raises(ipp.error.EngineError) as info:
            doomed.get(timeout=60)
        assert f"engine 3 died while it held task {doomed.msg_ids[0]}" in str(info.value)
        assert "restored controller" in str(info.value) or "heartbeats" in str(info.value)
        # the notice that engine 3 left comes on the other socket, maybe just after
        wait_until(lambda: sorted(rc.ids) == [0, 1, 2], 10, what="engine 3 to be gone")
    finally:
        rc.close()


def test_tasks_the_dead_controller_had_not_saved_still_deliver_if_an_engine_ran_them(
    profile: str,
) -> None:
    # a 1 s commit interval, and the controller killed within moments of the submissions:
    # the restored controller knows of the tasks only what the engine tells it
    cluster = ipp.Cluster(
        n=1,
        profile=profile,
        cluster_id="",
        controller_args=["--SQLiteTaskStore.commit_interval=1"],
    )
    groups: set[int] = set()
    pid = 0
    try:
        rc = cluster.start_and_connect_sync()
        groups.add(cluster._data["pgid"])  # type: ignore[index]
        pid = rc[0].apply_sync(os.getpid)

        def slow(x: int) -> int:
            import time

            time.sleep(1.5)
            return x + 1

        view = rc.load_balanced_view()
        running = view.apply_async(slow, 1)
        queued = view.apply_async(slow, 2)  # waits in the controller: one engine, hwm 1
        wait_until(lambda: rc.status()["tasks"]["running"] == 1, 10, what="the first task")
        dead = cluster._data["controller_pid"]  # type: ignore[index]
        os.kill(dead, signal.SIGKILL)
        wait_until(lambda: not alive([dead]), 10, what="the controller to die")
        cluster.restore_controller_sync()
        groups.add(cluster._data["pgid"])  # type: ignore[index]
        assert running.get(timeout=30) == 2  # its engine had it, and said so
        with pytest.raises(ipp.error.TaskLost, match="not in the database yet"):
            queued.get(timeout=30)
        assert rc[0].apply_sync(os.getpid) == pid
        rc.close()
        cluster.stop_cluster_sync()
        wait_until(lambda: not alive([pid]), 10, what="the engine to exit")
    finally:
        for pgid in groups:
            kill_group_of(pgid)
        wait_until(lambda: not alive([pid] if pid else []), 10, what="the engine to be gone")
