"""The controller's task records as a client reads and changes them: ``db_query``,
``hub_history``, ``resubmit``, ``result_status`` and the purges, with ipyparallel's semantics.

The Client's methods resolve their arguments (msg_ids, history indices, AsyncResults,
engines) and call :class:`HubRecords`; what a query may say and which fields a record has
is the controller's business (``controller/taskquery.py``), so this module only turns the
answers back into Python values: dates into aware datetimes, buffers into frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..error import NoSuchTask
from ..protocol.taskfields import DATE_FIELDS, HEADER_FIELDS
from ..protocol.wire import Frame, Message, parse_date
from .ledger import TaskLedger

__all__ = ["HubRecords", "decode_records"]

#: asks the controller a question: ``ask(msg_type, content)`` -> the answer
Ask = Callable[[str, dict[str, Any]], Message]


def decode_records(answer: Message) -> list[dict[str, Any]]:
    """The records of a ``db_reply``: dates as datetimes, buffers relinked to their records."""
    content = answer.content
    records: list[dict[str, Any]] = list(content["records"])
    frames: list[Frame] = list(answer.buffers)
    lens = {
        "buffers": content.get("buffer_lens"),
        "result_buffers": content.get("result_buffer_lens"),
    }
    pos = 0
    for i, rec in enumerate(records):
        for key in HEADER_FIELDS:
            header = rec.get(key)
            if isinstance(header, dict) and "date" in header:
                rec[key] = {**header, "date": parse_date(header["date"])}
        for key in DATE_FIELDS:
            if key in rec:
                rec[key] = parse_date(rec[key])
        for key, counts in lens.items():  # buffers, then result_buffers, record by record
            if counts is not None:
                rec[key] = frames[pos : pos + counts[i]]
                pos += counts[i]
    return records


class HubRecords:
    """The record requests of one client."""

    def __init__(self, ask: Ask, ledger: TaskLedger) -> None:
        self.ask = ask
        self.ledger = ledger

    def db_query(self, query: dict[str, Any], keys: str | list[str] | None) -> list[dict[str, Any]]:
        if isinstance(keys, str):
            keys = [keys]
        return decode_records(self.ask("db_request", {"query": query, "keys": keys}))

    def history(self) -> list[str]:
        return list(self.ask("history_request", {}).content["history"])

    def resubmit(self, msg_ids: list[str], metadata: dict[str, Any] | None) -> list[str]:
        """Resubmit tasks; return their new msg_ids, noted as this client's outstanding
        tasks (their replies come here)."""
        unique = list(dict.fromkeys(msg_ids))
        answer = self.ask("resubmit_request", {"msg_ids": unique, "metadata": metadata or {}})
        mapping: dict[str, str] = answer.content["resubmitted"]
        dates: dict[str, str] = answer.content.get("submitted", {})
        new_ids = [mapping[m] for m in unique]
        for new_id in new_ids:
            self.ledger.adopt(new_id, dates.get(new_id))
        return new_ids

    def status(self, msg_ids: list[str]) -> tuple[list[str], list[str]]:
        """``(pending, completed)`` among ``msg_ids``, in their order: results this client
        holds are completed; the controller's records say for the rest.  NoSuchTask for a
        task neither knows."""
        local = {m for m in msg_ids if self.ledger.result_of(m)[0]}
        remote = [m for m in msg_ids if m not in local]
        states: dict[str, Any] = {}
        if remote:
            states = self.ask("result_request", {"msg_ids": remote}).content["results"]
        missing = [m for m in remote if states[m]["status"] == "unknown"]
        if missing:
            which = f"task {missing[0]!r}" if len(missing) == 1 else f"tasks {missing!r}"
            raise NoSuchTask(
                f"the controller has no record of {which}, and this client holds no result "
                "for it; rc.hub_history() lists the tasks the controller has"
            )
        done = {"ok", "error", "aborted"}
        completed = [m for m in msg_ids if m in local or states[m]["status"] in done]
        finished = set(completed)
        return [m for m in msg_ids if m not in finished], completed

    # -- forgetting -------------------------------------------------------------------------------
    def purge_local(self, msg_ids: Iterable[str] | None) -> None:
        """Forget results and metadata here: of ``msg_ids``, or (None) of every task.
        RuntimeError, and nothing forgotten, if any of them is still outstanding."""
        chosen = None if msg_ids is None else set(msg_ids)
        outstanding = set(self.ledger.outstanding)
        busy = outstanding if chosen is None else outstanding & chosen
        if busy:
            raise RuntimeError(
                f"cannot purge outstanding tasks {sorted(busy)!r}; wait for them (rc.wait()) "
                "or abort them (rc.abort()) first"
            )
        self.ledger.forget(chosen)

    def purge_hub(self, msg_ids: list[str] | str, engine_ids: list[int]) -> None:
        """Make the controller forget finished tasks: ``msg_ids`` (or ``"all"``) and those of
        ``engine_ids``; it refuses unfinished ones."""
        self.ask("purge_request", {"msg_ids": msg_ids, "engine_ids": engine_ids})
