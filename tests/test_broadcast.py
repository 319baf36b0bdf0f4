"""BroadcastView (``rc.broadcast_view()``): one message per call, fanned out by the controller,
coalescing or not; the wire protocol of broadcasts; engines that crash mid-task; and
``track=True`` sends."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import zmq
from conftest import wait_until

import ipar_widgets as ipp
from ipar_widgets.client.connect import load_connection_file
from ipar_widgets.client.controlplane import address_of
from ipar_widgets.controller.broadcast import Gather
from ipar_widgets.controller.records import OK, RecordStore, TaskRecord
from ipar_widgets.progress.snapshot import ProgressTracker
from ipar_widgets.protocol import serialize
from ipar_widgets.protocol.routing import (
    BroadcastRoute,
    broadcast_route,
    parse_route,
    part_msg_id,
)
from ipar_widgets.protocol.wire import Wire
from ipar_widgets.widgets.timeline import timeline


@ipp.interactive
def rank_of() -> int:
    return rank  # type: ignore[name-defined]  # noqa: F821


@ipp.interactive
def say_rank() -> int:
    print(f"rank {rank}")  # type: ignore[name-defined]  # noqa: F821
    return rank  # type: ignore[name-defined]  # noqa: F821


@ipp.interactive
def fail_on_odd_rank() -> int:
    if rank % 2:  # type: ignore[name-defined]  # noqa: F821
        raise ValueError(f"odd rank {rank}")  # type: ignore[name-defined]  # noqa: F821
    return rank  # type: ignore[name-defined]  # noqa: F821


@ipp.interactive
def crash_if_told() -> str:
    import os

    if should_crash:  # type: ignore[name-defined]  # noqa: F821
        os._exit(1)
    return "survived"


@pytest.fixture
def ranked(rc):  # type: ignore[no-untyped-def]
    """The shared cluster's client, each engine's ``rank`` its id."""
    rc[:].scatter("rank", rc.ids, flatten=True, block=True)
    return rc


# -- the routing frames ----------------------------------------------------------------------------
def test_broadcast_routing_frames_name_each_engine_once() -> None:
    assert broadcast_route([3, 0, 12], gathered=False) == b"m3,0,12"
    assert broadcast_route([3, 0, 12], gathered=True) == b"g3,0,12"
    route = parse_route(b"g3,0,12")
    assert isinstance(route, BroadcastRoute)
    assert (route.kind, route.engine_ids, route.gathered) == ("broadcast", (3, 0, 12), True)
    assert not parse_route(b"m5").gathered  # type: ignore[attr-defined]
    assert part_msg_id("c0ffee_7", 3) == "c0ffee_7_3"
    with pytest.raises(ValueError, match=r"bad engine ids in broadcast routing frame b'm'"):
        parse_route(b"m")
    with pytest.raises(ValueError, match=r"an engine is named twice in .* b'g1,2,1'"):
        parse_route(b"g1,2,1")
    with pytest.raises(ValueError, match=r"expected b'b', b'c', b'd<id>', b'k<id>', b'm<id>"):
        parse_route(b"x1")


def test_the_records_keep_the_finished_parts_of_an_unanswered_gather() -> None:
    store = RecordStore(limit=3, size_limit=1 << 30)
    gather = Gather("m", b"client", b"{}", (0, 1))
    part = TaskRecord(part_msg_id("m", 0), b"client", "apply_request", "")
    part.gather, part.status = gather, OK
    store.add(part)
    for i in range(5):  # past the limit: the oldest finished records are culled ...
        rec = TaskRecord(f"t{i}", b"client", "apply_request", "")
        rec.status = OK
        store.add(rec)
    assert part.msg_id in store  # ... but not a part whose answer has not been sent
    store.purge()
    assert part.msg_id in store and len(store) == 1
    gather.pending = 0  # answered
    assert store.purge() == 1 and len(store) == 0


def test_the_controller_fans_one_message_out_and_gathers_one_answer(ranked) -> None:  # type: ignore[no-untyped-def]
    """At the wire: one request in; one reply per engine out, or, gathered, one in all."""
    info = load_connection_file(ranked.url_file)
    wire = Wire(str(info["key"]).encode())
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.identity = b"probe-broadcast"
    sock.connect(address_of(info))

    def receive() -> Any:
        assert sock.poll(30_000), "no answer within 30 s"
        return wire.decode(sock.recv_multipart())

    content, buffers = serialize.pack_apply(serialize.pack_function(rank_of), (), {})
    try:
        header, frames = wire.build(
            "apply_request", content, idents=[broadcast_route([2, 0], False)], buffers=buffers
        )
        sock.send_multipart(frames)
        replies = {}
        for _ in range(2):
            reply = receive()
            assert reply.msg_type == "apply_reply"
            replies[reply.parent_header["msg_id"]] = serialize.loads(reply.buffers)
        request = header["msg_id"]
        assert replies == {part_msg_id(request, 2): 2, part_msg_id(request, 0): 0}

        header, frames = wire.build(
            "apply_request", content, idents=[broadcast_route([3, 1, 0], True)], buffers=buffers
        )
        sock.send_multipart(frames)
        answer = receive()
        assert answer.msg_type == "broadcast_reply"
        assert answer.parent_header["msg_id"] == header["msg_id"]
        assert answer.content == {"status": "ok", "parts": [None, None, None]}
        parts = answer.metadata["parts"]
        assert [(p["engine_id"], p["status"], p["buffers"]) for p in parts] == [
            (3, "ok", 1),
            (1, "ok", 1),
            (0, "ok", 1),
        ]
        assert [p["msg_id"] for p in parts] == [part_msg_id(header["msg_id"], e) for e in (3, 1, 0)]
        assert [serialize.loads([b]) for b in answer.buffers] == [3, 1, 0]
        assert not sock.poll(200), "a gathered broadcast is answered once"

        # an engine that is not there fails its part; the others still answer
        header, frames = wire.build(
            "apply_request", content, idents=[broadcast_route([0, 99], True)], buffers=buffers
        )
        sock.send_multipart(frames)
        answer = receive()
        assert answer.metadata["status"] == "error"
        ok, missing = answer.content["parts"]
        assert ok is None and missing["ename"] == "EngineError"
        assert missing["evalue"].startswith("engine 99 is not registered")
        assert [serialize.loads([b]) for b in answer.buffers] == [0]
    finally:
        sock.close()


# -- a broadcast view, not coalescing ------------------------------------------------------------
def test_a_broadcast_view_runs_each_call_once_on_every_engine(ranked) -> None:  # type: ignore[no-untyped-def]
    rc = ranked
    bv = rc.broadcast_view()
    assert isinstance(bv, ipp.BroadcastView) and isinstance(bv, ipp.DirectView)
    assert repr(bv) == "<BroadcastView [0, 1, 2, 3]>"
    assert (bv.targets, len(bv), bv.is_coalescing, bv.block) == ([0, 1, 2, 3], 4, False, False)

    ar = bv.apply_async(say_rank)
    assert ar.get(timeout=10) == [0, 1, 2, 3]
    [request] = {m.rsplit("_", 1)[0] for m in ar.msg_ids}  # one message, one part each
    assert ar.msg_ids == [part_msg_id(request, e) for e in range(4)]
    assert ar.engine_id == [0, 1, 2, 3]
    assert ar.engine_uuid == rc[:].apply_async(rank_of).engine_uuid
    assert ar.stdout == [f"rank {e}\n" for e in range(4)]
    assert bv.history == ar.msg_ids and set(ar.msg_ids) <= set(rc.history)

    bv["x"] = 7
    assert bv["x"] == [7, 7, 7, 7]
    assert bv.pull("rank", targets=2, block=True) == 2  # one engine: its value, not a list
    ar = bv.execute("y = rank * 10")
    ar.wait(10)
    assert len(ar.msg_ids) == 4 and ar.engine_id == [0, 1, 2, 3]
    assert rc.broadcast_view([3, 1]).pull("y", block=True) == [30, 10]
    assert bv.map_sync(lambda v: v + 1, range(10)) == list(range(1, 11))
    bv.scatter("part", list(range(10)), block=True)
    assert bv.gather("part", block=True) == list(range(10))
    with pytest.raises(ValueError, match=r"its targets \[0, 0\] name an engine more than once"):
        rc.broadcast_view([0, 0]).apply_sync(rank_of)


def test_broadcast_view_flags_and_keyword_arguments(rc) -> None:  # type: ignore[no-untyped-def]
    bv = rc.broadcast_view(block=True)
    assert bv.block is True
    assert bv.apply(lambda: 5) == [5, 5, 5, 5]
    bv.set_flags(is_coalescing=True)
    assert bv.is_coalescing and len(bv.apply_async(lambda: 5).msg_ids) == 1
    with pytest.raises(KeyError, match=r"the flags of a BroadcastView are block, is_coalescing"):
        bv.set_flags(coalesce=True)
    assert rc.broadcast_view(slice(1, 3)).targets == [1, 2]
    assert rc.broadcast_view(-1).targets == [3]


# -- a coalescing broadcast view -------------------------------------------------------------------
def uuids_of(rc) -> dict[int, str]:  # type: ignore[no-untyped-def]
    ar = rc[:].apply_async(rank_of)
    ar.get(timeout=10)
    return dict(zip(ar.engine_id, ar.engine_uuid))


def test_a_coalescing_view_answers_once_with_every_value_in_target_order(ranked) -> None:  # type: ignore[no-untyped-def]
    rc = ranked
    uuid = uuids_of(rc)
    cv = rc.broadcast_view([3, 1, 2], is_coalescing=True)
    assert cv.is_coalescing and repr(cv) == "<BroadcastView [3, 1, 2]>"

    ar = cv.pull("rank", block=False)
    assert ar.engine_id == [3, 1, 2]  # known as soon as it is sent
    assert ar.get(timeout=10) == [3, 1, 2]
    assert len(ar.msg_ids) == 1 and cv.history[-1:] == ar.msg_ids
    assert ar.engine_id == [3, 1, 2]
    assert ar.engine_uuid == [uuid[3], uuid[1], uuid[2]]
    md = ar.metadata
    assert md["status"] == "ok" and md["started"] <= md["completed"] <= md["received"]
    assert ar.result_dict == {3: 3, 1: 1, 2: 2}
    assert rc.metadata[ar.msg_ids[0]] is md

    cv["x"] = 5
    assert cv["x"] == [5, 5, 5]
    assert cv.apply_sync(lambda a, b: a + b, 1, b=2) == [3, 3, 3]
    ar = cv.apply_async(say_rank)  # every engine's output, in the one task's metadata
    assert ar.get(timeout=10) == [3, 1, 2]
    assert sorted(ar.stdout.splitlines()) == ["rank 1", "rank 2", "rank 3"]

    # execute, map, scatter and gather are not coalesced (as in ipyparallel)
    ar = cv.execute("y = rank * 10")
    ar.wait(10)
    assert len(ar.msg_ids) == 3 and ar.engine_id == [3, 1, 2]
    assert cv["y"] == [30, 10, 20]
    amr = cv.map_async(lambda v: v * 2, range(7))
    assert isinstance(amr, ipp.AsyncMapResult) and amr.get(timeout=10) == list(range(0, 14, 2))
    cv.scatter("part", list(range(7)), block=True)
    assert cv.gather("part", block=True) == list(range(7))
    assert rc.broadcast_view([1, 2, 3], is_coalescing=True)["part"] == [[3, 4], [5, 6], [0, 1, 2]]

    # a display of the job reads it as one task on several engines
    snap = ProgressTracker(ar).snapshot()
    assert (snap.total, snap.done, snap.failed) == (3, 3, 0)
    gathered = cv.apply_async(rank_of)
    gathered.get(timeout=10)
    snap = ProgressTracker(gathered).snapshot()
    assert (snap.total, snap.done, snap.engines) == (1, 1, ())
    assert timeline(gathered).bars == []


def test_a_coalescing_view_raises_every_engines_error_at_once(ranked) -> None:  # type: ignore[no-untyped-def]
    cv = ranked.broadcast_view([0, 1, 2, 3], is_coalescing=True)
    ar = cv.apply_async(fail_on_odd_rank)
    with pytest.raises(ipp.CompositeError) as info:
        ar.get(timeout=10)
    assert [(e.ename, e.evalue, e.engine_id) for e in info.value.elist] == [
        ("ValueError", "odd rank 1", 1),
        ("ValueError", "odd rank 3", 3),
    ]
    assert str(info.value).startswith("one or more exceptions raised in: apply (2 errors)")
    assert ar.metadata["status"] == "error" and not ar.successful()
    assert isinstance(ar.get(return_exceptions=True), ipp.CompositeError)
    with pytest.raises(ipp.RemoteError, match=r"\[1:apply\] ValueError: odd rank 1"):
        info.value.raise_exception()


def test_aborting_a_coalescing_broadcast_reaches_its_parts(ranked) -> None:  # type: ignore[no-untyped-def]
    rc = ranked
    cv = rc.broadcast_view([0, 1], is_coalescing=True)
    busy = rc[0].apply_async(time.sleep, 2)  # engine 0's part waits behind this
    ar = cv.apply_async(rank_of)
    rc.abort(ar, targets=0)  # the part on engine 0 only
    with pytest.raises(ipp.CompositeError) as info:
        ar.get(timeout=10)
    [aborted] = info.value.elist
    assert isinstance(aborted, ipp.TaskAborted) and aborted.engine_id == 0
    assert busy.get(timeout=10) is None
    assert cv.apply_sync(rank_of) == [0, 1]  # the engines serve on
    ar = cv.apply_async(rank_of)
    ar.get(timeout=10)
    rc.purge_results(ar)  # the controller forgets its parts, this client the whole
    assert ar.msg_ids[0] not in rc.metadata
    parts = [part_msg_id(ar.msg_ids[0], e) for e in (0, 1)]
    assert not set(parts) & set(rc.hub_history())


# -- engines that crash ----------------------------------------------------------------------------
def test_an_engine_that_crashes_fails_only_its_task_and_the_cluster_serves_on(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=3)
    rc = handle.rc

    def crash_on(view: ipp.DirectView, last: int) -> Any:
        """Run crash_if_told on the view's engines, the last one (``last``) crashing."""
        rc[:].scatter("should_crash", [e == last for e in rc.ids], flatten=True, block=True)
        ar = view.apply_async(crash_if_told)
        with pytest.raises(ipp.CompositeError) as info:
            ar.get(timeout=30)
        [dead] = info.value.elist
        assert isinstance(dead, ipp.EngineError) and isinstance(dead, ipp.RemoteError)
        assert (dead.ename, dead.engine_id) == ("EngineError", last)
        assert dead.evalue.startswith(f"engine {last} died while it held task")
        wait_until(lambda: last not in rc.ids, 5, what=f"engine {last} to be unregistered")
        return ar.get(timeout=1, return_exceptions=True)

    # a DirectView: the other engines' results are there
    values = crash_on(rc[:], 2)
    assert values[:2] == ["survived", "survived"] and isinstance(values[2], ipp.EngineError)
    # a coalescing broadcast: its one answer comes when the dead engine's part has failed
    assert isinstance(crash_on(rc.broadcast_view(is_coalescing=True), 1), ipp.CompositeError)
    # a load-balanced task raises the error itself, as ipyparallel does
    rc[0]["should_crash"] = True
    ar = rc.load_balanced_view().apply_async(crash_if_told)
    with pytest.raises(ipp.RemoteError) as raised:
        ar.get(timeout=30)
    assert isinstance(raised.value, ipp.EngineError) and raised.value.ename == "EngineError"
    wait_until(lambda: rc.ids == [], 5, what="engine 0 to be unregistered")
    handle.cluster.start_engines_sync(1)
    rc.wait_for_engines(1, timeout=30)
    assert rc[:].apply_sync(lambda: "still serving") == ["still serving"]


# -- tracked sends ---------------------------------------------------------------------------------
def test_tracked_sends_say_when_their_memory_may_change(ranked) -> None:  # type: ignore[no-untyped-def]
    rc = ranked
    e0 = rc[0]
    # above zmq's copy threshold and below the shared-memory one: sent without a copy
    data = np.arange(512 * 1024 // 8, dtype=np.int64)
    ar = e0.apply_async(lambda a: int(a.sum()), data)
    assert isinstance(ar._tracker, zmq.MessageTracker) and ar._tracker.done and ar.sent
    assert ar.get(timeout=10) == int(data.sum())

    with e0.temp_flags(track=True):
        ar = e0.apply_async(lambda a: int(a.sum()), data)
    assert ar._tracker is not ipp.AsyncResult._tracker  # a tracker of its own
    assert ar.wait_for_send(5) and ar.sent and ar._tracker.done
    assert ar.get(timeout=10) == int(data.sum())
    with e0.temp_flags(track=True, block=True):  # a blocking call sends on its own socket
        assert e0.apply(lambda a: int(a[-1]), data) == int(data[-1])

    ar = e0.push({"d": data}, block=False, track=True)
    assert ar.wait_for_send(5) and ar.sent == ar._tracker.done and ar.sent
    ar.get(timeout=10)
    ar = rc[:].scatter("d", data, block=False, track=True)
    assert isinstance(ar._tracker, zmq.MessageTracker)
    assert ar.wait_for_send(5) and ar.sent and ar._tracker.done
    ar.get(timeout=10)
    assert rc[:].gather("d", block=True).tolist() == data.tolist()
    cv = rc.broadcast_view(is_coalescing=True, track=True)
    ar = cv.apply_async(lambda a: int(a.sum()), data)
    assert ar.wait_for_send(5) and ar.sent
    assert ar.get(timeout=10) == [int(data.sum())] * 4
