"""Pure text for the live %px displays: an engine's output block, the progress line, error
lines.  The kernel and terminal renderers only decide where these strings go."""

from __future__ import annotations

import io
from typing import Any

from ..client.display import StreamPrinter
from ..error import RemoteError
from ..progress.snapshot import Snapshot
from ..progress.terminal import format_seconds


def collapse_carriage_returns(text: str) -> str:
    """What a terminal would show of ``text``: each ``\\r`` lets the rest of the line overwrite
    what came before it (progress bars on engines print this way)."""
    if "\r" not in text:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def block_text(engine_id: int, runs: list[tuple[str, str]]) -> str:
    """One engine's stream output so far, as ``[stdout:0] ...`` / ``[stderr:0] ...`` sections.

    ``runs`` are (stream name, text) in arrival order, consecutive text of one stream merged.
    The layout is the one ``AsyncResult.display_outputs`` prints, so a streamed cell reads
    the same as one shown at the end.
    """
    out = io.StringIO()
    printer = StreamPrinter()
    for name, text in runs:
        printer.write(collapse_carriage_returns(text), f"[{name}:{engine_id}]", file=out)
    return out.getvalue()


def tail(text: str, limit: int) -> str:
    """``text``, or its last lines within ``limit`` characters after a note of what is left out."""
    if len(text) <= limit:
        return text
    cut = text.find("\n", len(text) - limit)
    kept = text[cut + 1 :] if cut >= 0 else text[-limit:]
    return f"[... {len(text) - len(kept)} characters above, shown when the cell ends ...]\n{kept}"


def _engines(ids: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown if len(ids) <= limit else f"{shown}, ... ({len(ids)} engines)"


def progress_text(name: str, snap: Snapshot, interrupted: bool = False) -> str:
    """The compact progress line: ``%px: 1/4 engines done, 2.0 s; waiting for 0, 2, 3``,
    and once finished ``%px: 4/4 engines done in 3.1 s``."""
    counts = f"{snap.finished}/{snap.total} engines done"
    if snap.failed:
        counts += f" ({snap.failed} failed)"
    took = format_seconds(snap.elapsed)
    if interrupted:
        return f"{name}: interrupted after {took}; {counts}"
    if snap.ready:
        return f"{name}: {counts} in {took}"
    waiting = [row.engine_id for row in snap.engines if row.running]
    line = f"{name}: {counts}, {took}"
    return f"{line}; waiting for {_engines(waiting)}" if waiting else line


def as_remote_error(error: BaseException, engine_id: Any) -> RemoteError:
    """A RemoteError naming the engine, for any failure a task reported."""
    if isinstance(error, RemoteError):
        if error.engine_id in (None, -1) and engine_id is not None:
            error.engine_info["engine_id"] = engine_id
            error.engine_id = engine_id
        return error
    info = dict(getattr(error, "engine_info", None) or {})
    info.setdefault("method", "execute")
    if info.get("engine_id") in (None, -1):
        info["engine_id"] = engine_id
    return RemoteError(type(error).__name__, str(error), "", info)


def error_lines(error: RemoteError, full: bool) -> list[str]:
    """An engine's error headed ``[0:execute]``: the whole traceback, or one line."""
    return error._render_traceback_() if full else [str(error)]


def interrupt_text(signal_spec: str | int) -> str:
    """What an interrupted blocking %px says, on stderr: the line ipyparallel prints, naming
    the signal as it was given (``SIGINT``, ``9``, ``0`` for none)."""
    return f"Received Keyboard Interrupt. Sending signal {signal_spec} to engines..."
