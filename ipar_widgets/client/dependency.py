"""Task dependencies: ``after``/``follow`` sets, and function-level ``@depend``/``@require``.

``after`` and ``follow`` (flags of a LoadBalancedView) are evaluated by the controller: a task
waits until the tasks it names finish (successfully, unless told otherwise), and with
``follow`` it runs where they ran.  ``@depend`` and ``@require`` are evaluated on the engine
just before the task runs: if unmet, the engine raises UnmetDependency and the controller
hands the task to another engine.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..error import UnmetDependency

__all__ = ["Dependency", "depend", "require", "dependent", "required"]


def _msg_ids_of(deps: Any) -> list[str]:
    from .asyncresult import AsyncResult

    if deps is None:
        return []
    if isinstance(deps, (str, AsyncResult, Dependency)):
        deps = [deps]
    out: list[str] = []
    for dep in deps:
        if isinstance(dep, str):
            out.append(dep)
        elif isinstance(dep, AsyncResult):
            out.extend(dep.msg_ids)
        elif isinstance(dep, Dependency):
            out.extend(dep)
        else:
            raise TypeError(
                f"a dependency must be a msg_id, an AsyncResult or a Dependency, found {dep!r}"
            )
    return out


class Dependency(set[str]):
    """A set of msg_ids a task depends on.

    ``all``: every one must be met (else any one); ``success``: a task that succeeded meets
    it; ``failure``: a task that failed meets it.
    """

    def __init__(
        self, dependencies: Any = (), all: bool = True, success: bool = True, failure: bool = False
    ) -> None:
        super().__init__(_msg_ids_of(dependencies))
        if not (success or failure):
            raise ValueError("a Dependency must be met by success, failure, or both")
        self.all = all
        self.success = success
        self.failure = failure

    def _meeting(self, succeeded: set[str], failed: set[str] | None, meets: bool) -> set[str]:
        """The finished tasks that meet this dependency (``meets``) or that never can."""
        found: set[str] = set()
        if self.success == meets:
            found |= set(succeeded)
        if failed is not None and self.failure == meets:
            found |= set(failed)
        return found

    def check(self, succeeded: set[str], failed: set[str] | None = None) -> bool:
        """Whether tasks that finished (``succeeded``, ``failed``: sets of msg_ids) meet this
        dependency: every one of them (``all``), or any one; an empty one is always met."""
        if not self:
            return True
        meeting = self._meeting(succeeded, failed, True)
        return self.issubset(meeting) if self.all else not self.isdisjoint(meeting)

    def unreachable(self, succeeded: set[str], failed: set[str] | None = None) -> bool:
        """Whether the way those tasks finished means this dependency can never be met."""
        if not self:
            return False
        spoiling = self._meeting(succeeded, failed, False)
        return not self.isdisjoint(spoiling) if self.all else self.issubset(spoiling)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dependencies": sorted(self),
            "all": self.all,
            "success": self.success,
            "failure": self.failure,
        }

    def __repr__(self) -> str:
        return f"Dependency({sorted(self)}, all={self.all}, success={self.success}, failure={self.failure})"


def as_metadata(value: Any) -> Any:
    """An after/follow flag as the controller reads it."""
    if value is None:
        return None
    if isinstance(value, Dependency):
        return value.as_dict()
    ids = _msg_ids_of(value)
    return ids or None


class dependent:
    """A function that runs only if ``df(*dargs, **dkwargs)`` is true on the engine."""

    def __init__(
        self, _wrapped: Callable[..., Any], df: Callable[..., Any], *dargs: Any, **dkwargs: Any
    ) -> None:
        self.f = _wrapped
        self.func_name = getattr(_wrapped, "__name__", "dependent")
        self.df = df
        self.dargs = dargs
        self.dkwargs = dkwargs
        functools.update_wrapper(self, _wrapped)

    def check_dependency(self) -> bool:
        return bool(self.df(*self.dargs, **self.dkwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.check_dependency():
            raise UnmetDependency(f"the dependency of {self.func_name}() is not met on this engine")
        return self.f(*args, **kwargs)


def depend(
    f: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[[Callable[..., Any]], dependent]:
    """Decorator: run the task only on engines where ``f(*args, **kwargs)`` is true."""

    def wrap(func: Callable[..., Any]) -> dependent:
        return dependent(func, f, *args, **kwargs)

    return wrap


class required(dependent):
    """A function that runs only where its modules import; they (and the pushed objects) are
    defined in the engine's namespace and in the function's own globals first."""

    def __init__(
        self, _wrapped: Callable[..., Any], names: list[str], objects: dict[str, Any]
    ) -> None:
        super().__init__(_wrapped, _imports_available, names)
        self.names = names
        self.objects = objects

    def check_dependency(self) -> bool:
        modules: dict[str, Any] = {}
        for name in self.names:
            try:
                importlib.import_module(name)
            except ImportError:
                return False
            top = name.split(".")[0]
            modules[top] = sys.modules[top]
        for namespace in (sys.modules["__main__"].__dict__, getattr(self.f, "__globals__", None)):
            if namespace is not None:
                namespace.update(modules)
                namespace.update(self.objects)
        return True


def _imports_available(names: list[str]) -> bool:
    return all(importlib.util.find_spec(n.split(".")[0]) is not None for n in names)


def require(*objects: Any, **mapping: Any) -> Callable[[Callable[..., Any]], dependent]:
    """Decorator: import these modules (and define these objects) on the engine first.

    Modules are given by name or as module objects; functions positionally are defined under
    their ``__name__``; anything else by keyword.  An engine where an import fails is
    skipped (UnmetDependency), so a load-balanced task goes where the module exists.
    """
    names: list[str] = []
    pushed: dict[str, Any] = dict(mapping)
    for obj in objects:
        if isinstance(obj, ModuleType):
            names.append(obj.__name__)
        elif isinstance(obj, str):
            names.append(obj)
        elif callable(obj) and hasattr(obj, "__name__"):
            pushed[obj.__name__] = obj
        else:
            raise TypeError(
                f"require() takes modules, module names or named functions positionally, found {obj!r}; "
                "pass other objects by keyword"
            )

    def wrap(f: Callable[..., Any]) -> dependent:
        return required(f, names, pushed)

    return wrap
