"""Engines' widgets in the notebook of the client: Jupyter comms relayed both ways.

An engine is an IPython kernel, so ``display(IntProgress())`` in a task opens a comm there and
sends the widget's view to the client like any other display.  For the notebook to draw it
and keep it current, the comm must reach the notebook: when the Client runs inside an IPython
kernel, the engines' ``comm_open``/``comm_msg``/``comm_close`` messages are published on that
kernel's IOPub as its own, and the kernel gets a stand-in comm for each one, which sends what
the notebook answers (a click, a slider moved) back to the engine's shell, where the widget's
callbacks run between tasks, as in ipyparallel.

Outside a kernel (a script, a terminal IPython) nothing is relayed.  The relay carries each
message's content and metadata; binary buffers of engine-side comm messages are not relayed.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..protocol.routing import direct_route

if TYPE_CHECKING:
    from .client import Client

__all__ = ["COMM_TYPES", "EngineCommRelay", "relay_engine_comms"]

log = logging.getLogger("ipar_widgets.client")

#: the message types of Jupyter comms
COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


def _host_kernel() -> Any:
    """The IPython kernel this process is, or None (no IPython, or not a kernel)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or getattr(kernel, "comm_manager", None) is None:
        return None
    return kernel


def relay_engine_comms(client: Client) -> EngineCommRelay | None:
    """Inside an IPython kernel, relay the comms of ``client``'s engines to its notebook."""
    kernel = _host_kernel()
    if kernel is None:
        return None
    relay = EngineCommRelay(client, kernel)
    client.add_output_listener(relay.on_output)
    return relay


class EngineCommRelay:
    """Publishes engines' comm messages in the host kernel and sends the answers back."""

    def __init__(self, client: Client, kernel: Any) -> None:
        self.client = client
        self.kernel = kernel
        #: the engine each relayed comm lives on, by comm_id
        self.engine_of: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- engine -> notebook (called in the client's I/O thread) -------------------------------------
    def on_output(
        self, engine_id: int | None, msg_id: str | None, msg_type: str, content: dict[str, Any]
    ) -> None:
        if msg_type not in COMM_TYPES or engine_id is None:
            return
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str):
            return
        with self._lock:
            if msg_type == "comm_open":
                self.engine_of[comm_id] = engine_id
                self._open_stand_in(comm_id, content)
            elif self.engine_of.get(comm_id) != engine_id:
                return  # a comm of another client's (outputs of no task reach every client)
            elif msg_type == "comm_close":
                del self.engine_of[comm_id]
                self._drop_stand_in(comm_id)
        try:
            self.kernel.session.send(
                self.kernel.iopub_socket,
                msg_type,
                content,
                parent=self.kernel.get_parent("shell"),
                ident=f"comm-{comm_id}".encode(),
            )
        except Exception:
            log.exception("could not relay an engine's %s to the notebook", msg_type)

    def _open_stand_in(self, comm_id: str, content: dict[str, Any]) -> None:
        """A comm in the host kernel that the notebook's answers reach (not opened: the
        engine's own ``comm_open`` is what the notebook receives)."""
        from comm.base_comm import BaseComm

        engine_id = self.engine_of[comm_id]
        relay = self

        class StandIn(BaseComm):
            def publish_msg(self, msg_type: str, *args: Any, **kwargs: Any) -> None:
                pass  # the engine publishes; nothing here speaks for it

        stand_in = StandIn(
            comm_id=comm_id, primary=False, target_name=str(content.get("target_name", ""))
        )
        stand_in.on_msg(lambda msg: relay.to_engine(engine_id, "comm_msg", msg))
        stand_in.on_close(lambda msg: relay._closed_by_notebook(engine_id, comm_id, msg))
        self.kernel.comm_manager.register_comm(stand_in)

    def _drop_stand_in(self, comm_id: str) -> None:
        manager = self.kernel.comm_manager
        stand_in = manager.comms.get(comm_id)
        if stand_in is not None:
            manager.unregister_comm(stand_in)

    # -- notebook -> engine (called in the host kernel's shell handler) -----------------------------
    def _closed_by_notebook(self, engine_id: int, comm_id: str, msg: dict[str, Any] | None) -> None:
        with self._lock:
            self.engine_of.pop(comm_id, None)
        self.to_engine(engine_id, "comm_close", msg or {"content": {"comm_id": comm_id}})

    def to_engine(self, engine_id: int, msg_type: str, msg: dict[str, Any]) -> None:
        """Send a comm message to the engine's shell (the controller passes it on)."""
        client = self.client
        if client.closed:
            log.warning("a widget of engine %s was used after its client closed", engine_id)
            return
        submitter = client._submitter
        _, frames = submitter.wire.build(
            msg_type,
            dict(msg.get("content") or {}),
            metadata=dict(msg.get("metadata") or {}),
            idents=[direct_route(engine_id)],
            buffers=list(msg.get("buffers") or ()),
        )
        submitter.transport.send(frames)
