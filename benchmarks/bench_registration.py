"""Many engines registering at once: how fast a controller takes them, and whether it keeps
them all.

A controller with no engines is started (``Cluster(n=0)``), then ``--engines`` real engine
processes are launched at once from the engine connection file, as a batch system or
``mpiexec`` would start them.  Measured from the first launch:

  registered_s   until ``rc.wait_for_engines(N)`` returns (``regs_per_s`` = N / that)
  answered_s     until ``rc[:].apply_sync(os.getpid)`` has N distinct answers
  ctl_peak_mb    the controller's peak resident memory (VmHWM, summed over its process
                 tree: ipyparallel's schedulers are processes of their own, and pages
                 they share are counted in each; ctl_main_peak_mb is the main process alone)
  lost           ids handed out but not registered at the end: engines the controller gave
                 up on while the host was starved (ipyparallel: also engines given an id
                 whose heartbeat never arrived, so their registration never completed)

The same is done with ipyparallel in the same run; each backend runs in a child process of
its own (killed by process group if it overruns), in a fresh IPYTHONDIR, and the order of
the backends alternates between repetitions (ABBA) to cancel drift.  On a 2-core machine
256 engines are mostly a test of the controller under starvation: their imports keep both
cores busy for about a minute.

Usage:  python benchmarks/bench_registration.py [--engines 256] [--reps 3]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

BACKENDS = ("ipar_widgets", "ipyparallel")
#: metric -> (unit, whether lower is better)
METRICS = {
    "registered_s": ("s", True),
    "regs_per_s": ("1/s", False),
    "answered_s": ("s", True),
    "ctl_peak_mb": ("MB", True),
    "ctl_main_peak_mb": ("MB", True),
    "lost": ("engines", True),
    "launch_s": ("s", True),
    "engine_rss_mb": ("MB", True),
}


def peak_rss_mb(root_pid: int, tree: bool = True) -> float:
    """VmHWM of ``root_pid`` (and, with ``tree``, its descendants), in MB (1e6 bytes)."""
    total = 0
    try:
        procs = [psutil.Process(root_pid)]
        if tree:
            procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total / 1e6


class Engines:
    """N engine processes in one process group of their own, so one signal ends them all."""

    def __init__(self, argv: list[str], n: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        pgid = 0
        for _ in range(n):
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=pgid,
            )
            pgid = pgid or proc.pid
            self.procs.append(proc)
        self.pgid = pgid

    @property
    def pids(self) -> set[int]:
        return {p.pid for p in self.procs}

    def mean_rss_mb(self) -> float:
        rss = []
        for proc in self.procs:
            try:
                rss.append(psutil.Process(proc.pid).memory_info().rss)
            except psutil.Error:
                pass
        return statistics.mean(rss) / 1e6 if rss else 0.0

    def kill(self) -> None:
        if self.pgid:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def engine_argv(backend: str, cluster: Any) -> list[str]:
    """The command of one engine connecting to ``cluster``'s controller."""
    if backend == "ipar_widgets":
        from ipar_widgets import paths

        file = paths.engine_file(Path(cluster._data["profile_dir"]), cluster.cluster_id)
        return [sys.executable, "-m", "ipar_widgets.engine", f"--file={file}"]
    file = cluster.controller.connection_files["engine"]
    return [
        sys.executable,
        "-m",
        "ipyparallel.engine",
        f"--file={file}",
        f"--profile-dir={cluster.profile_dir}",
    ]


def controller_pid(backend: str, cluster: Any) -> int:
    if backend == "ipar_widgets":
        return int(cluster._data["controller_pid"])
    return int(cluster.controller.process.pid)


def measure(backend: str, n: int, timeout: float) -> dict[str, Any]:
    """One repetition: start a controller, launch ``n`` engines at once, time them."""
    ipp = importlib.import_module(backend)
    result: dict[str, Any] = {"backend": backend, "n": n, "version": ipp.__version__}
    cluster = ipp.Cluster(n=0, profile="bench-registration", cluster_id="")
    rc = cluster.start_and_connect_sync()
    engines: Engines | None = None
    try:
        ctl = controller_pid(backend, cluster)
        argv = engine_argv(backend, cluster)
        t0 = time.monotonic()
        engines = Engines(argv, n)
        result["launch_s"] = time.monotonic() - t0
        try:
            rc.wait_for_engines(n, timeout=timeout)
        except Exception as exc:  # a timeout: say how far it got
            result["error"] = f"{type(exc).__name__}: {exc}"[:300]
            return result
        result["registered_s"] = time.monotonic() - t0
        result["regs_per_s"] = n / result["registered_s"]
        done: dict[str, Any] = {}

        def ask() -> None:
            try:
                done["pids"] = rc[:].apply_sync(os.getpid)
            except Exception as exc:
                done["error"] = f"{type(exc).__name__}: {exc}"[:300]

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        asker.join(max(1.0, timeout - (time.monotonic() - t0)))
        if "pids" not in done:
            result["error"] = done.get("error", f"apply_sync did not return within {timeout} s")
            return result
        result["answered_s"] = time.monotonic() - t0
        pids = done["pids"]
        if len(set(pids)) != n or not set(pids) <= engines.pids:
            result["error"] = f"{len(set(pids))} distinct answers of {n}, not all from our engines"
    finally:
        if engines is not None:
            result["ctl_peak_mb"] = peak_rss_mb(ctl)
            result["ctl_main_peak_mb"] = peak_rss_mb(ctl, tree=False)
            result["engine_rss_mb"] = engines.mean_rss_mb()
            ids = list(rc.ids)
            result["registered_at_end"] = len(ids)
            result["lost"] = (max(ids) + 1 - len(ids)) if ids else None
        t_stop = time.monotonic()
        try:
            rc.close()
            cluster.stop_cluster_sync()
        finally:
            if engines is not None:
                engines.kill()
        result["stop_s"] = time.monotonic() - t_stop
    return result


def run_child(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one repetition of ``backend`` in a child process with a fresh IPYTHONDIR."""
    with tempfile.TemporaryDirectory(prefix="bench-registration-") as home:
        env = dict(os.environ, IPYTHONDIR=str(Path(home) / "ipython"))
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", backend]
        cmd += ["--engines", str(args.engines), "--timeout", str(args.timeout)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, env=env, text=True, start_new_session=True
        )
        try:
            out, _ = proc.communicate(timeout=args.timeout * 2 + 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"backend": backend, "error": "the child overran and was killed"}
        finally:
            # whatever it left behind (a controller, engines) names this IPYTHONDIR
            for p in psutil.process_iter(["cmdline"]):
                try:
                    if any(home in arg for arg in p.info["cmdline"] or ()):
                        p.kill()
                except psutil.Error:
                    pass
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        return {"backend": backend, "error": f"no result (exit code {proc.returncode})"}


def table(results: list[dict[str, Any]], reference: str) -> list[str]:
    names = [b for b in BACKENDS if any(r["backend"] == b for r in results)]
    others = [b for b in names if b != reference]
    head = ["metric", "unit", *[f"{b} median" for b in names], *[f"{b} x_better" for b in others]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric, (unit, lower) in METRICS.items():
        medians = {}
        for b in names:
            vals = [r[metric] for r in results if r["backend"] == b and r.get(metric) is not None]
            medians[b] = statistics.median(vals) if vals else None
        row = [metric, unit] + [_fmt(medians[b]) for b in names]
        for b in others:
            ref, val = medians.get(reference), medians[b]
            if ref and val:
                row.append(f"{(ref / val if lower else val / ref):.2f}")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=256, help="engines launched at once")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each backend")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma list; the ratio is to the last one"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="bound on registering, and on the apply, s"
    )
    parser.add_argument("--jsonl", default=None, help="append every result line to this file")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        try:
            result = measure(args._child, args.engines, args.timeout)
        except Exception as exc:  # e.g. the controller did not start: say so in the table
            result = {"backend": args._child, "error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(result), flush=True)
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results = []
    for rep in range(args.reps):
        for backend in backends if rep % 2 == 0 else list(reversed(backends)):
            result = run_child(backend, args)
            result["rep"] = rep
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(result) + "\n")
    print(f"\n# {args.engines} engines at once, {args.reps} repetition(s), {os.cpu_count()} CPUs")
    print("# medians; x_better > 1: ipar_widgets does better than the reference")
    for line in table(results, backends[-1]):
        print(line)
    for r in results:
        if r.get("error"):
            print(f"note: {r['backend']} rep {r['rep']}: {r['error']}")


if __name__ == "__main__":
    main()
