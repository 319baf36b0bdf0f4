"""Per-task metadata as users read it: ``ar.metadata``, ``rc.metadata[msg_id]``."""

from __future__ import annotations

from typing import Any

_DEFAULTS: dict[str, Any] = {
    "msg_id": None,
    "submitted": None,
    "started": None,
    "completed": None,
    "received": None,
    "engine_uuid": None,
    "engine_id": None,
    "follow": None,
    "after": None,
    "status": None,
    "execute_input": None,
    "execute_result": None,
    "error": None,
    "stdout": "",
    "stderr": "",
    "outputs": [],
    "data": {},
    "label": None,
}
#: every key a task's metadata has (an AsyncResult reads them as attributes too)
METADATA_KEYS = frozenset(_DEFAULTS)


class Metadata(dict[str, Any]):
    """A dict of a task's facts whose keys also read as attributes (``md.engine_id``).

    Times are timezone-aware datetimes: ``submitted`` and ``received`` on the client's clock,
    ``started`` and ``completed`` on the engine's.  The set of keys is fixed, so a typo raises
    instead of silently adding a key.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, _DEFAULTS, outputs=[], data={})  # fresh mutable defaults
        if args or kwargs:
            dict.update(self, *args, **kwargs)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in self:
            raise KeyError(f"{key!r} is not a metadata key; expected one of {', '.join(self)}")
        self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            raise KeyError(f"{key!r} is not a metadata key; expected one of {', '.join(self)}")
        dict.__setitem__(self, key, value)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.keys()]


class MetadataByTask(dict[str, Metadata]):
    """``Client.metadata``: Metadata by msg_id.  As in ipyparallel (a defaultdict there),
    reading a msg_id it does not hold yet gives that task a fresh Metadata, kept from then
    on; ``get`` and ``in`` add nothing."""

    def __missing__(self, msg_id: str) -> Metadata:
        md = self[msg_id] = Metadata(msg_id=msg_id)
        return md
