"""%autopx: every cell goes to the engines, until %autopx again.

Rather than replacing the shell's ``run_cell``, an input transformer turns each cell into a
``%%px`` cell.  The shell keeps doing everything else (history, execution counts, error
display), in a terminal and in a kernel alike.
"""

from __future__ import annotations

import re
from typing import Any


class AutoPx:
    """The input transformer: ``lines`` of a cell become ``%%px<suffix>`` plus those lines."""

    # IPython's check_complete skips transformers with side effects: while typing a block in
    # a terminal, the cell must still be judged as Python, not as a (complete) cell magic
    has_side_effects = True

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self._toggle = re.compile(rf"\s*%autopx{re.escape(suffix)}\b")

    def __call__(self, lines: list[str]) -> list[str]:
        first = next((line for line in lines if line.strip()), None)
        if first is None or self._toggle.match(first):
            return lines
        return [f"%%px{self.suffix}\n", *lines]


def enable(shell: Any, suffix: str) -> AutoPx:
    transformer = AutoPx(suffix)
    shell.input_transformers_cleanup.append(transformer)
    return transformer


def disable(shell: Any, transformer: AutoPx) -> None:
    try:
        shell.input_transformers_cleanup.remove(transformer)
    except ValueError:
        pass
