"""Which task store a controller uses: ``ControllerApp.db_class`` and its accepted names.

Our short names and ipyparallel's class paths both work, so an ipyparallel configuration
(``c.ControllerApp.db_class = "ipyparallel.controller.sqlitedb.SQLiteDB"``) runs unchanged;
a MongoDB store is not one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .sqlitestore import SQLiteTaskStore
from .taskstore import MemoryTaskStore, NoTaskStore, TaskStore

__all__ = ["DB_CLASSES", "canonical_db_class", "make_task_store"]

#: accepted name -> the store's canonical name
DB_CLASSES: dict[str, str] = {
    "SQLiteDB": "SQLiteDB",
    "sqlite": "SQLiteDB",
    "ipyparallel.controller.sqlitedb.SQLiteDB": "SQLiteDB",
    "DictDB": "DictDB",
    "dict": "DictDB",
    "memory": "DictDB",
    "ipyparallel.controller.dictdb.DictDB": "DictDB",
    "NoDB": "NoDB",
    "none": "NoDB",
    "ipyparallel.controller.dictdb.NoDB": "NoDB",
}


def canonical_db_class(name: str) -> str:
    """``SQLiteDB``, ``DictDB`` or ``NoDB`` for an accepted name; ValueError otherwise."""
    try:
        return DB_CLASSES[name]
    except KeyError:
        raise ValueError(
            f"expected one of {', '.join(repr(k) for k in DB_CLASSES)}, found {name!r} "
            "(MongoDB is not supported: use SQLiteDB)"
        ) from None


def make_task_store(
    db_class: str, profile_dir: str | Path, cluster_id: str, parent: Any
) -> TaskStore:
    """The store ``db_class`` names, configured from ``parent``'s config; a SQLite store's
    file is locked and checked here (TaskStoreError), before the controller binds a port."""
    name = canonical_db_class(db_class)
    if name == "DictDB":
        return MemoryTaskStore()
    if name == "NoDB":
        return NoTaskStore()
    store = SQLiteTaskStore(profile_dir, cluster_id, parent=parent)
    store.open()
    return store
