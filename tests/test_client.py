"""The Client: targets, bookkeeping, control of engines, other clients' tasks."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_until

import ipar_widgets as ipp


def test_ids_views_and_targets(rc) -> None:  # type: ignore[no-untyped-def]
    assert rc.ids == [0, 1, 2, 3] and len(rc) == 4
    assert repr(rc[0]) == "<DirectView 0>"
    assert rc[:].targets == [0, 1, 2, 3]
    assert rc[[0, 2]].targets == [0, 2]
    assert rc[::2].targets == [0, 2]
    assert rc[-1].targets == 3
    assert rc.direct_view().targets == "all"
    # anything but 'all' is resolved at once, as in ipyparallel: -1 is the last engine's id
    assert rc.direct_view(-1).targets == 3
    assert rc.direct_view(slice(1, None)).targets == [1, 2, 3]
    assert rc.load_balanced_view([1, 2]).targets == [1, 2]
    assert [v.targets for v in rc] == [0, 1, 2, 3]
    with pytest.raises(
        IndexError, match=r"No such engine: 9 \(registered engines: \[0, 1, 2, 3\]\)"
    ):
        rc[9]
    with pytest.raises(TypeError):
        rc["x"]
    pids = rc[[1, 3]].apply_sync(os.getpid)
    assert len(pids) == 2 and rc[1].apply_sync(os.getpid) == pids[0]


def test_bookkeeping_metadata_results_outstanding_history(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[0].apply_async(time.sleep, 0.3)
    msg_id = ar.msg_ids[0]
    assert msg_id in rc.outstanding and rc.history[-1] == msg_id
    assert rc.metadata[msg_id]["engine_id"] == 0
    assert rc.wait([ar], timeout=0.01) is False
    assert rc.wait(msg_id, timeout=10) is True
    assert msg_id not in rc.outstanding
    assert rc.metadata[msg_id]["status"] == "ok"  # kept after completion
    fetched = rc.get_result(msg_id)
    assert fetched.get(timeout=10) is None and fetched.metadata.engine_id == 0
    assert msg_id in rc.hub_history()
    rc.purge_results(msg_id)
    assert msg_id not in rc.metadata and msg_id not in rc.hub_history()


def test_get_result_of_another_clients_task(rc, shared_cluster) -> None:  # type: ignore[no-untyped-def]
    other = ipp.Client(url_file=shared_cluster.cluster.client_file)
    try:

        def talk(t: float) -> str:
            import time

            print("hello from the task")
            time.sleep(t)
            return "answer"

        done = rc[2].apply_async(talk, 0.0)
        done.get(timeout=10)
        theirs = other.get_result(done.msg_ids[0])
        assert isinstance(theirs, ipp.AsyncHubResult)
        assert theirs.get(timeout=10) == "answer"
        assert theirs.metadata.engine_id == 2 and theirs.stdout == "hello from the task\n"

        running = rc[1].apply_async(talk, 1.0)
        wait_until(lambda: rc.queue_status()[1]["queue"] == 1, 5, what="the task to run")
        pending = other.get_result(running.msg_ids[0], block=False)
        assert not pending.ready()
        assert pending.get(timeout=10) == "answer"
        assert running.get(timeout=10) == "answer"
        assert pending.stdout == "hello from the task\n"
        with pytest.raises(KeyError, match="no record of task 'nope'"):
            other.get_result("nope")
    finally:
        other.close()


def test_queue_status(rc) -> None:  # type: ignore[no-untyped-def]
    blocker = rc[0].apply_async(time.sleep, 0.5)
    queued = rc[0].apply_async(lambda: 1)
    wait_until(lambda: rc.queue_status(0)["queue"] == 2, 5, what="two tasks on engine 0")
    status = rc.queue_status(verbose=True)
    assert status[0]["queue"] == [blocker.msg_ids[0], queued.msg_ids[0]]
    assert status["unassigned"] == []
    assert set(status) == {0, 1, 2, 3, "unassigned"}
    queued.get(timeout=10)
    assert rc.queue_status(0)["queue"] == 0


def test_abort_by_jobs_and_targets(rc) -> None:  # type: ignore[no-untyped-def]
    rc[3].apply_async(time.sleep, 0.5)
    victims = [rc[3].apply_async(lambda i=i: i) for i in range(3)]
    rc.abort(targets=[3])
    for v in victims:
        with pytest.raises(ipp.TaskAborted):
            v.get(timeout=10)
    view = rc.load_balanced_view(targets=[2])
    view.apply_async(time.sleep, 0.5)
    lb_victim = view.apply_async(lambda: "no")
    rc.abort(lb_victim)
    with pytest.raises(ipp.TaskAborted, match="aborted before it started"):
        lb_victim.get(timeout=10)


def test_clear_resets_namespaces(rc) -> None:  # type: ignore[no-untyped-def]
    rc[:].push({"temp": 1}, block=True)
    rc.clear(targets=[0, 1])
    has = rc[:].apply_sync(ipp.interactive(lambda: "temp" in globals()))
    assert has == [False, False, True, True]


def test_send_signal_interrupts_a_running_task(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[1].apply_async(time.sleep, 30)
    wait_until(lambda: rc.queue_status(1)["queue"] == 1, 5, what="the task to start")
    time.sleep(0.2)  # the sleep must have begun on the engine, not just been queued
    rc.send_signal(signal.SIGINT, targets=[1])
    with pytest.raises(ipp.RemoteError) as info:
        ar.get(timeout=10)
    assert info.value.ename == "KeyboardInterrupt"
    assert rc[1].apply_sync(lambda: "alive") == "alive"


@ipp.interactive
def announce_then_sleep() -> None:
    import time

    print("sleeping", flush=True)
    time.sleep(30)


def test_signals_can_be_named(rc) -> None:  # type: ignore[no-untyped-def]
    ar = rc[2].apply_async(announce_then_sleep)
    wait_until(lambda: "sleeping" in ar.metadata["stdout"], 10, what="the task to sleep")
    rc.send_signal("SIGINT", targets=[2])
    with pytest.raises(ipp.RemoteError) as info:
        ar.get(timeout=10)
    assert info.value.ename == "KeyboardInterrupt" and info.value.engine_id == 2
    with pytest.raises(ValueError, match="unknown signal 'NOPE'; expected e.g. 'SIGINT' or 2"):
        rc.send_signal("NOPE", targets=[2])


def test_thread_safety_of_submission(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            results.append(view.map_sync(lambda x, k=k: x + k, range(50)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r[0] for r in results) == [0, 1000, 2000, 3000]
    assert all(r == list(range(r[0], r[0] + 50)) for r in results)


def test_wait_for_engines_times_out_and_shutdown(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2)
    rc = handle.rc
    with pytest.raises(TimeoutError, match="2 engine\\(s\\) registered of the 3 waited for"):
        rc.wait_for_engines(3, timeout=0.3)
    rc.shutdown(targets=[1])
    assert rc.ids == [0]
    wait_until(lambda: rc.status()["engines_registered"] == 1, 5, what="engine 1 to stop")
    rc.shutdown(hub=True)
    wait_until(lambda: not handle.cluster._running(), 10, what="the controller to exit")
    rc.close()
    with pytest.raises(RuntimeError, match="this client is closed"):
        rc.load_balanced_view().apply_async(lambda: 1)


def test_wait_for_engines_without_blocking(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    rc = handle.rc
    assert rc.wait_for_engines(1) is None
    already = rc.wait_for_engines(1, block=False)
    assert isinstance(already, concurrent.futures.Future) and already.done()
    later = rc.wait_for_engines(2, timeout=30, block=False)
    assert not later.done()
    handle.cluster.start_engines_sync(1)
    assert later.result(timeout=30) is None and rc.ids == [0, 1]


def test_destroying_the_zmq_context_closes_the_client_quietly(make_cluster, caplog) -> None:  # type: ignore[no-untyped-def]
    import zmq

    handle = make_cluster(n=1)
    context = zmq.Context()
    rc = ipp.Client(url_file=handle.cluster.client_file, context=context)
    assert rc[0].apply_sync(pow, 2, 3) == 8
    with caplog.at_level("ERROR", logger="ipar_widgets.client"):
        context.destroy(linger=0)
        wait_until(lambda: rc.closed, 5, what="the client to notice its context is gone")
        rc._transport.thread.join(5)
    assert not rc._transport.thread.is_alive()
    assert [r.getMessage() for r in caplog.records] == []
    rc.close()  # closing again is harmless


def test_controller_not_answering_gives_a_clear_timeout(make_cluster) -> None:  # type: ignore[no-untyped-def]
    import psutil

    handle = make_cluster(n=0)
    controller = psutil.Process(handle.pid)
    controller.suspend()
    try:
        with pytest.raises(
            TimeoutError, match="did not answer within 0.5 s; is the cluster running"
        ):
            ipp.Client(url_file=handle.cluster.client_file, timeout=0.5)
    finally:
        controller.resume()


def test_a_burst_of_direct_tasks_is_answered_in_full_and_in_order(rc) -> None:  # type: ignore[no-untyped-def]
    # more tasks than an engine handles per wake-up: none may be left behind
    ars = [rc[2].apply_async(lambda i=i: i) for i in range(300)]
    assert [ar.get(timeout=30) for ar in ars] == list(range(300))
    starts = [ar.metadata.started for ar in ars]
    assert starts == sorted(starts)


def waiter_identity(rc) -> bytes | None:  # type: ignore[no-untyped-def]
    """The identity of this thread's waiter socket, if it has one."""
    waiter = rc._transport._waiters.get(threading.get_ident())
    return None if waiter is None else waiter.socket.identity


def test_a_blocking_call_receives_its_reply_on_its_own_thread(rc) -> None:  # type: ignore[no-untyped-def]
    handled_by: list[str] = []
    on_reply = rc._dispatch.on_reply

    def spy(frames):  # type: ignore[no-untyped-def]
        handled_by.append(threading.current_thread().name)
        return on_reply(frames)

    # what waiters and the I/O thread call
    rc._dispatch.on_reply = rc._transport._on_reply = spy
    try:
        assert rc[1].apply_sync(pow, 2, 10) == 1024
        assert rc.load_balanced_view().apply_sync(pow, 3, 2) == 9
        assert rc[:].map_sync(abs, [-1, -2, -3, -4]) == [1, 2, 3, 4]
        assert rc[2].apply_async(pow, 2, 3).get(timeout=10) == 8  # not blocking: I/O thread
    finally:
        del rc._dispatch.on_reply
        rc._transport._on_reply = rc._dispatch.on_reply
    me = threading.current_thread().name
    assert handled_by == [me, me, me, me, me, me, "ipar-client-io"]
    assert waiter_identity(rc) == rc._transport.identity + b"/w1"
    assert not rc._transport._waiters[threading.get_ident()].busy


def test_a_blocking_call_never_overtakes_the_threads_unanswered_one(rc) -> None:  # type: ignore[no-untyped-def]
    # the waiter is a connection of its own: while this thread's last non-blocking task is
    # unanswered, a blocking call goes the shared way, behind it (same engine, same order)
    handled_by: list[str] = []
    on_reply = rc._dispatch.on_reply

    def spy(frames):  # type: ignore[no-untyped-def]
        handled_by.append(threading.current_thread().name)
        return on_reply(frames)

    view = rc[1]
    view.execute("x = 0", block=True)
    rc._dispatch.on_reply = rc._transport._on_reply = spy
    try:
        slow = view.execute("import time; time.sleep(0.3); x = 1", block=False)
        assert view.pull("x", block=True) == 1
        assert slow.ready()
        assert view.pull("x", block=True) == 1  # nothing unanswered: the waiter again
    finally:
        del rc._dispatch.on_reply
        rc._transport._on_reply = rc._dispatch.on_reply
    me = threading.current_thread().name
    assert handled_by == ["ipar-client-io", "ipar-client-io", me]


def test_outputs_are_complete_when_a_blocking_call_returns(rc) -> None:  # type: ignore[no-untyped-def]
    def chatty(n: int) -> int:
        for i in range(n):
            print("line", i)
        return n

    for _ in range(20):
        assert rc[0].apply_sync(chatty, 30) == 30
        md = rc.metadata[rc.history[-1]]
        assert md.stdout == "".join(f"line {i}\n" for i in range(30))
    assert rc[0].execute("print('from execute')", block=True) is not None
    assert rc.metadata[rc.history[-1]].stdout == "from execute\n"


def test_threads_blocking_at_once_each_get_their_own_replies(rc) -> None:  # type: ignore[no-untyped-def]
    view = rc.load_balanced_view()
    got: dict[int, list[int]] = {}
    identities: dict[int, bytes | None] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            got[k] = [view.apply_sync(lambda x, k=k: x + k, i) for i in range(40)]
            identities[k] = waiter_identity(rc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert got == {k * 100: [k * 100 + i for i in range(40)] for k in range(4)}
    assert len(set(identities.values())) == 4 and None not in identities.values()


def test_closing_the_client_wakes_a_thread_blocked_on_its_waiter(make_cluster) -> None:  # type: ignore[no-untyped-def]
    rc = make_cluster(n=1).rc
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            rc[0].apply_sync(time.sleep, 30)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    wait_until(lambda: rc.queue_status(0)["queue"] == 1, 10, what="the task on engine 0")
    rc.close()
    thread.join(10)
    assert not thread.is_alive()
    assert [str(e) for e in outcome] == ["the client was closed while waiting for results"]
    assert rc._transport._closing_w == -1  # the waiter and its signal pipe are closed


INTERRUPTED = """
import os, signal, sys, threading, time
import ipar_widgets as ipp

# Ctrl-C raises KeyboardInterrupt even when this runs under a shell that started the test
# run in the background (such jobs inherit SIGINT ignored, and Python then leaves it so)
signal.signal(signal.SIGINT, signal.default_int_handler)

rc = ipp.Client(profile=sys.argv[1])
e0 = rc[0]
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    e0.apply_sync(time.sleep, 1.5)
except KeyboardInterrupt:
    print("interrupted")
ar = rc.get_result(rc.history[-1])
print("late result:", ar.get(timeout=20), ar.metadata["status"])
print("next call:", e0.apply_sync(pow, 2, 5))
rc.close()
"""


def test_a_blocking_call_interrupted_by_ctrl_c_still_gets_its_result(
    make_cluster, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    done = subprocess.run(
        [sys.executable, str(script), handle.cluster.profile],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["interrupted", "late result: None ok", "next call: 32"]
