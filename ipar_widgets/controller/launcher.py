"""Starting and stopping engine processes on the controller's own host.

Local engines are children of the controller, in its process group, so stopping the group
stops the whole cluster; each engine also asks the kernel to kill it if the controller dies
(``--parent-pid``), so no engine outlives its cluster.  Each engine logs to its own file.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ..memorylimits import own_memory_cgroup, rlimits
from .deaths import ProcessEnd

log = logging.getLogger("ipar_widgets.controller")


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf8", "replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(data.splitlines()[-lines:])


class LocalEngine:
    """One engine process started by this controller."""

    def __init__(self, seq: int, uuid: str, popen: subprocess.Popen[bytes], log_path: Path):
        self.seq = seq
        self.uuid = uuid
        self.popen = popen
        self.log_path = log_path
        self.started = time.monotonic()
        self.engine_id: int | None = None
        self.stop_requested: float | None = None
        #: the memory cgroup it started in (ours) and its oom_kill count then (deaths.py)
        self.start_cgroup: tuple[str, int | None] | None = None
        #: the id of the dead engine it replaces (Controller restart_engines), if any
        self.replaces: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


class LocalLauncher:
    """Starts engines with ``python -m ipar_widgets.engine`` and watches them."""

    def __init__(
        self,
        engine_file: Path,
        log_dir: Path,
        cluster_id: str,
        extra_args: list[str],
        log_level: str = "INFO",
    ) -> None:
        self.engine_file = engine_file
        self.log_dir = log_dir
        self.cluster_id = cluster_id
        self.extra_args = extra_args
        self.log_level = log_level
        self.engines: dict[str, LocalEngine] = {}
        self._seq = 0
        self.failures: list[dict[str, object]] = []

    def start(self, n: int) -> list[LocalEngine]:
        started = []
        suffix = f"-{self.cluster_id}" if self.cluster_id else ""
        for _ in range(n):
            seq = self._seq
            self._seq += 1
            engine_uuid = str(uuid.uuid4())
            log_path = self.log_dir / f"ipar-engine{suffix}-{seq}.log"
            cmd = [
                sys.executable,
                "-m",
                "ipar_widgets.engine",
                f"--file={self.engine_file}",
                f"--uuid={engine_uuid}",
                f"--parent-pid={os.getpid()}",
                *self._log_level_option(),
                f"--profile-dir={self.log_dir.parent}",
                *self.extra_args,
            ]
            with open(log_path, "ab") as logf:
                popen = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                )
            engine = LocalEngine(seq, engine_uuid, popen, log_path)
            engine.start_cgroup = own_memory_cgroup()  # the child is in our cgroup
            self.engines[engine_uuid] = engine
            started.append(engine)
            log.info("started engine process %d (pid %d), log %s", seq, popen.pid, log_path)
        return started

    def _log_level_option(self) -> list[str]:
        """``--log-level`` of the cluster, unless the engine arguments set one (theirs wins;
        an engine refuses the option given twice)."""
        if any(a == "--log-level" or a.startswith("--log-level=") for a in self.extra_args):
            return []
        return [f"--log-level={self.log_level}"]

    def reap(self) -> list[tuple[LocalEngine, ProcessEnd]]:
        """Engines whose process exited since the last call, with how they ended."""
        gone = []
        for engine in list(self.engines.values()):
            end = self.reap_one(engine)
            if end is not None:
                code = end.returncode
                gone.append((engine, end))
                if engine.engine_id is None and engine.stop_requested is None:
                    self.failures.append(
                        {
                            "seq": engine.seq,
                            "pid": engine.pid,
                            "returncode": code,
                            "log": str(engine.log_path),
                            "log_tail": tail(engine.log_path),
                        }
                    )
        return gone

    def reap_one(self, engine: LocalEngine, wait: float = 0.0) -> ProcessEnd | None:
        """How ``engine``'s process ended, if it has (waiting up to ``wait`` seconds); it is
        reaped and forgotten then.  Its memory limits are read from /proc while it is a
        zombie (its rlimits), its exact peak memory comes from ``os.wait4``."""
        if engine.popen.returncode is not None:  # reaped elsewhere (Popen.wait)
            self.engines.pop(engine.uuid, None)
            return ProcessEnd(engine.popen.returncode)
        deadline = time.monotonic() + wait
        while True:
            try:
                exited = os.waitid(os.P_PID, engine.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                exited = None
                code = engine.popen.poll()
                if code is None:
                    return None
                self.engines.pop(engine.uuid, None)
                return ProcessEnd(code)
            if exited is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        if exited is None:
            return None
        rlimit_as, rlimit_data = rlimits(engine.pid)  # a zombie's /proc still shows them
        try:
            _, status, usage = os.wait4(engine.pid, 0)
        except ChildProcessError:
            self.engines.pop(engine.uuid, None)
            return ProcessEnd(engine.popen.poll() or 0)
        code = os.waitstatus_to_exitcode(status)
        engine.popen.returncode = code  # reaped here: Popen must not wait for it again
        self.engines.pop(engine.uuid, None)
        # ru_maxrss: kilobytes on Linux, bytes on macOS
        peak = int(usage.ru_maxrss) * (1 if sys.platform == "darwin" else 1024)
        return ProcessEnd(code, peak, rlimit_as, rlimit_data)

    def signal(self, engine: LocalEngine, sig: int) -> None:
        try:
            engine.popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def kill_overdue(self, grace: float) -> None:
        """SIGKILL engines asked to stop more than ``grace`` seconds ago."""
        now = time.monotonic()
        for engine in self.engines.values():
            if engine.stop_requested is not None and now - engine.stop_requested > grace:
                log.warning(
                    "engine process %d (pid %d) did not stop; killing it", engine.seq, engine.pid
                )
                self.signal(engine, signal.SIGKILL)

    def by_engine_id(self, engine_id: int) -> LocalEngine | None:
        for engine in self.engines.values():
            if engine.engine_id == engine_id:
                return engine
        return None

    def pending(self) -> int:
        """Started engines that have not registered yet."""
        return sum(1 for e in self.engines.values() if e.engine_id is None)
