"""What ``wait_interactive`` costs: a load-balanced map of no-op tasks waited for with plain
``get()`` and with ``wait_interactive()``, in the same run, repetitions alternating.

Paths measured (``--paths``, default all three):

- ``terminal``: ``wait_interactive(interval=0.1)`` writing to a StringIO (as peers.py does);
- ``widget``: the widget path in this process (``wait_with_widget``): snapshots, controller
  status queries, HTML rendering and trait updates; ipywidgets has no kernel here, so nothing
  is sent;
- ``kernel``: the same comparison run inside a real IPython kernel (started with
  jupyter_client; this script drains its iopub), where the widget's messages really go out;
- ``control``: ``get()`` against ``get()`` (an A/A run): the noise floor of the figures.

Each figure is the median over ``--reps`` repetitions of submit-to-results wall time; the
overhead is ``median(wait_interactive) / median(get) - 1``.  The CPU time of the process that
waits (all its threads: the client's I/O thread, the display, the update loop) is reported the
same way, and so is the CPU time spent inside the display's own code (snapshots, rendering,
refreshes: ``display_s_median``, and ``display_pct_of_get`` of the ``get()`` median), which a
shared, noisy machine blurs least.  The ``control`` line (get against get) shows the noise of
the run.

    python benchmarks/bench_wait_interactive.py --engines 2 --tasks 2000 --reps 9
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from typing import Any

# the code both this process and the kernel run; `lview`, `n`, `reps` and `mode` are given
TIMING_CODE = r"""
import contextlib, io, json, statistics, threading, time
from ipar_widgets.widgets.progress import wait_with_widget

def _ident(x):
    return x

def _one(lview, n, how):
    t0, c0 = time.perf_counter(), time.process_time()
    ar = lview.map(_ident, range(n), chunksize=1)
    if how == "terminal":
        with contextlib.redirect_stdout(io.StringIO()):
            ar.wait_interactive(interval=0.1, timeout=300, widget=False)
    elif how == "widget":
        # outside a kernel IPython's display() prints the bundle: keep it off the terminal
        with contextlib.redirect_stdout(io.StringIO()):
            wait_with_widget(ar, timeout=300)
    result = ar.get(timeout=300)
    assert len(result) == n
    return time.perf_counter() - t0, time.process_time() - c0

_spent = [0.0]
_depth = threading.local()

def _timed(cls, name):
    # count the CPU seconds spent in cls.name (outermost calls only): the display's own
    # work, not the time it waits for the controller's answers
    inner = getattr(cls, name)
    def wrapper(*args, **kwargs):
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        t0 = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            _depth.n = depth
            if depth == 0:
                _spent[0] += time.thread_time() - t0
    setattr(cls, name, wrapper)

def _instrument():
    from ipar_widgets.progress.snapshot import ProgressTracker
    from ipar_widgets.progress.terminal import TerminalDisplay
    from ipar_widgets.widgets.loop import UpdateLoop
    from ipar_widgets.widgets.progress import ProgressView
    _timed(ProgressTracker, "snapshot")  # a terminal tick's snapshot
    _timed(TerminalDisplay, "update")    # ... and its rendering and writing
    _timed(TerminalDisplay, "finish")
    _timed(UpdateLoop, "_send")          # a widget refresh: status query, snapshot, diff, send
    _timed(ProgressView, "show")         # making and displaying the widgets
    _timed(ProgressView, "finished")     # the final static snapshot

def _compare(lview, n, reps, how):
    _instrument()
    _one(lview, n, "get")  # warm up both paths
    _one(lview, n, how)
    wall = {"get": [], how: []}
    cpu = {"get": [], how: []}
    spent = []
    for i in range(reps):
        order = ("get", how) if i % 2 == 0 else (how, "get")
        for mode in order:
            before = _spent[0]
            w, c = _one(lview, n, mode)
            wall[mode].append(w)
            cpu[mode].append(c)
            if mode == how:
                spent.append(_spent[0] - before)
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    return {"path": how, "tasks": n, "reps": reps,
            "get_median_s": round(med["get"], 4), "wait_interactive_median_s": round(med[how], 4),
            "overhead_pct": round(100 * (med[how] / med["get"] - 1), 2),
            "get_cpu_median_s": round(cmed["get"], 4),
            "wait_interactive_cpu_median_s": round(cmed[how], 4),
            "cpu_overhead_pct": round(100 * (cmed[how] / cmed["get"] - 1), 2),
            "display_s_median": round(statistics.median(spent), 4),
            "display_pct_of_get": round(100 * statistics.median(spent) / med["get"], 2),
            "get_s": [round(t, 3) for t in wall["get"]],
            "wait_interactive_s": [round(t, 3) for t in wall[how]]}
"""


def in_this_process(lview: Any, n: int, reps: int, how: str) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(TIMING_CODE, ns)
    return ns["_compare"](lview, n, reps, how)  # type: ignore[no-any-return]


def in_a_kernel(profile: str, n: int, reps: int) -> dict[str, Any]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        code = (
            TIMING_CODE + "\nimport ipar_widgets as ipp\n"
            f"rc = ipp.Client(profile={profile!r})\nlview = rc.load_balanced_view()\n"
            f"print('RESULT', json.dumps(_compare(lview, {n}, {reps}, 'widget')))\n"
        )
        msg_id = kc.execute(code)
        out, comm_msgs = "", 0
        while True:
            msg = kc.get_iopub_msg(timeout=600)
            if msg["parent_header"].get("msg_id") != msg_id and msg["msg_type"] != "comm_msg":
                continue
            kind = msg["msg_type"]
            if kind == "comm_msg":
                comm_msgs += 1
            elif kind == "stream":
                out += msg["content"]["text"]
            elif kind == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        result = json.loads(out.split("RESULT", 1)[1])
        result["path"] = "kernel"
        result["comm_msgs"] = comm_msgs
        return result  # type: ignore[no-any-return]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=9, help="repetitions of each mode per path")
    parser.add_argument("--paths", default="control,terminal,widget,kernel")
    args = parser.parse_args()
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="bench-ipython-"))
    import ipar_widgets as ipp

    profile = "bench-wait-interactive"
    cluster = ipp.Cluster(n=args.engines, profile=profile, cluster_id="")
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(args.engines, timeout=60)
        lview = rc.load_balanced_view()
        for path in args.paths.split(","):
            if path == "kernel":
                result = in_a_kernel(profile, args.tasks, args.reps)
            else:
                result = in_this_process(lview, args.tasks, args.reps, path)
            result["engines"] = args.engines
            print(json.dumps(result))
            sys.stdout.flush()
    finally:
        rc.close()
        with contextlib.suppress(Exception):
            cluster.stop_cluster_sync()


if __name__ == "__main__":
    main()
