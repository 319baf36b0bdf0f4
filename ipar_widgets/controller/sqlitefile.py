"""The task database file: its lock, its checks at start, and its schema.

One controller writes one database.  :func:`lock` takes an exclusive ``flock`` on
``<db>.lock`` (holding the pid of the controller that has it), so a second controller
pointed at the same file stops at start with the other's pid instead of interleaving its
writes.  :func:`open_checked` refuses a file that is not a task database of this version,
or that SQLite finds damaged, with an error that names the path; such a file is never
written to, replaced or deleted: it may be the only copy of a long run's results.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

__all__ = ["SCHEMA_NAME", "SCHEMA_VERSION", "StoreFileError", "lock", "open_checked"]

SCHEMA_NAME = "ipar_widgets.tasks"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- one row per task, written once for most (when it has finished).  The messages come last:
-- a read of the columns before them never touches the pages a long message overflows into.
CREATE TABLE tasks (
    msg_id TEXT PRIMARY KEY,
    arrival REAL NOT NULL,          -- controller clock (epoch s) when the request arrived
    msg_type TEXT NOT NULL,
    client BLOB NOT NULL,           -- the submitting client's identity
    reply_to BLOB NOT NULL,         -- where its reply goes
    balanced INTEGER NOT NULL,      -- 1: load-balanced ('task' queue), 0: direct ('mux')
    engine_id INTEGER,
    engine_uuid TEXT,
    status TEXT NOT NULL,
    submitted TEXT,                 -- dates as the messages carried them (ISO 8601)
    started TEXT,
    completed TEXT,
    received REAL,                  -- controller clock (epoch s) when the reply arrived
    resubmitted TEXT,
    label TEXT,                     -- the metadata's label as JSON
    nbytes INTEGER NOT NULL DEFAULT 0,
    -- the messages' frames from the header on (framepack), or a marker naming a file of
    -- <db>.blobs (blobfiles); the reply with its shared-memory segments read in
    request BLOB,
    reply BLOB,
    outputs BLOB
);
CREATE TABLE engines (
    uuid TEXT PRIMARY KEY,
    id INTEGER NOT NULL,
    hostname TEXT,
    pid INTEGER,
    registered REAL NOT NULL,
    left_at REAL,
    reason TEXT
);
"""


class StoreFileError(RuntimeError):
    """The task database cannot be used; the text names the file and what to do."""


def _move_away(path: Path) -> str:
    return (
        f"move it away (mv {path} {path}.bad) to start with an empty task database, or point "
        "SQLiteTaskStore.filename at another file, or start with --dictdb / --nodb"
    )


def lock(path: Path) -> IO[str]:
    """Take the writer's lock of database ``path``; the open lock file holds it until closed."""
    lock_path = path.with_name(path.name + ".lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 (kept open: the lock lives as long as it)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreFileError(
            f"the task database {path} is in use by another controller (pid {holder}, "
            f"lock file {lock_path}); stop that cluster first (ipar stop), or give this one "
            "its own database (another --cluster-id or SQLiteTaskStore.filename)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _check(path: Path, quick_check: bool) -> bool:
    """Whether ``path`` already holds a task database (False: an empty or new file); raise
    StoreFileError for anything else.  Reads only: the file is opened read-only."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreFileError(f"cannot open the task database {path}: {exc}") from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise StoreFileError(
                f"{path} is a SQLite database but not an ipar_widgets task database (it has "
                f"tables {sorted(tables)}, no 'meta'); {_move_away(path)}"
            )
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        found = (meta.get("schema"), meta.get("version"))
        if found != (SCHEMA_NAME, str(SCHEMA_VERSION)):
            raise StoreFileError(
                f"the task database {path} has schema {found[0]!r} version {found[1]!r}; this "
                f"controller reads {SCHEMA_NAME!r} version {SCHEMA_VERSION}; {_move_away(path)}"
            )
        if quick_check:
            problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreFileError(
                    f"the task database {path} is damaged (SQLite's check says: "
                    f"{'; '.join(problems)}); it was left as it is; {_move_away(path)}"
                )
    except sqlite3.DatabaseError as exc:
        raise StoreFileError(
            f"the task database {path} is damaged or not a SQLite database ({exc}); it was "
            f"left as it is; {_move_away(path)}"
        ) from None
    finally:
        db.close()
    return True


def open_checked(path: Path, quick_check: bool = True) -> sqlite3.Connection:
    """A read-write connection to the task database ``path`` (created when missing), in WAL
    mode.  Call with the lock held."""
    existing = _check(path, quick_check)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        if not existing:
            # larger pages than SQLite's 4 KiB: a row is ~1.5 KB with its messages, and a
            # commit of a batch then writes a quarter as many pages (~20% less CPU per task)
            db.execute("PRAGMA page_size=16384")
        db.execute("PRAGMA journal_mode=WAL")
        # durable against a crash of the controller (the OS still writes the WAL); an fsync
        # per commit would cost more than the whole batch
        db.execute("PRAGMA synchronous=NORMAL")
        # a batch of large results makes a large WAL: truncate it again after checkpoints
        db.execute("PRAGMA journal_size_limit=67108864")
        if not existing:
            db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("schema", SCHEMA_NAME), ("version", str(SCHEMA_VERSION))],
            )
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreFileError(
            f"the task database {path} could not be opened for writing ({exc}); {_move_away(path)}"
        ) from None
    return db
