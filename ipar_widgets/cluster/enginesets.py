"""Engine sets started by launchers other than the controller (``mpiexec``, later ssh and
batch jobs): starting one, recording it in the profile, waiting for its engines, stopping it.

The controller starts and watches local engines itself.  Any other launcher runs in the
process that asked for the engines (a ``Cluster``, or ``ipar start``, which exits), so each
set is recorded in ``ipar-enginesets[-<cluster id>].json`` beside the cluster file, with the
launcher's :meth:`~.launcher.BaseLauncher.to_dict`: ``ipar stop``, ``ipar list`` and
``Cluster.stop_cluster_sync`` of another process find it there and stop it through its
launcher (``mpiexec`` gets SIGTERM), after the controller has stopped its engines.

Engines learn how to reach the controller from the environment
(:data:`~ipar_widgets.paths.CONNECTION_INFO_VARIABLE`), never from a copied file.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from traitlets.config import Configurable

from .. import paths
from ..error import EnginesNotReady, EngineStartFailed
from .launcher import BaseLauncher, ControllerLauncher, LauncherError, find_launcher_class

__all__ = [
    "attach",
    "check_reachable",
    "describe",
    "engine_sets",
    "registered_by_set",
    "launcher_path",
    "prepare_engine_set",
    "start_engine_set",
    "stop_engine_sets",
    "wait_for_engine_sets",
]


def launcher_path(cls: type[BaseLauncher]) -> str:
    """The dotted path that names a launcher class in the record (find_launcher_class)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _new_set_id() -> str:
    return f"{int(time.time())}-{''.join(random.choices(string.ascii_lowercase, k=4))}"


def _file(cluster: dict[str, Any]) -> Path:
    return paths.engine_sets_file(Path(cluster["profile_dir"]), cluster.get("cluster_id", ""))


def engine_sets(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The recorded engine sets of a cluster, by set id (``{}`` when none)."""
    try:
        data = paths.read_json(_file(cluster))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def _save(cluster: dict[str, Any], sets: dict[str, dict[str, Any]]) -> None:
    if sets:
        paths.write_private_json(_file(cluster), sets)
    else:
        paths.remove_quietly(_file(cluster))


def record(cluster: dict[str, Any], set_id: str, launcher: BaseLauncher) -> None:
    """Write (or update) a set's entry: its launcher's class and state."""
    sets = engine_sets(cluster)
    entry = sets.get(set_id, {"started": time.time()})
    entry.update(launcher.to_dict(), launcher=launcher_path(type(launcher)))
    sets[set_id] = entry
    _save(cluster, sets)


def _is_loopback(ip: str) -> bool:
    import ipaddress

    if ip in ("localhost", ""):
        return ip == "localhost"
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def check_reachable(launcher: BaseLauncher, ip: str) -> None:
    """Refuse a launcher that starts engines, or the controller, on other hosts when the
    controller listens on loopback (``ip``): engines could never reach it, nor clients of
    this host a controller elsewhere; they would only time out."""
    if not (launcher.needs_routable_address() and _is_loopback(ip)):
        return
    name = type(launcher).__name__
    if isinstance(launcher, ControllerLauncher):
        problem = (
            f"{name} starts the controller on another host, where clients of this host "
            f"cannot reach it on the loopback address {ip}: give it an address"
        )
    else:
        problem = (
            f"{name} starts engines on other hosts, which cannot reach a controller "
            f"listening on the loopback address {ip}: give the controller an address"
        )
    raise LauncherError(
        f"{problem} they can reach (ipar start --ip '*' for every interface, or --ip "
        "ADDRESS; in Python Cluster(controller_ip='*'))"
    )


#: what a preview (``ipar start --dry-run``) shows for the connection info, unknown until the
#: controller runs
CONNECTION_PLACEHOLDER = "<the controller's engine connection info, set when it runs>"


def prepare_engine_set(
    cluster: dict[str, Any],
    launcher_class: type[BaseLauncher],
    n: int,
    *,
    parent: Configurable | None = None,
    set_id: str | None = None,
    connection: str | None = None,
    **launcher_args: Any,
) -> tuple[str, BaseLauncher]:
    """The launcher of a new engine set, configured but not started: ``cluster`` is the
    cluster file's data (a preview needs only ``profile_dir``, ``cluster_id`` and ``ip``);
    ``connection`` the engine connection info (default: the engine file's contents)."""
    profile_path = Path(cluster["profile_dir"])
    cluster_id = cluster.get("cluster_id", "")
    set_id = set_id or _new_set_id()  # Cluster.start_engines(n, engine_set_id) names it
    suffix = f"-{cluster_id}" if cluster_id else ""
    if connection is None:
        connection = paths.engine_file(profile_path, cluster_id).read_text()
    launcher = launcher_class(
        parent=parent,
        n=n,
        profile_dir=str(profile_path),
        cluster_id=cluster_id,
        identifier=f"ipar-engineset{suffix}-{set_id}",
        work_dir=str(cluster.get("log_dir") or profile_path / "log"),
        **launcher_args,
    )
    check_reachable(launcher, str(cluster.get("ip", "")))
    launcher.environment = {
        **launcher.environment,
        paths.CONNECTION_INFO_VARIABLE: connection,
        "IPP_CLUSTER_ID": cluster_id,
        "IPP_PROFILE_DIR": str(profile_path),
        paths.ENGINE_SET_VARIABLE: set_id,
    }
    return set_id, launcher


def start_engine_set(
    cluster: dict[str, Any],
    launcher_class: type[BaseLauncher],
    n: int,
    *,
    parent: Configurable | None = None,
    set_id: str | None = None,
    **launcher_args: Any,
) -> tuple[str, BaseLauncher]:
    """Start ``n`` engines with ``launcher_class`` for the running cluster ``cluster`` (its
    cluster file's data); ``launcher_args`` set the launcher's traits (``mpi_args=[...]``),
    as ``start_engines(**kwargs)`` does in ipyparallel.  Returns the set id and launcher."""
    set_id, launcher = prepare_engine_set(
        cluster, launcher_class, n, parent=parent, set_id=set_id, **launcher_args
    )
    launcher.start()
    record(cluster, set_id, launcher)
    return set_id, launcher


def wait_for_engine_sets(
    registered: Callable[[], int],
    wanted: int,
    launchers: list[BaseLauncher],
    timeout: float,
    report: Callable[[str], None] | None = None,
    on_look: Callable[[int], None] | None = None,
) -> int:
    """Wait until ``registered()`` reaches ``wanted``; return the count that did.  EngineStartFailed at once when a
    launcher's process (or batch job) ends first, with what it printed; EnginesNotReady after
    ``timeout`` seconds, not counting the time a batch job waits in its queue (``pending``).
    ``report`` gets a line whenever the launchers' status changes ("PENDING (Resources)");
    ``on_look`` the count at every look while engines are missing (a display's redraw)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        count = registered()
        if count >= wanted:
            return count
        if on_look is not None:
            on_look(count)
        now = time.monotonic()
        for launcher in launchers:
            if launcher.ended_early():
                stop = launcher.stop_data or {}
                raise EngineStartFailed(
                    stop.get("exit_code"),
                    str(getattr(launcher, "output_file", "")),
                    launcher.failure(),
                    what=f"{type(launcher).__name__} ({' '.join(launcher.args[:4])} ...)",
                )
        status = "; ".join(launcher.status_text() for launcher in launchers)
        line = f"{count}/{wanted} engines registered; {status}"
        if report is not None and line != last:
            report(line)
        last = line
        if any(launcher.pending() for launcher in launchers):
            deadline = now + timeout  # queued, not late: the clock starts when it runs
        if now > deadline:
            tails = [f"\n{type(la).__name__} output so far:\n{la.get_output()}" for la in launchers]
            raise EnginesNotReady(count, wanted, timeout, f" ({status})" + "".join(tails))
        time.sleep(0.1)


def attach(entry: dict[str, Any]) -> BaseLauncher:
    """A launcher watching the set a record describes (ValueError for an unknown class)."""
    cls = find_launcher_class(str(entry.get("launcher", "")), "EngineSet")
    return cls.from_dict(entry)


def describe(entry: dict[str, Any], registered: int | None = None) -> str:
    """The recorded set's status now ("running (pid 12)", "RUNNING, 12/64 registered",
    "PENDING (Resources)"), asked of its launcher (a batch launcher asks the scheduler);
    ``registered``: how many of its engines the controller has."""
    try:
        text = attach(entry).status_text()
    except (LauncherError, ValueError, OSError) as exc:
        text = f"status unknown ({exc})"
    if registered is not None:
        text += f", {registered}/{entry.get('n', '?')} registered"
    return text


def registered_by_set(status: dict[str, Any]) -> dict[str, int]:
    """How many registered engines each engine set has, from a controller's status."""
    counts: dict[str, int] = {}
    for engine in status.get("engines", []):
        name = str(engine.get("engine_set") or "")
        if name:
            counts[name] = counts.get(name, 0) + 1
    return counts


def stop_engine_sets(
    cluster: dict[str, Any],
    notes: list[str],
    set_ids: list[str] | None = None,
    live: Mapping[str, BaseLauncher] | None = None,
) -> list[str]:
    """Stop the recorded engine sets (all, or ``set_ids``) through their launchers and forget
    them; returns the ids stopped.  ``live``: launchers this process started, by set id, used
    instead of a copy attached to the record, so the launcher that watches a set is the one
    that knows it was stopped on purpose (a batch job deleted by ``stop()`` is CANCELLED, not
    FAILED)."""
    live = live or {}
    sets = engine_sets(cluster)
    stopped = []
    for set_id, entry in list(sets.items()):
        if set_ids is not None and set_id not in set_ids:
            continue
        try:
            (live.get(set_id) or attach(entry)).stop()
        except (LauncherError, ValueError, OSError) as exc:
            notes.append(f"engine set {set_id} could not be stopped through its launcher: {exc}")
        del sets[set_id]
        stopped.append(set_id)
    _save(cluster, sets)
    return stopped
