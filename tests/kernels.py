"""Real kernels for the tests: notebooks run headless through nbclient (keeping the comm
messages the widgets sent), and one kernel driven message by message, to click a widget's
button while a cell blocks, as JupyterLab would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nbformat
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

__all__ = [
    "RecordingClient",
    "python3_notebook",
    "run_notebook",
    "kernel",
    "click",
    "cell_ended",
    "follow_cell",
    "stop_cluster_of_profile",
]


def python3_notebook(cells: list[str]) -> Any:
    """A notebook of these code cells, for the ``python3`` kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


class RecordingClient(NotebookClient):  # type: ignore[misc]
    """Keeps every comm message the kernel sent (with the kernel's send time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.comm_msgs: list[dict[str, Any]] = []

    def handle_comm_msg(self, outs: Any, msg: dict[str, Any], cell_index: int) -> None:
        self.comm_msgs.append(msg)
        super().handle_comm_msg(outs, msg, cell_index)


def run_notebook(nb: Any) -> RecordingClient:
    """Run every cell of ``nb`` (outputs kept in it); an error in a cell fails the test."""
    client = RecordingClient(nb, timeout=120, kernel_name="python3", allow_errors=False)
    client.execute()
    return client


@contextmanager
def kernel(setup: str) -> Iterator[Any]:
    """A fresh ``python3`` kernel that has run ``setup``: its client, the kernel shut down
    afterwards."""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        ran = kc.execute_interactive(setup, timeout=60)
        assert ran["content"]["status"] == "ok"
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def click(kc: Any, comm_id: str) -> None:
    """Click the button on ``comm_id``, with the message a frontend sends."""
    kc.session.send(
        kc.shell_channel.socket,
        kc.session.msg(
            "comm_msg",
            {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}},
        ),
    )


def cell_ended(msg: dict[str, Any], msg_id: str) -> bool:
    """Whether ``msg`` says the kernel went idle after the execute request ``msg_id``."""
    return (
        msg["msg_type"] == "status"
        and msg["content"]["execution_state"] == "idle"
        and msg["parent_header"].get("msg_id") == msg_id
    )


def follow_cell(kc: Any, msg_id: str, handle: Callable[[dict[str, Any]], None]) -> str:
    """Read the kernel's messages until the cell ``msg_id`` ends (each wait bounded): each
    one that is not the cell's output, an error or its end goes to ``handle`` (to click on
    a comm, say); returns what the cell printed.  An error in the kernel fails the test."""
    text = ""
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and msg["parent_header"].get("msg_id") == msg_id:
            text += content["text"]
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif cell_ended(msg, msg_id):
            return text
        else:
            handle(msg)


def stop_cluster_of_profile(profile: str) -> None:
    """Stop the cluster a kernel started under ``profile`` (its last cell stops it, unless a
    cell failed first): by its cluster file, then its controller's process group."""
    import contextlib

    from conftest import kill_group_of

    import ipar_widgets as ipp

    with contextlib.suppress(Exception):
        left = ipp.Cluster.from_file(profile=profile, cluster_id="")
        pid = left._data["controller_pid"] if left._data else None
        left.stop_cluster_sync()
        if pid:
            kill_group_of(pid)
