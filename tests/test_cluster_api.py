"""The Cluster API: the awaitable twins of its blocking methods, and the Client it connects."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from conftest import kill_group_of

import ipar_widgets as ipp

TWINS = [
    "start_controller",
    "start_engines",
    "start_cluster",
    "start_and_connect",
    "connect_client",
    "stop_engines",
    "stop_engine",
    "stop_cluster",
    "signal_engines",
]


def test_every_awaitable_twin_is_made_from_its_blocking_method() -> None:
    for name in TWINS:
        twin = getattr(ipp.Cluster, name)
        blocking = getattr(ipp.Cluster, name + "_sync")
        assert inspect.iscoroutinefunction(twin), name
        assert twin.__name__ == name
        assert twin.__doc__ == f"Awaitable form of :meth:`{name}_sync`, run in a worker thread."
        assert blocking.__doc__  # the blocking method says what both do
    assert ipp.Cluster.stop_controller is ipp.Cluster.stop_cluster


def test_a_cluster_started_and_stopped_with_await(profile: str) -> None:
    cluster = ipp.Cluster(n=1, profile=profile, cluster_id="")

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        async with cluster as rc:
            assert rc.cluster is cluster
            first = rc.ids
            set_id = await cluster.start_engines(1)  # arguments reach the blocking method
            launched = [cluster.engines[set_id].n] if set_id in cluster.engines else []
            rc.wait_for_engines(2, timeout=60)
            both = rc.ids
            await cluster.stop_engine(1)
            return first, launched, both

    try:
        first, launched, both = asyncio.run(scenario())
    finally:
        pid = (cluster._data or {}).get("controller_pid")
        cluster.stop_cluster_sync()
        if pid:
            kill_group_of(pid)
    assert (first, launched, both) == ([0], [1], [0, 1])
    assert not cluster._running()


def test_log_level_takes_a_number_as_in_ipyparallel(profile: str) -> None:
    import logging

    import psutil
    from traitlets import TraitError

    assert ipp.Cluster(log_level="warning").log_level == "WARN"
    for bad in (11, "LOUD"):
        with pytest.raises(TraitError, match="must be a logging level name .* found"):
            ipp.Cluster(log_level=bad)
    cluster = ipp.Cluster(n=1, profile=profile, cluster_id="", log_level=logging.DEBUG)
    assert cluster.log_level == "DEBUG"
    with cluster as rc:
        assert rc.ids == [0]
        pid = cluster._data["controller_pid"]  # type: ignore[index]
        assert "--log-level=DEBUG" in psutil.Process(pid).cmdline()
