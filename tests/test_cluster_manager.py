"""ClusterManager: the clusters of IPython profiles by '<profile>:<cluster_id>' key, read from
the cluster files real clusters write (ipyparallel's Cluster API notebook uses it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ClusterHandle, wait_until

import ipar_widgets as ipp
from ipar_widgets import paths
from ipar_widgets.cluster import Cluster, ClusterManager


def test_the_names_live_where_ipyparallel_users_import_them() -> None:
    assert ipp.ClusterManager is ClusterManager
    assert Cluster is ipp.Cluster
    assert "ClusterManager" in ipp.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ipp.cluster.Nope  # noqa: B018


def test_new_get_and_remove_by_key(tmp_path: Path) -> None:
    m = ClusterManager()
    assert m.clusters == {}
    key, c = m.new_cluster(profile_dir=str(tmp_path), cluster_id="abc")
    assert key == f"{tmp_path}:abc"  # a directory outside $IPYTHONDIR is its own name
    assert c.profile_dir == str(tmp_path)
    assert m.get_cluster(key) is c
    assert list(m.clusters) == [key]
    with pytest.raises(KeyError, match="already exists"):
        m.new_cluster(cluster_id="abc", profile_dir=str(tmp_path))
    with pytest.raises(KeyError, match="no cluster 'nosuchcluster' here.*load_clusters"):
        m.get_cluster("nosuchcluster")
    m.remove_cluster(key)
    assert m.clusters == {}
    with pytest.raises(KeyError):
        m.remove_cluster("nosuchcluster")


def test_a_profile_in_ipythondir_is_keyed_by_its_name() -> None:
    key, _ = ClusterManager().new_cluster(profile="myprofile", cluster_id="x1")
    assert key == "myprofile:x1"


def test_load_clusters_finds_running_clusters_and_drops_stopped_ones(
    make_cluster: object, profile: str
) -> None:
    m = ClusterManager()
    assert f"{profile}:" not in m.load_clusters(profile=profile)
    handle: ClusterHandle = make_cluster(n=1)  # type: ignore[operator]
    found = m.load_clusters(profile=profile)
    assert list(found) == [f"{profile}:"]
    loaded = found[f"{profile}:"]
    assert loaded.cluster_file == handle.cluster.cluster_file
    assert loaded is not handle.cluster  # a Cluster of its own, attached to the running one
    with loaded.connect_client_sync() as rc:
        assert rc.ids == handle.rc.ids
    # loading again keeps the same object
    assert m.load_clusters(profile=profile)[f"{profile}:"] is loaded
    # every profile (the default search) includes this one
    assert f"{profile}:" in ClusterManager().load_clusters()
    handle.cluster.stop_cluster_sync()
    wait_until(
        lambda: f"{profile}:" not in m.load_clusters(profile=profile),
        timeout=15,
        what="the stopped cluster to leave the manager",
    )


def test_load_clusters_skips_unreadable_files_and_can_init_defaults(profile: str) -> None:
    directory = paths.profile_dir(profile, create=True)
    bad = paths.cluster_file(directory, "broken")
    bad.write_text("{ not json")
    m = ClusterManager()
    assert m.load_clusters(profile_dirs=[str(directory)]) == {}
    bad.unlink()
    found = m.load_clusters(profile_dir=str(directory), init_default_clusters=True)
    assert list(found) == [f"{profile}:"]
    assert found[f"{profile}:"].cluster_id == ""
    assert not found[f"{profile}:"]._running()  # made, not started
