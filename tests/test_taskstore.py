"""The task stores: SQLite (the default), DictDB and NoDB, their flags, and the database file.

The first tests drive a :class:`SQLiteTaskStore` directly over hand-made records (queries
answered from the file must equal those answered from memory, for every operator; the
restore hooks); the rest run real clusters and open the database file with ``sqlite3``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import ipar, kill_group_of, wait_until
from traitlets import TraitError

import ipar_widgets as ipp
from ipar_widgets import error, paths
from ipar_widgets.cluster.cli import build_parser
from ipar_widgets.controller.app import ControllerApp
from ipar_widgets.controller.engines import EngineRegistry
from ipar_widgets.controller.records import ERROR, OK, RUNNING, RecordStore, TaskRecord
from ipar_widgets.controller.segments import SegmentKeeper
from ipar_widgets.controller.sqlitestore import SQLiteTaskStore
from ipar_widgets.controller.taskquery import parse_keys, parse_query
from ipar_widgets.controller.taskstore import MemoryTaskStore, StoreParts
from ipar_widgets.protocol.wire import Wire

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)

# -- a store over hand-made records -----------------------------------------------------------------

#: dates as clients may write them (the file keeps the text; queries must read each alike)
_DATE_FORMS: dict[int, Any] = {
    4: lambda d: d.isoformat().replace("+00:00", "Z"),  # jupyter_client's form
    6: lambda d: d.replace(tzinfo=None).isoformat(),  # naive: taken as UTC
    8: lambda d: "not a date",
    9: lambda d: d.astimezone(timezone(timedelta(hours=-5))).replace(microsecond=0).isoformat(),
}


def _record(
    wire: Wire, i: int, *, status: str, engine: int | None, label: Any = None
) -> TaskRecord:
    submitted = _DATE_FORMS.get(i, datetime.isoformat)(T0 + timedelta(seconds=i))
    metadata = {} if label is None else {"label": label}
    header = wire.header("apply_request", msg_id=f"m{i}", date=submitted)
    _, frames = wire.build(
        "apply_request", {"i": i}, header=header, metadata=metadata, buffers=[b"f" * i]
    )
    rec = TaskRecord(f"m{i}", f"client-{i % 2}".encode(), "apply_request", submitted)
    rec.request = frames[frames.index(b"<IDS|MSG>") :]
    rec.balanced = i % 3 == 0
    rec.engine_id = engine
    rec.status = status
    if status in (OK, ERROR):
        rec.started = (T0 + timedelta(seconds=i, milliseconds=1)).isoformat()
        rec.completed = (T0 + timedelta(seconds=i, milliseconds=2)).isoformat()
        rec.received = (T0 + timedelta(seconds=i, milliseconds=3)).timestamp()
        _, reply = wire.build(
            "apply_reply",
            {"status": status},
            parent=header,
            metadata={"status": status, "started": rec.started, "completed": rec.completed},
            buffers=[b"r" * i],
        )
        rec.reply = reply
        _, out = wire.build(
            "stream", {"name": "stdout", "text": f"out {i}\n"}, parent=header, idents=[b"t"]
        )
        rec.outputs = [out[1:]]
    return rec


class Parts:
    """A store's surroundings without a controller."""

    def __init__(self) -> None:
        self.wire = Wire(b"k" * 32, session="test")
        self.records = RecordStore(100_000, 1 << 30)
        self.engines = EngineRegistry()
        for n in range(3):
            self.engines.register(f"uuid-{n}", 100 + n, "host", False)
        self.parts = StoreParts(
            self.records, self.engines.uuid_of, SegmentKeeper(None, self.wire), self.wire
        )


def _sqlite_store(path: Path, parts: Parts, **traits: Any) -> SQLiteTaskStore:
    store = SQLiteTaskStore(path.parent, filename=path.name, **traits)
    store.attach(parts.parts)
    return store


QUERIES: list[dict[str, Any]] = [
    {},
    {"msg_id": "m3"},
    {"msg_id": {"$in": ["m1", "m4", "x"]}},
    {"msg_id": {"$nin": ["m1", "m4"]}},
    {"msg_id": {"$in": "m1m2"}},  # a string operand: substrings
    {"msg_id": {"$gt": "m3", "$lte": "m6"}},
    {"submitted": {"$lt": T0 + timedelta(seconds=3)}},
    {"submitted": {"$gte": (T0 + timedelta(seconds=3)).isoformat()}},
    {"submitted": T0 + timedelta(seconds=2)},
    {"submitted": {"$ne": T0 + timedelta(seconds=2)}},
    {"submitted": {"$in": [T0, T0 + timedelta(seconds=5), None]}},
    {"submitted": {"$lt": datetime(2030, 1, 1)}},  # naive: never compares, as in Python
    {"completed": None},
    {"completed": {"$exists": True}},
    {"completed": {"$exists": False}},
    {"completed": {"$gt": T0 + timedelta(seconds=4)}},
    {"started": {"$ne": None}},
    {"received": {"$lte": T0 + timedelta(seconds=5, milliseconds=3)}},
    {"received": T0 + timedelta(seconds=3, milliseconds=3)},
    {"received": {"$gt": T0 + timedelta(seconds=3, milliseconds=3)}},
    {"received": None},
    # at the exact dates, and across the forms of _DATE_FORMS
    {"submitted": {"$gt": T0 + timedelta(seconds=4)}},
    {"submitted": {"$gte": T0 + timedelta(seconds=4)}},
    {"submitted": {"$lte": T0 + timedelta(seconds=6)}},
    {"submitted": T0 + timedelta(seconds=6)},
    {"submitted": (T0 + timedelta(seconds=9)).replace(microsecond=0)},
    {"submitted": {"$lt": (T0 + timedelta(seconds=9)).replace(microsecond=0)}},
    {"submitted": None},
    {"submitted": {"$exists": False}},
    {"started": T0 + timedelta(seconds=3, milliseconds=1)},
    {"completed": {"$lt": T0 + timedelta(seconds=3, milliseconds=2)}},
    {"completed": {"$lte": T0 + timedelta(seconds=3, milliseconds=2)}},
    {"engine_uuid": "uuid-1"},
    {"engine_uuid": {"$in": ["uuid-0", None]}},
    {"engine_uuid": {"$nin": ["uuid-0", None]}},
    {"engine_uuid": {"$nin": ["uuid-0"]}},
    {"engine_uuid": {"$in": "uuid-2uuid-1"}},
    {"engine_uuid": 5},  # another type: never equal
    {"engine_uuid": {"$ne": 5}},
    {"engine_uuid": {"$lt": 5}},
    {"client_uuid": "client-1"},
    {"queue": "task"},
    {"queue": {"$ne": "task"}, "completed": {"$exists": True}},
    {"label": "sweep"},
    {"label": {"$in": ["sweep", "other"]}},
    {"label": {"$ne": "sweep"}},
    {"label": {"$exists": True}},
    {"label": {"$eq": 7}},
    {"label": {"$gt": "s"}},
    {"resubmitted": None},
    {"stdout": {"$in": "out 3\nout 4\n"}},
    {"stdout": ""},
    {"header": {"$ne": None}, "result_content": {"$exists": True}},
]
LABELS: list[Any] = [None, "sweep", "other", 7, "sweep", None, {"a": 1}, "zz", None, "sweep"]


def _plain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with their frames as bytes (memory keeps what arrived; the file gives bytes)."""
    return [
        {k: [bytes(f) for f in v] if k.endswith("buffers") and v else v for k, v in r.items()}
        for r in records
    ]


@pytest.mark.timeout(60)
def test_queries_from_the_file_equal_queries_from_memory(tmp_path: Path) -> None:
    memory_parts, sqlite_parts = Parts(), Parts()
    memory = MemoryTaskStore()
    memory.attach(memory_parts.parts)
    store = _sqlite_store(tmp_path / "tasks.sqlite", sqlite_parts)
    try:
        for i in range(10):
            status = RUNNING if i in (2, 7) else (ERROR if i == 5 else OK)
            engine = None if i == 7 else i % 3
            rec = _record(sqlite_parts.wire, i, status=status, engine=engine, label=LABELS[i])
            for parts, note in ((memory_parts, memory.note), (sqlite_parts, store.note)):
                parts.records.add(rec)  # the same record in both stores
                note(rec)
        assert store.flush(10)
        # the finished records leave memory: the store answers those from the file
        for m in [r.msg_id for r in sqlite_parts.records if r.finished]:
            sqlite_parts.records.remove(m)
        assert len(sqlite_parts.records) == 2
        keys = parse_keys(None) + ("buffers", "result_buffers")
        for raw in QUERIES:
            query = parse_query(raw)
            expected = memory.find_records(query, keys)
            found = store.find_records(query, keys)
            assert [r["msg_id"] for r in found] == [r["msg_id"] for r in expected], raw
            assert _plain(found) == _plain(expected), raw
        assert store.get_history() == memory.get_history()
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_restore_hooks_read_back_unfinished_tasks_and_engines(tmp_path: Path) -> None:
    parts = Parts()
    path = tmp_path / "tasks.sqlite"
    store = _sqlite_store(path, parts)
    running = _record(parts.wire, 1, status=RUNNING, engine=2)
    _, out = parts.wire.build("stream", {"name": "stdout", "text": "so far\n"}, idents=[b"t"])
    running.outputs = [out[1:]]
    pending = _record(parts.wire, 2, status="pending", engine=None)
    pending.balanced = True
    done = _record(parts.wire, 3, status=OK, engine=0)
    for rec in (running, pending, done):
        parts.records.add(rec)
        store.note(rec)
    for engine in parts.engines:
        store.engine_registered(engine)
    parts.engines.unregister(parts.engines.by_id[1], "stopped")
    store.engine_left(parts.engines.by_uuid.get("uuid-1") or _gone(parts, 1), "stopped")
    store.close()

    again = Parts()  # another controller, with another key
    again.wire = Wire(b"n" * 32, session="again")
    again.parts = StoreParts(again.records, again.engines.uuid_of, again.parts.segments, again.wire)
    reopened = _sqlite_store(path, again)
    try:
        loaded = {r.msg_id: r for r in reopened.load_unfinished()}
        assert sorted(loaded) == ["m1", "m2"]
        rec = loaded["m1"]
        assert (rec.client, rec.reply_to, rec.msg_type) == (
            b"client-1",
            b"client-1",
            "apply_request",
        )
        assert (rec.status, rec.engine_id, rec.balanced) == (RUNNING, 2, False)
        assert rec.submitted == running.submitted
        assert rec.request is not None and rec.request[2:] == [
            bytes(f) for f in running.request[2:]
        ]
        assert again.wire.verify([b"x", *rec.request], 2)  # signed anew with this key
        assert len(rec.outputs) == 1 and rec.outputs[0][2:] == [bytes(f) for f in out[3:]]
        assert loaded["m2"].balanced and loaded["m2"].engine_id is None
        engines = {e["uuid"]: e for e in reopened.load_engines()}
        assert sorted(engines) == ["uuid-0", "uuid-1", "uuid-2"]
        assert engines["uuid-2"]["id"] == 2 and engines["uuid-2"]["pid"] == 102
        assert engines["uuid-2"]["left"] is None and engines["uuid-1"]["left"] is not None
        assert MemoryTaskStore().load_unfinished() == [] and MemoryTaskStore().load_engines() == []
    finally:
        reopened.close()


def _gone(parts: Parts, engine_id: int) -> Any:
    from ipar_widgets.controller.engines import EngineState

    return EngineState(engine_id, f"uuid-{engine_id}", 0, "host", False)


@pytest.mark.timeout(60)
def test_tasks_are_held_while_large_results_wait_for_the_writer(tmp_path: Path) -> None:
    parts = Parts()
    reasons: list[str] = []
    parts.parts = dataclasses.replace(parts.parts, pause=reasons.append)
    store = _sqlite_store(tmp_path / "tasks.sqlite", parts, max_unsaved_bytes=3 << 20)
    try:
        small, first, second = (_record(parts.wire, i, status=OK, engine=0) for i in (1, 2, 3))
        for rec, nbytes in ((small, 60 << 10), (first, 2 << 20), (second, 2 << 20)):
            parts.records.add(rec)
            parts.records.account(rec, nbytes)
        # 4 MiB of results unsaved, more than the 3 MiB allowed: held at once, not at a tick
        assert reasons == [
            f"4 MiB of results are waiting to be written to {store.path}, more than "
            "SQLiteTaskStore.max_unsaved_bytes (3 MiB)"
        ]
        assert store.describe()["paused"] == reasons[0]
        for rec in (small, first, second):
            store.note(rec)
        store.tick()  # nothing saved yet: still held
        assert reasons == reasons[:1]
        assert store.flush(10)
        store.tick()
        assert reasons[1:] == [""]  # saved: handed out again
        assert store.describe()["paused"] == ""
        # a running task's outputs do not count (holding tasks back would not end it)
        running = _record(parts.wire, 4, status=RUNNING, engine=1)
        parts.records.add(running)
        parts.records.account(running, 8 << 20)
        store.tick()
        assert reasons[2:] == []
    finally:
        store.close()


def test_db_class_names_and_flags() -> None:
    for name, canonical in [
        ("sqlite", "SQLiteDB"),
        ("SQLiteDB", "SQLiteDB"),
        ("ipyparallel.controller.sqlitedb.SQLiteDB", "SQLiteDB"),
        ("DictDB", "DictDB"),
        ("dict", "DictDB"),
        ("memory", "DictDB"),
        ("ipyparallel.controller.dictdb.DictDB", "DictDB"),
        ("NoDB", "NoDB"),
        ("none", "NoDB"),
        ("ipyparallel.controller.dictdb.NoDB", "NoDB"),
    ]:
        assert ControllerApp(db_class=name).db_class == canonical
    assert ControllerApp().db_class == "SQLiteDB"  # the default
    with pytest.raises(TraitError, match="ControllerApp.db_class: expected one of .*'NoDB'"):
        ControllerApp(db_class="ipyparallel.controller.mongodb.MongoDB")
    for flag, canonical in [("--sqlitedb", "SQLiteDB"), ("--dictdb", "DictDB"), ("--nodb", "NoDB")]:
        app = ControllerApp()
        app.parse_command_line([flag])
        assert app.db_class == canonical
    with pytest.raises(TraitError, match="commit_interval: expected seconds in"):
        SQLiteTaskStore("/tmp", commit_interval=2)
    parser = build_parser()
    assert parser.parse_args(["start", "--nodb"]).db == "nodb"
    assert parser.parse_args(["start"]).db is None
    with pytest.raises(SystemExit):
        parser.parse_args(["start", "--nodb", "--dictdb"])


# -- real clusters ----------------------------------------------------------------------------------


@pytest.fixture
def stop_after(profile: str):  # type: ignore[no-untyped-def]
    yield
    ipar("stop", "--profile", profile, check=False)


def _db_path(profile: str) -> Path:
    return paths.profile_dir(profile) / "tasks.sqlite"


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


@ipp.interactive
def _echo(x: Any) -> Any:
    print("echo", x)
    return x


@ipp.interactive
def _divide(a: float, b: float) -> float:
    return a / b


@pytest.mark.timeout(90)
def test_a_record_is_in_the_file_soon_after_its_reply(make_cluster, profile: str) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1, controller_args=["--SQLiteTaskStore.commit_interval=0.2"])
    ar = handle.rc.load_balanced_view().apply_async(_echo, 41)
    assert ar.get(timeout=30) == 41
    replied = time.monotonic()
    path = _db_path(profile)

    def saved() -> bool:
        return (
            _rows(
                path,
                "SELECT count(*) FROM tasks WHERE msg_id = ? AND status = 'ok' AND "
                "reply IS NOT NULL AND outputs IS NOT NULL",
                (ar.msg_ids[0],),
            )
        ) == [(1,)]

    wait_until(saved, timeout=5, what="the record in the database")
    assert time.monotonic() - replied < 0.2 + 0.8  # commit_interval plus a margin
    [(engine_uuid, stdout_blob)] = _rows(
        path,
        "SELECT engine_uuid, outputs FROM tasks WHERE msg_id = ?",
        (ar.msg_ids[0],),
    )
    assert (
        engine_uuid
        == handle.rc.db_query({"msg_id": ar.msg_ids[0]}, ["engine_uuid"])[0]["engine_uuid"]
    )
    assert b"echo 41" in stdout_blob
    [(n_engines,)] = _rows(path, "SELECT count(*) FROM engines WHERE left_at IS NULL")
    assert n_engines == 1


@pytest.mark.timeout(120)
def test_engines_wait_while_the_database_is_behind_and_every_result_arrives(
    make_cluster, profile: str
) -> None:  # type: ignore[no-untyped-def]
    # results of 2 MiB each over TCP (no shared memory), 1 MiB allowed unsaved: every
    # result holds tasks back until the writer has saved it
    handle = make_cluster(
        n=2,
        controller_args=[
            "--ControllerApp.shared_memory=False",
            f"--SQLiteTaskStore.max_unsaved_bytes={1 << 20}",
        ],
    )

    def block(i: int) -> bytes:
        return bytes([i]) * (2 << 20)

    view = handle.rc.load_balanced_view()
    results = view.map_sync(block, range(12))
    assert [(len(r), r[:1], r[-1:]) for r in results] == [
        (2 << 20, bytes([i]), bytes([i])) for i in range(12)
    ]
    direct = [handle.rc[i % 2].apply_async(block, 20 + i) for i in range(6)]
    assert [ar.get(timeout=30)[-1] for ar in direct] == [20 + i for i in range(6)]
    # the last results are saved within a commit, and tasks are handed out again at the next
    wait_until(
        lambda: handle.rc.status()["task_store"]["paused"] == "", 5, what="the writer to catch up"
    )
    log = paths.log_file(paths.profile_dir(profile), "controller").read_text()
    held = log.count("tasks wait in the controller: ")
    resumed = log.count("the task database caught up: handing out tasks again")
    assert held >= 1 and resumed == held, log[-3000:]
    assert "more than SQLiteTaskStore.max_unsaved_bytes (1 MiB)" in log


@pytest.mark.timeout(180)
def test_records_survive_stop_and_start_until_purged(profile: str, stop_after: None) -> None:
    import numpy as np

    ipar("start", "-n", "2", "--profile", profile)
    rc = ipp.Client(profile=profile)
    try:
        view = rc.load_balanced_view()
        small = view.map_async(_echo, range(20))
        small.get(timeout=60)
        big = view.apply_async(np.ones, 300_000)  # 2.4 MB: its result travels in shared memory
        failed = view.apply_async(_divide, 1, 0)
        assert big.get(timeout=30).sum() == 300_000
        with pytest.raises(error.RemoteError):
            failed.get(timeout=30)
        history = rc.hub_history()
    finally:
        rc.close()
    ipar("stop", "--profile", profile)
    # the big result is a file beside the database, its row names it (blobfiles.py)
    blobs = paths.profile_dir(profile) / "tasks.sqlite.blobs"
    assert [p.suffix for p in blobs.iterdir()] == [".1"]  # kind 1: a reply
    assert next(blobs.iterdir()).stat().st_size > 2_400_000
    ipar("start", "-n", "1", "--profile", profile)
    rc = ipp.Client(profile=profile)
    try:
        assert rc.hub_history() == history
        ids = [*small.msg_ids, big.msg_ids[0]]
        found = rc.db_query({"msg_id": {"$in": ids}}, keys=["engine_uuid", "completed", "stdout"])
        assert [r["msg_id"] for r in found] == ids
        assert all(r["completed"] is not None and r["engine_uuid"] for r in found)
        assert found[3]["stdout"] == "echo 3\n"
        again = rc.get_result(small.msg_ids)
        assert again.get(timeout=30) == [[i] for i in range(20)]  # one chunk per task
        assert again.stdout[5] == "echo 5\n"
        assert rc.get_result(big.msg_ids[0]).get(timeout=30).sum() == 300_000
        with pytest.raises(error.RemoteError, match="ZeroDivisionError"):
            rc.get_result(failed.msg_ids[0]).get(timeout=30)
        # purges reach the file
        rc.purge_hub_results(small.msg_ids[:5])
        assert _rows(
            _db_path(profile),
            "SELECT count(*) FROM tasks WHERE msg_id IN (?, ?)",
            tuple(small.msg_ids[:2]),
        ) == [(0,)]
        fresh = ipp.Client(profile=profile)  # one that never fetched it
        try:
            with pytest.raises(error.NoSuchTask, match="tasks.sqlite"):
                fresh.get_result(small.msg_ids[0]).get(timeout=10)
        finally:
            fresh.close()
        rc.purge_everything()
        assert rc.hub_history() == []
        assert _rows(_db_path(profile), "SELECT count(*) FROM tasks") == [(0,)]
        assert list(blobs.iterdir()) == []
    finally:
        rc.close()


@pytest.mark.timeout(120)
def test_memory_keeps_a_window_of_saved_records(make_cluster, profile: str) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    handle = make_cluster(
        n=2,
        controller_args=[
            "--SQLiteTaskStore.keep_finished=10",
            "--SQLiteTaskStore.commit_interval=0.05",
        ],
    )
    rc = handle.rc
    view = rc.load_balanced_view()
    first = view.apply_async(np.full, 200_000, 7.0)  # its result in a shared-memory segment
    first.get(timeout=30)
    assert view.map_async(_echo, range(200)).get(timeout=60) == list(range(200))
    wait_until(lambda: rc.status()["records"] <= 10, timeout=10, what="records leaving memory")
    assert len(rc.hub_history()) == 201
    other = ipp.Client(profile=profile, cluster_id=handle.cluster.cluster_id)
    try:
        assert other.get_result(first.msg_ids[0]).get(timeout=30).sum() == 7.0 * 200_000
        assert len(other.db_query({"completed": {"$exists": True}}, keys=["msg_id"])) == 201
    finally:
        other.close()


@pytest.mark.timeout(90)
def test_no_db_keeps_records_only_while_pending(make_cluster, profile: str) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1, controller_args=["--nodb"])
    rc = handle.rc
    view = rc.load_balanced_view()
    done = view.apply_async(_echo, 1)
    assert done.get(timeout=30) == 1
    slow = view.apply_async(time.sleep, 3)
    wait_until(lambda: rc.status()["tasks"]["running"] == 1, timeout=10, what="the slow task")
    assert rc.hub_history() == slow.msg_ids
    assert [r["msg_id"] for r in rc.db_query({}, keys=["msg_id"])] == slow.msg_ids
    assert rc.status()["task_store"]["db_class"] == "NoDB"
    other = ipp.Client(profile=profile, cluster_id=handle.cluster.cluster_id)
    try:
        with pytest.raises(error.NoSuchTask, match="--nodb"):
            other.get_result(done.msg_ids[0]).get(timeout=10)
        # a dependency on a task that finished (and left) is known
        after = view.set_flags(after=done.msg_ids).apply_async(_echo, 2)
        assert after.get(timeout=30) == 2
        slow.get(timeout=30)
        wait_until(lambda: rc.status()["records"] == 0, timeout=10, what="records dropped")
        assert rc.hub_history() == []
    finally:
        other.close()
    assert not _db_path(profile).exists()


@pytest.mark.timeout(90)
def test_dictdb_through_cluster_controller_args(make_cluster, profile: str) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1, controller_args=["--dictdb"])
    assert handle.rc.status()["task_store"] == {"db_class": "DictDB"}
    assert handle.rc.load_balanced_view().apply_async(_echo, 3).get(timeout=30) == 3
    assert len(handle.rc.hub_history()) == 1
    assert not list(paths.profile_dir(profile).glob("tasks*.sqlite"))


def _start_fails(profile: str, *extra: str) -> str:
    proc = ipar("start", "-n", "1", "--profile", profile, *extra, check=False, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.timeout(90)
def test_a_corrupt_database_is_refused_and_left_alone(profile: str, stop_after: None) -> None:
    path = _db_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    out = _start_fails(profile)
    assert str(path) in out and "not a SQLite database" in out and "move it away" in out
    assert path.read_bytes() == garbage


@pytest.mark.timeout(120)
def test_a_truncated_database_is_refused_and_left_alone(profile: str, stop_after: None) -> None:
    ipar("start", "-n", "1", "--profile", profile)
    rc = ipp.Client(profile=profile)
    try:
        rc.load_balanced_view().map_async(_echo, ["x" * 2000] * 300).get(timeout=60)
    finally:
        rc.close()
    ipar("stop", "--profile", profile)
    path = _db_path(profile)
    whole = path.read_bytes()
    assert len(whole) > 100_000
    half = whole[: len(whole) // 2]
    path.write_bytes(half)
    out = _start_fails(profile)
    assert str(path) in out and "damaged" in out and "move it away" in out
    assert path.read_bytes() == half


@pytest.mark.timeout(90)
def test_a_second_controller_cannot_write_the_same_database(make_cluster, profile: str) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    second = ipp.Cluster(
        n=0,
        profile=profile,
        cluster_id="second",
        controller_args=["--SQLiteTaskStore.filename=tasks.sqlite"],
    )
    try:
        with pytest.raises(error.ClusterError) as caught:
            second.start_controller_sync()
    finally:
        launcher = second.controller
        if launcher is not None and launcher.process.poll() is None:
            kill_group_of(launcher.process.pid)
    text = str(caught.value)
    assert f"in use by another controller (pid {handle.pid}" in text
    assert str(_db_path(profile)) + ".lock" in text
