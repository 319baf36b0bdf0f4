"""Engines started by ``mpiexec``: one engine per rank, engine id = rank.

``mpiexec -n N [mpi_args] python -m ipar_widgets.engine --rank-as-id --mpi [engine_args]``,
with the engine file's contents in ``IPP_CONNECTION_INFO`` (Open MPI and MPICH pass the
environment to their ranks, also on other hosts), so no shared filesystem is needed.  Each
engine asks for its rank as its id; with ``mpi4py`` (the default) it also imports mpi4py.

Stopping sends SIGTERM to ``mpiexec``, which ends its ranks.  Each rank runs in a process
group of its own.  After a SIGKILL of ``mpiexec``, ranks that initialised MPI (``mpi4py``)
exit within a second or two (Open MPI ends a rank whose daemon is gone); the others keep
running, are still stopped through the controller (``ipar stop``), and leave by themselves
once it is gone (``EngineApp.controller_timeout``).
"""

from __future__ import annotations

import os
import re
from typing import ClassVar

from traitlets import Bool, List, Unicode

from .launcher import EngineLauncher, LocalProcessLauncher

__all__ = ["MPIEngineSetLauncher", "MPILauncher", "mpi_error_block"]

# Open MPI explains a failure between lines of dashes, MPICH between lines of '='
_BLOCK = re.compile(r"^(-{20,}|={20,})$\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


def mpi_error_block(output: str) -> str:
    """The last explanation ``mpiexec`` printed between its rule lines ('' if none)."""
    blocks = _BLOCK.findall(output)
    return blocks[-1][1].strip() if blocks else ""


class MPILauncher(LocalProcessLauncher):
    """Runs a command under ``mpiexec -n N``."""

    mpi_cmd = List(Unicode(), ["mpiexec"], help="The mpiexec command (and its own arguments).").tag(
        config=True
    )
    mpi_args = List(
        Unicode(),
        help="Extra arguments for mpiexec, before the program (e.g. ['--oversubscribe'], "
        "['--hostfile', 'hosts']).",
    ).tag(config=True)

    def mpi_prefix(self, n: int) -> list[str]:
        return [*self.mpi_cmd, "-n", str(n), *self.mpi_args]

    def start(self) -> None:
        if os.geteuid() == 0:
            # Open MPI refuses root without these (MPICH ignores them)
            self.environment.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            self.environment.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        super().start()

    def failure(self) -> str:
        """What went wrong, from mpiexec's output: its explanation block, or its last lines."""
        return mpi_error_block(self.get_output()) or super().failure()


class MPIEngineSetLauncher(MPILauncher, EngineLauncher):
    """``n`` engines as the ranks of one ``mpiexec``; each engine's id is its rank (when no
    other engine has that id)."""

    mpi4py = Bool(
        True,
        help="Each engine imports mpi4py (initialising MPI) and has its MPI in the user "
        "namespace (the engine's --mpi). Off: the engines take their ranks as ids only.",
    ).tag(config=True)

    serialize_fields: ClassVar[tuple[str, ...]] = (*LocalProcessLauncher.serialize_fields, "n")

    def find_args(self) -> list[str]:
        flags = ["--rank-as-id", *(["--mpi"] if self.mpi4py else [])]
        return [*self.mpi_prefix(self.n), *self.engine_cmd, *flags, *self.engine_args]
