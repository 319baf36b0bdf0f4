"""Live %px output in a terminal IPython (or any shell without a kernel): printed as it
arrives, each change of engine or stream under a new ``[stdout:0]`` label."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from ..client.display import ExecuteReply, StreamPrinter, republish
from ..error import RemoteError
from .live import LiveOutputs

#: seconds an engine's line without its newline waits for the rest before it is printed
PARTIAL_WAIT = 0.5


class TerminalOutputs(LiveOutputs):
    """Engines' output as it arrives, printed.

    Each engine's text is printed a line at a time, so lines of different engines do not cut
    into each other; a line without its newline waits up to :data:`PARTIAL_WAIT` seconds.
    """

    def __init__(self) -> None:
        super().__init__()
        self._printer = StreamPrinter()
        self._partial: dict[tuple[int, str], tuple[str, float]] = {}

    def stream(self, engine_id: int, name: str, text: str) -> None:
        held, since = self._partial.pop((engine_id, name), ("", time.monotonic()))
        text = held + text
        cut = text.rfind("\n") + 1
        if cut:
            self._print(engine_id, name, text[:cut])
        if cut < len(text):
            self._partial[(engine_id, name)] = (text[cut:], since if held else time.monotonic())

    def _print(self, engine_id: int, name: str, text: str) -> None:
        self._printer.write(
            text, f"[{name}:{engine_id}]", file=sys.stderr if name == "stderr" else sys.stdout
        )

    def _release(self, engine_id: int | None = None, older_than: float | None = None) -> None:
        """Print held partial lines (of one engine, or held longer than ``older_than`` s)."""
        now = time.monotonic()
        for key, (text, since) in list(self._partial.items()):
            if engine_id is not None and key[0] != engine_id:
                continue
            if older_than is not None and now - since < older_than:
                continue
            del self._partial[key]
            self._print(*key, text)

    def display(self, engine_id: int, content: dict[str, Any], update: bool) -> None:
        if update:
            return  # a terminal cannot change what it printed
        self._release(engine_id)
        print(f"[output:{engine_id}]")
        republish(content, engine_id)

    def error(self, error: RemoteError) -> None:
        self._release(error.engine_id)
        super().error(error)

    def show_result(self, engine_id: int, reply: ExecuteReply) -> None:
        from IPython.display import display

        self._release(engine_id)
        display(reply)

    def flush(self) -> None:
        self._release(older_than=PARTIAL_WAIT)
        super().flush()

    def finish(self) -> None:
        self._release()
        super().finish()


class TerminalProgress:
    """The progress line, redrawn in place on a terminal; nothing when stderr is not a TTY, so
    the logs of scripts stay clean."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._width = 0
        self.shown = False

    def show(self, text: str, final: bool = False) -> None:
        if not self._tty:
            return
        self.shown = True
        pad = " " * max(0, self._width - len(text))
        self._stream.write("\r" + text + pad + ("\n" if final else ""))
        self._stream.flush()
        self._width = 0 if final else len(text)
