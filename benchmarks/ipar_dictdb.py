"""ipar_widgets with its task records in memory only (``--dictdb``), as a ``peers.py`` backend.

``peers.py`` starts clusters with ``ipp.Cluster(n=N)`` and has no option for controller
arguments; this module is ``ipar_widgets`` whose ``Cluster`` passes ``--dictdb``, so one run
compares the default SQLite store with the in-memory one::

    PYTHONPATH=benchmarks python ../shared/bench/peers.py \\
        --backend ipar_widgets,ipp:ipar_dictdb --workloads lb_throughput --rounds 3 --quick
"""

from __future__ import annotations

from typing import Any

import ipar_widgets as _ipp


class Cluster(_ipp.Cluster):
    """``ipar_widgets.Cluster`` whose controller keeps task records in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("controller_args", ["--dictdb"])
        super().__init__(*args, **kwargs)


def __getattr__(name: str) -> Any:
    return getattr(_ipp, name)
