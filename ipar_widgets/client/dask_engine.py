"""What ``Client.become_dask`` asks each engine to run: a dask.distributed Scheduler and
Worker living inside the engine process.

The functions are pickled by reference, so engines import them from here (like
``engine_side.py``'s).  Both servers run on one event loop in a thread of their own, not on
the kernel's: a task running in the engine holds the kernel's loop until it returns, and a
Worker on that loop would miss its heartbeats (and a Scheduler stall the whole dask cluster)
meanwhile.  Each start waits until the server is up, so a failure is raised to the client
with the engine's traceback instead of only being logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Coroutine
from types import ModuleType
from typing import Any

__all__ = [
    "distributed_available",
    "scheduler_address",
    "start_scheduler",
    "start_worker",
    "stop_scheduler",
    "stop_worker",
]

#: seconds a Scheduler or Worker may take to start or to stop
STARTUP_TIMEOUT = 60.0

#: the names a running Worker has in the engine's namespace (ipyparallel's)
WORKER_NAMES = ("distributed_worker", "dask_worker")


class _DaskThread:
    """The engine's one event loop for dask's servers, in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="ipar-dask", daemon=True)
        self.thread.start()
        self.scheduler: Any = None
        self.worker: Any = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        """Run ``coro`` on the loop and return its value; TimeoutError after
        :data:`STARTUP_TIMEOUT` seconds."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(STARTUP_TIMEOUT)
        except concurrent.futures.TimeoutError:  # the builtin TimeoutError from Python 3.11
            future.cancel()
            raise TimeoutError(f"{what} did not finish within {STARTUP_TIMEOUT:g} s") from None


_state: _DaskThread | None = None
_state_lock = threading.Lock()


def _dask() -> _DaskThread:
    global _state
    with _state_lock:
        if _state is None:
            _state = _DaskThread()
        return _state


def _distributed() -> ModuleType:
    """Import distributed with the process's own stdout/stderr in place: its log handler
    keeps the stream it finds, and the kernel's streams would turn every later log line of
    the dask threads into output of whatever task happens to run (to the engine's log file
    instead)."""
    if "distributed" in sys.modules:
        return sys.modules["distributed"]
    saved = sys.stdout, sys.stderr
    if sys.__stdout__ is not None and sys.__stderr__ is not None:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        import distributed
    finally:
        sys.stdout, sys.stderr = saved
    return distributed


def distributed_available() -> bool:
    """Whether this engine can import distributed (imported the way the servers need)."""
    try:
        _distributed()
    except ImportError:
        return False
    return True


def _namespace() -> dict[str, Any]:
    return sys.modules["__main__"].__dict__


def scheduler_address() -> str | None:
    """The address of the Scheduler running in this engine, if one does."""
    state = _state
    if state is None or state.scheduler is None:
        return None
    return str(state.scheduler.address)


def start_scheduler(scheduler_args: dict[str, Any]) -> str:
    """Start a Scheduler in this engine (or keep the one running); return its address."""
    distributed = _distributed()
    state = _dask()
    if state.scheduler is not None:
        return str(state.scheduler.address)

    async def start() -> Any:
        scheduler = distributed.Scheduler(**scheduler_args)
        await scheduler
        return scheduler

    state.scheduler = state.run(start(), "starting the dask Scheduler")
    return str(state.scheduler.address)


def start_worker(address: str, nanny: bool, worker_args: dict[str, Any]) -> str:
    """Start a Worker (in a subprocess with ``nanny``) of the Scheduler at ``address`` in
    this engine, or keep the one running; return its address."""
    distributed = _distributed()
    state = _dask()
    if state.worker is None:
        server = distributed.Nanny if nanny else distributed.Worker

        async def start() -> Any:
            worker = server(address, **worker_args)
            await worker
            return worker

        state.worker = state.run(start(), "starting the dask Worker")
    namespace = _namespace()
    for name in WORKER_NAMES:
        namespace[name] = state.worker
    return str(state.worker.address)


def stop_worker() -> bool:
    """Stop this engine's Worker, if it runs one (True if it did)."""
    state = _state
    if state is None or state.worker is None:
        return False
    worker, state.worker = state.worker, None
    namespace = _namespace()
    for name in WORKER_NAMES:
        if namespace.get(name) is worker:
            del namespace[name]
    state.run(worker.close(), "stopping the dask Worker")
    return True


def stop_scheduler() -> bool:
    """Stop the Scheduler running in this engine, if one does (True if it did)."""
    state = _state
    if state is None or state.scheduler is None:
        return False
    scheduler, state.scheduler = state.scheduler, None
    state.run(scheduler.close(), "stopping the dask Scheduler")
    return True
