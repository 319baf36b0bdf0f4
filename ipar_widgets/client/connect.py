"""Finding the connection file of a running cluster from a profile (and cluster id)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .. import paths
from ..error import ClusterNotFound
from ..processes import pid_alive


def _candidates(profile_path: Path, cluster_id: str | None) -> list[Path]:
    security = profile_path / "security"
    if cluster_id is not None:
        return [paths.client_file(profile_path, cluster_id)]
    default = paths.client_file(profile_path, "")
    if default.exists():
        return [default]
    return sorted(security.glob("ipar-client-*.json")) if security.is_dir() else []


def find_client_file(
    profile: str | None = None,
    cluster_id: str | None = None,
    profile_dir: str | os.PathLike[str] | None = None,
    timeout: float = 0.0,
) -> Path:
    """The client connection file of the cluster, waiting up to ``timeout`` s for it to appear.

    Without a cluster id, the profile's default cluster is used, or its only cluster if it has
    exactly one; several clusters need ``cluster_id``.
    """
    if profile_dir is not None:
        profile_path = Path(profile_dir)
        label = str(profile_path)
    else:
        profile = profile or "default"
        profile_path = paths.profile_dir(profile)
        label = f"profile {profile!r}"
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        found = [p for p in _candidates(profile_path, cluster_id) if p.exists()]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = [p.name[len("ipar-client-") : -len(".json")] for p in found]
            raise ClusterNotFound(
                f"{label} has {len(found)} clusters ({', '.join(ids)}); choose one with cluster_id="
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    where = profile_path / "security"
    hint = f"ipar start --profile {profile}" if profile_dir is None else "ipar start"
    if not profile_path.exists():
        raise ClusterNotFound(
            f"No cluster found: {label} does not exist (looked for {profile_path}); "
            f"start one with: {hint}"
        )
    what = f"cluster {cluster_id!r}" if cluster_id else "cluster"
    raise ClusterNotFound(
        f"No {what} found for {label} (looked in {where}); start one with: {hint}"
    )


def load_connection_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a client connection file; a stale one (controller gone) is an error."""
    path = Path(path)
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ClusterNotFound(f"No cluster connection file at {path}") from None
    except ValueError as exc:
        raise ClusterNotFound(f"{path} is not a cluster connection file: {exc}") from None
    missing = [k for k in ("key", "ports", "location") if k not in info]
    if missing or not all(k in info.get("ports", {}) for k in ("client", "notify")):
        raise ClusterNotFound(
            f"{path} is not an ipar_widgets client connection file: expected keys key, "
            f"location, ports.client, ports.notify; found {sorted(info)}"
        )
    cluster_path = path.with_name(path.name.replace("ipar-client", "ipar-cluster"))
    if cluster_path.exists():
        try:
            cluster = paths.read_json(cluster_path)
        except (OSError, ValueError):
            cluster = {}
        pid = cluster.get("controller_pid")
        elsewhere = paths.REMOTE_CONTROLLER_ENTRY in cluster  # its pid is another host's
        if isinstance(pid, int) and not elsewhere and not pid_alive(pid):
            raise ClusterNotFound(
                f"the cluster in {cluster_path.parent.parent} is not running (its controller, "
                f"pid {pid}, is gone); clean up with: ipar stop --profile {cluster.get('profile', 'default')}"
            )
    return dict(info)
