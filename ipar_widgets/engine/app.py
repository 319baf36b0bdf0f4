"""The engine process: ipykernel's application with sockets that connect to the controller.

An ordinary kernel binds its sockets and waits for a frontend; an engine reads the
controller's engine connection file, connects (so it can run on any host that reaches the
controller), registers to get its id, and then serves like a kernel.
"""

from __future__ import annotations

import json
import logging
import os
import socket as socketlib
import sys
import time
import uuid as uuidlib
from typing import Any

import zmq
from ipykernel.control import ControlThread
from ipykernel.iostream import IOPubThread
from ipykernel.kernelapp import IPKernelApp, kernel_aliases, kernel_flags
from traitlets import Bool, Float, Integer, TraitError, Unicode, default, observe, validate

from ..paths import CONNECTION_INFO_VARIABLE, ENGINE_SET_VARIABLE
from ..protocol.routing import (
    control_identity,
    engine_topic,
    heartbeat_identity,
    shell_identity,
    usage_identity,
)
from ..protocol.sharedmem import SharedArea
from ..protocol.wire import Wire
from .heartbeat import Heartbeat
from .kernel import EngineKernel, ShellStream
from .mpienv import mpi_namespace, mpi_rank
from .rejoin import ReplyJournal, rejoin_message
from .session import CountingSession
from .usage import MIN_INTERVAL, UsageReporter

log = logging.getLogger("ipar_widgets.engine")


class RegistrationFailed(RuntimeError):
    """The controller did not accept this engine."""


class EngineApp(IPKernelApp):
    """ipykernel's kernel application, connected to a controller instead of bound."""

    name = "ipar-engine"
    description = "An ipar_widgets engine: an IPython kernel connected to a cluster's controller."

    kernel_class = EngineKernel

    file = Unicode("", help="The controller's engine connection file (ipar-engine*.json).").tag(
        config=True
    )
    uuid = Unicode(help="This engine's unique name (default: a fresh uuid).").tag(config=True)
    parent_pid = Integer(
        0,
        help="Pid of the controller that started this engine (0: none). Informational: an "
        "engine outlives its controller for controller_timeout seconds, so a restored "
        "controller (ipar start --restore) finds it.",
    ).tag(config=True)
    registration_timeout = Float(
        30.0, help="Seconds to wait for the controller to accept this engine before giving up."
    ).tag(config=True)
    controller_timeout = Float(
        60.0,
        help="Seconds without a connection to the controller after which the engine exits. "
        "Within them a controller restored in its place (ipar start --restore) finds the "
        "engine again, with the tasks it ran meanwhile.",
    ).tag(config=True)
    reply_retention = Float(
        5.0,
        help="Seconds a task's reply is kept after it was sent, to be sent again to a "
        "restored controller (the dead one may not have recorded it yet); while the "
        "controller is unreachable nothing ages out.",
    ).tag(config=True)
    reply_retention_bytes = Integer(
        64 << 20,
        help="Most bytes of replies kept for resending (default 64 MiB); the oldest go first. "
        "Results staged in shared memory count only their frames.",
    ).tag(config=True)

    usage_interval = Float(
        1.0,
        help="Seconds between two reports of this engine's CPU use and memory to the "
        "controller (rc.status(), the progress widget's table, the JupyterLab panel); at "
        f"least {MIN_INTERVAL:g} s, 0 turns them off. They are sent from a thread of their "
        "own, off the task path.",
    ).tag(config=True)

    rank_as_id = Bool(
        False,
        help="Started by mpiexec or srun: ask the controller for the MPI rank (from the "
        "launcher's environment, no mpi4py needed) as this engine's id; it is given when no "
        "other engine has it.",
    ).tag(config=True)
    mpi = Bool(
        False,
        help="Import mpi4py (which initialises MPI) and put its MPI in the user namespace; "
        "implies rank_as_id. As ipyparallel's --mpi.",
    ).tag(config=True)

    flags = {
        **kernel_flags,
        "rank-as-id": ({"EngineApp": {"rank_as_id": True}}, "take the MPI rank as engine id"),
        "mpi": ({"EngineApp": {"mpi": True}}, "import mpi4py's MPI; take the rank as engine id"),
    }

    aliases = {
        **kernel_aliases,
        "file": "EngineApp.file",
        "uuid": "EngineApp.uuid",
        "parent-pid": "EngineApp.parent_pid",
        "registration-timeout": "EngineApp.registration_timeout",
        "controller-timeout": "EngineApp.controller_timeout",
        "usage-interval": "EngineApp.usage_interval",
        "log-level": "Application.log_level",
    }

    @validate("usage_interval")
    def _check_usage_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if value != 0 and not value >= MIN_INTERVAL:
            raise TraitError(
                f"EngineApp.usage_interval: expected 0 (no usage reports) or at least "
                f"{MIN_INTERVAL:g} seconds, found {proposal['value']!r}"
            )
        return value

    @default("uuid")
    def _default_uuid(self) -> str:
        return str(uuidlib.uuid4())

    @default("session")
    def _default_session(self) -> CountingSession:
        return CountingSession(parent=self)

    # -- connection: read the controller's file instead of writing our own --------------------------
    def init_connection_file(self) -> None:
        info: dict[str, Any]
        if self.file:
            with open(self.file) as f:
                info = json.load(f)
        elif os.environ.get(CONNECTION_INFO_VARIABLE):
            # a launcher without a shared filesystem passes the file's contents (as
            # ipyparallel's IPP_CONNECTION_INFO)
            info = json.loads(os.environ[CONNECTION_INFO_VARIABLE])
        else:
            raise SystemExit(
                "an engine needs --file=<the controller's ipar-engine*.json>, or the file's "
                f"contents in the environment variable {CONNECTION_INFO_VARIABLE}"
            )
        self._info = info
        self.session.key = info["key"].encode()
        self.transport = info.get("transport", "tcp")
        self.ip = info.get("location") or info.get("ip", "127.0.0.1")

    def _url(self, port_name: str) -> str:
        return f"{self.transport}://{self.ip}:{self._info['ports'][port_name]}"

    def write_connection_file(self, **kwargs: Any) -> None:
        pass

    def cleanup_connection_file(self) -> None:
        pass

    def log_connection_info(self) -> None:
        log.info("engine %s connecting to %s", self.uuid, self._url("engine"))

    def init_poller(self) -> None:
        # No parent-death signal: the engine must outlive a controller that crashed, for a
        # restored one to find it.  The heartbeat watchdog ends it after controller_timeout.
        pass

    # -- sockets --------------------------------------------------------------------------------------
    def init_sockets(self) -> None:
        self.context = context = zmq.Context()
        shell = context.socket(zmq.DEALER)
        shell.identity = shell_identity(self.uuid)
        shell.linger = 1000
        shell.sndhwm = shell.rcvhwm = 0
        # read by the heartbeat's watchdog thread: a rejoin goes once the shell is back
        self.shell_monitor = shell.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        shell.connect(self._url("engine"))
        self.shell_socket = shell
        self.stdin_socket = context.socket(zmq.ROUTER)  # engines take no input(); never bound
        self.init_control(context)
        self.init_iopub(context)

    def init_control(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        control = context.socket(zmq.DEALER)
        control.identity = control_identity(self.uuid)
        control.linger = 1000
        control.connect(self._url("engine"))
        self.control_socket = control
        self.debugpy_socket = context.socket(zmq.STREAM)
        self.debug_shell_socket = context.socket(zmq.DEALER)
        self.control_thread = ControlThread(daemon=True)
        self.shell_channel_thread = None  # no subshells: one shell runs the tasks

    def init_iopub(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        iopub = context.socket(zmq.PUB)
        iopub.linger = 1000
        iopub.sndhwm = 0
        iopub.connect(self._url("iopub"))
        self.iopub_socket = iopub
        self.iopub_thread = IOPubThread(iopub, pipe=True, session=self.session)
        self.iopub_thread.start()
        self.iopub_socket = self.iopub_thread.background_socket

    def init_heartbeat(self) -> None:
        self.journal = ReplyJournal(self.reply_retention, self.reply_retention_bytes)
        self.heartbeat_echo = Heartbeat(
            self._url("engine"),
            heartbeat_identity(self.uuid),
            self.controller_timeout,
            on_disconnect=self.journal.hold,
            on_reconnect=self._schedule_rejoin,
            shell_monitor=self.shell_monitor,
        )
        self.heartbeat_echo.start()
        self.engine_id = self.register()

    # -- rejoining a restored controller (see rejoin.py) ---------------------------------------------
    def _schedule_rejoin(self) -> None:
        """From the watchdog's thread: rejoin on the control thread, which a running task
        does not block."""
        thread = getattr(self, "control_thread", None)
        if thread is None or getattr(thread, "io_loop", None) is None:
            return
        thread.io_loop.add_callback(self._rejoin)

    def _rejoin(self) -> None:
        kernel = self.kernel
        if not isinstance(kernel, EngineKernel) or kernel.control_stream is None:
            return
        facts: dict[str, object] = {
            "uuid": self.uuid,
            "id": self.engine_id,
            "pid": os.getpid(),
            "hostname": socketlib.gethostname(),
            "shm": self.shared_area is not None,
            "running": kernel.current_task,
            "engine_set": os.environ.get(ENGINE_SET_VARIABLE, ""),
        }
        content, buffers = rejoin_message(facts, self.journal.replies())
        log.info(
            "asking the controller to take engine %d back (%d recent replies to resend)",
            self.engine_id,
            len(content["replies"]),  # type: ignore[arg-type]
        )
        self.session.send(kernel.control_stream, "registration_request", content, buffers=buffers)

    def register(self) -> int:
        """Send registration_request on the shell socket and wait for our id."""
        wire = Wire(self.session.key, session=self.session.session)
        self.shared_area = SharedArea.join(self._info.get("shm"))
        content = {
            "uuid": self.uuid,
            "pid": os.getpid(),
            "hostname": socketlib.gethostname(),
            "shm": self.shared_area is not None,  # it can map the controller's segments
            # the launcher's engine set, for "RUNNING 12/64 registered" (enginesets.py)
            "engine_set": os.environ.get(ENGINE_SET_VARIABLE, ""),
        }
        rank = mpi_rank() if self.mpi or self.rank_as_id else None
        if rank is not None:
            content["id"] = rank  # given when no other engine has it
        deadline = time.monotonic() + self.registration_timeout
        unreachable = (
            f"cannot reach controller at {self._url('engine')} from host "
            f"{socketlib.gethostname()} (tried for {self.registration_timeout:g} s): the "
            "controller must listen on an address this host can reach (ipar start "
            "--ip ADDRESS, Cluster(controller_ip=...)) and the port must not be blocked"
        )
        # heartbeats must be able to flow before the controller starts counting silence
        if not self.heartbeat_echo.connected.wait(self.registration_timeout):
            raise RegistrationFailed(unreachable + " (the heartbeat connection never came up)")
        _, frames = wire.build("registration_request", content)
        self.shell_socket.send_multipart(frames)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.shell_socket.poll(remaining * 1000):
                raise RegistrationFailed(unreachable)
            msg = wire.decode(self.shell_socket.recv_multipart())
            if msg.msg_type == "registration_reply":
                break
        if msg.content.get("status") != "ok":
            raise RegistrationFailed(f"the controller refused this engine: {msg.content}")
        engine_id = int(msg.content["id"])
        # ipyparallel's words: scripts and tests look for this line in engine logs
        log.info("Completed registration with id %d", engine_id)
        return engine_id

    # -- kernel ----------------------------------------------------------------------------------------
    def init_kernel(self) -> None:
        super().init_kernel()  # type: ignore[no-untyped-call]
        kernel = self.kernel
        if not isinstance(kernel, EngineKernel):
            raise TypeError(
                f"an engine's kernel_class must be an EngineKernel, found {type(kernel).__name__}"
            )
        # Serve the shell socket with our ShellStream instead of ipykernel's plain one: the
        # plain stream is taken off the event loop before anything listens on it.
        plain = kernel.shell_stream
        if plain is None:
            raise RuntimeError("ipykernel made no shell stream for the engine's shell socket")
        plain.io_loop.remove_handler(plain.socket)
        kernel.shell_stream = ShellStream(self.shell_socket, plain.io_loop)
        kernel.engine_id = self.engine_id
        kernel.int_id = self.engine_id  # ipykernel labels execute errors' engine_info with it
        kernel.shared = self.shared_area
        kernel.journal = self.journal
        kernel.counting_session.journal = self.journal
        kernel.counting_session.iopub_streams = (self.iopub_thread, self.iopub_socket)
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "topic"):
                stream.topic = engine_topic(self.engine_id, "stream." + stream.name)
        self.displayhook.topic = engine_topic(self.engine_id, "execute_result")
        self.start_usage_reports(kernel)

    def start_usage_reports(self, kernel: EngineKernel) -> None:
        """Report CPU and memory to the controller from a thread of its own (usage.py)."""
        context = self.context
        if context is None:
            raise RuntimeError("the engine's sockets are not set up yet (init_sockets)")
        self.usage_reporter = UsageReporter(
            context,
            self._url("engine"),
            usage_identity(self.uuid),
            Wire(self.session.key, session=self.session.session),
            self.usage_interval,
            lambda: (kernel.current_task, kernel.current_function),
        )
        self.usage_reporter.start()

    def close(self) -> None:
        """Stop the usage reports first: terminating the zmq context waits for their socket."""
        reporter = getattr(self, "usage_reporter", None)
        if reporter is not None:
            reporter.stop()
        super().close()  # type: ignore[no-untyped-call]

    def init_shell(self) -> None:
        super().init_shell()  # type: ignore[no-untyped-call]
        shell = self.shell
        if shell is not None:
            shell.displayhook.topic = engine_topic(self.engine_id, "execute_result")
            shell.display_pub.topic = engine_topic(self.engine_id, "display_data")
            shell.user_ns["__ipar_engine_id__"] = self.engine_id
            if self.mpi:
                shell.user_ns.update(mpi_namespace())


class IPEngine(EngineApp):
    """The engine as ipyparallel names it, so a profile written for ipyparallel configures it:
    the profile's ``ipengine_config.py`` is read (after ``ipython_config.py``), and
    ``c.IPEngine.*`` applies (``c.EngineApp.*`` too: the settings above).

    Of ipyparallel's own ``IPEngine`` settings, the ones that mean something here are taken:
    ``startup_command`` and ``startup_script`` (run after the IPython startup code:
    ``exec_lines``, ``exec_files``, the profile's ``startup/`` files), ``use_mpi`` (as
    ``mpi``) and ``url_file`` (as ``file``).  Others (``sshserver``, ``location``, ...) are
    named in the engine's log as not recognised.
    """

    startup_command = Unicode(
        "",
        help="Python code every engine runs once it started, before it takes tasks (as "
        "ipyparallel's IPEngine.startup_command); an error in it is logged, the engine runs.",
    ).tag(config=True)
    startup_script = Unicode(
        "",
        help="A Python file every engine runs once it started, before it takes tasks (as "
        "ipyparallel's IPEngine.startup_script); an error in it is logged, the engine runs.",
    ).tag(config=True)
    use_mpi = Bool(
        False, help="ipyparallel's name of the mpi setting: import mpi4py's MPI, rank as id."
    ).tag(config=True)
    url_file = Unicode(
        "", help="ipyparallel's name of the file setting: the controller's engine file."
    ).tag(config=True)

    @default("config_file_name")
    def _default_config_file_name(self) -> str:
        return "ipengine_config.py"

    @observe("use_mpi")
    def _use_mpi_is_mpi(self, change: Any) -> None:
        if change["new"]:
            self.mpi = True

    @observe("url_file")
    def _url_file_is_file(self, change: Any) -> None:
        if change["new"] and not self.file:
            self.file = change["new"]

    def init_code(self) -> None:
        # ipyparallel runs these after the shell's own startup code, in this order
        if self.startup_script:
            self.exec_files = [*self.exec_files, self.startup_script]
        if self.startup_command:
            self.exec_lines = [*self.exec_lines, self.startup_command]
        super().init_code()  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d [engine] %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.__stderr__,
    )
    app = IPEngine.instance()
    try:
        app.initialize(argv)  # type: ignore[no-untyped-call]
    except RegistrationFailed as exc:
        log.error("%s", exc)
        sys.exit(2)
    app.start()  # type: ignore[no-untyped-call]
