"""Engines (and a controller) started over ssh: one ssh session per host, starting that host's
N engines; ``SSHControllerLauncher`` runs the controller in a session of its own.

``SSHEngineSetLauncher.engines = {"node1": 4, "user@node2:2222": 8}`` opens one ssh session
per host (``sshlink.py`` on this side, ``sshhost.py`` on the far side), never one per engine.
The controller's connection info travels inside the session, on the far end's input, so
nothing is copied to the host (no scp, no shared filesystem) and the key never appears on a
command line.  The host needs ipar_widgets installed for ``remote_python``.

The session is kept open for the engines' lifetime, and its end stops them: stopping the
launcher, killing ``ssh`` or killing this side's process all end the far end's input, and it
stops its engines (SIGTERM, then SIGKILL).  Each host's ssh output (with what its engines
log) is the launcher's output, so an engine that cannot reach the controller says so there.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
import threading
import time
from typing import Any, ClassVar

from traitlets import Dict, Float, List, Unicode, default, observe

from .launcher import (
    ControllerLauncher,
    EngineLauncher,
    LauncherError,
    LocalProcessLauncher,
    parse_announcement,
)
from .processhandle import ChildProcess
from .sshlink import FORWARD_VARIABLE

__all__ = [
    "SSHControllerLauncher",
    "SSHEngineSetLauncher",
    "SSHHostLauncher",
    "SSHLauncher",
    "is_loopback",
    "parse_host",
]


def parse_host(spec: str) -> tuple[str, str, int | None]:
    """``[user@]host[:port]`` → (user or '', host, port or None)."""
    user, _, rest = spec.rpartition("@")
    host, sep, port = rest.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return user, host, int(port)
    return user, rest, None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback (then a loopback controller is fine)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SSHLauncher(LocalProcessLauncher):
    """Runs a command on one host through ssh, the session kept open (see sshlink.py)."""

    ssh_cmd = List(Unicode(), ["ssh"], help="The ssh command.").tag(config=True)
    ssh_args = List(
        Unicode(),
        [
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
        ],
        help="Options for ssh, before the host. BatchMode=yes makes a host that wants a "
        "password fail at once instead of waiting for one; ServerAlive* notice a dead network "
        "within 30 s. Add '-i', 'KEY' or '-o', 'UserKnownHostsFile=...' here.",
    ).tag(config=True)
    hostname = Unicode("", help="The host to run on.").tag(config=True)
    user = Unicode("", help="The user to log in as (default: ssh's choice).").tag(config=True)
    port = Unicode("", help="The ssh port (default: ssh's choice, usually 22).").tag(config=True)
    remote_python = Unicode(
        "python3",
        help="The Python on the host that has ipar_widgets installed (a venv's bin/python).",
    ).tag(config=True)
    stop_timeout = Float(
        10.0,
        help="Seconds the session gets to stop its engines (they get 5 s after SIGTERM) "
        "before this side is killed.",
    ).tag(config=True)

    serialize_fields: ClassVar[tuple[str, ...]] = (
        *LocalProcessLauncher.serialize_fields,
        "hostname",
        "user",
        "port",
    )

    def remote_command(self) -> list[str]:
        """What runs on the host."""
        raise NotImplementedError(f"{type(self).__name__} must say what runs on the host")

    @property
    def location(self) -> str:
        """``[user@]host[:port]`` as the user wrote it."""
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.hostname}{':' + self.port if self.port else ''}"

    def find_args(self) -> list[str]:
        if not self.hostname:
            raise LauncherError(f"{type(self).__name__}.hostname is not set: say which host")
        target = [
            *(["-p", self.port] if self.port else []),
            *(["-l", self.user] if self.user else []),
        ]
        ssh = [
            *self.ssh_cmd,
            *self.ssh_args,
            *target,
            self.hostname,
            shlex.join(self.remote_command()),
        ]
        return [sys.executable, "-m", "ipar_widgets.cluster.sshlink", *ssh]

    def start(self) -> None:
        # everything in the environment goes to the far end on the session's input
        names = sorted(self.environment)
        self.environment = {**self.environment, FORWARD_VARIABLE: ",".join(names)}
        super().start()


class SSHHostLauncher(SSHLauncher, EngineLauncher):
    """``n`` engines on one host, in one ssh session."""

    serialize_fields: ClassVar[tuple[str, ...]] = (*SSHLauncher.serialize_fields, "n")

    def remote_command(self) -> list[str]:
        return [
            self.remote_python,
            "-m",
            "ipar_widgets.cluster.sshhost",
            str(self.n),
            *self.engine_args,
        ]


class SSHControllerLauncher(SSHLauncher, ControllerLauncher):
    """The controller on another host, in one ssh session that is its lifeline.

    The far end (``sshhost.py --controller``) runs ``remote_python -m ipar_widgets.controller
    --announce``; the controller's one line of connection info comes back on the session's
    stdout, which this launcher reads from a pipe (never from a file: it carries the key),
    and the Cluster writes the connection files here.  The session's end (stop(), the
    keeper or ssh killed) stops the controller, which stops its engines.
    """

    location = Unicode(
        help="'[user@]host[:port]' in one setting (ipyparallel's name); setting it sets "
        "hostname, user and port. Read back, it is the host as those give it."
    ).tag(config=True)
    remote_profile_dir = Unicode(
        "",
        help="The profile directory on the host, where the controller keeps its log, task "
        "database and the engine file its own engines read. Default: the host's own profile "
        "of the cluster's name ($IPYTHONDIR/profile_<name> there, ~/.ipython by default).",
    ).tag(config=True)
    announce_timeout = Float(
        60.0,
        help="Seconds the controller has to announce itself after the session opened (ssh "
        "login, Python start-up, binding its ports) before the start counts as failed.",
    ).tag(config=True)

    runs_elsewhere: ClassVar[bool] = True
    capture_stdout: ClassVar[bool] = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._announced: dict[str, Any] | None = None

    @default("location")
    def _default_location(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.hostname}{':' + self.port if self.port else ''}"

    @observe("location")
    def _split_location(self, change: Any) -> None:
        user, host, port = parse_host(str(change["new"]))
        if host:
            self.hostname = host
        if user:
            self.user = user
        if port is not None:
            self.port = str(port)

    def controller_profile_dir(self, local: str) -> str | None:
        return self.remote_profile_dir or None

    def remote_command(self) -> list[str]:
        args = list(self.controller_args)
        if "--announce" not in args:
            args.append("--announce")
        return [self.remote_python, "-m", "ipar_widgets.cluster.sshhost", "--controller", *args]

    def needs_routable_address(self) -> bool:
        """A controller on another host cannot be reached here on its loopback; one on this
        machine's loopback (ssh to localhost) can."""
        return not is_loopback(self.hostname)

    def start(self) -> None:
        super().start()
        process = self.process
        assert isinstance(process, ChildProcess) and process.stdout is not None
        threading.Thread(
            target=self._read_stdout,
            args=(process.stdout,),
            name=f"announce-{process.pid}",
            daemon=True,
        ).start()

    def _read_stdout(self, stream: Any) -> None:
        """Take the announcement from the session's stdout; anything else it says goes to
        the output file (after the announcement the controller's stdout is its stderr)."""
        with stream, open(self.output_file, "ab") as log:
            for line in stream:
                if self._announced is None:
                    found = parse_announcement(line.decode(errors="replace"))
                    if found is not None:
                        self._announced = found
                        continue
                log.write(line)
                log.flush()

    def announcement(self) -> dict[str, Any] | None:
        return self._announced

    def status_text(self) -> str:
        if self.state == "running":
            return f"running on {self.location} (ssh session, keeper pid {self.process_pid})"
        return super().status_text()


class SSHEngineSetLauncher(EngineLauncher):
    """Engines on several hosts, one ssh session per host (``engines``)."""

    engines = Dict(
        help="Hosts and how many engines each runs: {'node1': 4, 'user@node2:2222': 8}; a value "
        "may also be [n, [extra engine arguments]].",
    ).tag(config=True)
    ssh_cmd = List(Unicode(), ["ssh"], help="The ssh command.").tag(config=True)
    ssh_args = List(
        Unicode(),
        help="Options for ssh (default: SSHLauncher's: -T, BatchMode=yes, ServerAlive*). "
        "Set to replace them.",
    ).tag(config=True)
    remote_python = Unicode(
        "python3",
        help="The Python on the hosts that has ipar_widgets installed (a venv's bin/python).",
    ).tag(config=True)

    serialize_fields: ClassVar[tuple[str, ...]] = ("state", "stop_data", "n")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: one launcher per host, by the host as written in ``engines``
        self.hosts: dict[str, SSHHostLauncher] = {}

    def _plan(self) -> dict[str, tuple[int, list[str]]]:
        if not self.engines:
            raise LauncherError(
                "SSHEngineSetLauncher.engines is empty: say which hosts run how many engines, "
                "e.g. c.SSHEngineSetLauncher.engines = {'node1': 4, 'user@node2:2222': 8}"
            )
        plan = {}
        for spec, value in self.engines.items():
            n, args = (value, []) if isinstance(value, int) else value
            if not isinstance(n, int) or n < 1:
                raise LauncherError(f"engines[{spec!r}] must be a count >= 1, found {value!r}")
            plan[str(spec)] = (n, [str(a) for a in args])
        return plan

    def _host_launcher(self, spec: str, n: int, args: list[str]) -> SSHHostLauncher:
        user, host, port = parse_host(spec)
        traits: dict[str, Any] = {"ssh_cmd": self.ssh_cmd, "remote_python": self.remote_python}
        if self.ssh_args:
            traits["ssh_args"] = self.ssh_args
        return SSHHostLauncher(
            parent=self.parent,
            hostname=host,
            user=user,
            port=str(port or ""),
            n=n,
            engine_args=[*self.engine_args, *args],
            work_dir=self.work_dir,
            profile_dir=self.profile_dir,
            cluster_id=self.cluster_id,
            identifier=f"{self.identifier}-{host}" if self.identifier else "",
            environment=dict(self.environment),
            **traits,
        )

    def find_args(self) -> list[str]:
        return [
            arg
            for spec, (n, args) in self._plan().items()
            for arg in self._host_launcher(spec, n, args).args
        ]

    def preview(self) -> str:
        """One line per host: the ssh session that would start its engines."""
        return "\n".join(
            shlex.join(self._host_launcher(spec, n, args).args)
            for spec, (n, args) in self._plan().items()
        )

    def needs_routable_address(self) -> bool:
        """Engines on other hosts cannot reach a controller on loopback."""
        return any(not is_loopback(parse_host(spec)[1]) for spec in self.engines)

    def start(self) -> None:
        plan = self._plan()
        total = sum(n for n, _ in plan.values())
        if self.n != total:
            self.log.info(
                "SSHEngineSetLauncher starts the %d engines its `engines` names (%s), not %d",
                total,
                ", ".join(f"{spec}: {n}" for spec, (n, _) in plan.items()),
                self.n,
            )
        self.n = total
        self.hosts = {spec: self._host_launcher(spec, n, args) for spec, (n, args) in plan.items()}
        for launcher in self.hosts.values():
            launcher.on_stop(self._host_stopped)
            launcher.start()
        self.notify_start(None)

    def _host_stopped(self, data: dict[str, Any]) -> None:
        if all(launcher.state == "after" for launcher in self.hosts.values()):
            codes = [(la.stop_data or {}).get("exit_code") for la in self.hosts.values()]
            self.notify_stop({"exit_code": next((c for c in codes if c), 0), "pid": None})

    def ended_early(self) -> bool:
        return any(launcher.state == "after" for launcher in self.hosts.values())

    def stop(self) -> None:
        """Stop every host's session (in parallel: each waits for its engines to go)."""
        for launcher in self.hosts.values():
            if launcher.running:
                launcher.signal(15)  # SIGTERM: the far end stops its engines
        deadline = time.monotonic() + max(
            (la.stop_timeout for la in self.hosts.values()), default=0
        )
        for launcher in self.hosts.values():
            if launcher.running:
                launcher.stop_timeout = max(0.1, deadline - time.monotonic())
                launcher.stop()

    def signal(self, sig: int) -> None:
        for launcher in self.hosts.values():
            if launcher.running:
                launcher.signal(sig)

    def get_output(self, remove: bool = False) -> str:
        return "".join(
            f"--- {spec} ---\n{launcher.get_output(remove)}"
            for spec, launcher in self.hosts.items()
        )

    def failure(self) -> str:
        lines = []
        for spec, launcher in self.hosts.items():
            if launcher.state == "after":
                code = (launcher.stop_data or {}).get("exit_code")
                lines.append(f"{spec}: ssh session ended (exit code {code}):\n{launcher.failure()}")
        return "\n".join(lines) or super().failure()

    def status_text(self) -> str:
        running = sum(la.running for la in self.hosts.values())
        return f"{running}/{len(self.hosts)} ssh sessions open"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "hosts": {s: la.to_dict() for s, la in self.hosts.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> SSHEngineSetLauncher:
        launcher = cls(**kwargs)
        for name in cls.serialize_fields:
            if name in d:
                setattr(launcher, name, d[name])
        for spec, entry in d.get("hosts", {}).items():
            host = SSHHostLauncher.from_dict(entry)
            assert isinstance(host, SSHHostLauncher)
            launcher.hosts[spec] = host
        return launcher
