"""What an engine started by ``mpiexec`` (or ``srun``) learns from its environment.

The rank is read from the variables MPI launchers set, so an engine can take its rank as its
id without importing mpi4py (which starts MPI, and may not be installed).  With ``--mpi`` the
engine also puts mpi4py's ``MPI`` in the user namespace, as ipyparallel's ``--mpi`` does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["RANK_VARIABLES", "mpi_namespace", "mpi_rank"]

log = logging.getLogger("ipar_widgets.engine")

#: where launchers put the rank, most specific first: Open MPI, PMIx (Open MPI 5, srun
#: --mpi=pmix), MPICH and Intel MPI (PMI), MVAPICH, and Slurm's task number
RANK_VARIABLES = (
    "OMPI_COMM_WORLD_RANK",
    "PMIX_RANK",
    "PMI_RANK",
    "MV2_COMM_WORLD_RANK",
    "SLURM_PROCID",
)


def mpi_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's rank from the MPI launcher's environment, or None outside MPI."""
    env = os.environ if environ is None else environ
    for name in RANK_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def mpi_namespace() -> dict[str, Any]:
    """``{'MPI': mpi4py.MPI}`` for the user namespace, or ``{}`` when mpi4py is missing
    (logged: ``--mpi`` then gives the rank as id, and no MPI module)."""
    try:
        from mpi4py import MPI  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        log.warning("--mpi: mpi4py cannot be imported (%s); no MPI in the namespace", exc)
        return {}
    return {"MPI": MPI}
