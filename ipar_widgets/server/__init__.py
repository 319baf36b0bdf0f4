"""The Jupyter server extension behind the "Parallel Clusters" panel, and where Jupyter
finds the panel itself.

Enabled by ``etc/jupyter/jupyter_server_config.d/ipar_widgets.json`` (installed with the
package).  Importing this module does not import jupyter_server: only the server's call to
``_load_jupyter_server_extension`` does.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__

__all__ = ["LABEXTENSION_NAME", "__version__"]

#: The labextension's name (package.json "name"), also its folder under share/jupyter/labextensions.
LABEXTENSION_NAME = "ipar_widgets"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "ipar_widgets.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """For ``jupyter-builder develop``: the built assets, relative to this package."""
    return [{"src": "../labextension", "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from .handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info(
        "ipar_widgets: cluster API at %sipar/clusters",
        server_app.web_app.settings.get("base_url", "/"),
    )
