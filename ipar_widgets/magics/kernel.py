"""Live %px output in a notebook, built on display ids alone (no widgets).

Each engine's stdout/stderr is one output updated in place, each engine's ``Out[...]`` another;
the progress line is a third kind.  When the cell ends, blocks created in arrival order are
re-filled in engine order, so the saved notebook reads the same on every run.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from ..client.display import ExecuteReply
from ..error import RemoteError
from .live import LiveOutputs
from .text import block_text, tail

#: characters of one engine's block sent while the cell runs (all of them once it ends)
LIVE_TEXT_LIMIT = 100_000

Bundle = tuple[dict[str, Any], dict[str, Any]]


class _Slots:
    """Outputs with display ids, one per engine, created when the engine first has something
    to show and updated in place; :meth:`settle` gives them engine order."""

    def __init__(self, shell: Any, prefix: str) -> None:
        self._shell = shell
        self._prefix = prefix
        self._ids: list[str] = []
        self._owners: list[int] = []
        self._content: dict[int, Bundle] = {}
        self._sent: dict[str, Bundle] = {}
        self._dirty: set[int] = set()

    def set(self, engine_id: int, bundle: Bundle) -> None:
        self._content[engine_id] = bundle
        if engine_id in self._owners:
            self._dirty.add(engine_id)
            return
        display_id = f"{self._prefix}-{len(self._ids)}"
        self._ids.append(display_id)
        self._owners.append(engine_id)
        self._send(display_id, bundle, update=False)

    def flush(self) -> None:
        for engine_id in sorted(self._dirty):
            self._send(self._ids[self._owners.index(engine_id)], self._content[engine_id])
        self._dirty.clear()

    def settle(self) -> None:
        self._owners.sort()
        self._dirty.clear()
        for display_id, engine_id in zip(self._ids, self._owners, strict=True):
            self._send(display_id, self._content[engine_id])

    def _send(self, display_id: str, bundle: Bundle, update: bool = True) -> None:
        if self._sent.get(display_id) == bundle:
            return
        self._sent[display_id] = bundle
        data, metadata = bundle
        self._shell.display_pub.publish(
            data=data, metadata=metadata, transient={"display_id": display_id}, update=update
        )


class KernelOutputs(LiveOutputs):
    """Engines' output as it arrives, in a notebook.

    Stream text is gathered and rendered at each refresh (or before anything else is shown,
    to keep the order), not per message; while the cell runs, a huge block shows its tail.
    """

    def __init__(self, shell: Any) -> None:
        super().__init__()
        self._shell = shell
        key = uuid.uuid4().hex[:12]
        self._blocks = _Slots(shell, f"px-{key}-stream")
        self._results = _Slots(shell, f"px-{key}-result")
        self._runs: dict[int, list[tuple[str, str]]] = {}
        self._pending: set[int] = set()

    def stream(self, engine_id: int, name: str, text: str) -> None:
        runs = self._runs.setdefault(engine_id, [])
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + text)
        else:
            runs.append((name, text))
        self._pending.add(engine_id)

    def clear(self, engine_id: int) -> None:
        if engine_id in self._runs:
            self._runs[engine_id] = []
            self._pending.add(engine_id)

    def _render(self, engine_ids: Any, live: bool = True) -> None:
        for engine_id in sorted(engine_ids):
            text = block_text(engine_id, self._runs[engine_id])
            if live:
                text = tail(text, LIVE_TEXT_LIMIT)
            self._blocks.set(engine_id, ({"text/plain": text}, {"engine": engine_id}))
        self._pending.clear()

    def display(self, engine_id: int, content: dict[str, Any], update: bool) -> None:
        self._render(self._pending)
        metadata = dict(content.get("metadata") or {})
        metadata["engine"] = engine_id
        display_id = (content.get("transient") or {}).get("display_id")
        if update and not display_id:
            return
        if not update:
            sys.stdout.write(f"[output:{engine_id}]\n")
        # the engine's display id, kept apart per engine, so its later updates land here
        transient = {"display_id": f"engine{engine_id}-{display_id}"} if display_id else None
        self._shell.display_pub.publish(
            data=content.get("data", {}), metadata=metadata, transient=transient, update=update
        )

    def error(self, error: RemoteError) -> None:
        self._render(self._pending)
        super().error(error)

    def show_result(self, engine_id: int, reply: ExecuteReply) -> None:
        self._render(self._pending)
        self._results.set(engine_id, reply._repr_mimebundle_())

    def flush(self) -> None:
        self._render(self._pending)
        self._blocks.flush()
        self._results.flush()

    def finish(self) -> None:
        self._render(self._runs, live=False)
        self._blocks.settle()
        self._results.settle()
        super().finish()


class KernelProgress:
    """The progress line: one output, updated in place."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._display_id: str | None = None
        self._text = ""

    @property
    def shown(self) -> bool:
        return self._display_id is not None

    def show(self, text: str, final: bool = False) -> None:
        if text == self._text:
            return
        update = self._display_id is not None
        if not update:
            self._display_id = f"px-progress-{uuid.uuid4().hex[:12]}"
        self._text = text
        self._shell.display_pub.publish(
            data={"text/plain": text},
            metadata={},
            transient={"display_id": self._display_id},
            update=update,
        )
