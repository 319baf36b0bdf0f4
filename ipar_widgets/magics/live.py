"""Waiting for a blocking %px: shows outputs as they arrive, and a progress line.

The client's I/O thread only queues what arrives (:class:`OutputFeed`); everything shown is
shown from the thread running the magic, so the kernel files each output under the right cell
and the frontend gets a bounded number of updates per second.
"""

from __future__ import annotations

import queue
import sys
import time
from typing import TYPE_CHECKING, Any

from ..client.display import ExecuteReply
from ..client.job import Job
from ..client.waiting import wait_until
from ..error import CompositeError, RemoteError
from ..progress.snapshot import take_snapshot
from .text import as_remote_error, error_lines, progress_text

if TYPE_CHECKING:
    from ..client.client import Client

#: one output message as the client's listener reports it: engine id, msg_id, type, content
Output = tuple[int | None, str, str, dict[str, Any]]

#: seconds between two refreshes of the live display (more when many engines print at once)
REFRESH = 0.1
#: seconds between two refreshes of the progress line
PROGRESS_REFRESH = 0.5


class OutputFeed:
    """Queues a client's output messages from before a submission until :meth:`close`.

    Listening starts before the code is sent, so not even the first output of a fast engine
    can slip past; messages of other tasks are dropped by the consumer.
    """

    def __init__(self, client: Client, outputs: bool) -> None:
        self.queue: queue.SimpleQueue[Output] = queue.SimpleQueue()
        self._client = client
        self._outputs = outputs
        if outputs:
            client.add_output_listener(self._on_output)

    def _on_output(
        self, engine_id: int | None, msg_id: str | None, msg_type: str, content: dict[str, Any]
    ) -> None:
        if msg_id is not None:
            self.queue.put((engine_id, msg_id, msg_type, content))

    def take(self) -> list[Output]:
        """Everything queued so far (without waiting)."""
        items: list[Output] = []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        if self._outputs:
            self._client.remove_output_listener(self._on_output)


class LiveOutputs:
    """What the loop drives while outputs stream; the kernel and terminal forms fill in how
    streams, displays and results are shown.  Tracebacks go to stderr in both: the first
    ``CompositeError.tb_limit`` whole, then one line each."""

    def __init__(self) -> None:
        self.errors_shown = 0

    def output(self, engine_id: int, msg_type: str, content: dict[str, Any]) -> None:
        if msg_type == "stream":
            self.stream(engine_id, content.get("name", "stdout"), content.get("text", ""))
        elif msg_type in ("display_data", "update_display_data"):
            self.display(engine_id, content, update=msg_type == "update_display_data")
        elif msg_type == "clear_output":
            self.clear(engine_id)
        elif msg_type == "error":
            self.error(
                RemoteError(
                    content.get("ename", "Exception"),
                    content.get("evalue", ""),
                    content.get("traceback") or "",
                    {"engine_id": engine_id, "method": "execute"},
                )
            )

    def result(self, engine_id: int, value: Any, error_seen: bool) -> None:
        """An engine finished: show its ``Out[...]``, or its error if no traceback came."""
        if isinstance(value, ExecuteReply):
            if value.metadata["execute_result"] is not None:
                self.show_result(engine_id, value)
        elif isinstance(value, BaseException) and not error_seen:
            self.error(as_remote_error(value, engine_id))

    def error(self, error: RemoteError) -> None:
        full = self.errors_shown < CompositeError.tb_limit
        print("\n".join(error_lines(error, full)), file=sys.stderr)
        self.errors_shown += 1

    def stream(self, engine_id: int, name: str, text: str) -> None:
        raise NotImplementedError

    def display(self, engine_id: int, content: dict[str, Any], update: bool) -> None:
        raise NotImplementedError

    def clear(self, engine_id: int) -> None:
        """An engine cleared its output; kept by default (printed text cannot be taken back)."""

    def show_result(self, engine_id: int, reply: ExecuteReply) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        sys.stdout.flush()

    def finish(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()


def unfinished_engines(job: Job) -> list[int]:
    """The engines of ``job`` whose task has not finished, in id order."""
    arrived = {msg_id for msg_id, _ in job.arrived_since(0)}
    return sorted(
        {
            md["engine_id"]
            for msg_id, md in zip(job.msg_ids, job.task_metadata, strict=True)
            if msg_id not in arrived and md["engine_id"] is not None
        }
    )


def wait_for_cell(
    job: Job,
    feed: OutputFeed,
    *,
    outputs: LiveOutputs | None,
    progress: Any,
    name: str,
    progress_after: float,
) -> None:
    """Wait until every task of ``job`` finished, showing outputs (if ``outputs``) as they
    arrive and, after ``progress_after`` seconds (negative: never), a progress line.

    The wait is the one of every job (:func:`~ipar_widgets.client.waiting.wait_until`); what
    arrived is shown at each of its ticks, every :data:`REFRESH` seconds.  A
    KeyboardInterrupt leaves the displays finished (the progress line says "interrupted")
    and goes on to the caller, which decides what to tell the engines.
    """
    msg_ids = list(job.msg_ids)
    wanted = set(msg_ids)
    metadata = dict(zip(msg_ids, job.task_metadata, strict=True))
    finished: set[str] = set()
    errors_seen: set[str] = set()
    start = time.monotonic()
    progress_at = None if progress is None or progress_after < 0 else start + progress_after
    # a refresh sends one update per engine that printed: stay near 200 messages/s at most
    refresh = max(REFRESH, len(msg_ids) / 200)
    timers = {"refresh": start + refresh, "progress": 0.0}

    def show() -> None:
        # results first, then the queue: a task's outputs are all queued before its result
        # arrives, so each result is shown after its outputs
        done = job.arrived_since(len(finished))
        for engine_id, msg_id, msg_type, content in feed.take():
            if msg_id not in wanted or engine_id is None:
                continue
            if msg_type == "error":
                errors_seen.add(msg_id)
            if outputs is not None:
                outputs.output(engine_id, msg_type, content)
        for msg_id, value in done:
            finished.add(msg_id)
            if outputs is not None:
                outputs.result(metadata[msg_id]["engine_id"], value, msg_id in errors_seen)
        now = time.monotonic()
        if outputs is not None and now >= timers["refresh"]:
            outputs.flush()
            timers["refresh"] = now + refresh
        if progress_at is not None and now >= progress_at and now >= timers["progress"]:
            progress.show(progress_text(name, take_snapshot(job)))
            timers["progress"] = now + PROGRESS_REFRESH

    try:
        wait_until(job, job.ready, tick=show, interval=REFRESH)
        show()  # what arrived since the last tick
    except KeyboardInterrupt:
        _finish(job, outputs, progress, name, interrupted=True)
        raise
    _finish(job, outputs, progress, name, interrupted=False)


def _finish(
    job: Job, outputs: LiveOutputs | None, progress: Any, name: str, interrupted: bool
) -> None:
    if outputs is not None:
        outputs.finish()
    if progress is not None and progress.shown:
        progress.show(progress_text(name, take_snapshot(job), interrupted), final=True)
