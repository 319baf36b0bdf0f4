"""Engines started by ``mpiexec``: one engine per rank, engine id = rank.

``mpiexec -n N [mpi_args] python -m ipar_widgets.engine --rank-as-id --mpi [engine_args]``,
with the engine file's contents in ``IPP_CONNECTION_INFO``, so no shared filesystem is
needed.  MPICH passes the whole environment to ranks on other hosts; Open MPI passes only
what ``-x NAME`` names, so for Open MPI each of the launcher's variables gets a ``-x``.  Each
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
import subprocess
from typing import ClassVar

from traitlets import Bool, List, Unicode

from .launcher import EngineLauncher, LocalProcessLauncher

__all__ = ["MPIEngineSetLauncher", "MPILauncher", "mpi_error_block"]

# Open MPI explains a failure between lines of dashes, MPICH between lines of '='
_BLOCK = re.compile(r"^(-{20,}|={20,})$\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


#: whether an mpiexec command is Open MPI's, asked once per command
_OPEN_MPI: dict[tuple[str, ...], bool] = {}


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
        exports = [a for name in sorted(self.environment) for a in ("-x", name)]
        return [*self.mpi_cmd, "-n", str(n), *self.mpi_args, *(exports if self._open_mpi() else [])]

    def _open_mpi(self) -> bool:
        """Whether ``mpi_cmd`` is Open MPI's (which takes ``-x``; MPICH's refuses it)."""
        key = tuple(self.mpi_cmd)
        if key not in _OPEN_MPI:
            try:
                found = subprocess.run(
                    [*self.mpi_cmd, "--version"], capture_output=True, text=True, timeout=10
                )
                said = (found.stdout + found.stderr).lower()
                _OPEN_MPI[key] = any(w in said for w in ("open mpi", "openrte", "open-mpi"))
            except (OSError, subprocess.TimeoutExpired):
                _OPEN_MPI[key] = False
        return _OPEN_MPI[key]

    def start(self) -> None:
        if os.geteuid() == 0:
            # Open MPI refuses root without these (MPICH ignores them)
            self.environment.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            self.environment.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        super().start()

    def failure(self) -> str:
        """What went wrong: what the ranks said last, then mpiexec's explanation block (or
        just the last lines of output when there is no block)."""
        output = self.get_output()
        block = mpi_error_block(output)
        if not block:
            return super().failure()
        ranks_said = _BLOCK.split(output, maxsplit=1)[0].strip().splitlines()[-10:]
        return "\n".join([*ranks_said, block])


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
