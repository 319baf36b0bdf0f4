"""Small functions the client sends for engines to run (push, pull, imports).

They are pickled by reference, so engines import them from here; they act on the engine's
user namespace, which on an engine is ``__main__``'s.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def _namespace() -> dict[str, Any]:
    return sys.modules["__main__"].__dict__


def push(ns: dict[str, Any]) -> None:
    """Bind each name to its value; a key that is not a plain name is an assignment target
    (``view["a.b"] = 0`` sets attribute ``b`` of the engine's ``a``)."""
    namespace = _namespace()
    for key in ns:
        if not key.isidentifier():
            break
    else:  # plain names only, the usual case: one update
        namespace.update(ns)
        return
    for key, value in ns.items():
        if key.isidentifier():
            namespace[key] = value
            continue
        slot = "_ipar_push_value"
        while slot in namespace:
            slot += "_"
        namespace[slot] = value
        try:
            exec(f"{key} = {slot}", namespace)
        finally:
            del namespace[slot]


def pull(names: str | list[str] | tuple[str, ...]) -> Any:
    namespace = _namespace()
    if isinstance(names, str):
        return eval(names, namespace)
    return [eval(name, namespace) for name in names]


def import_module(statement: str) -> None:
    """Run one import statement (``import x as y``, ``from x import y``) in the namespace."""
    exec(statement, _namespace())


def module_available(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
