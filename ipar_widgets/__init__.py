"""ipar_widgets: IPython Parallel's programming model, with live progress widgets.

``import ipar_widgets as ipp`` offers the names of ipyparallel's public API: ``Cluster``,
``Client``, views, ``AsyncResult``, ``Reference``, ``interactive``, ``require``,
``depend``, the errors, ...
"""

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import Any

from . import error
from ._version import __version__
from .client.asyncresult import AsyncHubResult, AsyncMapResult, AsyncResult
from .client.client import Client
from .client.dependency import Dependency, depend, dependent, require
from .client.executor import ViewExecutor
from .client.metadata import Metadata
from .client.remotefunction import ParallelFunction, RemoteFunction, parallel, remote
from .client.view import BroadcastView, DirectView, LoadBalancedView, View
from .cluster.cluster import Cluster
from .cluster.manager import ClusterManager
from .error import (
    AlreadyDisplayedError,
    CompositeError,
    DependencyTimeout,
    EngineError,
    ImpossibleDependency,
    InvalidDependency,
    IPythonError,
    KernelError,
    NoEnginesRegistered,
    RemoteError,
    TaskAborted,
    TaskRejectError,
    TaskTimeout,
    TimeoutError,
    UnmetDependency,
)
from .serialize import (
    PrePickled,
    Reference,
    can,
    can_map,
    deserialize_object,
    interactive,
    pack_apply_message,
    serialize_object,
    uncan,
    uncan_map,
    unpack_apply_message,
    use_cloudpickle,
    use_dill,
    use_pickle,
)

version_info = tuple(int(p) for p in __version__.split(".")[:3])

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "AlreadyDisplayedError",
    "AsyncHubResult",
    "AsyncMapResult",
    "AsyncResult",
    "BroadcastView",
    "Client",
    "Cluster",
    "ClusterManager",
    "CompositeError",
    "Dependency",
    "DependencyTimeout",
    "DirectView",
    "EngineError",
    "IPythonError",
    "ImpossibleDependency",
    "InvalidDependency",
    "KernelError",
    "LoadBalancedView",
    "Metadata",
    "NoEnginesRegistered",
    "ParallelFunction",
    "PrePickled",
    "Reference",
    "RemoteError",
    "RemoteFunction",
    "TaskAborted",
    "TaskRejectError",
    "TaskTimeout",
    "TimeoutError",
    "UnmetDependency",
    "View",
    "ViewExecutor",
    "__version__",
    "can",
    "can_map",
    "depend",
    "dependent",
    "deserialize_object",
    "error",
    "interactive",
    "pack_apply_message",
    "parallel",
    "register_joblib_backend",
    "remote",
    "require",
    "serialize_object",
    "uncan",
    "uncan_map",
    "unpack_apply_message",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
    "version_info",
]


def register_joblib_backend(name: str = "ipyparallel", make_default: bool = False) -> None:
    """Make ``joblib.Parallel(backend=name)`` run on the default cluster's engines (the running
    cluster of the default profile, or a new local one); also registered as
    ``'ipar_widgets'``.  Needs joblib; see :mod:`ipar_widgets.joblib`."""
    from .client.optional import require

    require("ipar_widgets.joblib", "the joblib backend", "joblib").register(name, make_default)


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext ipar_widgets``: register the parallel magics."""
    from .magics import load_ipython_extension as load

    load(ip)
