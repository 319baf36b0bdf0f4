"""The canning names under the module path ipyparallel gives them
(``ipyparallel.serialize.canning``): the functions of :mod:`ipar_widgets.serialize` plus the
classes of canned objects.  See :mod:`ipar_widgets.protocol.canning`."""

from ..protocol.canning import (
    MAX_BYTES,
    MAX_ITEMS,
    CannedArray,
    CannedBytes,
    CannedCell,
    CannedClass,
    CannedFunction,
    CannedMemoryView,
    CannedObject,
    CannedPartial,
    Reference,
    can,
    can_map,
    interactive,
    uncan,
    uncan_map,
    use_cloudpickle,
    use_dill,
    use_pickle,
)

__all__ = [
    "MAX_BYTES",
    "MAX_ITEMS",
    "CannedArray",
    "CannedBytes",
    "CannedCell",
    "CannedClass",
    "CannedFunction",
    "CannedMemoryView",
    "CannedObject",
    "CannedPartial",
    "Reference",
    "can",
    "can_map",
    "interactive",
    "uncan",
    "uncan_map",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]
