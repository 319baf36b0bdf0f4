"""The controller's task records through the Client: db_query, hub_history, resubmit,
result_status and the purges, as ipyparallel's users call them.

The first tests check the query language alone (what the controller accepts and how each
operator matches); the rest run against a real cluster and read back exact values.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import wait_until

import ipar_widgets as ipp
from ipar_widgets import error
from ipar_widgets.controller.taskquery import BadQuery, Condition, parse_keys, parse_query
from ipar_widgets.protocol import serialize
from ipar_widgets.protocol.taskfields import DEFAULT_FIELDS, FIELDS

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)

# -- the query language, without a cluster -------------------------------------------------------


def matching(query: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    parsed = parse_query(query)
    return [r["msg_id"] for r in records if parsed.matches(lambda f, r=r: r.get(f))]


RECORDS = [
    {"msg_id": "a", "submitted": T0, "engine_uuid": "e0", "resubmitted": None},
    {"msg_id": "b", "submitted": T0 + timedelta(seconds=1), "engine_uuid": "e1"},
    {"msg_id": "c", "submitted": T0 + timedelta(seconds=2), "engine_uuid": "e0"},
    {"msg_id": "d", "submitted": None, "engine_uuid": None, "resubmitted": "a"},
]


def test_each_operator_matches_as_in_mongodb() -> None:
    t1 = T0 + timedelta(seconds=1)
    assert matching({"submitted": {"$lt": t1}}, RECORDS) == ["a"]
    assert matching({"submitted": {"$lte": t1}}, RECORDS) == ["a", "b"]
    assert matching({"submitted": {"$gt": t1}}, RECORDS) == ["c"]
    assert matching({"submitted": {"$gte": t1}}, RECORDS) == ["b", "c"]
    assert matching({"submitted": {"$gt": T0, "$lt": T0 + timedelta(seconds=2)}}, RECORDS) == ["b"]
    assert matching({"submitted": {"$eq": t1}}, RECORDS) == ["b"]
    assert matching({"submitted": t1}, RECORDS) == ["b"]  # a plain value: equal to
    assert matching({"submitted": t1.isoformat()}, RECORDS) == ["b"]  # dates as ISO strings
    assert matching({"submitted": "2026-01-02T03:04:06.678901Z"}, RECORDS) == ["b"]
    assert matching({"submitted": {"$ne": t1}}, RECORDS) == ["a", "c", "d"]
    assert matching({"submitted": None}, RECORDS) == ["d"]
    assert matching({"msg_id": {"$in": ["a", "c", "x"]}}, RECORDS) == ["a", "c"]
    assert matching({"msg_id": {"$nin": ["a", "c"]}}, RECORDS) == ["b", "d"]
    assert matching({"submitted": {"$in": [t1.isoformat(), T0]}}, RECORDS) == ["a", "b"]
    # a string operand tests substrings, as ipyparallel's `value in operand` does
    assert matching({"engine_uuid": {"$in": "e0e"}}, RECORDS) == ["a", "c"]
    assert matching({"engine_uuid": {"$nin": "e0"}}, RECORDS) == ["b", "d"]
    assert parse_query({"msg_id": {"$in": "abc"}}).msg_ids is None
    assert matching({"engine_uuid": "e0", "msg_id": {"$ne": "a"}}, RECORDS) == ["c"]
    # $exists: set (not None) or not; a field a record lacks counts as None
    assert matching({"resubmitted": {"$exists": True}}, RECORDS) == ["d"]
    assert matching({"resubmitted": {"$exists": False}}, RECORDS) == ["a", "b", "c"]
    # an ordering test never matches None, nor a value of another type
    assert matching({"engine_uuid": {"$gt": ""}}, RECORDS) == ["a", "b", "c"]
    assert matching({"msg_id": {"$lt": "c"}}, RECORDS) == ["a", "b"]
    assert matching({}, RECORDS) == ["a", "b", "c", "d"]


def test_a_condition_on_msg_id_pins_the_candidates() -> None:
    assert parse_query({"msg_id": "a"}).msg_ids == {"a"}
    assert parse_query({"msg_id": {"$in": ["a", "b"], "$eq": "b"}}).msg_ids == {"b"}
    assert parse_query({"msg_id": {"$ne": ""}}).msg_ids is None
    assert parse_query({"submitted": {"$exists": True}}).msg_ids is None
    assert parse_query({"msg_id": {"$in": ["a"]}}).conditions == (
        Condition("msg_id", "$in", ["a"]),
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            ["msg_id"],
            "a query is a dict of {field: value} or {field: {'$op': value}}, found list ['msg_id']",
        ),
        (
            {"sumbitted": 1},
            "unknown task record field 'sumbitted'; expected one of " + ", ".join(FIELDS),
        ),
        (
            {"msg_id": {"$like": "a"}},
            "unknown operator '$like' for 'msg_id'; expected one of: $lt (less than), "
            "$gt (greater than), $lte (less than or equal to), $gte (greater than or equal "
            "to), $eq (equal to), $ne (not equal to), $in (one of a list), $nin (none of a "
            "list), $exists (true: is set, false: is None)",
        ),
        (
            {"msg_id": {"$in": 5}},
            "$in of 'msg_id' takes a list of values (or a string), found 5",
        ),
        ({"error": {"$exists": 1}}, "$exists of 'error' takes true or false, found 1"),
        ({"started": {"$lt": None}}, "$lt of 'started' needs a value to compare with, found None"),
        (
            {"submitted": {"$gt": 5}},
            "'submitted' holds dates: expected a datetime or an ISO 8601 string to compare "
            "it with, found 5",
        ),
        (
            {"completed": "yesterday"},
            "'completed' holds dates: expected a datetime or an ISO 8601 string to compare "
            "it with, found 'yesterday'",
        ),
        ({"buffers": {"$exists": True}}, "'buffers' holds binary frames and cannot be queried"),
        (
            {"header": {"$eq": {}, "msg_id": "a"}},
            "the test of 'header' mixes operators and plain keys: {'$eq': {}, 'msg_id': 'a'}; "
            "use either {'$op': value, ...} or a value to compare with",
        ),
    ],
)
def test_a_malformed_query_is_refused_with_what_was_expected(query: Any, message: str) -> None:
    with pytest.raises(BadQuery) as caught:
        parse_query(query)
    assert str(caught.value) == message


def test_keys_always_start_with_msg_id_and_default_to_all_but_buffers() -> None:
    assert parse_keys(None) == DEFAULT_FIELDS
    assert "buffers" not in DEFAULT_FIELDS and "result_buffers" not in DEFAULT_FIELDS
    # engine_id is ours, asked for by name only: the default is ipyparallel's fields
    assert "engine_id" in FIELDS and "engine_id" not in DEFAULT_FIELDS
    assert len(DEFAULT_FIELDS) == len(FIELDS) - 3
    assert parse_keys("submitted") == ("msg_id", "submitted")
    assert parse_keys(["completed", "msg_id", "completed"]) == ("msg_id", "completed")
    with pytest.raises(BadQuery, match="^unknown task record field 'bufers'; expected one of"):
        parse_keys(["bufers"])
    with pytest.raises(BadQuery) as caught:
        parse_keys([])
    assert str(caught.value) == "keys must be a field name or a non-empty list of them, found []"


# -- against a cluster ---------------------------------------------------------------------------


@ipp.interactive
def talk(value: str) -> str:
    import sys

    print("out", value)
    print("err", value, file=sys.stderr)
    return value + "!"


def only(rc: Any, msg_ids: list[str], query: dict[str, Any] | None = None) -> list[str]:
    """msg_ids of this test's tasks that match ``query``, in the order the controller gives."""
    found = rc.db_query({**(query or {}), "msg_id": {"$in": msg_ids}}, keys="msg_id")
    return [r["msg_id"] for r in found]


def test_the_record_of_a_finished_task(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[1].apply_async(talk, "hi")
    assert ar.get(timeout=10) == "hi!"
    msg_id = ar.msg_ids[0]
    md = rc.metadata[msg_id]
    [rec] = rc.db_query({"msg_id": msg_id})
    assert list(rec) == list(DEFAULT_FIELDS)
    assert rec["msg_id"] == msg_id
    assert rec["header"]["msg_id"] == msg_id and rec["header"]["msg_type"] == "apply_request"
    assert rec["header"]["session"] == rec["client_uuid"] == rc.session.session
    assert rec["header"]["date"] == rec["submitted"] == md.submitted
    assert rec["submitted"].tzinfo is not None
    assert rec["engine_uuid"] == md.engine_uuid and md.engine_uuid is not None
    assert (rec["started"], rec["completed"]) == (md.started, md.completed)
    assert md.completed <= rec["received"] <= md.received  # one host: one clock
    assert rec["result_header"]["msg_type"] == "apply_reply"
    assert rec["result_header"]["date"].tzinfo is not None
    assert rec["result_content"]["status"] == "ok"
    assert rec["result_metadata"]["engine_id"] == 1
    assert rec["queue"] == "mux"
    assert (rec["stdout"], rec["stderr"]) == ("out hi\n", "err hi\n")
    assert (rec["execute_input"], rec["execute_result"], rec["error"]) == (None, None, None)
    assert (rec["label"], rec["resubmitted"]) == (None, None)
    assert rec["content"] == {"fn_frames": 1} and isinstance(rec["metadata"], dict)

    [raw] = rc.db_query({"msg_id": msg_id}, keys=["result_buffers", "buffers"])
    assert set(raw) == {"msg_id", "result_buffers", "buffers"}
    assert serialize.loads(raw["result_buffers"]) == "hi!"
    assert len(raw["buffers"]) >= 2  # the function, then its arguments

    lb = rc.load_balanced_view()
    balanced = lb.apply_async(talk, "lb")
    balanced.get(timeout=10)
    [brec] = rc.db_query({"msg_id": balanced.msg_ids[0]}, keys=["queue", "engine_uuid"])
    assert brec["queue"] == "task"
    assert brec["engine_uuid"] == rc.metadata[balanced.msg_ids[0]].engine_uuid


def test_the_record_of_an_execute_request(rc) -> None:  # type: ignore[no-untyped-def]
    ok = rc[2].execute("print(5)\n6 * 7", silent=False)
    ok.get(timeout=10)
    failed = rc[2].execute("1 / 0")
    with pytest.raises(error.RemoteError):
        failed.get(timeout=10)
    [a, b] = rc.db_query({"msg_id": {"$in": ok.msg_ids + failed.msg_ids}})
    assert a["header"]["msg_type"] == "execute_request"
    assert a["content"]["code"] == "print(5)\n6 * 7"
    assert a["execute_input"] == "print(5)\n6 * 7"
    assert a["execute_result"]["data"]["text/plain"] == "42"
    assert (a["stdout"], a["error"]) == ("5\n", None)
    assert b["result_content"]["status"] == "error"
    assert b["result_content"]["ename"] == b["error"]["ename"] == "ZeroDivisionError"


def test_queries_and_key_selection_against_the_records(rc) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(4):  # one after another: submitted strictly increases
        ar = rc[i % 2].apply_async(lambda x: x, i)
        ar.get(timeout=10)
        ids.append(ar.msg_ids[0])
    a, b, c, d = ids
    times = [rc.metadata[m].submitted for m in ids]
    assert [r["submitted"] for r in rc.db_query({"msg_id": {"$in": ids}}, keys="submitted")] == (
        times
    )
    t1 = times[1]
    assert only(rc, ids, {"submitted": {"$lt": t1}}) == [a]
    assert only(rc, ids, {"submitted": {"$lte": t1}}) == [a, b]
    assert only(rc, ids, {"submitted": {"$gt": t1}}) == [c, d]
    assert only(rc, ids, {"submitted": {"$gte": t1}}) == [b, c, d]
    assert only(rc, ids, {"submitted": {"$gt": times[0], "$lt": times[3]}}) == [b, c]
    assert only(rc, ids, {"submitted": t1}) == [b]
    assert only(rc, ids, {"submitted": {"$eq": t1.isoformat()}}) == [b]
    assert only(rc, ids, {"submitted": {"$ne": t1}}) == [a, c, d]
    assert only(rc, ids, {"engine_uuid": rc.metadata[a].engine_uuid}) == [a, c]
    assert only(rc, ids, {"resubmitted": {"$exists": False}, "completed": {"$exists": True}}) == (
        ids
    )
    assert only(rc, ids, {"resubmitted": {"$exists": True}}) == []
    assert [r["msg_id"] for r in rc.db_query({"msg_id": {"$in": ids, "$nin": [a, c]}})] == [b, d]
    assert [r["msg_id"] for r in rc.db_query({"msg_id": {"$in": [d, b, "nope"]}})] == [b, d]
    everything = [r["msg_id"] for r in rc.db_query({"msg_id": {"$ne": ""}}, keys="msg_id")]
    assert everything[-4:] == ids

    assert [list(r) for r in rc.db_query({"msg_id": a}, keys="completed")] == [
        ["msg_id", "completed"]
    ]
    assert [list(r) for r in rc.db_query({"msg_id": a}, keys=["msg_id"])] == [["msg_id"]]
    assert [list(r) for r in rc.db_query({"msg_id": a}, keys=["completed", "submitted"])] == [
        ["msg_id", "completed", "submitted"]
    ]
    # what the client got is its own: changing it changes nothing in the controller
    [rec] = rc.db_query({"msg_id": a})
    rec["header"].pop("msg_id")
    assert rc.db_query({"msg_id": a}, keys="header")[0]["header"]["msg_id"] == a

    with pytest.raises(error.ControllerRefused) as refused:
        rc.db_query({"submitted": {"$after": t1}})
    assert refused.value.request == "db_request"
    assert str(refused.value).startswith("unknown operator '$after' for 'submitted'; expected")
    with pytest.raises(ValueError, match="^unknown task record field 'nope'"):
        rc.db_query({"msg_id": a}, keys=["nope"])


def test_hub_history_is_every_clients_tasks_by_submission_time(rc, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    other = ipp.Client(url_file=shared_cluster.cluster.client_file)
    try:
        mine = rc[0].apply_async(lambda: 1)
        theirs = other[1].apply_async(lambda: 2)
        again = rc.load_balanced_view().apply_async(lambda: 3)
        for ar in (mine, theirs, again):
            ar.get(timeout=10)
        history = rc.hub_history()
        assert history == other.hub_history()
        assert history[-3:] == [mine.msg_ids[0], theirs.msg_ids[0], again.msg_ids[0]]
        dates = {r["msg_id"]: r["submitted"] for r in rc.db_query({}, keys="submitted")}
        assert history == sorted(dates, key=lambda m: dates[m])
        [rec] = rc.db_query({"msg_id": theirs.msg_ids[0]}, keys="client_uuid")
        assert rec["client_uuid"] == other.session.session
    finally:
        other.close()


def test_resubmit_a_finished_task_and_a_chain(rc) -> None:  # type: ignore[no-untyped-def]
    lb = rc.load_balanced_view()
    lb.retries = 1
    first = lb.apply_async(lambda x: x * 2, 21)
    assert first.get(timeout=10) == 42
    second = rc.resubmit(first.msg_ids)
    assert isinstance(second, ipp.AsyncHubResult)
    assert second.get(timeout=10) == [42]  # a list, as ipyparallel returns it
    third = rc.resubmit(second.msg_ids, block=True)
    assert third.ready() and third.get() == [42]
    fourth = rc.resubmit(first.msg_ids[0])  # again from the original
    assert fourth.get(timeout=10) == [42]
    ids = [first.msg_ids[0], second.msg_ids[0], third.msg_ids[0], fourth.msg_ids[0]]
    assert len(set(ids)) == 4
    assert not set(ids) & rc.outstanding
    assert rc.history[-1] == first.msg_ids[0]  # resubmitted tasks are not in the history

    records = rc.db_query({"msg_id": {"$in": ids}})
    assert [r["msg_id"] for r in records] == ids
    # the original links to its latest resubmission, the second to the third
    assert [r["resubmitted"] for r in records] == [ids[3], ids[2], None, None]
    original = records[0]["header"]
    for rec in records[1:]:
        header = rec["header"]
        assert set(header) == set(original)
        assert {k for k in header if header[k] != original[k]} == {"msg_id", "date"}
        assert header["date"] > original["date"]
        assert rec["submitted"] == header["date"] == rc.metadata[rec["msg_id"]].submitted
        assert rec["metadata"]["retries"] == 1 and rec["queue"] == "task"
        assert rec["content"] == records[0]["content"]
        assert rec["client_uuid"] == rc.session.session


def test_resubmit_a_failed_and_an_aborted_task(rc) -> None:  # type: ignore[no-untyped-def]
    def flaky() -> str:
        import builtins

        if not getattr(builtins, "_h4_tried", False):
            builtins._h4_tried = True  # type: ignore[attr-defined]
            raise ValueError("first try")
        return "second try"

    try:
        failed = rc[3].apply_async(flaky)
        with pytest.raises(error.RemoteError, match="first try"):
            failed.get(timeout=10)
        retried = rc.resubmit(failed, metadata={"label": "again"})
        assert retried.get(timeout=10) == ["second try"]  # on the same engine: it remembers
        [rec] = rc.db_query({"msg_id": retried.msg_ids[0]}, keys=["label", "queue", "engine_uuid"])
        assert rec == {
            "msg_id": retried.msg_ids[0],
            "label": "again",
            "queue": "mux",
            "engine_uuid": rc.metadata[failed.msg_ids[0]].engine_uuid,
        }
    finally:
        rc[3].apply_sync(lambda: delattr(__import__("builtins"), "_h4_tried"))

    lb = rc.load_balanced_view(targets=[2])
    blocker = lb.apply_async(time.sleep, 1.0)
    doomed = lb.apply_async(lambda: "ran")
    doomed.abort()
    with pytest.raises(error.TaskAborted):
        doomed.get(timeout=10)
    again = rc.resubmit(doomed.msg_ids)
    assert again.get(timeout=10) == ["ran"]
    blocker.get(timeout=10)
    [orig] = rc.db_query({"msg_id": doomed.msg_ids[0]}, keys=["result_content", "resubmitted"])
    assert orig["result_content"]["status"] == "aborted"
    assert orig["resubmitted"] == again.msg_ids[0]


def test_resubmit_a_task_still_running(rc) -> None:  # type: ignore[no-untyped-def]
    lb = rc.load_balanced_view()
    running = lb.apply_async(time.sleep, 0.5)
    wait_until(lambda: rc.result_status(running)["pending"] == running.msg_ids, 5)
    twin = rc.resubmit(running)
    assert twin.get(timeout=10) == [None]
    assert running.get(timeout=10) is None
    assert rc.result_status(running.msg_ids + twin.msg_ids)["completed"] == (
        running.msg_ids + twin.msg_ids
    )


def test_resubmit_of_an_unknown_task_is_a_key_error(rc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error.NoSuchTask) as caught:
        rc.resubmit(["invalid", "also-invalid"])
    err = caught.value
    assert isinstance(err, KeyError) and isinstance(err, error.RemoteError)
    assert err.ename == "KeyError"
    # the reason in parentheses names the store (the database file, by default)
    assert str(err).startswith(
        "the controller has no record of tasks ['invalid', 'also-invalid'] (never submitted "
        "to this cluster, or purged"
    )
    assert "tasks.sqlite" in str(err)
    assert str(err).endswith("rc.hub_history() lists the tasks it has")


def test_another_client_can_resubmit_and_gets_the_result(rc, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    other = ipp.Client(url_file=shared_cluster.cluster.client_file)
    try:
        ar = rc[0].apply_async(talk, "x")
        ar.get(timeout=10)
        theirs = other.resubmit(ar.msg_ids)
        assert theirs.get(timeout=10) == ["x!"]
        assert theirs.stdout == ["out x\n"]
        [rec] = other.db_query({"msg_id": theirs.msg_ids[0]}, keys="client_uuid")
        assert rec["client_uuid"] == other.session.session
    finally:
        other.close()


def test_result_status(rc) -> None:  # type: ignore[no-untyped-def]
    done = rc[0].apply_async(lambda: "done")
    done.get(timeout=10)
    running = rc[1].apply_async(time.sleep, 0.5)
    both = done.msg_ids + running.msg_ids
    assert rc.result_status(both) == {"pending": running.msg_ids, "completed": done.msg_ids}
    running.get(timeout=10)
    status = rc.result_status(both, status_only=False)
    assert status == {"pending": [], "completed": both, both[0]: "done", both[1]: None}
    failing = rc[1].apply_async(lambda: 1 / 0)
    with pytest.raises(error.RemoteError):
        failing.get(timeout=10)
    with pytest.raises(error.RemoteError, match="ZeroDivisionError"):
        rc.result_status(failing, status_only=False)
    with pytest.raises(error.NoSuchTask, match="no record of task 'nope'"):
        rc.result_status("nope")


def test_a_fetched_result_keeps_the_times_the_controller_saw(rc, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    ar = rc[:].apply_async(time.sleep, 0.2)
    ar.get(timeout=10)
    other = ipp.Client(url_file=shared_cluster.cluster.client_file)
    try:
        time.sleep(0.3)  # a later look-up: its time must not count
        hr = other.get_result(ar.msg_ids)
        hr.get(timeout=10)
        received = {
            r["msg_id"]: r["received"]
            for r in other.db_query({"msg_id": {"$in": ar.msg_ids}}, keys="received")
        }
        assert [md.received for md in hr.metadata] == [received[m] for m in ar.msg_ids]
        assert hr.wall_time <= ar.wall_time
        assert hr.wall_time == (max(received.values()) - min(ar.submitted)).total_seconds()
        assert hr.serial_time == ar.serial_time
    finally:
        other.close()


def test_requests_count_towards_the_record_size(rc) -> None:  # type: ignore[no-untyped-def]
    before = rc.status()["record_bytes"]
    assert rc[0].apply_sync(len, b"x" * 200_000) == 200_000
    assert rc.status()["record_bytes"] - before >= 200_000


def test_purge_local_results(rc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as neither:
        rc.purge_local_results()
    assert str(neither.value) == (
        "purge_local_results needs jobs (msg_ids, history indices, AsyncResults or 'all') "
        "or targets (engine ids)"
    )
    rc.results["by-hand"] = 5
    assert rc.metadata["by-hand"].msg_id == "by-hand"  # made on first read, as upstream
    rc.purge_local_results("by-hand")
    assert "by-hand" not in rc.results and "by-hand" not in rc.metadata

    running = rc[1].apply_async(time.sleep, 0.5)
    for jobs in (running, "all"):
        with pytest.raises(RuntimeError) as busy:
            rc.purge_local_results(jobs)
        assert str(busy.value) == (
            f"cannot purge outstanding tasks {running.msg_ids!r}; wait for them (rc.wait()) "
            "or abort them (rc.abort()) first"
        )
    assert running.msg_ids[0] in rc.metadata  # nothing was forgotten
    running.get(timeout=10)
    on0 = rc[0].apply_async(lambda: 0)
    on0.get(timeout=10)
    rc.purge_local_results(targets=[1])
    assert running.msg_ids[0] not in rc.metadata and on0.msg_ids[0] in rc.metadata
    assert running.msg_ids[0] in rc.hub_history()  # only here
    rc.purge_local_results(on0)
    assert on0.msg_ids[0] not in rc.metadata
    rc.purge_local_results("all")
    assert rc.metadata == {} and rc.results == {}
    assert rc.history  # the history stays: only purge_everything clears it


def test_purge_hub_results(rc) -> None:  # type: ignore[no-untyped-def]
    a = rc[0].apply_async(lambda: "a")
    b = rc[1].apply_async(lambda: "b")
    c = rc[1].apply_async(lambda: "c")
    for ar in (a, b, c):
        ar.get(timeout=10)
    rc.purge_hub_results(a)
    history = rc.hub_history()
    assert a.msg_ids[0] not in history and b.msg_ids[0] in history
    assert a.msg_ids[0] in rc.metadata  # only in the controller
    with pytest.raises(error.NoSuchTask, match=f"no record of task {a.msg_ids[0]!r}"):
        rc.resubmit(a)
    rc.purge_hub_results(["never-was"])  # forgetting what is gone is not an error
    rc.purge_hub_results(targets=1)
    assert not {b.msg_ids[0], c.msg_ids[0]} & set(rc.hub_history())

    running = rc[2].apply_async(time.sleep, 0.5)
    with pytest.raises(error.ControllerRefused) as refused:
        rc.purge_hub_results(running)
    assert str(refused.value) == (
        f"cannot forget task(s) {running.msg_ids!r}: they have not finished; wait for them "
        "(or abort them) first"
    )
    assert isinstance(refused.value, RuntimeError)
    running.get(timeout=10)


def test_purge_results_and_everything(rc) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        rc[:].apply_sync(lambda: 1)
    running = rc[0].apply_async(time.sleep, 0.5)
    with pytest.raises(RuntimeError):
        rc.purge_results("all")  # this client's task is still outstanding
    running.get(timeout=10)
    rc.purge_results("all")
    assert rc.results == {} and rc.metadata == {} and rc.hub_history() == []
    assert rc.history
    rc[0].apply_sync(lambda: 1)
    rc.purge_everything()
    assert rc.history == [] and rc.metadata == {} and rc.hub_history() == []


def test_resubmit_of_a_task_whose_engine_left_is_load_balanced(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2)
    rc = handle.rc
    rc.wait_for_engines(2, timeout=30)
    ar = rc[1].apply_async(lambda: "ran")
    ar.get(timeout=10)
    rc.shutdown(1, block=True)
    wait_until(lambda: rc.ids == [0], 15, what="engine 1 to leave")
    again = rc.resubmit(ar)
    assert again.get(timeout=10) == ["ran"]
    [rec] = rc.db_query({"msg_id": again.msg_ids[0]}, keys=["queue", "engine_uuid"])
    assert rec["queue"] == "task"
    assert again.metadata[0].engine_id == 0
    assert rec["engine_uuid"] == again.metadata[0].engine_uuid


def test_arguments_sent_through_shared_memory_are_not_resubmitted(rc) -> None:  # type: ignore[no-untyped-def]
    np = pytest.importorskip("numpy")
    big = np.ones(2 * 1024 * 1024 // 8)  # 2 MiB: past the shared-memory threshold
    ar = rc[0].apply_async(lambda a: float(a.sum()), big)
    assert ar.get(timeout=30) == float(len(big))
    with pytest.raises(error.ControllerRefused) as refused:
        rc.resubmit(ar)
    assert str(refused.value) == (
        f"task {ar.msg_ids[0]!r} cannot be resubmitted: its arguments travelled through shared "
        "memory, whose files are removed as the task finishes; submit it again instead"
    )


def test_records_past_their_bounds_go_oldest_first(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(
        n=1,
        controller_args=[
            "--dictdb",  # the bounds of records kept in memory only
            "--ControllerApp.record_limit=10",
            "--ControllerApp.record_size_limit=500000",
        ],
    )
    rc = handle.rc
    rc.wait_for_engines(1, timeout=30)
    # by size: each task's request holds 200 kB; past 500 kB the oldest go, down to 450 kB
    big = []
    for _ in range(4):
        ar = rc[0].apply_async(len, b"x" * 200_000)
        assert ar.get(timeout=10) == 200_000
        big.append(ar.msg_ids[0])
    assert rc.hub_history() == big[2:]
    assert rc.db_query({"msg_id": {"$in": big}}, keys="msg_id") == [{"msg_id": m} for m in big[2:]]
    rc.purge_everything()
    # by count: past 10 records the oldest finished go, down to 9
    small = []
    for i in range(12):
        ar = rc[0].apply_async(lambda i=i: i)
        assert ar.get(timeout=10) == i
        small.append(ar.msg_ids[0])
    assert rc.hub_history() == small[2:]
