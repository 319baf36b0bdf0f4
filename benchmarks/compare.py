#!/usr/bin/env python3
"""ipar_widgets against ipyparallel, in one run, as ratios of medians.

Each backend runs in a child process of its own (killed by process group if it overruns),
with the same code and ``import <backend> as ipp``; rounds alternate the order (ABBA) to cancel
slow drift.  Figures:

    start_s          Cluster(n=E).start_and_connect_sync() until every engine answered a task
    latency_us       round trip of rc[0].apply_sync(noop): the median call of each batch of 300
    lb_tasks_s       load-balanced map of 2,000 no-op tasks, chunksize 1
    chunked_tasks_s  map of 100,000 tiny tasks, chunksize 1,000 (and client bytes per task)
    direct_tasks_s   2,000 dv.apply_async(noop) on every engine (engine executions per s)
    push_MBps, pull_MBps  100 MB numpy array to engine 0 and back (and the client's peak
                     extra memory during push+pull, as a multiple of the array size)

Usage:  python benchmarks/compare.py [--rounds 2] [--engines 4] [--only latency,lb]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MB = 1e6
FIGURES = {
    # name: (unit, higher_is_better)
    "start_s": ("s", False),
    "latency_us": ("us", False),
    "lb_tasks_s": ("tasks/s", True),
    "chunked_tasks_s": ("tasks/s", True),
    "chunked_client_bytes_per_task": ("B/task", False),
    "direct_tasks_s": ("tasks/s", True),
    "push_MBps": ("MB/s", True),
    "pull_MBps": ("MB/s", True),
    "pushpull_peak_extra_x": ("x array", False),
}
WORKLOADS = ["start", "latency", "lb", "chunked", "direct", "pushpull"]


def noop() -> None:
    return None


def ident(x):  # type: ignore[no-untyped-def]
    return x


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory every millisecond, keeping the peak."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def emit(backend: str, name: str, values: list[float], **extra: object) -> None:
    print(json.dumps({"backend": backend, "figure": name, "values": values, **extra}), flush=True)


def child(backend: str, engines: int, workloads: list[str], reps: int) -> None:
    import importlib

    ipp = importlib.import_module(backend)
    T = 300

    def start_cluster():  # type: ignore[no-untyped-def]
        cluster = ipp.Cluster(n=engines)
        t0 = time.perf_counter()
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(engines, timeout=T)
        rc[:].apply_sync(noop)
        return cluster, rc, time.perf_counter() - t0

    if "start" in workloads:
        times = []
        for _ in range(reps):
            cluster, rc, took = start_cluster()
            times.append(took)
            rc.close()
            cluster.stop_cluster_sync()
        emit(backend, "start_s", times)

    rest = [w for w in workloads if w != "start"]
    if not rest:
        return
    cluster, rc, _ = start_cluster()
    try:
        e0, dv, lview = rc[0], rc[:], rc.load_balanced_view()
        if "latency" in rest:
            for _ in range(50):
                e0.apply_sync(noop)
            values = []
            for _ in range(max(3, reps)):
                calls = []
                for _ in range(300):
                    t0 = time.perf_counter()
                    e0.apply_sync(noop)
                    calls.append(time.perf_counter() - t0)
                values.append(statistics.median(calls) * 1e6)
            emit(backend, "latency_us", values)
        # big transfers first: a controller that keeps the records of 100,000 tasks (as
        # ipyparallel's hub does) would otherwise slow them down for reasons of its own
        if "pushpull" in rest:
            import numpy as np

            push, pull, peaks = [], [], []
            for _ in range(reps):
                arr = np.random.default_rng(0).integers(
                    0, 1000, size=int(100 * MB) // 8, dtype=np.int64
                )
                base = rss()
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    e0.push({"bench_a": arr}, block=True)
                    t1 = time.perf_counter()
                    back = e0.pull("bench_a", block=True)
                    t2 = time.perf_counter()
                    assert back.shape == arr.shape and back[-1] == arr[-1]
                    del back
                push.append(arr.nbytes / MB / (t1 - t0))
                pull.append(arr.nbytes / MB / (t2 - t1))
                peaks.append((mem.peak - base) / arr.nbytes)
                e0.execute("del bench_a", block=True)
                del arr
            emit(backend, "push_MBps", push)
            emit(backend, "pull_MBps", pull)
            emit(backend, "pushpull_peak_extra_x", peaks)
        if "lb" in rest:
            lview.map(ident, range(200), chunksize=1).get(timeout=T)  # warm-up, as peers.py does
            values = []
            for _ in range(reps):
                t0 = time.perf_counter()
                r = lview.map(ident, range(2000), chunksize=1).get(timeout=T)
                values.append(2000 / (time.perf_counter() - t0))
                assert len(r) == 2000 and r[-1] == 1999
            emit(backend, "lb_tasks_s", values)
        if "chunked" in rest:
            values, per_task = [], []
            for _ in range(reps):
                before = rss()
                t0 = time.perf_counter()
                r = lview.map(ident, range(100_000), chunksize=1000).get(timeout=T)
                values.append(100_000 / (time.perf_counter() - t0))
                per_task.append((rss() - before) / 100_000)
                assert len(r) == 100_000 and r[-1] == 99_999
                del r
            emit(backend, "chunked_tasks_s", values)
            emit(backend, "chunked_client_bytes_per_task", per_task)
        if "direct" in rest:
            for ar in [dv.apply_async(noop) for _ in range(100)]:  # warm-up
                ar.get(timeout=T)
            values = []
            for _ in range(reps):
                t0 = time.perf_counter()
                ars = [dv.apply_async(noop) for _ in range(2000)]
                for ar in ars:
                    ar.get(timeout=T)
                values.append(2000 * len(rc.ids) / (time.perf_counter() - t0))
            emit(backend, "direct_tasks_s", values)
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def run_child(backend: str, args: argparse.Namespace, workdir: str) -> list[dict[str, object]]:
    env = dict(
        os.environ,
        IPYTHONDIR=os.path.join(workdir, "ipython-" + backend),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        backend,
        "--engines",
        str(args.engines),
        "--only",
        ",".join(args.workloads),
        "--reps",
        str(args.reps),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        print(f"# {backend}: timed out after {args.timeout} s", file=sys.stderr)
    if proc.returncode:
        print(f"# {backend} exited with {proc.returncode}:\n{err[-2000:]}", file=sys.stderr)
    records = []
    for line in out.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
            print(line, flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends", default="ipyparallel,ipar_widgets", help="first one is the reference"
    )
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of every backend, in ABBA order"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each figure per run")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="comma list of: " + ",".join(WORKLOADS)
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds one backend's run may take"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workloads = [w for w in args.only.split(",") if w]
    if args.child:
        child(args.child, args.engines, args.workloads, args.reps)
        return
    backends = args.backends.split(",")
    pooled: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ipar-bench-") as workdir:
        for rnd in range(args.rounds):
            for backend in backends if rnd % 2 == 0 else list(reversed(backends)):
                for rec in run_child(backend, args, workdir):
                    pooled.setdefault((str(rec["backend"]), str(rec["figure"])), []).extend(
                        rec["values"]
                    )  # type: ignore[arg-type]
    ref = backends[0]
    print(
        f"\n| figure | unit | {' | '.join(backends)} | {' | '.join(b + ' vs ' + ref for b in backends[1:])} |"
    )
    print("|---|---|" + "---|" * (2 * len(backends) - 1))
    for name, (unit, _higher) in FIGURES.items():
        medians = [
            statistics.median(pooled[(b, name)]) if (b, name) in pooled else None for b in backends
        ]
        if all(m is None for m in medians):
            continue
        cells = [f"{m:.3g}" if m is not None else "-" for m in medians]
        ratios = []
        for m in medians[1:]:
            if m is None or medians[0] in (None, 0) or m == 0:
                ratios.append("-")
            else:
                ratios.append(f"{m / medians[0]:.2f}x")  # type: ignore[operator]
        print(f"| {name} | {unit} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    print(
        "\nratios are backend/reference medians: below 1 is better for s, us, B/task and x array; "
        "above 1 is better for tasks/s and MB/s"
    )


if __name__ == "__main__":
    main()
