"""Batch-scheduler launchers (Slurm, SGE, PBS, LSF, HTCondor): placeholder, being written."""

from __future__ import annotations

from .launcher import BaseLauncher, ControllerLauncher, EngineLauncher

__all__ = [
    f"{system}{role}"
    for system in ("Slurm", "SGE", "PBS", "LSF", "HTCondor")
    for role in ("Launcher", "EngineSetLauncher", "ControllerLauncher")
] + ["BatchSystemLauncher"]


class BatchSystemLauncher(BaseLauncher):
    """Placeholder."""


class SlurmLauncher(BatchSystemLauncher):
    pass


class SlurmEngineSetLauncher(SlurmLauncher, EngineLauncher):
    pass


class SlurmControllerLauncher(SlurmLauncher, ControllerLauncher):
    pass


class SGELauncher(BatchSystemLauncher):
    pass


class SGEEngineSetLauncher(SGELauncher, EngineLauncher):
    pass


class SGEControllerLauncher(SGELauncher, ControllerLauncher):
    pass


class PBSLauncher(BatchSystemLauncher):
    pass


class PBSEngineSetLauncher(PBSLauncher, EngineLauncher):
    pass


class PBSControllerLauncher(PBSLauncher, ControllerLauncher):
    pass


class LSFLauncher(BatchSystemLauncher):
    pass


class LSFEngineSetLauncher(LSFLauncher, EngineLauncher):
    pass


class LSFControllerLauncher(LSFLauncher, ControllerLauncher):
    pass


class HTCondorLauncher(BatchSystemLauncher):
    pass


class HTCondorEngineSetLauncher(HTCondorLauncher, EngineLauncher):
    pass


class HTCondorControllerLauncher(HTCondorLauncher, ControllerLauncher):
    pass
