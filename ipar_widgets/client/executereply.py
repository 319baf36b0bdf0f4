"""``ExecuteReply``: what ``view.execute(code)`` gives for one engine once it ran.

``ar.get()`` of an execute on one engine is an ExecuteReply (a list of them for several):
the cell's execution count, and the value of its last expression (when ``silent=False``)
shown as ``Out[<engine>:<count>]: value`` in every front end: rich representations
(``_repr_html_``, ``_repr_png_``, ...) for notebooks, plain text for terminals.  Item and
attribute access read the task's metadata (``reply.stdout``, ``reply["engine_id"]``), as in
ipyparallel.
"""

from __future__ import annotations

from typing import Any

from .metadata import Metadata

__all__ = ["ExecuteReply"]


class ExecuteReply:
    """The result of ``view.execute(code)`` on one engine: its execution count and the value
    of the cell's last expression, shown as ``Out[engine:count]: value``."""

    def __init__(self, msg_id: str, content: dict[str, Any], metadata: Metadata) -> None:
        self.msg_id = msg_id
        self._content = content
        self.execution_count = content.get("execution_count")
        self.metadata = metadata

    # -- the cell's value -------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        """The last expression's value by MIME type (empty when silent or None)."""
        result = self.metadata["execute_result"]
        return dict(result.get("data", {})) if result else {}

    @property
    def _data_metadata(self) -> dict[str, Any]:
        result = self.metadata["execute_result"]
        return dict(result.get("metadata", {})) if result else {}

    @property
    def source(self) -> str | None:
        """Where the value was produced, as the engine's execute_result names it."""
        result = self.metadata["execute_result"]
        return str(result.get("source", "")) if result else None

    def plaintext(self, color: bool = False) -> str:
        """``Out[engine:count]: text``, or ``""`` when the cell had no value."""
        text: str = self.data.get("text/plain", "")
        if not text:
            return ""
        if "\n" in text and not text.startswith("\n"):
            text = "\n" + text  # a multi-line repr starts below its label
        label = f"Out[{self.metadata['engine_id']}:{self.execution_count}]: "
        if color:
            label = f"\x1b[31m{label}\x1b[0m"
        return label + text

    # -- rich display ------------------------------------------------------------------------
    def _repr_mime_(self, mime: str) -> Any:
        """The value in one MIME type: ``data``, or ``(data, metadata)`` when the engine gave
        display metadata for it (an image's width); None when it has no such form."""
        data = self.data
        if mime not in data:
            return None
        extra = self._data_metadata
        if mime in extra:
            return data[mime], extra[mime]
        return data[mime]

    def _repr_html_(self) -> Any:
        return self._repr_mime_("text/html")

    def _repr_markdown_(self) -> Any:
        return self._repr_mime_("text/markdown")

    def _repr_latex_(self) -> Any:
        return self._repr_mime_("text/latex")

    def _repr_json_(self) -> Any:
        return self._repr_mime_("application/json")

    def _repr_javascript_(self) -> Any:
        return self._repr_mime_("application/javascript")

    def _repr_png_(self) -> Any:
        return self._repr_mime_("image/png")

    def _repr_jpeg_(self) -> Any:
        return self._repr_mime_("image/jpeg")

    def _repr_svg_(self) -> Any:
        return self._repr_mime_("image/svg+xml")

    def __getattr__(self, key: str) -> Any:
        if key in ("metadata", "_content", "msg_id", "execution_count"):
            raise AttributeError(key)  # not set yet (while unpickling or copying)
        try:
            return self.metadata[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {key!r}; its metadata "
                f"keys are {', '.join(self.metadata)}"
            ) from None

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        data = self.data
        if "text/plain" in data:
            data["text/plain"] = self.plaintext()
        return data, self._data_metadata

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.plaintext())

    def display(self) -> None:
        """Show the value here, as a notebook shows a cell's output."""
        from IPython.display import publish_display_data

        data, metadata = self._repr_mimebundle_()
        publish_display_data(data, metadata)

    # -- the task's metadata --------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.metadata[key]

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.metadata]

    def __repr__(self) -> str:
        text = self.data.get("text/plain", "")
        if len(text) > 32:
            text = text[:29] + "..."
        return f"<ExecuteReply[{self.execution_count}]: {text}>"
