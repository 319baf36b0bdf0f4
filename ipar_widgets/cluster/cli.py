"""The ``ipar`` command: start, list, grow and stop clusters; ``ipar demo`` tours the API.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from traitlets.config import Config, Configurable

from .. import paths
from .._version import __version__
from ..client import frontend
from ..error import ClusterError, EngineStartFailed
from ..progress.enginewait import EngineWaitTracker
from ..progress.terminal import format_seconds
from . import control, enginesets, remotecontroller
from .discovery import RUNNING, STALE, ClusterInfo, find_cluster, find_clusters
from .launcher import (
    ControllerLauncher,
    LauncherError,
    LocalControllerLauncher,
    LocalEngineSetLauncher,
    find_launcher_class,
    ipengine_cmd_argv,
)
from .profileconfig import load_profile_config


class CommandError(Exception):
    """A failure to report to the user (exit code 1)."""


def _profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", default="default", help="IPython profile of the cluster (default: %(default)s)"
    )
    p.add_argument(
        "--cluster-id", default="", help="id of the cluster within the profile (default: none)"
    )


def _existing_cluster(args: argparse.Namespace) -> ClusterInfo:
    try:
        profile_path = paths.profile_dir(args.profile)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not profile_path.is_dir():
        raise CommandError(
            f"profile {args.profile!r} does not exist (looked for {profile_path}); "
            f"start a cluster with: ipar start --profile {args.profile}"
        )
    info = find_cluster(args.profile, args.cluster_id)
    what = f"cluster {args.cluster_id!r}" if args.cluster_id else "cluster"
    if info is None:
        raise CommandError(
            f"no {what} in profile {args.profile!r} (looked in {profile_path / 'security'}); "
            f"start one with: ipar start --profile {args.profile}"
        )
    return info


def _running_cluster(args: argparse.Namespace) -> ClusterInfo:
    info = _existing_cluster(args)
    if info.state != RUNNING:
        raise CommandError(
            f"the cluster in profile {args.profile!r} is {info.state} (controller pid "
            f"{remotecontroller.where(info.data)}); clean up with: ipar stop --profile "
            f"{args.profile}"
        )
    return info


# -- ipar start ----------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    if args.n is not None and args.n < 0:
        raise CommandError(f"-n must be a number of engines >= 0, found {args.n}")
    try:
        paths.profile_dir(args.profile, create=True)  # checks the name, creates the profile
        paths.check_cluster_id(args.cluster_id)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    restore = bool(getattr(args, "restore", False))
    if args.n is None:
        args.n = 0 if restore else 4  # a restored controller's engines come back by themselves
    if args.dry_run:
        return _dry_run(args)
    existing = find_cluster(args.profile, args.cluster_id)
    if existing is not None:
        if existing.state != STALE:
            raise CommandError(
                f"a cluster is already running in profile {args.profile!r} (controller pid "
                f"{remotecontroller.where(existing.data)}, {existing.engines_registered} engines); "
                f"stop it with: ipar stop --profile {args.profile}"
            )
        if not restore:
            control.stop_cluster(existing.data)  # leftovers of a crashed cluster
    extra = [f"--hwm={args.hwm}"] if args.hwm is not None else []
    if args.db is not None:
        extra.append(f"--{args.db}")
    if restore:
        extra.append("--restore")
    controller_class = _controller_class(args.controller)
    if controller_class.runs_elsewhere:
        if restore:
            raise CommandError(
                "--restore replaces a controller of this host; a controller started with "
                f"--controller {args.controller} cannot be restored: start a new cluster"
            )
        return _start_elsewhere(args, extra)
    try:
        cluster, proc = control.start_cluster(
            args.profile,
            args.cluster_id,
            args.n,
            args.ip,
            extra,
            args.log_level,
            args.engine_timeout,
            engines=args.engines,
            config=_profile_config(args.profile),
            progress=_wait_line() if args.n else None,
        )
    except ValueError as exc:  # an unknown launcher, a config file that does not load
        raise CommandError(str(exc)) from None
    except (ClusterError, EngineStartFailed) as exc:
        raise CommandError(f"the cluster did not start: {exc}") from None
    where = f"tcp://{cluster['location']}:{cluster['ports']['client']}"
    cid = f" (cluster id {args.cluster_id!r})" if args.cluster_id else ""
    if restore:
        print(
            f"Controller restored in profile {args.profile!r}{cid} at {where} (pid "
            f"{cluster['controller_pid']}); the engines still alive rejoin it with their ids."
        )
    else:
        print(
            f"Cluster started in profile {args.profile!r}{cid}: {args.n} engine(s), controller "
            f"at {where} (pid {cluster['controller_pid']})."
        )
    if not _connect_hint_and_stay(args, lambda: proc.poll() is None):
        return 0
    if proc.poll() is None:
        print("\nStopping the cluster...")
        for note in control.stop_cluster(cluster):
            print(note)
        proc.wait(10)
    print("Cluster stopped.")
    return 0


def _connect_hint_and_stay(args: argparse.Namespace, running: Callable[[], bool]) -> bool:
    """Print how to connect; with ``--foreground``, stay until Ctrl-C, SIGTERM or the
    controller's end (``running()`` false).  Returns whether it stayed (then the caller
    stops what is left)."""
    client_args = f"profile={args.profile!r}" + (
        f", cluster_id={args.cluster_id!r}" if args.cluster_id else ""
    )
    print(f"Connect with: rc = ipar_widgets.Client({client_args})")
    if not args.foreground:
        return False
    print("Running in the foreground; press Ctrl-C to stop the cluster.")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.is_set() and running():
        stop.wait(0.1)
    return True


def _controller_class(name: str) -> type[ControllerLauncher]:
    """The controller launcher ``--controller`` names (CommandError for one unknown, or one
    that neither runs here nor announces itself from elsewhere)."""
    try:
        cls = find_launcher_class(name, "Controller")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if issubclass(cls, LocalControllerLauncher) or (
        issubclass(cls, ControllerLauncher) and cls.runs_elsewhere
    ):
        return cls
    raise CommandError(
        f"--controller {name}: {cls.__name__} neither runs the controller here nor announces "
        "it from elsewhere; use local, ssh, slurm (or another batch system)"
    )


def _start_elsewhere(args: argparse.Namespace, extra: list[str]) -> int:
    """``ipar start --controller ssh|slurm``: the Cluster API starts the controller
    elsewhere and writes the connection files here; the controller lives on after this
    command exits (its ssh session is kept by a process of its own, a job by the
    scheduler), and ``ipar stop`` stops it through the launcher recorded in the cluster
    file."""
    from .cluster import Cluster

    try:
        cluster = Cluster(
            profile=args.profile,
            cluster_id=args.cluster_id,
            n=args.n,
            controller=args.controller,
            engines=args.engines,
            controller_ip=args.ip,
            controller_args=extra,
            log_level=args.log_level,
            engine_timeout=args.engine_timeout,
            shutdown_atexit=False,
        )
    except Exception as exc:  # a trait refused: the message says which and why
        raise CommandError(str(exc)) from None
    try:
        cluster.start_and_connect_sync(args.n).close()
    except (ClusterError, EngineStartFailed, LauncherError, OSError, ValueError) as exc:
        cluster.stop_cluster_sync()
        raise CommandError(f"the cluster did not start: {exc}") from None
    except BaseException:
        cluster.stop_cluster_sync()
        raise
    data = cluster._data or {}
    where = f"tcp://{data['location']}:{data['ports']['client']}"
    cid = f" (cluster id {args.cluster_id!r})" if args.cluster_id else ""
    print(
        f"Cluster started in profile {args.profile!r}{cid}: {args.n} engine(s), controller "
        f"at {where} (pid {remotecontroller.where(data)}, {args.controller})."
    )
    if not _connect_hint_and_stay(
        args, lambda: remotecontroller.controller_alive(data, cluster.controller)
    ):
        return 0
    print("\nStopping the cluster...")
    cluster.stop_cluster_sync()
    print("Cluster stopped.")
    return 0


# -- ipar stop -----------------------------------------------------------------------------------
def cmd_stop(args: argparse.Namespace) -> int:
    if args.all:
        clusters = [
            c for c in find_clusters([args.profile] if args.profile_given else None, query=False)
        ]
        if not clusters:
            print("No clusters found.")
            return 0
    else:
        clusters = [_existing_cluster(args)]
    for info in clusters:
        notes = control.stop_cluster(info.data, grace=args.grace)
        for note in notes:
            print(note)
        label = f"profile {info.profile!r}" + (
            f", cluster {info.cluster_id!r}" if info.cluster_id else ""
        )
        print(
            f"Stopped the cluster in {label}."
            if info.state != STALE
            else f"Removed the files of a cluster that was no longer running ({label})."
        )
    return 0


# -- ipar list -----------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    clusters = find_clusters([args.profile] if args.profile else None)
    if args.json:
        print(json.dumps([c.as_dict() for c in clusters], indent=2))
        return 0
    if not clusters:
        print("No clusters. Start one with: ipar start -n 4")
        return 0
    rows = [("PROFILE", "CLUSTER ID", "STATE", "ENGINES", "CONTROLLER", "PID", "UPTIME")]
    for c in clusters:
        rows.append(
            (
                c.profile,
                c.cluster_id or "-",
                c.state,
                f"{c.engines_registered}/{c.engines_requested}" if c.state == RUNNING else "-",
                c.address,
                remotecontroller.where(c.data),
                format_seconds(c.uptime) if c.state == RUNNING else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for c in clusters:
        sets = enginesets.engine_sets(c.data)
        counts: dict[str, int] = {}
        if sets and c.state == RUNNING:
            try:
                counts = enginesets.registered_by_set(
                    dict(control.request(c.data, "status_request").content)
                )
            except ClusterError:
                pass  # the controller did not answer: the sets' own states still show
        for set_id, entry in sets.items():
            launcher = str(entry.get("launcher", "?")).rsplit(".", 1)[-1]
            print(
                f"  {c.profile}{'/' + c.cluster_id if c.cluster_id else ''}: engine set "
                f"{set_id}: {launcher}, {entry.get('n', '?')} engine(s), "
                f"{enginesets.describe(entry, counts.get(set_id, 0))}"
            )
    return 0


# -- ipar engines ----------------------------------------------------------------------------------
def cmd_engines_add(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise CommandError(f"-n must be at least 1, found {args.n}")
    info = _running_cluster(args)
    before = info.engines_registered
    try:
        launcher_class = find_launcher_class(args.engines, "EngineSet")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        if issubclass(launcher_class, LocalEngineSetLauncher):
            reply = control.request(info.data, "spawn_request", {"n": args.n}).content
            control.wait_for_engines(info.data, before + args.n, args.engine_timeout, _wait_line())
            print(
                f"Added {args.n} engine(s); {reply['requested']} requested in profile "
                f"{args.profile!r}."
            )
            return 0
        set_id = control.add_engine_set(
            info.data,
            launcher_class,
            args.n,
            args.engine_timeout,
            _profile_config(args.profile),
            _wait_line(),
        )
    except (ClusterError, EngineStartFailed, LauncherError, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"Added engine set {set_id}: {args.n} engine(s) in profile {args.profile!r}.")
    return 0


def _dry_run(args: argparse.Namespace) -> int:
    """Print what ``ipar start`` would run for the engines (a batch launcher's job script),
    starting nothing."""
    try:
        launcher_class = find_launcher_class(args.engines, "EngineSet")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if issubclass(launcher_class, LocalEngineSetLauncher):
        engine_file = paths.engine_file(paths.profile_dir(args.profile), args.cluster_id)
        print(f"# the controller starts {args.n} local engine(s), each running:")
        print(shlex.join([*ipengine_cmd_argv, f"--file={engine_file}"]))
        return 0
    where = {
        "profile_dir": str(paths.profile_dir(args.profile)),
        "cluster_id": args.cluster_id,
        "ip": args.ip,
    }
    try:
        _, launcher = enginesets.prepare_engine_set(
            where,
            launcher_class,
            args.n,
            parent=Configurable(config=_profile_config(args.profile)),
            connection=enginesets.CONNECTION_PLACEHOLDER,
        )
        enginesets.check_reachable(launcher, args.ip)
        print(launcher.preview())
    except (LauncherError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _profile_config(profile: str) -> Config:
    """The profile's ipcluster_config.py/.json (configures launchers: ssh hosts, Slurm
    time limits)."""
    return load_profile_config(paths.profile_dir(profile, create=True))


def _wait_line() -> EngineWaitTracker:
    """The wait for engines as one line on stderr: redrawn in place on a terminal, whole
    lines as it changes in a log (at most one a second), and always a last line that says
    how it ended ("engines: 4/4 registered, 1.2 s; local: 4/4 engines registered")."""
    line = frontend.engine_wait_display(interactive=True, widget=False)
    assert line is not None  # asked for: never None
    return line


def cmd_engines_stop(args: argparse.Namespace) -> int:
    info = _running_cluster(args)
    try:
        control.request(info.data, "shutdown_request", {"targets": args.ids}, timeout=30)
    except ClusterError as exc:
        raise CommandError(str(exc)) from None
    print(f"Stopped engine(s) {', '.join(map(str, args.ids))} in profile {args.profile!r}.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(n=args.n, profile=args.profile)


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipar",
        description="Start, list, grow and stop ipar_widgets clusters.",
        epilog="Exit codes: 0 success, 1 the operation failed, 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"ipar_widgets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("start", help="start a cluster (returns once its engines are registered)")
    p.add_argument(
        "-n", type=int, default=None, help="number of engines (default: 4; 0 with --restore)"
    )
    _profile_arg(p)
    p.add_argument(
        "--ip",
        default="127.0.0.1",
        help="interface the controller binds; 0.0.0.0 for all (default: %(default)s)",
    )
    p.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C stops the cluster"
    )
    p.add_argument(
        "--engine-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for engines to register (default: %(default)s)",
    )
    p.add_argument(
        "--hwm",
        type=int,
        default=None,
        help="most load-balanced tasks queued per engine (default: 1)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        help="log level of the cluster's processes (default: %(default)s)",
    )
    p.add_argument(
        "--engines",
        default="local",
        help="what starts the engines: local (the controller), mpi (mpiexec), or a launcher "
        "class (default: %(default)s)",
    )
    p.add_argument(
        "--controller",
        default="local",
        help="what starts the controller: local (a process here), ssh (on the host "
        "c.SSHControllerLauncher.hostname names), slurm (a Slurm job; also sge, pbs, lsf, "
        "htcondor), or a launcher class (default: %(default)s). One elsewhere announces its "
        "connection info to this command, which writes the connection files here",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would start the engines (a batch job's script) and start nothing",
    )
    p.add_argument(
        "--restore",
        action="store_true",
        help="take the place of this profile's controller that died: same ports and key, its "
        "unfinished tasks from the task database; its engines rejoin",
    )
    db = p.add_mutually_exclusive_group()
    for flag, what in (
        ("sqlitedb", "keep task records in the profile's SQLite file (the default)"),
        ("dictdb", "keep task records in the controller's memory only"),
        ("nodb", "keep task records only while their task is pending"),
    ):
        db.add_argument(f"--{flag}", dest="db", action="store_const", const=flag, help=what)
    p.set_defaults(func=cmd_start, db=None)

    p = sub.add_parser("stop", help="stop a cluster: every one of its processes exits")
    _profile_arg(p)
    p.add_argument("--all", action="store_true", help="stop every cluster (of --profile if given)")
    p.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds before processes are killed (default: %(default)s)",
    )
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("list", help="list clusters: profile, id, state, engines, address, uptime")
    p.add_argument("--profile", default=None, help="only this profile")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    engines = sub.add_parser("engines", help="add or stop engines of a running cluster")
    esub = engines.add_subparsers(dest="engines_command", metavar="ACTION")
    esub.required = True
    p = esub.add_parser("add", help="start more engines")
    p.add_argument(
        "-n", type=int, default=1, help="number of engines to add (default: %(default)s)"
    )
    _profile_arg(p)
    p.add_argument(
        "--engine-timeout", type=float, default=60.0, help="seconds to wait for them to register"
    )
    p.add_argument(
        "--engines",
        default="local",
        help="what starts the engines: local (the controller), mpi (mpiexec), or a launcher "
        "class (default: %(default)s)",
    )
    p.set_defaults(func=cmd_engines_add)
    p = esub.add_parser("stop", help="stop engines by id")
    p.add_argument("ids", type=int, nargs="+", metavar="ID", help="engine id(s)")
    _profile_arg(p)
    p.set_defaults(func=cmd_engines_stop)

    p = sub.add_parser("demo", help="start a 4-engine cluster, tour AsyncResults live, stop it")
    p.add_argument("-n", type=int, default=4, help="number of engines (default: %(default)s)")
    p.add_argument("--profile", default="ipar-demo", help="profile to use (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.profile_given = "--profile" in (argv if argv is not None else sys.argv)
    # launchers' warnings (a batch job without a time limit) reach the terminal
    logging.basicConfig(level=logging.WARNING, format="ipar: %(levelname)s: %(message)s")
    try:
        code = args.func(args)
    except CommandError as exc:
        print(f"ipar {args.command}: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
