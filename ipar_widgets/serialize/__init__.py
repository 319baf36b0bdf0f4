"""Serialization as ipyparallel's users call it (``from ipar_widgets.serialize import can``).

- :func:`can` / :func:`uncan` (and the :data:`can_map` / :data:`uncan_map` tables they
  follow): make objects ready for plain pickle, and rebuild them, interactive functions with
  a namespace of your choice as their globals (``uncan(can(f), g)``).
- :func:`serialize_object` / :func:`deserialize_object`: an object as message frames (a
  pickle stream, then its large buffers), and back.
- :func:`pack_apply_message` / :func:`unpack_apply_message`: a call ``f(*args, **kwargs)``
  as frames, and back.
- :class:`PrePickled`: pickle an object once and send it many times.
- :class:`Reference`, :func:`interactive`, and the serializer switches :func:`use_pickle`,
  :func:`use_cloudpickle`, :func:`use_dill` (these also exist on a DirectView, which switches
  its engines too).

The implementation is :mod:`ipar_widgets.protocol.canning`, over the pickling that tasks
travel with (:mod:`ipar_widgets.protocol.serialize`).
"""

from ..protocol.canning import (
    PrePickled,
    Reference,
    can,
    can_map,
    deserialize_object,
    interactive,
    pack_apply_message,
    serialize_object,
    uncan,
    uncan_map,
    unpack_apply_message,
    use_cloudpickle,
    use_dill,
    use_pickle,
)

__all__ = [
    "PrePickled",
    "Reference",
    "can",
    "can_map",
    "deserialize_object",
    "interactive",
    "pack_apply_message",
    "serialize_object",
    "uncan",
    "uncan_map",
    "unpack_apply_message",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]
