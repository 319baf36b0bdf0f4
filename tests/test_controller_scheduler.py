"""The load balancer's view of tasks still waiting in the controller (``LoadBalancer.unassigned``).

These use the controller's real registry, record store and balancer, with no engine
registered: nothing can be dispatched, so every task stays in the controller.
"""

from __future__ import annotations

from ipar_widgets.controller.engines import EngineRegistry, EngineState
from ipar_widgets.controller.records import RecordStore, TaskRecord
from ipar_widgets.controller.scheduler import LoadBalancer


def _never_sent(rec: TaskRecord, engine: EngineState) -> bool:
    raise AssertionError(f"task {rec.msg_id} was sent to engine {engine.id}, but none exists")


def _never_failed(rec: TaskRecord, ename: str, evalue: str) -> None:
    raise AssertionError(f"task {rec.msg_id} failed: {ename}: {evalue}")


def _balancer() -> tuple[LoadBalancer, RecordStore]:
    records = RecordStore(limit=100, size_limit=1 << 20)
    return LoadBalancer(EngineRegistry(), records, _never_sent, _never_failed), records


def _task(records: RecordStore, msg_id: str) -> TaskRecord:
    rec = TaskRecord(msg_id, b"client", "apply_request", "")
    rec.balanced = True
    records.add(rec)
    return rec


def test_unassigned_lists_queued_then_waiting_tasks_once_each() -> None:
    balancer, records = _balancer()
    first, second = _task(records, "first"), _task(records, "second")
    records.add(TaskRecord("dep-a", b"client", "apply_request", ""))
    records.add(TaskRecord("dep-b", b"client", "apply_request", ""))
    balancer.submit(first, {"after": ["dep-a", "dep-b"]})  # waits for two unfinished tasks
    balancer.submit(second, {})  # no engine has room: stays queued

    assert sorted(balancer.waiting) == ["dep-a", "dep-b"]
    assert [r.msg_id for r in balancer.unassigned()] == ["second", "first"]
    assert balancer.pending == 2  # not 3: "first" is listed under both of its dependencies


def test_unassigned_forgets_aborted_tasks() -> None:
    balancer, records = _balancer()
    records.add(TaskRecord("dep", b"client", "apply_request", ""))
    waiting, queued = _task(records, "waiting"), _task(records, "queued")
    balancer.submit(waiting, {"after": ["dep"]})
    balancer.submit(queued, {})

    assert [r.msg_id for r in balancer.abort({"waiting"})] == ["waiting"]
    assert [r.msg_id for r in balancer.unassigned()] == ["queued"]
    assert balancer.waiting == {}
