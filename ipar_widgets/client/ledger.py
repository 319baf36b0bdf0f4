"""The client's ledger of tasks: what it submitted (or fetched), their metadata, their
results until someone takes them, and the AsyncResults waiting for them.

``Client.metadata``, ``Client.results``, ``Client.outstanding`` and ``Client.history`` are
this ledger's containers, as ipyparallel names them.  A result an AsyncResult *owns* (one a
view made) is kept by that AsyncResult only, not also in ``results``, so a 100 MB pull is
not held twice.

A reply can come before the task's outputs (they travel on another socket): the reply says
how many outputs the task caused, and the ledger *holds* the result until that many have
arrived, or :data:`OUTPUT_GRACE` seconds passed.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..protocol.wire import parse_date
from .metadata import Metadata, MetadataByTask

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

log = logging.getLogger("ipar_widgets.client")

__all__ = ["TaskLedger", "Submitted", "OUTPUT_GRACE"]

#: seconds a reply waits for outputs its engine counted but that have not arrived
OUTPUT_GRACE = 5.0


class Submitted(NamedTuple):
    """What the ledger notes of a task as it is sent."""

    msg_id: str
    date: str  # the request header's ISO date: the task's ``submitted`` time
    engine_id: int | None  # None for a load-balanced task
    engine_uuid: str | None
    metadata: dict[str, Any]  # the request's metadata (dependencies, retries, ...)


class _Held(NamedTuple):
    result: Any
    outputs_expected: int
    deadline: float


class TaskLedger:
    """Every task this client knows of; safe to use from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metadata: dict[str, Metadata] = MetadataByTask()
        self.results: dict[str, Any] = {}
        self.outstanding: set[str] = set()
        self.history: list[str] = []
        #: msg_id -> the AsyncResults waiting for its result
        self._trackers: dict[str, list[AsyncResult]] = {}
        #: msg_id -> the AsyncResult that owns its result (results it owns are not in .results)
        self._owners: weakref.WeakValueDictionary[str, AsyncResult] = weakref.WeakValueDictionary()
        #: results on their way to their owner (see complete)
        self._handing_out: dict[str, Any] = {}
        self._output_counts: dict[str, int] = {}
        self._held: dict[str, _Held] = {}
        #: a coalescing broadcast's msg_id -> its parts as the controller knows them:
        #: (part msg_id, engine id); its outputs come under the parts' msg_ids
        self.gathered: dict[str, list[tuple[str, int]]] = {}
        #: a part's msg_id -> the coalescing broadcast it is part of
        self.part_of: dict[str, str] = {}

    # -- tasks ------------------------------------------------------------------------------------
    def metadata_for(self, msg_id: str) -> Metadata:
        md = self.metadata.get(msg_id)
        if md is None:
            md = self.metadata.setdefault(msg_id, Metadata(msg_id=msg_id))
        return md

    def submitted(self, note: Submitted) -> None:
        """Note a task as sent (call before its reply can arrive)."""
        md = self.metadata_for(note.msg_id)
        # dict.update: Metadata's checked __setitem__ costs a Python call per key
        dict.update(
            md,
            submitted=parse_date(note.date),
            engine_id=note.engine_id,
            engine_uuid=note.engine_uuid,
        )
        extra = note.metadata
        if extra:
            for key in ("after", "follow"):
                if extra.get(key):
                    md[key] = extra[key]
            if "label" in extra:
                md["label"] = extra["label"]
        self.outstanding.add(note.msg_id)
        self.history.append(note.msg_id)

    def note_gathered(self, msg_id: str, parts: list[tuple[str, int]]) -> None:
        """Note the parts of a coalescing broadcast (call before their outputs can arrive)."""
        with self.lock:
            self.gathered[msg_id] = parts
            for part_id, _ in parts:
                self.part_of[part_id] = msg_id

    def controller_tasks(self, msg_ids: Iterable[str]) -> list[tuple[str, int | None]]:
        """``(msg_id, engine_id)`` of each task as the controller records it: the parts of a
        coalescing broadcast in its place (the controller has no record of the whole)."""
        out: list[tuple[str, int | None]] = []
        for msg_id in msg_ids:
            parts = self.gathered.get(msg_id)
            if parts is not None:
                out.extend(parts)
                continue
            md = self.metadata.get(msg_id)
            engine_id = md["engine_id"] if md is not None else None
            out.append((msg_id, engine_id if isinstance(engine_id, int) else None))
        return out

    def adopt(self, msg_id: str, date: str | None) -> None:
        """Note a task this client did not send but receives the reply of (a resubmitted
        one): outstanding until its result comes, unless it already came."""
        md = self.metadata_for(msg_id)
        with self.lock:
            if md["submitted"] is None:
                md["submitted"] = parse_date(date)
            if not self.known_result(msg_id)[0]:
                self.outstanding.add(msg_id)

    def result_of(self, msg_id: str) -> tuple[bool, Any]:
        """``(True, result)`` if this client holds the task's result, else ``(False, None)``."""
        with self.lock:
            return self.known_result(msg_id)

    def known_result(self, msg_id: str) -> tuple[bool, Any]:
        """``(True, result)`` if this client holds the task's result (call with the lock)."""
        if msg_id in self.results:
            return True, self.results[msg_id]
        if msg_id in self._handing_out:
            return True, self._handing_out[msg_id]
        owner = self._owners.get(msg_id)
        if owner is not None:
            arrived = owner._results
            if msg_id in arrived:
                return True, arrived[msg_id]
        return False, None

    def knows(self, msg_ids: Iterable[str]) -> bool:
        """Whether every task's result is here or on its way (else: ask the controller)."""
        with self.lock:
            return all(m in self._trackers or self.known_result(m)[0] for m in msg_ids)

    def track(self, ar: AsyncResult, msg_ids: list[str] | None = None) -> None:
        """Register an AsyncResult for its msg_ids (or only ``msg_ids``: tasks a retry put
        in it); results already here are delivered now."""
        ready = []
        with self.lock:
            for msg_id in ar.msg_ids if msg_ids is None else msg_ids:
                known, value = self.known_result(msg_id)
                if known:
                    ready.append((msg_id, value))
                else:
                    self._trackers.setdefault(msg_id, []).append(ar)
        for msg_id, value in ready:
            ar._deliver(msg_id, value)
        if msg_ids is None and not ar.msg_ids:  # nothing to wait for (an empty map)
            ar._finalize()

    # -- results ----------------------------------------------------------------------------------
    def complete(self, msg_id: str, result: Any) -> None:
        """A task finished: hand its result to every AsyncResult waiting for it."""
        with self.lock:
            self._output_counts.pop(msg_id, None)
            self._held.pop(msg_id, None)
            self.outstanding.discard(msg_id)
            trackers = self._trackers.pop(msg_id, ())
            owner = None
            for tracker in trackers:
                if tracker.owner:
                    owner = tracker
                    break
            if owner is None:
                self.results[msg_id] = result
            else:
                # The owning AsyncResult keeps the result; while it is being handed out (and
                # afterwards, through the owner) an AsyncResult made now still finds it.
                self._owners[msg_id] = owner
                self._handing_out[msg_id] = result
        for ar in trackers:
            ar._deliver(msg_id, result)
        if owner is not None:
            with self.lock:
                self._handing_out.pop(msg_id, None)

    def hold_for_outputs(self, msg_id: str, result: Any, expected: int) -> bool:
        """Keep the result until ``expected`` outputs of the task arrived; False (nothing
        held) when they all have."""
        with self.lock:
            if self._output_counts.get(msg_id, 0) >= expected:
                return False
            self._held[msg_id] = _Held(result, expected, time.monotonic() + OUTPUT_GRACE)
            return True

    def output_arrived(self, msg_id: str) -> None:
        """Count one output of a task; the last one a held result waits for releases it."""
        release = None
        with self.lock:
            count = self._output_counts.get(msg_id, 0) + 1
            self._output_counts[msg_id] = count
            held = self._held.get(msg_id)
            if held is not None and count >= held.outputs_expected:
                release = held
        if release is not None:
            self.complete(msg_id, release.result)

    def outputs_seen(self, msg_id: str) -> int:
        """How many outputs of a task arrived (and were counted) so far."""
        with self.lock:
            return self._output_counts.get(msg_id, 0)

    def next_deadline(self) -> float | None:
        """When the first held result is to be released without all its outputs."""
        with self.lock:
            if not self._held:
                return None
            return min(held.deadline for held in self._held.values())

    def release_overdue(self) -> None:
        now = time.monotonic()
        with self.lock:
            overdue = [(m, h.result) for m, h in self._held.items() if h.deadline <= now]
        for msg_id, result in overdue:
            log.warning(
                "outputs of task %s did not all arrive; handing out its result anyway", msg_id
            )
            self.complete(msg_id, result)

    # -- forgetting -------------------------------------------------------------------------------
    def forget(self, msg_ids: Iterable[str] | None = None) -> None:
        """Forget the results and metadata of finished tasks (all of them with None);
        outstanding ones are kept."""
        with self.lock:
            chosen = list(self.metadata) if msg_ids is None else list(msg_ids)
            for msg_id in chosen:
                if msg_id not in self.outstanding:
                    self.results.pop(msg_id, None)
                    self.metadata.pop(msg_id, None)
                    for part_id, _ in self.gathered.pop(msg_id, ()):
                        self.part_of.pop(part_id, None)
            if msg_ids is None:  # results of tasks this client never noted (set by hand)
                for msg_id in [m for m in self.results if m not in self.outstanding]:
                    del self.results[msg_id]
