"""Tasks that more than one test file runs on engines.  Each is ``ipp.interactive``: it
travels to the engine as code, so the engines need not import this module."""

from __future__ import annotations

import ipar_widgets as ipp

__all__ = ["hold_memory"]


@ipp.interactive
def hold_memory(nbytes: int) -> int:
    """Allocate ``nbytes`` and touch every page, kept in the engine's namespace."""
    block = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        block[i] = 1
    globals()["held_block"] = block
    return len(block)
