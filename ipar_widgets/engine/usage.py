"""What the engine costs: its CPU use and memory, reported to the controller in the background.

A daemon thread wakes every ``interval`` seconds, reads the process's CPU time and memory
(``time.process_time``, ``/proc/self/status``; no psutil), the task it runs and its memory
cgroup with that cgroup's OOM-kill count (for the death report: controller/deaths.py
compares the count after a death), and sends one signed
``engine_usage`` message on a socket of its own (identity ``u:<uuid>``) to the controller's
engine port.  It never touches the shell socket, so a task is neither delayed by it nor able
to delay it for long (it only needs the GIL for the few microseconds of a sample).  A sample
the controller cannot take at once (the controller is gone, or slow) is dropped, not queued.

GPU memory is read only where ``nvidia-smi`` is on the PATH, and at most every
``GPU_PERIOD`` seconds (running it costs tens of milliseconds of CPU); elsewhere it is None.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import zmq

from ..memorylimits import own_memory_cgroup
from ..protocol.wire import Wire

log = logging.getLogger("ipar_widgets.engine")

__all__ = ["UsageReporter", "read_memory", "GPU_PERIOD", "MIN_INTERVAL"]

#: the shortest interval between two samples (seconds): the controller gets at most one a second
MIN_INTERVAL = 1.0
#: the shortest interval between two GPU readings (seconds)
GPU_PERIOD = 5.0

#: what the running task is: (msg_id, function name), or (None, None) when idle
TaskOf = Callable[[], tuple[str | None, str | None]]


def read_memory() -> tuple[int | None, int | None]:
    """This process's resident memory and the peak of it, in bytes (None where unknown).

    Linux: VmRSS and VmHWM of ``/proc/self/status``.  Elsewhere the peak only, from
    ``resource.getrusage`` (kilobytes on Linux, bytes on macOS), or nothing."""
    try:
        with open("/proc/self/status", "rb") as f:
            data = f.read()
    except OSError:
        return None, _peak_from_rusage()
    rss = peak = None
    for line in data.splitlines():
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith(b"VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


def _peak_from_rusage() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def read_gpu_memory(command: str, pid: int) -> int | None:
    """Bytes of GPU memory process ``pid`` holds, as ``nvidia-smi`` reports them (None when it
    does not answer or lists no such process)."""
    try:
        out = subprocess.run(
            [command, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    total = None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            total = (total or 0) + int(parts[1]) * (1 << 20)  # MiB
    return total


class UsageReporter:
    """The background thread that samples this engine and sends the samples."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        url: str,
        identity: bytes,
        wire: Wire,
        interval: float,
        task_of: TaskOf,
    ) -> None:
        self.context = context
        self.url = url
        self.identity = identity
        self.wire = wire
        self.interval = interval
        self.task_of = task_of
        self._stop = threading.Event()
        self._gpu_command = shutil.which("nvidia-smi")
        self._gpu: int | None = None
        self._gpu_read_at = -GPU_PERIOD
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling (nothing when the interval is 0: reports are turned off)."""
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="ipar-usage", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sampling and close the socket (before the zmq context is terminated, which
        would wait for it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def sample(self, cpu_time: float, wall: float, last: tuple[float, float]) -> dict[str, object]:
        """One sample: CPU percent of one core since ``last`` (cpu time, wall time), memory."""
        spent_cpu, spent_wall = cpu_time - last[0], wall - last[1]
        cpu = round(100.0 * spent_cpu / spent_wall, 1) if spent_wall > 0 else 0.0
        rss, peak = read_memory()
        if self._gpu_command is not None and wall - self._gpu_read_at >= GPU_PERIOD:
            self._gpu_read_at = wall
            self._gpu = read_gpu_memory(self._gpu_command, os.getpid())
        task, function = self.task_of()
        cgroup = own_memory_cgroup()  # the controller reads its OOM kills if it dies
        return {
            "cpu": max(0.0, cpu),
            "rss": rss,
            "peak_rss": peak,
            "gpu_memory": self._gpu,
            "task": task,
            "function": function,
            "interval": self.interval,
            "cgroup": cgroup[0] if cgroup is not None else None,
            "oom_kills": cgroup[1] if cgroup is not None else None,
        }

    def _run(self) -> None:
        sock = self.context.socket(zmq.DEALER)
        sock.identity = self.identity
        sock.linger = 0
        sock.sndhwm = 2  # a controller that does not read: samples are dropped, not queued
        try:
            sock.connect(self.url)
            last = (time.process_time(), time.monotonic())
            while not self._stop.wait(self.interval):
                now = (time.process_time(), time.monotonic())
                content = self.sample(now[0], now[1], last)
                last = now
                _, frames = self.wire.build("engine_usage", content)
                try:
                    sock.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    pass
        except zmq.ZMQError:
            return  # the context was terminated: the engine is exiting
        except Exception:  # a sample must never take the engine down
            log.exception("usage reports stopped")
        finally:
            try:
                sock.close(linger=0)
            except zmq.ZMQError:
                pass
