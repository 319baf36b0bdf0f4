"""One line of progress on a stream, as every terminal display writes it: on a TTY redrawn in
place (cut to the terminal's width, padded over what the last frame left), elsewhere whole
lines, so logs (CI, pipes) get no carriage-return frames.  The displays
(:mod:`.terminal`, :mod:`.transfer`, :mod:`.enginewait`) only decide what to write and when.
"""

from __future__ import annotations

import shutil
from typing import IO

__all__ = ["LiveLine"]


class LiveLine:
    """The stream and what is drawn on it now."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        try:
            self.tty = bool(isatty()) if isatty else False
        except ValueError:  # a closed stream
            self.tty = False
        self._width = 0

    def redraw(self, line: str) -> None:
        """Draw ``line`` over the current one (on a TTY only)."""
        columns = shutil.get_terminal_size((100, 20)).columns
        line = line[: max(20, columns - 1)]
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)

    def clear(self) -> None:
        """Blank the redrawn line (if any), so whole lines follow from the line's start."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
        self._width = 0

    def write(self, line: str) -> None:
        """A whole line."""
        self.stream.write(line + "\n")
        self.stream.flush()
