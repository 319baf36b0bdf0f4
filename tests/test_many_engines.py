"""Many engines registering at once, as a batch job or ``mpiexec`` starts them.

Engines launched together keep the host's cores busy with their imports while they register.
On such a starved host an engine's heartbeat connection used to come up after its
registration: the controller counted its silence from the registration and gave up on it
after ``heartbeat_timeout``, although it was alive (it then sat connected and unused).  The
engine now registers only once its heartbeat socket is connected.  Here every engine must
register, keep its id and answer.  (``benchmarks/bench_registration.py`` does 256.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive

from ipar_widgets import paths

pytestmark = pytest.mark.timeout(150)

#: engines launched at once: enough to starve 2 cores for several seconds
ENGINES = 32


def test_engines_launched_at_once_all_register_and_answer(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=0)
    rc = handle.rc
    file = paths.engine_file(Path(handle.cluster._data["profile_dir"]))
    procs: list[subprocess.Popen[bytes]] = []
    pgid = 0
    try:
        t0 = time.monotonic()
        for _ in range(ENGINES):  # one process group: one signal ends them all
            proc = subprocess.Popen(
                [sys.executable, "-m", "ipar_widgets.engine", f"--file={file}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=pgid,
            )
            pgid = pgid or proc.pid
            procs.append(proc)
        rc.wait_for_engines(ENGINES, timeout=90)
        pids = rc[:].apply_sync(os.getpid)
        elapsed = time.monotonic() - t0
        # no engine was given up on: ids are handed out once, in order, and never reused
        assert rc.ids == list(range(ENGINES))
        assert sorted(pids) == sorted(p.pid for p in procs)
        assert elapsed < 90, f"{ENGINES} engines took {elapsed:.1f} s to register and answer"
    finally:
        if pgid:
            os.killpg(pgid, signal.SIGKILL)
        for proc in procs:
            proc.wait(10)
    assert alive([p.pid for p in procs]) == []
