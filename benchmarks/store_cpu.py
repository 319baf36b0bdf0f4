"""CPU time the controller's threads spend per load-balanced task, with each task store.

Not a test.  Throughput on a 2-core machine is noisy (30% spreads between runs); the CPU
time each thread of the controller uses per task is much steadier, and shows what the task
database's writer thread costs and whether it slows the routing thread::

    PYTHONPATH=. python benchmarks/store_cpu.py [--tasks 20000] [--stores sqlitedb,dictdb]

For each store it starts a 2-engine cluster, runs ``--tasks`` no-op tasks as maps of 2,000,
and prints tasks/s and, per controller thread, CPU seconds and microseconds per task
(from ``/proc/<pid>/task/<tid>/stat``).  The machine's busy share is printed too: below 100%
the run was not CPU-bound.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of ``pid``, by "tid name"."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = Path(f"/proc/{pid}/task/{tid}")
        try:
            fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
            name = (base / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        name = "main" if int(tid) == pid else name
        found[f"{tid} {name}"] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def _machine() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def run(store: str, tasks: int) -> None:
    import ipar_widgets as ipp

    cluster = ipp.Cluster(n=2, cluster_id="", controller_args=[f"--{store}"])
    rc = cluster.start_and_connect_sync()
    try:
        pid = cluster._data["controller_pid"]  # type: ignore[index]
        view = rc.load_balanced_view()

        def noop(x: int) -> int:
            return x

        view.map_sync(noop, range(1000))  # warm-up
        before, busy0 = _thread_cpu(pid), _machine()
        start = time.perf_counter()
        for _ in range(tasks // 2000):
            view.map_sync(noop, range(2000))
        seconds = time.perf_counter() - start
        after, busy1 = _thread_cpu(pid), _machine()
        share = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        print(f"{store:9} {tasks / seconds:7.0f} tasks/s  machine busy {share:.0%}")
        for name, cpu in sorted(after.items()):
            used = cpu - before.get(name, 0.0)
            if used > 0.02:
                print(f"    thread {name:24} {used:6.2f} s  {used / tasks * 1e6:6.0f} us/task")
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--stores", default="sqlitedb,dictdb")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the stores this often")
    args = parser.parse_args()
    import tempfile

    for _ in range(args.rounds):
        for store in args.stores.split(","):
            with tempfile.TemporaryDirectory() as home:
                os.environ["IPYTHONDIR"] = home
                run(store, args.tasks)


if __name__ == "__main__":
    main()
