"""Finding clusters in IPython profiles, and reading their live state."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..processes import pid_alive
from . import remotecontroller
from .control import request
from .enginesets import engine_sets

RUNNING = "running"
UNRESPONSIVE = (
    "unresponsive"  # the controller process (elsewhere: its launcher) lives but does not answer
)
STALE = "stale"  # files of a cluster whose controller is gone


@dataclass
class ClusterInfo:
    """A cluster as found on disk, with its state as the controller reports it."""

    profile: str
    cluster_id: str
    path: Path
    data: dict[str, Any]
    state: str = STALE
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def engines_registered(self) -> int:
        return int(self.status.get("engines_registered", 0))

    @property
    def engines_requested(self) -> int:
        launched = sum(int(e.get("n", 0)) for e in engine_sets(self.data).values())
        return int(self.status.get("engines_requested", self.data.get("n", 0))) + launched

    @property
    def address(self) -> str:
        ports = self.data.get("ports", {})
        return f"tcp://{self.data.get('location', '?')}:{ports.get('client', '?')}"

    @property
    def uptime(self) -> float:
        return max(0.0, time.time() - float(self.data.get("started", time.time())))

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "cluster_id": self.cluster_id,
            "state": self.state,
            "engines_registered": self.engines_registered,
            "engines_requested": self.engines_requested,
            "address": self.address,
            "controller_pid": self.data.get("controller_pid"),
            "controller_host": self.data.get("controller_host"),
            "uptime": round(self.uptime, 1),
            "started": self.data.get("started"),
            "status": self.status,
        }


def read_cluster(
    profile: str, cluster_id: str, path: Path, query: bool = True, timeout: float = 1.5
) -> ClusterInfo:
    try:
        data = paths.read_json(path)
    except (OSError, ValueError):
        return ClusterInfo(profile, cluster_id, path, {}, STALE)
    info = ClusterInfo(data.get("profile", profile), cluster_id, path, data)
    if remotecontroller.is_remote(data):
        return _read_remote(info, query, timeout)
    pid = data.get("controller_pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        info.state = STALE
        return info
    info.state = UNRESPONSIVE
    if query:
        try:
            info.status = dict(request(data, "status_request", timeout=timeout).content)
            info.state = RUNNING
        except Exception:
            pass
    return info


def _read_remote(info: ClusterInfo, query: bool, timeout: float) -> ClusterInfo:
    """A controller elsewhere: running if it answers; else its launcher says whether it
    lives (the ssh session open, the job queued or running) or the files are stale."""
    if query:
        try:
            info.status = dict(request(info.data, "status_request", timeout=timeout).content)
            info.state = RUNNING
            return info
        except Exception:
            pass
    alive = remotecontroller.controller_alive(info.data)
    info.state = UNRESPONSIVE if alive else STALE
    return info


def find_clusters(profiles: list[str] | None = None, query: bool = True) -> list[ClusterInfo]:
    """Every cluster in the given profiles (default: all), sorted by profile and id."""
    found: list[tuple[str, str, Path]] = []
    for profile in profiles if profiles is not None else paths.list_profiles():
        try:
            profile_path = paths.profile_dir(profile)
        except ValueError:
            continue
        for cluster_id, path in paths.cluster_files(profile_path):
            found.append((profile, cluster_id, path))
    if not found:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
        return list(pool.map(lambda f: read_cluster(f[0], f[1], f[2], query=query), found))


def find_cluster(profile: str, cluster_id: str = "", query: bool = True) -> ClusterInfo | None:
    path = paths.cluster_file(paths.profile_dir(profile), cluster_id)
    if not path.exists():
        return None
    return read_cluster(profile, cluster_id, path, query=query)
