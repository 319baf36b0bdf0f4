"""``ClusterManager``: the clusters of one or more IPython profiles, by key.

A key is ``"<profile>:<cluster_id>"`` (the profile's directory instead of its name when it is
not in ``$IPYTHONDIR``), as in ipyparallel; ``ipar list`` shows the same clusters.
``load_clusters()`` reads the cluster files on disk (a running cluster started by
``ipar start``, ``Cluster(...)`` or another process) and forgets those that have stopped since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Dict
from traitlets.config import LoggingConfigurable

from .. import paths
from .cluster import Cluster

__all__ = ["ClusterManager", "cluster_key"]


def cluster_key(cluster: Cluster) -> str:
    """``"<profile>:<cluster_id>"``: the profile's name when its directory is
    ``$IPYTHONDIR/profile_<name>``, else the directory itself."""
    profile_dir = Path(cluster.profile_dir)
    home = paths.ipython_dir()
    if profile_dir.parent == home and profile_dir.name.startswith("profile_"):
        name = profile_dir.name[len("profile_") :]
    else:
        name = str(profile_dir)
    return f"{name}:{cluster.cluster_id}"


class ClusterManager(LoggingConfigurable):
    """Clusters by key, found on disk by :meth:`load_clusters` or made by :meth:`new_cluster`."""

    clusters = Dict(help="The Cluster objects, by key ('<profile>:<cluster_id>').")

    @staticmethod
    def _cluster_key(cluster: Cluster) -> str:
        return cluster_key(cluster)

    def load_clusters(
        self,
        *,
        profile_dirs: list[str] | None = None,
        profile_dir: str | None = None,
        profiles: list[str] | None = None,
        profile: str | None = None,
        init_default_clusters: bool = False,
        **kwargs: Any,
    ) -> dict[str, Cluster]:
        """Add the clusters whose files are in the given profiles and return them all.

        Where to look, first match wins: ``profile_dirs``, ``profile_dir``, ``profiles`` (names),
        ``profile``, else every IPython profile.  Clusters loaded from files whose controller has
        stopped since are dropped.  With ``init_default_clusters``, a profile without clusters
        gets a (not started) ``Cluster(cluster_id="")``.  Other keyword arguments go to each
        :meth:`Cluster.from_file`.
        """
        for key, cluster in list(self.clusters.items()):
            if cluster._data is not None and not cluster._running():
                self.log.info("Removing stopped cluster %s", key)
                del self.clusters[key]
        by_file = {c.cluster_file: c for c in self.clusters.values()}
        for directory in self._profile_dirs(profile_dirs, profile_dir, profiles, profile):
            found = paths.cluster_files(directory)
            if init_default_clusters and not found:
                default = Cluster(profile_dir=str(directory), cluster_id="", parent=self)
                self.clusters.setdefault(cluster_key(default), default)
            for _cluster_id, path in found:
                if str(path) in by_file:
                    continue
                try:
                    cluster = Cluster.from_file(str(path), parent=self, **kwargs)
                except Exception as e:  # a half-written or foreign file must not stop the rest
                    self.log.warning("Failed to load cluster from %s: %s", path, e)
                    continue
                self.clusters[cluster_key(cluster)] = cluster
        return dict(self.clusters)

    @staticmethod
    def _profile_dirs(
        profile_dirs: list[str] | None,
        profile_dir: str | None,
        profiles: list[str] | None,
        profile: str | None,
    ) -> list[Path]:
        if profile_dirs is not None:
            return [Path(d) for d in profile_dirs]
        if profile_dir is not None:
            return [Path(profile_dir)]
        if profiles is None and profile is not None:
            profiles = [profile]
        if profiles is not None:
            return [paths.profile_dir(name) for name in profiles]
        found = []
        for name in paths.list_profiles():  # skip directories whose names are no profile's
            try:
                found.append(paths.profile_dir(name))
            except ValueError:
                continue
        return found

    def new_cluster(self, **kwargs: Any) -> tuple[str, Cluster]:
        """Make a (not started) ``Cluster(**kwargs)`` and add it; returns ``(key, cluster)``.
        A KeyError if a cluster with the same profile and id is already here."""
        cluster = Cluster(parent=self, **kwargs)
        key = cluster_key(cluster)
        if key in self.clusters:
            raise KeyError(f"Cluster {key} already exists!")
        self.clusters[key] = cluster
        return key, cluster

    def get_cluster(self, cluster_id: str) -> Cluster:
        """The cluster with this key (``"<profile>:<cluster_id>"``); KeyError if none."""
        return self._lookup(cluster_id)

    def remove_cluster(self, cluster_id: str) -> None:
        """Forget the cluster with this key (it keeps running); KeyError if none."""
        self._lookup(cluster_id)
        del self.clusters[cluster_id]

    def _lookup(self, key: str) -> Cluster:
        try:
            cluster: Cluster = self.clusters[key]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise KeyError(
                f"no cluster {key!r} here; keys are '<profile>:<cluster_id>' (known: {known}); "
                "call load_clusters() to read the clusters on disk"
            ) from None
        return cluster
