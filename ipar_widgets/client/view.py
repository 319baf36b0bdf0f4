"""Views: the ways of sending work to engines (``ipar_widgets.client.view``, as in
ipyparallel).

A :class:`DirectView` (``directview.py``) sends each call to every one of its target engines
and splits a map's sequences between them; a :class:`BroadcastView` (``broadcastview.py``)
does the same with one message per call, which the controller fans out (and, coalescing,
answers once); a :class:`LoadBalancedView` (``lbview.py``) sends each task, or each chunk of
a map, to whichever engine is free first.  All return
AsyncResults, or wait for the values when ``block`` is true; what they share is
:class:`View` (``baseview.py``).  ``view.executor`` is a :class:`ViewExecutor`, whose ``map``
returns a :class:`LazyMapIterator`.
"""

from __future__ import annotations

from .baseview import View
from .broadcastview import BroadcastView
from .directview import DirectView
from .executor import ViewExecutor
from .lazymap import LazyMapIterator
from .lbview import LoadBalancedView

__all__ = [
    "View",
    "DirectView",
    "BroadcastView",
    "LoadBalancedView",
    "ViewExecutor",
    "LazyMapIterator",
]
