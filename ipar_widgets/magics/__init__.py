"""The parallel magics: ``%px``, ``%%px``, ``%pxresult``, ``%pxconfig`` and ``%autopx``.

They act on one DirectView per suffix.  Three ways to get them, as with ipyparallel:

- a ``Client`` created inside IPython activates ``rc.activate()`` for itself when no client
  has: a blocking view of *all* engines, evaluated at each execution (engines added later
  are included), not the frozen ``rc[:]``;
- ``view.activate(suffix)`` / ``rc.activate(targets, suffix)`` for any view, under
  ``%px<suffix>`` names;
- ``%load_ext ipar_widgets``, which connects to the default profile's cluster at first use
  (or binds to the first Client created after it).
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client.client import Client
    from ..client.view import DirectView, View
    from .parallel import ParallelMagics

__all__ = ["activate", "load_ipython_extension", "register_magics_if_ipython"]

log = logging.getLogger("ipar_widgets.magics")

# the magics of each shell, by suffix
_registry: weakref.WeakKeyDictionary[Any, dict[str, ParallelMagics]] = weakref.WeakKeyDictionary()


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _install(shell: Any, view: DirectView | None, suffix: str) -> ParallelMagics:
    from .parallel import ParallelMagics

    by_suffix = _registry.setdefault(shell, {})
    old = by_suffix.get(suffix)
    if old is not None and (view is None or old._view is None):
        # %load_ext's magics, waiting for a view: they take this one, with any settings made
        if view is not None:
            old.bind(view)
        magics = old
    else:
        # activating a view starts from the defaults, as in ipyparallel (a %pxconfig made
        # for the previous view does not carry over); a running %autopx does
        magics = ParallelMagics(shell, view, suffix)
        if old is not None:
            magics._autopx = old._autopx
        by_suffix[suffix] = magics
    magics.register()
    return magics


def activate(view: View, suffix: str = "") -> None:
    """Point ``%px<suffix>`` and its siblings at ``view``."""
    shell = _shell()
    if shell is None:
        raise RuntimeError(
            "the parallel magics (%px, %%px, %autopx, ...) work in IPython only; "
            "outside it, use view.execute(code) and ar.display_outputs()"
        )
    from ..client.view import DirectView

    if not isinstance(view, DirectView):
        raise TypeError(
            f"the parallel magics run code on chosen engines, which needs a DirectView "
            f"(rc[:], rc.direct_view()), not a {type(view).__name__}"
        )
    _install(shell, view, suffix)


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext ipar_widgets``: the magics, connected at first use unless a view is active."""
    magics = _registry.get(ip, {}).get("")
    if magics is None:
        _install(ip, None, "")


def register_magics_if_ipython(client: Client, rebind: bool = True) -> None:
    """Called at the end of ``Client.__init__``: inside IPython, the first client (or, with
    ``rebind``, the first after the active one was closed) activates the magics.  Cheap, and
    never raises."""
    try:
        if "IPython" not in sys.modules:
            return
        shell = _shell()
        if shell is None:
            return
        magics = _registry.get(shell, {}).get("")
        if magics is None:
            if "px" in shell.magics_manager.magics["line"]:
                return  # another library's %px (ipyparallel's): leave it
        elif magics._view is not None and (not rebind or not magics._view.client.closed):
            return
        client.activate()
    except Exception:
        log.debug("could not register the parallel magics", exc_info=True)
