"""``Client.become_dask`` / ``stop_dask``: the engines as a dask.distributed cluster.

A Scheduler starts inside one engine and a Worker inside each target engine
(``dask_engine.py`` is what they run); the user gets a ``distributed.Client`` connected to the
Scheduler.  ipyparallel runs the Scheduler in its controller; ours is a single poll loop
that runs no foreign event loop, so the Scheduler lives on an engine instead, found again
there by the next ``become_dask`` (from any client) and stopped by ``stop_dask``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ..error import IPythonError
from . import dask_engine
from .connect import load_connection_file
from .optional import require
from .targets import Targets

if TYPE_CHECKING:
    from .client import Client

__all__ = ["become_dask", "stop_dask"]


def _loopback(location: str) -> bool:
    try:
        return ipaddress.ip_address(location).is_loopback
    except ValueError:
        return location == "localhost"


def _check_engines_have_distributed(client: Client, engine_ids: list[int]) -> None:
    found = client[engine_ids].apply_sync(dask_engine.distributed_available)
    missing = [e for e, ok in zip(engine_ids, found) if not ok]
    if missing:
        raise IPythonError(
            f"become_dask needs the package 'distributed' on the engines too; engine(s) "
            f"{', '.join(map(str, missing))} cannot import it: install it in their Python "
            "(pip install distributed)"
        )


def become_dask(
    client: Client,
    targets: Targets,
    port: int,
    nanny: bool,
    scheduler_args: dict[str, Any] | None,
    worker_args: dict[str, Any],
) -> Any:
    """See :meth:`Client.become_dask`."""
    distributed = require("distributed", "become_dask", "distributed")
    engine_ids = client._build_targets(targets)
    _check_engines_have_distributed(client, engine_ids)
    every = client.ids
    running = [a for a in client[every].apply_sync(dask_engine.scheduler_address) if a]
    if running:
        address = running[0]
    else:
        args = dict(scheduler_args or {})
        args.setdefault("port", port)
        if "host" not in args and "interface" not in args:
            # a cluster on loopback has its engines on this host: so does its scheduler's
            # audience, and dask's servers have no authentication to expose to the network
            location = str(load_connection_file(client.url_file)["location"])
            if _loopback(location):
                args["host"] = location
        address = client[engine_ids[0]].apply_sync(dask_engine.start_scheduler, args)
    worker_args = dict(worker_args)
    if "ncores" in worker_args:  # distributed 2.0 renamed it; ipyparallel's examples use it
        worker_args.setdefault("nthreads", worker_args.pop("ncores"))
    worker_args.setdefault("nthreads", 1)  # an engine is one worker process, one thread
    client[engine_ids].apply_sync(dask_engine.start_worker, address, nanny, worker_args)
    return distributed.Client(address)


def stop_dask(client: Client, targets: Targets) -> None:
    """See :meth:`Client.stop_dask`."""
    engine_ids = client._build_targets(targets)
    # the Workers first: stopped after their Scheduler, they would keep trying to reach it
    client[engine_ids].apply_sync(dask_engine.stop_worker)
    client[client.ids].apply_sync(dask_engine.stop_scheduler)
