"""joblib on the cluster: ``ipar_widgets.register_joblib_backend()`` (``register`` here, as
``ipyparallel.joblib.register``) makes ``Parallel(backend="ipyparallel")`` run its calls on
the engines of the default cluster::

    import ipar_widgets as ipp
    from joblib import Parallel, delayed, parallel_config

    ipp.register_joblib_backend()
    with parallel_config(backend="ipyparallel"):
        squares = Parallel()(delayed(pow)(i, 2) for i in range(100))

or, on a view of a cluster you connected to: ``rc.load_balanced_view().register_joblib_backend()``.
Importing this module imports joblib (an optional dependency: ``pip install joblib``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .client.optional import require

if TYPE_CHECKING:
    from .client._joblib import IPythonParallelBackend
    from .client.baseview import View

_backend = require("ipar_widgets.client._joblib", "the joblib backend", "joblib")

__all__ = ["register", "connect_default_cluster"]


def connect_default_cluster() -> tuple[View, Callable[[], None]]:
    """A load-balanced view on the default profile's cluster, and what to call when done.

    As ipyparallel does: the running cluster of the default profile (engines started in it
    if it has none), or else a new local cluster, which is stopped again when closing.
    """
    from .cluster.cluster import Cluster
    from .error import ClusterError

    cluster: Cluster | None = None
    rc = None
    try:
        cluster = Cluster.from_file()
        rc = cluster.connect_client_sync()
    except ClusterError:  # no cluster file, or its controller is gone
        cluster, rc = None, None
    owned = rc is None
    if cluster is None or rc is None:
        cluster = Cluster()
        cluster.start_cluster_sync()
        rc = cluster.connect_client_sync()
    try:
        if not owned and len(rc) == 0:
            cluster.start_engines_sync()
        rc.wait_for_engines(cluster.n or (1 if not owned else None), timeout=cluster.engine_timeout)
    except BaseException:
        rc.close()
        if owned:
            cluster.stop_cluster_sync()
        raise

    def close() -> None:
        rc.close()
        if owned:
            cluster.stop_cluster_sync()

    return rc.load_balanced_view(), close


def _make_default_backend(**kwargs: Any) -> IPythonParallelBackend:
    backend: IPythonParallelBackend = _backend.IPythonParallelBackend(
        connect=connect_default_cluster, **kwargs
    )
    return backend


def register(name: str = "ipyparallel", make_default: bool = False) -> None:
    """Register the default cluster as joblib backend ``name`` (also as ``'ipar_widgets'``
    when ``name`` is the default); ``make_default=True`` makes it joblib's default backend."""
    _backend.register(_make_default_backend, name, make_default)
