"""The timeline of a controller crash and its restore, from one run.

A 4-engine cluster (``ipar start``) runs a load-balanced map of N tasks of 0.01 s; when a
fifth of them are done the controller gets SIGKILL, and ``ipar start --restore`` takes its
place.  Printed, in seconds from the kill: when the restore command returned, when the
submitting client was connected again, and when the last result arrived; then whether every
result arrived once and in order, and whether the engines kept their ids and processes.

    python benchmarks/crash_restore.py [--tasks 2000] [--profile crash-bench]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import ipar_widgets as ipp
from ipar_widgets import paths


def ipar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipar_widgets", *args], capture_output=True, text=True, timeout=120
    )


def work(x: int) -> tuple[int, int]:
    import os
    import time

    time.sleep(0.01)
    return x * x, os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--profile", default="crash-bench")
    args = parser.parse_args()
    ipar("stop", "--profile", args.profile)
    started = ipar("start", "-n", "4", "--profile", args.profile)
    if started.returncode:
        raise SystemExit(started.stderr)
    cluster_path = paths.cluster_file(paths.profile_dir(args.profile))
    rc = ipp.Client(profile=args.profile)
    try:
        rc.wait_for_engines(4, timeout=60)
        pids = rc[:].apply_sync(os.getpid)
        ar = rc.load_balanced_view().map_async(work, range(args.tasks), label="crash-bench")
        while ar.progress < args.tasks // 5:
            time.sleep(0.005)
        old = paths.read_json(cluster_path)
        os.kill(old["controller_pid"], signal.SIGKILL)
        killed = time.monotonic()
        at_kill = ar.progress
        restored = ipar("start", "--restore", "--profile", args.profile)
        restored_at = time.monotonic() - killed
        if restored.returncode:
            raise SystemExit(restored.stdout + restored.stderr)
        while rc.connection_note != "controller restarted, reconnected":
            time.sleep(0.005)
        reconnected_at = time.monotonic() - killed
        results = ar.get(timeout=300)
        last_at = time.monotonic() - killed
        exact = [r for r, _ in results] == [x * x for x in range(args.tasks)]
        same = rc[:].apply_sync(os.getpid) == pids and sorted(rc.ids) == [0, 1, 2, 3]
        print(f"tasks: {args.tasks} x 0.01 s on 4 engines; killed at {at_kill} done")
        print("  kill                 0.00 s")
        print(f"  ipar start --restore {restored_at:.2f} s (command returned)")
        print(f"  client reconnected   {reconnected_at:.2f} s")
        print(f"  last result          {last_at:.2f} s")
        print(f"every result once, in order: {exact}; same engine ids and processes: {same}")
    finally:
        rc.close()
        ipar("stop", "--profile", args.profile)


if __name__ == "__main__":
    main()
