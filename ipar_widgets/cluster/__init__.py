"""Starting, finding and stopping clusters: the ``Cluster`` API and the ``ipar`` command.

``from ipar_widgets.cluster import Cluster, ClusterManager`` works as with ipyparallel; the
names load on first use, so the ``ipar`` command does not import the client to start.
"""

from typing import Any

__all__ = ["Cluster", "ClusterManager"]


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from .cluster import Cluster

        return Cluster
    if name == "ClusterManager":
        from .manager import ClusterManager

        return ClusterManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
