"""Large buffers between processes of one host: files in shared memory instead of frames.

A 100 MB array sent through the sockets is copied into the kernel and out of it twice (client
to controller, controller to engine) and lands in freshly allocated memory at each stop; on
the machines we measure, that dominates a transfer.  When the sender and the receiver share
the controller's host, a buffer of at least ``threshold`` bytes is instead written once into a
file in ``/dev/shm`` (a *segment*); the message carries an empty frame in its place and, in its
metadata, ``"shm": [[buffer index, segment name, nbytes], ...]``.  The receiver maps the file
copy-on-write, so it gets a private, writable buffer without a second copy.

Who may use segments: the controller creates an *area* (a name prefix plus a marker file
holding a random token) and writes its description into the connection files.  A client or
engine that finds the marker with the same token shares the host (and the ``/dev/shm``) with
the controller, and tells the controller so; the controller inlines segments (reads them into
ordinary frames, re-signs the message) for any peer that cannot see them.

Who removes segments: always the controller.  A request's segments go when its task finishes
(a load-balanced task may be retried on another engine until then).  A result's segments live
as long as the task's record, so a later client can still fetch the result, and longer while a
receiver has not yet mapped them (it acknowledges with ``segments_mapped``).  Everything left
goes when the cluster stops (the controller, or ``ipar stop`` after a crash, removes the
area's files by prefix).
"""

from __future__ import annotations

import errno
import hmac
import logging
import mmap
import os
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("ipar_widgets.sharedmem")

DEFAULT_DIRECTORY = "/dev/shm"
#: segments smaller than this are not worth a file (a frame of 1 MB crosses in about 1 ms)
DEFAULT_THRESHOLD = 1 << 20
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

Segment = list[Any]  # [buffer index, segment name, nbytes], as it travels in JSON


class SharedMemoryError(OSError):
    """A segment could not be written, found or mapped."""


class SharedArea:
    """The segments of one cluster: a directory, a name prefix and the size threshold."""

    def __init__(self, directory: str, prefix: str, threshold: int) -> None:
        self.directory = directory
        self.prefix = prefix
        self.threshold = max(1, int(threshold))
        self._name_pattern = re.compile(re.escape(prefix) + r"-[0-9a-f]{32}")

    # -- setting up -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls, directory: str = DEFAULT_DIRECTORY, threshold: int = DEFAULT_THRESHOLD
    ) -> tuple[SharedArea, dict[str, Any]] | None:
        """Make a new area (the controller does this); return it with the description that
        goes into the connection files, or None when ``directory`` is not usable."""
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            log.info("no shared memory directory %s: large buffers travel in frames", directory)
            return None
        prefix = f"ipar-{secrets.token_hex(8)}"
        token = secrets.token_hex(16)
        marker = os.path.join(directory, prefix)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)
        except OSError as exc:
            log.warning("cannot create %s (%s): large buffers travel in frames", marker, exc)
            return None
        info = {"dir": directory, "prefix": prefix, "token": token, "threshold": threshold}
        return cls(directory, prefix, threshold), info

    @classmethod
    def join(cls, info: dict[str, Any] | None) -> SharedArea | None:
        """The area described in a connection file, if this process shares the controller's
        host and ``/dev/shm``; None otherwise (then everything travels in frames)."""
        if not info:
            return None
        try:
            directory, prefix = str(info["dir"]), str(info["prefix"])
            token, threshold = str(info["token"]), int(info["threshold"])
            fd = os.open(os.path.join(directory, prefix), os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
            with os.fdopen(fd) as f:
                found = f.read(256)
        except (KeyError, TypeError, ValueError, OSError):
            return None
        if not hmac.compare_digest(found, token):
            return None
        return cls(directory, prefix, threshold)

    def description(self) -> dict[str, Any]:
        """What ``ipar stop`` needs to clean up after a controller that died."""
        return {"dir": self.directory, "prefix": self.prefix}

    # -- writing (senders) ----------------------------------------------------------------------
    def stage(self, buffers: Sequence[Any]) -> tuple[list[Any], list[Segment]]:
        """Move every buffer of at least ``threshold`` bytes into a segment.

        Returns the buffers with an empty frame in place of each staged one, and the
        segments to list in the message's metadata.  A buffer that cannot be written (the
        shared memory is full, say) stays in its frame.
        """
        out = list(buffers)
        segments: list[Segment] = []
        for index, buf in enumerate(buffers):
            if type(buf) is bytes and len(buf) < self.threshold:
                continue  # the usual case (a pickle stream), checked without making a view
            view = memoryview(buf)
            if view.nbytes < self.threshold:
                continue
            name = self._write(view)
            if name is not None:
                out[index] = b""
                segments.append([index, name, view.nbytes])
        return out, segments

    def _write(self, view: memoryview) -> str | None:
        if not view.c_contiguous:
            return None
        data = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        name = f"{self.prefix}-{uuid.uuid4().hex}"
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(
                path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_NOFOLLOW | _O_CLOEXEC, 0o600
            )
        except OSError as exc:
            log.warning("cannot create segment %s (%s); sending the buffer in a frame", path, exc)
            return None
        try:
            # pwrite, not a mapping: a full /dev/shm then fails here with ENOSPC instead of
            # killing the process with SIGBUS on a write into the mapping
            done, total = 0, data.nbytes
            while done < total:
                done += os.pwrite(fd, data[done:], done)
        except OSError as exc:
            os.close(fd)
            _unlink(path)
            level = logging.INFO if exc.errno == errno.ENOSPC else logging.WARNING
            log.log(level, "cannot write segment %s (%s); sending the buffer in a frame", path, exc)
            return None
        os.close(fd)
        return name

    # -- reading (receivers) --------------------------------------------------------------------
    def path_of(self, name: Any) -> str:
        """The file of a segment named in a message; refuses names outside this area."""
        if not isinstance(name, str) or not self._name_pattern.fullmatch(name):
            raise SharedMemoryError(
                f"expected a segment name of the form {self.prefix}-<32 hex digits>, found {name!r}"
            )
        return os.path.join(self.directory, name)

    def map(self, name: Any, nbytes: int) -> memoryview:
        """Map a segment copy-on-write: a private, writable view that costs no copy."""
        path = self.path_of(name)
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            raise SharedMemoryError(
                f"shared memory segment {name} is gone (removed when its task's record was "
                "purged or the cluster stopped)"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size != nbytes:
                raise SharedMemoryError(
                    f"shared memory segment {name} holds {size} bytes, expected {nbytes}"
                )
            mapping = mmap.mmap(
                fd, nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE
            )
        finally:
            os.close(fd)
        return memoryview(mapping)

    def attach(self, buffers: Sequence[Any], segments: Any) -> list[Any]:
        """The message's buffers with each segment (from the metadata's ``"shm"``) mapped in
        its place."""
        if not isinstance(segments, list) or not all(
            isinstance(s, list) and len(s) == 3 and isinstance(s[2], int) for s in segments
        ):
            raise SharedMemoryError(
                f"expected 'shm' to list [index, name, nbytes] triples, found {segments!r}"
            )
        out = list(buffers)
        for index, name, nbytes in segments:
            if not isinstance(index, int) or not 0 <= index < len(out):
                raise SharedMemoryError(
                    f"segment {name} claims buffer {index} of a message with {len(out)} buffers"
                )
            out[index] = self.map(name, int(nbytes))
        return out

    def read(self, name: Any, nbytes: int) -> memoryview:
        """A read-only view of a segment, for the controller to send it on in a frame."""
        path = self.path_of(name)
        try:
            with open(path, "rb", opener=_nofollow_opener) as f:
                if os.fstat(f.fileno()).st_size != nbytes:
                    raise SharedMemoryError(f"shared memory segment {name} is not {nbytes} bytes")
                return memoryview(mmap.mmap(f.fileno(), nbytes, access=mmap.ACCESS_READ))
        except FileNotFoundError:
            raise SharedMemoryError(f"shared memory segment {name} is gone") from None

    # -- removing (the controller) --------------------------------------------------------------
    def unlink(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                _unlink(self.path_of(name))
            except SharedMemoryError:
                pass

    def remove_all(self) -> int:
        """Remove the marker and every segment of this area; return how many files went."""
        return remove_area(self.description())


def segment_bytes(segments: Iterable[Segment]) -> int:
    return sum(int(n) for _, _, n in segments)


def remove_area(description: dict[str, Any] | None) -> int:
    """Remove the files of an area described by :meth:`SharedArea.description`."""
    if not description:
        return 0
    try:
        directory, prefix = Path(str(description["dir"])), str(description["prefix"])
    except KeyError:
        return 0
    if not re.fullmatch(r"ipar-[0-9a-f]{16}", prefix):
        return 0  # never glob with a prefix we did not make
    removed = 0
    for path in directory.glob(f"{prefix}*"):
        if _unlink(str(path)):
            removed += 1
    return removed


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _nofollow_opener(path: str, flags: int) -> int:
    return os.open(path, flags | _O_NOFOLLOW | _O_CLOEXEC)
