"""A real OpenSSH server for the ssh launcher's tests, owned by the test that starts it.

Generated host and client keys, a config that listens on one address and port only, and
``sshd -D`` in the foreground as a child of the test process, so the fixture stops (and
reaps) exactly the daemon it started.  Nothing in ``~/.ssh`` is read or written: the client
side gets its options (key, known-hosts file) from :meth:`SSHServer.ssh_args`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SSHServer:
    """One running sshd: where it listens and how a client logs in."""

    def __init__(self, directory: Path, address: str, port: int, proc: subprocess.Popen[bytes]):
        self.directory = directory
        self.address = address
        self.port = port
        self.proc = proc
        self.client_key = directory / "client_key"
        self.log = directory / "sshd.log"

    @property
    def host(self) -> str:
        """``host:port`` as SSHEngineSetLauncher.engines takes it."""
        return f"{self.address}:{self.port}"

    def ssh_args(self) -> list[str]:
        return [
            "-T",
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.directory / 'known_hosts'}",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]


def _write_keys(directory: Path) -> None:
    for name in ("host_ed25519", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
            timeout=30,
        )
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    (directory / "authorized_keys").chmod(0o600)


def _config(directory: Path, address: str, port: int) -> Path:
    path = directory / f"sshd_config-{port}"
    path.write_text(
        f"Port {port}\n"
        f"ListenAddress {address}\n"
        f"HostKey {directory / 'host_ed25519'}\n"
        f"PidFile {directory / f'sshd-{port}.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "UsePAM no\n"
        "StrictModes no\n"
    )
    return path


def require_sshd() -> None:
    """Fail (never skip) without OpenSSH: .ci/run installs it."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        pytest.fail("OpenSSH is not installed: .ci/run installs Debian's openssh-server/-client")


def _stop(pid_file: Path) -> None:
    """SIGTERM to the sshd of ``pid_file``, if that pid still runs sshd (pids are reused)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if b"sshd" in cmdline:
        os.kill(pid, signal.SIGTERM)


@contextmanager
def running_sshd(
    directory: Path, address: str = "127.0.0.1", wrapper: Sequence[str] = ()
) -> Iterator[SSHServer]:
    """Start sshd on ``address`` (a free port), yield it once it accepts connections, stop
    it at the end.  ``wrapper`` runs it inside another command (a network namespace)."""
    require_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "client_key").exists():
        _write_keys(directory)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    port = free_port("127.0.0.1") if not wrapper else 2200
    config = _config(directory, address, port)
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True, timeout=30)
    log = directory / f"sshd-{port}.log"
    proc = subprocess.Popen(
        [*wrapper, SSHD, "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL
    )
    server = SSHServer(directory, address, port, proc)
    server.log = log
    try:
        deadline = time.monotonic() + 10
        while b"Server listening" not in (log.read_bytes() if log.exists() else b""):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                pytest.fail(f"sshd did not start (exit code {proc.poll()}):\n{text}")
            time.sleep(0.02)
        yield server
    finally:
        _stop(directory / f"sshd-{port}.pid")
        proc.terminate()  # a wrapper (unshare --fork) ignores it; sshd's own end ends it
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
