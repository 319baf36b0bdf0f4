"""Where a cluster's files live: profiles, connection files, the cluster file and logs.

Profiles are IPython's: ``$IPYTHONDIR/profile_<name>`` (``~/.ipython`` by default), so
``Client(profile="x")``, ``ipar start --profile x`` and ``Cluster(profile="x")`` agree.  In a
profile, a cluster with id ``cid`` owns::

    security/ipar-client[-cid].json   what a client needs to connect (mode 0600)
    security/ipar-engine[-cid].json   what an engine needs to connect (mode 0600)
    security/ipar-cluster[-cid].json  the cluster's processes and state (mode 0600)
    log/ipar-controller[-cid].log, log/ipar-engine[-cid]-<n>.log
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CLUSTER_FILE = re.compile(r"^ipar-cluster(?:-(?P<cid>[A-Za-z0-9_.-]+))?\.json$")


def ipython_dir() -> Path:
    """IPython's directory: ``$IPYTHONDIR`` if set, else ``~/.ipython``."""
    env = os.environ.get("IPYTHONDIR")
    return Path(env).expanduser() if env else Path.home() / ".ipython"


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name or ""):
        raise ValueError(
            f"invalid profile name {name!r}: expected letters, digits, '_', '.' or '-' "
            "(at most 64 characters, not starting with a punctuation mark)"
        )
    return name


def check_cluster_id(cluster_id: str) -> str:
    if cluster_id and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", cluster_id):
        raise ValueError(
            f"invalid cluster id {cluster_id!r}: expected letters, digits, '_', '.' or '-'"
        )
    return cluster_id


def profile_dir(profile: str = "default", *, create: bool = False) -> Path:
    path = ipython_dir() / f"profile_{check_profile_name(profile)}"
    if create:
        for sub in ("security", "log"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(path / "security", 0o700)
    return path


def _suffix(cluster_id: str) -> str:
    return f"-{cluster_id}" if cluster_id else ""


def client_file(profile_path: Path, cluster_id: str = "") -> Path:
    return profile_path / "security" / f"ipar-client{_suffix(cluster_id)}.json"


#: the environment variable that carries the engine file's contents to engines started where
#: the file cannot be read (another host, a batch job): ipyparallel's name
CONNECTION_INFO_VARIABLE = "IPP_CONNECTION_INFO"
#: the engine set (enginesets.py) an engine belongs to, told to the controller at registration
ENGINE_SET_VARIABLE = "IPAR_ENGINE_SET"
#: how a controller started elsewhere (``--announce``: over ssh, as a batch job) begins the one
#: stdout line that carries its connection info, a JSON object, to whoever launched it
ANNOUNCE_PREFIX = "ipar-controller-announce "
#: the cluster file's entry naming the launcher of a controller that runs elsewhere: its pid
#: is another host's, so nothing on this one judges the controller by it
REMOTE_CONTROLLER_ENTRY = "controller_launcher"


def engine_file(profile_path: Path, cluster_id: str = "") -> Path:
    return profile_path / "security" / f"ipar-engine{_suffix(cluster_id)}.json"


def cluster_file(profile_path: Path, cluster_id: str = "") -> Path:
    return profile_path / "security" / f"ipar-cluster{_suffix(cluster_id)}.json"


def engine_sets_file(profile_path: Path, cluster_id: str = "") -> Path:
    """The engine sets started by launchers other than the controller (mpiexec, ssh, jobs)."""
    return profile_path / "security" / f"ipar-enginesets{_suffix(cluster_id)}.json"


def log_file(profile_path: Path, role: str, cluster_id: str = "") -> Path:
    return profile_path / "log" / f"ipar-{role}{_suffix(cluster_id)}.log"


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def list_profiles() -> list[str]:
    """Every profile in IPython's directory, sorted by name."""
    base = ipython_dir()
    if not base.is_dir():
        return []
    return sorted(
        p.name[len("profile_") :]
        for p in base.iterdir()
        if p.is_dir() and p.name.startswith("profile_")
    )


def cluster_files(profile_path: Path) -> list[tuple[str, Path]]:
    """``(cluster_id, path)`` for every cluster file in a profile."""
    security = profile_path / "security"
    if not security.is_dir():
        return []
    found = []
    for p in sorted(security.iterdir()):
        m = CLUSTER_FILE.match(p.name)
        if m:
            found.append((m.group("cid") or "", p))
    return found
