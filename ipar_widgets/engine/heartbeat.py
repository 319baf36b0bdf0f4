"""The engine's heartbeat: echoes the controller's pings, and ends the engine when the
controller is gone.

The echo runs inside libzmq (``zmq.proxy`` from the socket to itself), without the GIL, so a
task that holds the GIL in C code for minutes does not make its engine look dead.  A watchdog
thread reads the socket's connection events: when the connection to the controller has been
down for ``controller_timeout`` seconds, the engine exits; when it comes back before that (a
restored controller, a network that healed), ``on_reconnect`` runs, so the engine rejoins.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("ipar_widgets.engine")


class Heartbeat:
    """The heartbeat socket's echo and the watchdog that ends the engine without a
    controller; both run in daemon threads of their own."""

    def __init__(
        self,
        url: str,
        identity: bytes,
        controller_timeout: float,
        on_disconnect: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        shell_monitor: zmq.Socket[bytes] | None = None,
    ) -> None:
        # its own context: the echo must not wait behind the kernel's I/O threads
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.identity = identity
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        self.socket.connect(url)
        self.controller_timeout = controller_timeout
        #: called in the watchdog's thread when the connection drops, and when it is back
        self.on_disconnect = on_disconnect
        self.on_reconnect = on_reconnect
        #: the shell socket's connection events: a rejoin waits until it is connected again
        self.shell_monitor = shell_monitor
        #: set once the socket first reached the controller: the engine registers only then,
        #: since the controller counts silence from the registration, and on a starved host
        #: this connection can take longer to come up than the registration round trip
        self.connected = threading.Event()

    def start(self) -> None:
        """Start echoing pings and watching the connection."""
        threading.Thread(target=self._echo, name="ipar-heartbeat", daemon=True).start()
        threading.Thread(target=self._watch, name="ipar-watchdog", daemon=True).start()

    def _echo(self) -> None:
        try:
            zmq.proxy(self.socket, self.socket)
        except zmq.ZMQError:
            pass  # the context was terminated: the engine is exiting

    def _watch(self) -> None:
        down_since: float | None = None
        shell_lost = False
        poller = zmq.Poller()
        poller.register(self.monitor, zmq.POLLIN)
        if self.shell_monitor is not None:
            poller.register(self.shell_monitor, zmq.POLLIN)
        while True:
            try:
                ready = dict(poller.poll(500))
                heartbeat_event = (
                    recv_monitor_message(self.monitor)["event"] if self.monitor in ready else None
                )
                shell_event = (
                    recv_monitor_message(self.shell_monitor)["event"]
                    if self.shell_monitor is not None and self.shell_monitor in ready
                    else None
                )
            except zmq.ZMQError:
                return  # the engine is exiting
            if heartbeat_event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected.set()
            if heartbeat_event == zmq.EVENT_DISCONNECTED and down_since is None:
                down_since = time.monotonic()
                log.warning(
                    "lost the connection to the controller; waiting up to %.0f s for it to "
                    "come back",
                    self.controller_timeout,
                )
                if self.on_disconnect is not None:
                    self.on_disconnect()
            elif heartbeat_event == zmq.EVENT_HANDSHAKE_SUCCEEDED and down_since is not None:
                log.warning(
                    "the controller is reachable again after %.1f s", time.monotonic() - down_since
                )
                down_since = None
                if self.shell_monitor is None and self.on_reconnect is not None:
                    self.on_reconnect()
            # rejoin once the shell socket is back: tasks go there as soon as the controller
            # has taken the engine back
            if shell_event == zmq.EVENT_DISCONNECTED:
                shell_lost = True
            elif shell_event == zmq.EVENT_HANDSHAKE_SUCCEEDED and shell_lost:
                shell_lost = False
                log.warning("the shell socket is connected again; rejoining")
                if self.on_reconnect is not None:
                    self.on_reconnect()
            if down_since is not None and time.monotonic() - down_since > self.controller_timeout:
                log.error(
                    "the controller has been unreachable for %.0f s; this engine exits",
                    self.controller_timeout,
                )
                os._exit(3)
