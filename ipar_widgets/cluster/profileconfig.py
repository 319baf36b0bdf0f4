"""A profile's cluster configuration: ``ipcluster_config.py`` / ``ipcluster_config.json``.

ipyparallel's file names, so a profile made for ``ipcluster`` configures ``ipar`` too (for
example ``c.SSHEngineSetLauncher.engines = {...}`` or ``c.SlurmEngineSetLauncher.timelimit``).
Values given directly (``Cluster(config=...)``, keyword arguments) win over the file's.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

__all__ = ["CONFIG_NAMES", "load_profile_config"]

#: the files read, in order (a later file's values win)
CONFIG_NAMES = ("ipcluster_config.json", "ipcluster_config.py")


def load_profile_config(profile_dir: str | Path) -> Config:
    """The merged configuration of the profile's config files (empty if there are none).
    A file that does not load is an error naming it, never silently skipped."""
    merged = Config()
    for name in CONFIG_NAMES:
        path = Path(profile_dir) / name
        if not path.exists():
            continue
        loader_class = JSONFileConfigLoader if name.endswith(".json") else PyFileConfigLoader
        loader = loader_class(name, path=str(profile_dir))
        try:
            merged.merge(loader.load_config())
        except ConfigFileNotFound:
            continue
        except Exception as exc:
            raise ValueError(f"the profile's config file {path} does not load: {exc}") from exc
    return merged
