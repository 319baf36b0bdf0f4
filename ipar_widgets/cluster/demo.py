"""``ipar demo``: a guided tour of AsyncResults on a local cluster, in about 15 seconds.

It starts a 4-engine cluster in its own profile, walks through the seed tutorial (results by
engine, results as they arrive, chunks, unordered results, map/reduce, timing) with the live
terminal progress display, and stops the cluster, whatever happens.
"""

from __future__ import annotations

import os
import sys
import time
from functools import reduce
from math import sqrt


def _title(text: str) -> None:
    print(f"\n== {text} ==")


def sleep_here(t: float) -> tuple[int, float]:
    """Sleep t seconds on an engine; return that engine's ``id`` and t."""
    import time

    time.sleep(t)
    # `id` is the engine's id, scattered to every engine's namespace (the tutorial's code)
    return id, t  # type: ignore[return-value]


sleep_here.__module__ = "__main__"  # resolve `id` in the engine's namespace, as in a notebook


def run_demo(n: int = 4, profile: str = "ipar-demo") -> int:
    import ipar_widgets as ipp

    started = time.monotonic()
    print(f"Starting a cluster of {n} engines (profile {profile!r})...")
    cluster = ipp.Cluster(n=n, profile=profile, cluster_id="", shutdown_atexit=True)
    try:
        rc = cluster.start_and_connect_sync()
        print(f"Engines {rc.ids} ready in {time.monotonic() - started:.1f} s.")

        _title("get_dict: results keyed by engine id")
        ar = rc[:].apply_async(os.getpid)
        pids = ar.get_dict()
        print(f"rc[:].apply_async(os.getpid).get_dict() -> {pids}")
        rc[:]["pid_map"] = pids

        _title("Results as they arrive")
        dv = rc[:]
        dv.scatter("id", rc.ids, flatten=True)
        print("Engine ids, scattered as `id`:", dv["id"])
        tic = time.time()
        ar = dv.apply(time.sleep, ipp.Reference("id"))
        for i, _ in enumerate(ar):
            print(f"engine {i} slept {i} s: result after {time.time() - tic:.2f} s")

        view = rc.load_balanced_view()
        _title("Load-balanced map, one task per call, with live progress")
        amr = view.map(sleep_here, [0.1 * t for t in range(12)])
        amr.wait_interactive(interval=0.1)
        print("engines used, in order:", [r[0] for r in amr])

        _title("chunksize=2: two calls per message, so pairs share an engine")
        amr = view.map(sleep_here, [0.1 * t for t in range(10)], chunksize=2)
        tic = time.time()
        for i, r in enumerate(amr):
            print(f"task {i} on engine {r[0]}: {time.time() - tic:.3f}")

        _title("ordered=False: the fastest results first")
        amr = view.map(sleep_here, [0.1 * t for t in range(10, 0, -1)], ordered=False, chunksize=2)
        tic = time.time()
        for r in amr:
            print(f"slept {r[1]:.2f} s on engine {r[0]}: {time.time() - tic:.3f}")

        _title("map/reduce: a root mean square, locally and in parallel")
        xs = [100 * i / 49 for i in range(50)]
        add = lambda a, b: a + b  # noqa: E731
        sq = lambda x: x * x  # noqa: E731
        print("local:   ", sqrt(reduce(add, map(sq, xs)) / len(xs)))
        print("parallel:", sqrt(reduce(add, view.map(sq, xs)) / len(xs)))

        _title("Serial time, wall time and speedup")
        amr = view.map(sleep_here, [0.25] * 16)
        amr.wait_interactive(interval=0.1)
        print(
            f"serial_time {amr.serial_time:.2f} s, wall_time {amr.wall_time:.2f} s, "
            f"speedup {amr.serial_time / amr.wall_time:.1f}x on {len(rc)} engines"
        )
        rc.close()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        print("\nStopping the cluster...")
        cluster.stop_cluster_sync()
    print(
        f"Done in {time.monotonic() - started:.1f} s. Try it yourself: ipar start -n 4, then "
        "ipar_widgets.Client() in a notebook."
    )
    return 0
