"""The controller's peak memory with each task store: a 100,000-task map of tiny tasks, and
50 tasks returning 50 MB each, with SQLite (the default) and with ``--dictdb``.

Not a test: it prints one line per (store, workload) with the controller's peak RSS
(``VmHWM`` of ``/proc/<pid>/status``), the bytes left in shared memory, the records held
in memory and the database's size::

    PYTHONPATH=. python benchmarks/store_memory.py [--tasks 100000] [--big 50] [--mb 50]

``EXTRA_ARGS`` adds controller arguments to every run (for example
``EXTRA_ARGS=--SQLiteTaskStore.max_unsaved_bytes=67108864``).

Each measurement starts a cluster of its own (peak RSS cannot be reset) in a temporary
IPYTHONDIR, and stops it afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _shm_bytes(cluster_data: dict[str, Any]) -> int:
    shm = cluster_data.get("shm") or {}
    directory, prefix = shm.get("dir"), shm.get("prefix", "")
    if not directory or not os.path.isdir(directory):
        return 0
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.name.startswith(prefix))


def run(store: str, workload: str, args: argparse.Namespace, extra: list[str]) -> None:
    import ipar_widgets as ipp

    cluster = ipp.Cluster(n=args.engines, cluster_id="", controller_args=[f"--{store}", *extra])
    rc = cluster.start_and_connect_sync()
    try:
        pid = cluster._data["controller_pid"]  # type: ignore[index]
        view = rc.load_balanced_view()
        start = time.perf_counter()
        if workload == "map":
            view.map_async(lambda x: x, range(args.tasks), chunksize=1).get(timeout=3600)
        else:
            mb = args.mb

            @ipp.interactive
            def big(i: int) -> Any:
                import numpy

                return numpy.zeros(mb << 20, "u1")

            for ar in [view.apply_async(big, i) for i in range(args.big)]:
                ar.get(timeout=600)
                rc.purge_local_results(ar)  # the client need not keep 2.5 GB
        took = time.perf_counter() - start
        # until the writer has saved everything and memory is down to its window (SQLite)
        deadline = time.monotonic() + 600
        while True:
            status = rc.status()
            store_state = status["task_store"]
            if store_state.get("queued", 0) == 0 and status["records"] <= 1000:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        saved = time.perf_counter() - start
        db = Path(cluster.profile_dir) / "tasks.sqlite"
        wal = Path(str(db) + "-wal")
        print(
            f"{store:9s} {workload:4s} {' '.join(extra) or '-':30s} peak RSS "
            f"{_peak_rss_mb(pid):8.1f} MB  records in memory {status['records']:6d}  "
            f"shm left {_shm_bytes(cluster._data) / 1e6:8.1f} MB  "  # type: ignore[arg-type]
            f"db+wal {sum(p.stat().st_size for p in (db, wal) if p.exists()) / 1e6:8.1f} MB  "
            f"(done in {took:.1f} s, saved and trimmed after {saved:.1f} s)",
            flush=True,
        )
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=50, help="tasks returning --mb MB each")
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--stores", default="sqlitedb,dictdb")
    parser.add_argument("--workloads", default="map,big,big-noshm")
    args = parser.parse_args()
    for workload in args.workloads.split(","):
        for store in args.stores.split(","):
            with tempfile.TemporaryDirectory() as home:
                os.environ["IPYTHONDIR"] = home
                extra = ["--ControllerApp.shared_memory=False"] if workload == "big-noshm" else []
                extra += os.environ.get("EXTRA_ARGS", "").split()
                run(store, workload.split("-")[0], args, extra)


if __name__ == "__main__":
    main()
