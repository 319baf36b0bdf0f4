"""The optional packages some features need (joblib, dask.distributed): imported only when
such a feature is used, with an error that says what to install when one is missing."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["require"]


def require(module: str, feature: str, needs: str) -> ModuleType:
    """Import ``module`` (a package, or a module of ours that imports it) for ``feature``.

    When the package ``needs`` (an import name that is also its pip name: ``joblib``,
    ``distributed``) is missing, the ImportError says so and what to install; any other
    import failure is raised as it is.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != needs:
            raise
        raise ImportError(
            f"{feature} needs the package {needs!r}, which this Python ({sys.executable}) "
            f"does not have; install it with: pip install {needs}",
            name=exc.name,
        ) from exc
