"""Large messages of the task database, kept as files beside it.

SQLite writes a blob twice (into its write-ahead log, then into the database at the next
checkpoint), at about 100 MB/s here: a few 50 MB results arriving at once then wait in the
controller's memory for the writer.  A plain file takes the same bytes at the speed of the
page cache, so a message of :data:`LARGE` bytes or more goes into a file of its own in the
database's ``<db>.blobs/`` directory, and its column of the ``tasks`` row holds only a marker
naming the file.  The file is written (and closed) before the row that names it is
committed; purging a task removes its files with its rows.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..protocol.wire import Frame

__all__ = ["BlobFiles", "LARGE", "MARKER"]

#: messages of at least this many packed bytes are kept in files
LARGE = 1 << 20
#: the start of a message column that names a file instead of holding the frames
MARKER = b"\x00ipar-blob-file:"


class BlobFiles:
    """The directory of a task database's large messages."""

    def __init__(self, db_path: Path) -> None:
        self.directory = db_path.with_name(db_path.name + ".blobs")

    def _name(self, msg_id: str, kind: int) -> str:
        # msg_ids are the clients' strings: the file name is a digest of one
        return f"{hashlib.sha1(msg_id.encode('utf8', 'surrogatepass')).hexdigest()}.{kind}"

    def write(self, msg_id: str, kind: int, pieces: Sequence[Frame | bytes]) -> bytes:
        """Write a message's packed pieces to its file; return the marker for its row."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        name = self._name(msg_id, kind)
        path = self.directory / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            for piece in pieces:
                f.write(piece)  # type: ignore[arg-type]  # zmq Frames are buffers
        os.replace(tmp, path)
        return MARKER + name.encode()

    def read(self, data: bytes) -> bytes:
        """A column's packed frames: the column itself, or the file its marker names."""
        if not data.startswith(MARKER):
            return data
        name = data[len(MARKER) :].decode()
        path = self.directory / os.path.basename(name)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise FileNotFoundError(
                f"the task database names {path} for a large message, and it cannot be read "
                f"({exc}); was the {self.directory} directory moved or cleaned?"
            ) from None

    def remove(self, msg_ids: Iterable[str], kinds: Iterable[int]) -> None:
        """Remove the files of purged tasks (missing ones are fine)."""
        kinds = tuple(kinds)
        for msg_id in msg_ids:
            for kind in kinds:
                try:
                    os.unlink(self.directory / self._name(msg_id, kind))
                except FileNotFoundError:
                    pass
