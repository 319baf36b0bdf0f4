"""The server extension's state: one worker pool, one lock per cluster, the actions in flight.

Operations block for seconds (a start waits for engines to register), so they run in a
thread pool and the server's event loop stays free.  Actions on the same cluster are
serialized by an ``asyncio.Lock`` keyed by (profile, cluster id), so two clicks on "start",
or a "stop" during an "add engines", run one after the other and each sees the cluster as
the previous one left it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import operations as ops

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, str]

#: Seconds an action waits for an earlier action on the same cluster before giving up.
LOCK_TIMEOUT = 150.0


class ClusterService:
    """Runs operations off the event loop, one at a time per cluster."""

    def __init__(self, max_workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ipar-server")
        self._locks: dict[Key, asyncio.Lock] = {}
        self._actions: dict[Key, tuple[str, float]] = {}
        self._controllers: dict[Key, subprocess.Popen[bytes]] = {}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def act(self, key: Key, action: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` while holding the cluster's lock; ``action`` (e.g. "starting") is
        what the panel shows meanwhile."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), LOCK_TIMEOUT)
        except asyncio.TimeoutError:
            current = self._actions.get(key, ("busy", 0.0))[0]
            raise ops.Conflict(
                f"the {ops.label(*key)} is still {current} after {LOCK_TIMEOUT:g} s; try again later"
            ) from None
        self._actions[key] = (action, time.time())
        try:
            return await self.run(fn, *args)
        finally:
            del self._actions[key]
            lock.release()

    # -- the operations ----------------------------------------------------------------------
    async def list_clusters(self) -> dict[str, Any]:
        self._reap()
        listing = await self.run(ops.list_clusters)
        shown = set()
        for cluster in listing["clusters"]:
            key = (cluster["profile"], cluster["cluster_id"])
            shown.add(key)
            cluster["action"] = self._actions.get(key, (None,))[0]
        now = time.time()
        for key, (action, since) in self._actions.items():
            if key not in shown and action == "starting":
                listing["clusters"].append(_placeholder(key, now - since))
        listing["clusters"].sort(key=lambda c: (c["profile"], c["cluster_id"]))
        return listing

    async def start(self, profile: str, cluster_id: str, n: int) -> dict[str, Any]:
        key = (profile, cluster_id)
        cluster, proc = await self.act(key, "starting", ops.start_cluster, profile, cluster_id, n)
        self._controllers[key] = proc
        return cluster

    async def stop(self, profile: str, cluster_id: str) -> dict[str, Any]:
        key = (profile, cluster_id)
        result = await self.act(key, "stopping", ops.stop_cluster, profile, cluster_id)
        proc = self._controllers.pop(key, None)
        if proc is not None:
            await self.run(_reap_one, proc, 5.0)
        return result

    async def add_engines(self, profile: str, cluster_id: str, n: int) -> dict[str, Any]:
        return await self.act(
            (profile, cluster_id), "adding engines", ops.add_engines, profile, cluster_id, n
        )

    async def stop_engine(self, profile: str, cluster_id: str, engine_id: int) -> dict[str, Any]:
        return await self.act(
            (profile, cluster_id),
            f"stopping engine {engine_id}",
            ops.stop_engine,
            profile,
            cluster_id,
            engine_id,
        )

    async def cluster(self, profile: str, cluster_id: str) -> dict[str, Any]:
        cluster = await self.run(ops.cluster_state, profile, cluster_id)
        cluster["action"] = self._actions.get((profile, cluster_id), (None,))[0]
        return cluster

    async def activity(self, profile: str, cluster_id: str) -> dict[str, Any]:
        return await self.run(ops.cluster_activity, profile, cluster_id)

    def _reap(self) -> None:
        """Collect controllers started here that have exited (stopped by ``ipar stop`` or
        crashed), so they do not linger as zombies of the server."""
        for key, proc in list(self._controllers.items()):
            if proc.poll() is not None:
                del self._controllers[key]


def _reap_one(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning(
            "controller pid %d still runs %g s after its cluster was stopped", proc.pid, timeout
        )


def _placeholder(key: Key, elapsed: float) -> dict[str, Any]:
    """A cluster being started, before its controller has written its files."""
    profile, cluster_id = key
    return {
        "profile": profile,
        "cluster_id": cluster_id,
        "state": "starting",
        "engines_registered": 0,
        "engines_requested": 0,
        "engines_starting": 0,
        "address": None,
        "controller_pid": None,
        "started": None,
        "uptime": None,
        "activity": None,
        "last_launch_failure": None,
        "action": "starting",
        "elapsed": round(elapsed, 1),
    }
