"""What the panel can do to clusters, as blocking functions over ``cluster.control``.

No Jupyter here: the HTTP layer (``handlers``) runs these in worker threads and turns
``OperationError`` into a 4xx/5xx answer.  Every cluster they start is an ordinary cluster
(``ipar list`` shows it, ``Client(profile=...)`` connects to it), because they go through
the same ``control`` functions as the ``ipar`` command.

Errors::

    OperationError            an operation was refused or failed; .status is the HTTP code
    ├── BadInput       (400)  a malformed profile name, cluster id, engine count or body
    ├── NotFound       (404)  no such cluster or engine
    ├── Conflict       (409)  the cluster is not in a state that allows the operation
    └── Failed         (500)  the operation was attempted and did not succeed
        └── NoAnswer   (504)  the controller did not answer in time
"""

from __future__ import annotations

import subprocess
from typing import Any

from .. import paths
from ..cluster import control, enginesets
from ..cluster.discovery import RUNNING, STALE, ClusterInfo, find_cluster, find_clusters
from ..enginedeath import EngineDeath
from ..error import ClusterError, EngineStartFailed
from ..error import NoAnswer as ControllerSilent

#: Most engines one request may start: a typo in the panel must not fork hundreds of kernels.
MAX_ENGINES_PER_REQUEST = 256
#: Seconds a start or "add engines" waits for the new engines to register.
ENGINE_TIMEOUT = 60.0


class OperationError(Exception):
    """An operation on a cluster was refused or failed; the message is for the user."""

    status = 500


class BadInput(OperationError):
    status = 400


class NotFound(OperationError):
    status = 404


class Conflict(OperationError):
    status = 409


class Failed(OperationError):
    status = 500


class NoAnswer(Failed):
    status = 504


# -- input ---------------------------------------------------------------------------------------
def check_profile(profile: Any) -> str:
    if not isinstance(profile, str):
        raise BadInput(f"'profile' must be a string, found {profile!r}")
    try:
        return paths.check_profile_name(profile)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def check_cluster_id(cluster_id: Any) -> str:
    if cluster_id is None:
        return ""
    if not isinstance(cluster_id, str):
        raise BadInput(f"'cluster_id' must be a string, found {cluster_id!r}")
    try:
        return paths.check_cluster_id(cluster_id)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def check_engine_count(n: Any, minimum: int) -> int:
    """A whole number of engines from ``minimum`` to MAX_ENGINES_PER_REQUEST."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise BadInput(f"'n' must be a whole number of engines, found {n!r}")
    if not minimum <= n <= MAX_ENGINES_PER_REQUEST:
        raise BadInput(
            f"'n' must be a number of engines from {minimum} to {MAX_ENGINES_PER_REQUEST}, "
            f"found {n}"
        )
    return n


def check_engine_id(engine_id: Any) -> int:
    try:
        value = int(engine_id)
    except (TypeError, ValueError):
        raise BadInput(f"an engine id is a whole number, found {engine_id!r}") from None
    if value < 0:
        raise BadInput(f"an engine id is a whole number >= 0, found {value}")
    return value


def label(profile: str, cluster_id: str) -> str:
    """How messages name a cluster: ``profile 'x'`` or ``cluster 'c' of profile 'x'``."""
    return (
        f"cluster {cluster_id!r} of profile {profile!r}" if cluster_id else f"profile {profile!r}"
    )


def _ipar_args(profile: str, cluster_id: str) -> str:
    return f"--profile {profile}" + (f" --cluster-id {cluster_id}" if cluster_id else "")


# -- JSON ----------------------------------------------------------------------------------------
def engine_json(engine: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": engine.get("id"),
        "pid": engine.get("pid"),
        "state": engine.get("state", "idle"),
        "task": engine.get("running"),
        "busy_for": engine.get("busy_for"),
        "queue": engine.get("queue", 0),
        "completed": engine.get("completed", 0),
        "failed": engine.get("failed", 0),
        # its latest usage report (None: none yet, or reports are off)
        "cpu": engine.get("cpu"),
        "rss": engine.get("rss"),
        "peak_rss": engine.get("peak_rss"),
        "gpu_memory": engine.get("gpu_memory"),
    }


#: the most recent engine deaths the panel lists
DEATHS_SHOWN = 10


def deaths_json(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The engines that died lately, newest first, in the words the widget uses."""
    out = []
    for entry in reversed(status.get("unregistered") or []):
        record = entry.get("death")
        if not isinstance(record, dict):
            continue  # stopped on purpose
        death = EngineDeath.from_json(record)
        out.append(
            {
                "engine_id": death.engine_id,
                "at": death.at,
                "cause": death.cause,
                "summary": death.summary(),
                "report": death.describe(),
                "oom": death.oom,
                "replaced_by": death.replaced_by,
            }
        )
        if len(out) == DEATHS_SHOWN:
            break
    return out


def activity_json(status: dict[str, Any]) -> dict[str, Any]:
    """Live activity from a controller's status: task counts and each engine's state."""
    return {
        "tasks": dict(status.get("tasks", {})),
        "engines": [engine_json(e) for e in status.get("engines", [])],
        "costs": dict(status.get("costs") or {}),  # the engines' usage summed
        "deaths": deaths_json(status),
        "records": status.get("records", 0),
        "stopping": bool(status.get("stopping", False)),
    }


def cluster_json(info: ClusterInfo) -> dict[str, Any]:
    """What the panel shows of one cluster (activity only when the controller answered)."""
    status = info.status
    failures = status.get("launch_failures") or []
    running = info.state == RUNNING
    return {
        "profile": info.profile,
        "cluster_id": info.cluster_id,
        "state": info.state,
        "engines_registered": info.engines_registered,
        "engines_requested": info.engines_requested,
        "engines_starting": int(status.get("engines_starting", 0)),
        "address": info.address,
        "controller_pid": info.data.get("controller_pid"),
        "started": info.data.get("started"),
        "uptime": round(info.uptime, 1) if running else None,
        "activity": activity_json(status) if running else None,
        "last_launch_failure": failures[-1] if failures else None,
        "engine_sets": engine_sets_json(info),
    }


def engine_sets_json(info: ClusterInfo) -> list[dict[str, Any]]:
    """The cluster's engine sets that launchers started (mpiexec, ssh, batch jobs), each with
    its launcher's status now ("PENDING (Resources)", "RUNNING, 12/64 registered")."""
    counts = enginesets.registered_by_set(info.status) if info.state == RUNNING else {}
    return [
        {
            "id": set_id,
            "launcher": str(entry.get("launcher", "")).rsplit(".", 1)[-1],
            "n": entry.get("n"),
            "registered": counts.get(set_id, 0),
            "status": enginesets.describe(entry),
        }
        for set_id, entry in enginesets.engine_sets(info.data).items()
    ]


# -- operations ----------------------------------------------------------------------------------
def list_clusters() -> dict[str, Any]:
    return {
        "clusters": [cluster_json(c) for c in find_clusters()],
        "profiles": paths.list_profiles(),
    }


def existing_cluster(profile: str, cluster_id: str) -> ClusterInfo:
    info = find_cluster(profile, cluster_id)
    if info is None:
        raise NotFound(
            f"no cluster found for {label(profile, cluster_id)} (looked in "
            f"{paths.profile_dir(profile) / 'security'}); start one first"
        )
    return info


def running_cluster(profile: str, cluster_id: str) -> ClusterInfo:
    info = existing_cluster(profile, cluster_id)
    if info.state != RUNNING:
        pid = info.data.get("controller_pid")
        why = (
            "its controller is no longer running"
            if info.state == STALE
            else "its controller does not answer"
        )
        raise Conflict(
            f"the cluster of {label(profile, cluster_id)} is {info.state}: {why} (pid {pid}); "
            "stop it to clean up, then start a new one"
        )
    return info


def start_cluster(
    profile: str, cluster_id: str, n: int
) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    """Start a controller and ``n`` engines; return once they registered.

    Returns the cluster's JSON and the controller process (its parent must reap it when it
    exits).  A failed start leaves nothing running.
    """
    existing = find_cluster(profile, cluster_id)
    if existing is not None:
        if existing.state != STALE:
            raise Conflict(
                f"a cluster is already {existing.state} in {label(profile, cluster_id)} "
                f"(controller pid {existing.data.get('controller_pid')}, "
                f"{existing.engines_registered} engines); stop it first"
            )
        control.stop_cluster(existing.data)  # files left by a cluster that crashed
    try:
        _, proc = control.start_cluster(profile, cluster_id, n, engine_timeout=ENGINE_TIMEOUT)
    except (ClusterError, EngineStartFailed, OSError) as exc:
        raise Failed(f"the cluster of {label(profile, cluster_id)} did not start: {exc}") from None
    info = find_cluster(profile, cluster_id)
    if info is None:
        raise Failed(f"the cluster of {label(profile, cluster_id)} stopped right after it started")
    return cluster_json(info), proc


def stop_cluster(profile: str, cluster_id: str) -> dict[str, Any]:
    """Stop every process of the cluster and remove its files."""
    info = existing_cluster(profile, cluster_id)
    notes = control.stop_cluster(info.data)
    if info.state == STALE:
        notes.insert(0, "the cluster was no longer running; its files were removed")
    return {"profile": profile, "cluster_id": cluster_id, "stopped": True, "notes": notes}


def add_engines(profile: str, cluster_id: str, n: int) -> dict[str, Any]:
    """Start ``n`` more engines and wait until they registered."""
    info = running_cluster(profile, cluster_id)
    before = info.engines_registered
    try:
        reply = control.request(info.data, "spawn_request", {"n": n}).content
        control.wait_for_engines(info.data, before + n, ENGINE_TIMEOUT)
    except ControllerSilent as exc:
        raise NoAnswer(f"could not add engines to {label(profile, cluster_id)}: {exc}") from None
    except (ClusterError, EngineStartFailed) as exc:
        raise Failed(
            f"could not add {n} engine(s) to {label(profile, cluster_id)}: {exc}"
        ) from None
    return {"launched": list(reply.get("launched", [])), "cluster": _current(profile, cluster_id)}


def stop_engine(profile: str, cluster_id: str, engine_id: int) -> dict[str, Any]:
    """Stop one engine; the controller and the other engines go on."""
    info = running_cluster(profile, cluster_id)
    known = sorted(int(e["id"]) for e in info.status.get("engines", []))
    if engine_id not in known:
        raise NotFound(
            f"no engine {engine_id} in {label(profile, cluster_id)}; its engines are "
            f"{', '.join(map(str, known)) or 'none'}"
        )
    try:
        control.request(info.data, "shutdown_request", {"targets": [engine_id]}, timeout=30)
    except ControllerSilent as exc:
        raise NoAnswer(f"could not stop engine {engine_id}: {exc}") from None
    except ClusterError as exc:
        raise Failed(f"could not stop engine {engine_id}: {exc}") from None
    return {"stopped": [engine_id], "cluster": _current(profile, cluster_id)}


def cluster_state(profile: str, cluster_id: str) -> dict[str, Any]:
    return cluster_json(existing_cluster(profile, cluster_id))


def cluster_activity(profile: str, cluster_id: str) -> dict[str, Any]:
    info = running_cluster(profile, cluster_id)
    return {"profile": profile, "cluster_id": cluster_id, **activity_json(info.status)}


def _current(profile: str, cluster_id: str) -> dict[str, Any] | None:
    info = find_cluster(profile, cluster_id)
    return cluster_json(info) if info is not None else None
