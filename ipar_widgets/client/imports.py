"""``view.sync_imports()`` / ``view.importer``: import statements that also run on engines.

While the ``with`` block runs, ``builtins.__import__`` is replaced by a hook that passes
every import through as usual and, for the import statements of the block's own frame (not
the imports those modules make in turn, nor other threads'), also sends the statement to the
view's engines.  The engines import while the block goes on; the block's end waits for them
and raises the first error (a module missing on an engine).
"""

from __future__ import annotations

import builtins
import sys
import types
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import Any

from .asyncresult import AsyncResult

__all__ = ["SynchronizedImports"]


class SynchronizedImports:
    """The context manager ``view.sync_imports()`` returns; see the module docstring.

    ``send(statement)`` runs one import statement on the engines and returns its
    AsyncResult; ``frame`` is the frame whose import statements travel.
    """

    def __init__(
        self,
        send: Callable[[str], AsyncResult],
        frame: FrameType,
        *,
        local: bool = True,
        quiet: bool = False,
    ) -> None:
        self._send = send
        self._frame: FrameType | None = frame
        self.local = local
        self.quiet = quiet
        self._sent: set[tuple[str, tuple[str, ...]]] = set()
        self._results: list[AsyncResult] = []
        self._real_import: Callable[..., Any] = builtins.__import__

    def __enter__(self) -> None:
        self._real_import = builtins.__import__
        builtins.__import__ = self._import

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        builtins.__import__ = self._real_import
        self._frame = None  # no reference cycle through the frame
        if exc_type is None:
            for ar in self._results:
                ar.get()  # an ImportError on an engine is raised here

    def _import(
        self,
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> Any:
        real_import = self._real_import
        # only the block's own, absolute import statements travel: the imports that the
        # modules make while loading, and those of other threads, are someone else's
        if level != 0 or sys._getframe(1) is not self._frame:
            return real_import(name, globals, locals, fromlist, level)
        names = tuple(fromlist or ())
        if self.local:
            module = real_import(name, globals, locals, fromlist, level)
        else:
            module = _placeholder(name, names)
        if (name, names) not in self._sent:
            self._sent.add((name, names))
            if names:
                statement = f"from {name} import {', '.join(names)}"
                message = f"importing {','.join(names)} from {name} on engine(s)"
            else:
                statement = f"import {name}"
                message = f"importing {name} on engine(s)"
            if not self.quiet:
                print(message)
            self._results.append(self._send(statement))
        return module


def _placeholder(name: str, names: tuple[str, ...]) -> types.ModuleType:
    """What an engines-only import (``local=False``) binds here: a module object whose
    imported names are None, so the statement completes without importing anything."""
    module = types.ModuleType(name, "imported on the engines only (sync_imports(local=False))")
    for attr in names:
        if attr != "*":
            setattr(module, attr, None)
    return module
