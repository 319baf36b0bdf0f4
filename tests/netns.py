"""Simulated hosts: network namespaces on one bridge, made and removed by the test.

``hosts(prefix, n)`` makes namespaces ``<prefix>1`` .. ``<prefix>n``, each with ``eth0`` =
10.99.0.i/24 on a bridge that lives in a namespace of its own (``<prefix>sw``), so nothing
is added to the machine's own network and the subnet exists only inside them.  They are
removed at the end, also when the test fails.  Needs root (``ip netns``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SUBNET = "10.99.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=30, capture_output=True)


def require_namespaces() -> None:
    """Fail in CI (and skip elsewhere) where namespaces cannot be made."""
    reason = ""
    if os.geteuid() != 0:
        reason = "network namespaces need root"
    elif shutil.which("ip") is None or shutil.which("nsenter") is None:
        reason = "ip (iproute2) and nsenter (util-linux) are needed: .ci/run installs them"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def address(i: int) -> str:
    return f"{SUBNET}.{i}"


def in_host(prefix: str, i: int) -> list[str]:
    """The command prefix that runs a program on host ``i`` (its network namespace)."""
    return ["nsenter", f"--net=/run/netns/{prefix}{i}", "--"]


@contextmanager
def hosts(prefix: str, n: int) -> Iterator[list[str]]:
    """Hosts ``1..n`` (yields their addresses); every namespace removed at the end."""
    require_namespaces()
    made: list[str] = []
    try:
        _ip("netns", "add", f"{prefix}sw")
        made.append(f"{prefix}sw")
        _ip("-n", f"{prefix}sw", "link", "add", "br0", "type", "bridge")
        _ip("-n", f"{prefix}sw", "link", "set", "br0", "up")
        for i in range(1, n + 1):
            ns = f"{prefix}{i}"
            _ip("netns", "add", ns)
            made.append(ns)
            _ip(
                "-n",
                f"{prefix}sw",
                "link",
                "add",
                f"p{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            _ip("-n", f"{prefix}sw", "link", "set", f"p{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield [address(i) for i in range(1, n + 1)]
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], timeout=30, capture_output=True)
        left = set(os.listdir("/run/netns")) & set(made) if os.path.isdir("/run/netns") else set()
        assert not left, f"namespaces left behind: {sorted(left)}"
