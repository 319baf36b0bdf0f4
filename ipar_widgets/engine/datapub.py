"""``publish_data``: a task sends a dict of values to its client while it runs.

Each call is one ``data_message`` on the engine's IOPub socket, tagged with the running
request as its parent: the content lists the keys, the buffers are the pickled dict.  The
controller relays it like any other output, and the client merges the dict into the task's
``metadata["data"]`` (``ar.data``) as it arrives, so a notebook can watch a long task's
progress values before the task returns.  Like every output, the message is counted in the
task's reply, so ``ar.data`` holds the last values once ``ar.get()`` returns.
"""

from __future__ import annotations

from typing import Any

from ..protocol.serialize import dumps

__all__ = ["publish_data"]


def publish_data(data: dict[str, Any]) -> None:
    """Send ``data`` (a dict, think of it as a namespace) to the client of the running task;
    there it is merged into ``ar.data`` / ``metadata['data']``.

    Call it from code running on an engine (``view.apply``, ``view.execute``, ``%px``).
    """
    if not isinstance(data, dict):
        raise TypeError(
            f"publish_data takes a dict of names to values, found {type(data).__name__}; "
            "wrap the value, e.g. publish_data({'progress': value})"
        )
    kernel = _running_kernel()
    # Copy the buffers: the IOPub thread sends them later, and the task may change an
    # array it published (a running total) before then.
    frames = [bytes(frame) for frame in dumps(data, "the data to publish")]
    kernel.counting_session.send(
        kernel.iopub_socket,
        "data_message",
        {"keys": list(data)},
        parent=kernel.get_parent("shell"),
        ident=kernel._topic("data"),
        buffers=frames,
    )


def _running_kernel() -> Any:
    """The engine's kernel in this process, or a clear error when there is none."""
    from .kernel import EngineKernel

    if not EngineKernel.initialized():
        raise RuntimeError(
            "publish_data sends values from a task to its client, so it works only in code "
            "running on an ipar_widgets engine (view.apply, view.execute, %px); this process "
            "is not an engine"
        )
    return EngineKernel.instance()
