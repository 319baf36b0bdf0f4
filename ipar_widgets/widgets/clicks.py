"""Getting a button's clicks while the cell that showed it blocks the kernel.

A click reaches the kernel as a ``comm_msg`` on the shell channel.  The kernel's main thread
handles shell messages one at a time, so while ``wait_interactive`` blocks the cell the click
would wait for the cell to end: too late to cancel anything.

ipykernel 7 reads the shell channel in a thread of its own and hands each message to the
main thread or to a *subshell* (kernel subshells, JEP 91: extra threads that run shell
requests concurrently).  For a ``comm_msg`` it asks the comm which subshell should handle it
(``comm._reply_subshell_for``).  So we start one subshell for the whole kernel and have our
buttons' comms answer with its id: the click is handled in that thread, at once, through the
kernel's own dispatch (the widget's ``on_click`` callbacks run as usual), whatever the main
thread is doing.

These are internals of ipykernel (checked with 7.4): every step is feature-checked, and where
one is missing :func:`route_off_main_thread` returns False and the caller says that the
button works once the cell has returned (``ar.display()`` is the non-blocking form).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

log = logging.getLogger("ipar_widgets.widgets")

__all__ = ["route_off_main_thread", "side_subshell"]

_lock = threading.Lock()
_subshell: str | None = None


def _kernel() -> Any:
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return None
    return Kernel.instance() if Kernel.initialized() else None


def side_subshell(timeout: float = 10.0) -> str | None:
    """The id of our subshell in this kernel (started on first use), or None if the kernel
    cannot run one."""
    global _subshell
    with _lock:
        if _subshell is not None:
            return _subshell
        kernel = _kernel()
        thread = getattr(kernel, "shell_channel_thread", None)
        manager = getattr(thread, "_manager", None)
        create = getattr(manager, "_create_subshell", None)
        loop = getattr(thread, "io_loop", None)
        if create is None or loop is None:
            return None
        result: concurrent.futures.Future[str] = concurrent.futures.Future()

        def create_in_channel_thread() -> None:
            # the subshell manager may only be changed from the shell channel thread
            try:
                result.set_result(create())
            except BaseException as exc:
                result.set_exception(exc)

        loop.add_callback(create_in_channel_thread)
        try:
            _subshell = result.result(timeout)
        except Exception as exc:
            log.warning("could not start a subshell for widget clicks: %s", exc)
            return None
        return _subshell


def route_off_main_thread(*widgets: Any) -> bool:
    """Have the kernel handle these widgets' messages from the frontend in our subshell.

    True if it will; False if this kernel has no way to (then the messages wait for the
    main thread, as usual).
    """
    comms = [getattr(w, "comm", None) for w in widgets]
    if any(c is None or not callable(getattr(type(c), "_reply_subshell_for", None)) for c in comms):
        return False  # this kernel does not ask comms where their messages go
    subshell = side_subshell()
    if subshell is None:
        return False
    for comm in comms:
        assert comm is not None
        comm._reply_subshell_for = lambda data, default, _s=subshell: _s
    return True
