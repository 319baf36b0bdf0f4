"""Settings of a session's displays (traitlets singletons), read from the IPython session's
configuration: ``c.TransferProgress.min_bytes = ...`` in the profile's ``ipython_config.py`` is what
``TransferProgress.instance()`` gets (at run time, set the instance's attributes).

A plain ``SingletonConfigurable.instance()`` is made with an empty configuration, so a
setting written in the profile would be ignored without a word; :class:`SessionSettings`
makes its instance, the first time, with the running shell's configuration.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any, TypeVar

from traitlets.config import SingletonConfigurable

__all__ = ["SessionSettings"]

S = TypeVar("S", bound="SessionSettings")


def _shell_config() -> Any:
    """The running IPython shell's configuration, None outside IPython (not imported here:
    a script without IPython pays nothing)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "config", None)


class SessionSettings(SingletonConfigurable):
    """A singleton whose first instance takes the IPython session's configuration.  Each
    subclass is a singleton of its own (this base never holds an instance: traitlets would
    otherwise refuse a second kind of settings as a "sibling")."""

    @classmethod
    def _walk_mro(cls) -> Generator[type[SingletonConfigurable], None, None]:
        for klass in super()._walk_mro():
            if klass is not SessionSettings:
                yield klass

    @classmethod
    def instance(cls: type[S], *args: Any, **kwargs: Any) -> S:
        if not cls.initialized() and "config" not in kwargs and "parent" not in kwargs:
            config = _shell_config()
            if config is not None:
                kwargs["config"] = config
        return super().instance(*args, **kwargs)
