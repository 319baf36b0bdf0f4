"""``from ipar_widgets.datapub import publish_data``: where ipyparallel's users import it.

``publish_data(dict)`` is called on an engine, inside a running task, and updates that
task's ``ar.data`` on the client while it runs; see :mod:`ipar_widgets.engine.datapub`.
"""

from .engine.datapub import publish_data

__all__ = ["publish_data"]
