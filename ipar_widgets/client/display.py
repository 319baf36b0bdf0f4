"""Showing what tasks printed and returned: ``display_outputs``.

Stream text is printed under ``[stdout:<engine>]`` / ``[stderr:<engine>]`` labels, rich
outputs are re-published with the engine id in their metadata, and execute results appear as
``Out[<engine>:<count>]: value``: the same layout ipyparallel uses, so notebooks read alike.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .executereply import ExecuteReply
from .metadata import Metadata

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

__all__ = ["ExecuteReply", "StreamPrinter", "display_outputs", "republish"]


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class StreamPrinter:
    """Prints stream text under engine labels, writing a label only when it changes."""

    def __init__(self) -> None:
        self.last_prefix = ""
        self.trailing_newline = True

    def write(self, text: str, prefix: str = "", file: Any = None) -> None:
        if not text:
            return
        file = file or sys.stdout
        if prefix and prefix == self.last_prefix:
            prefix = ""
        elif prefix:
            self.last_prefix = prefix
        pre = "\n" if prefix and not self.trailing_newline else ""
        body = text
        if prefix:
            body = (" " + text) if "\n" not in text.rstrip("\n") else ("\n" + text)
        self.trailing_newline = text.endswith("\n")
        print(f"{pre}{prefix}{body}", file=file, end="")


def republish(content: dict[str, Any], engine_id: Any) -> None:
    """Show an engine's display_data here, tagged with its engine id."""
    ip = _ipython()
    if ip is None:
        text = content.get("data", {}).get("text/plain")
        if text:
            print(text)
        return
    md = dict(content.get("metadata") or {})
    md["engine"] = engine_id
    ip.display_pub.publish(data=content.get("data", {}), metadata=md)


def _show_result(value: Any) -> None:
    ip = _ipython()
    if ip is None:
        print(repr(value) if not isinstance(value, ExecuteReply) else value.plaintext())
        return
    from IPython.display import display

    display(value)


def display_outputs(ar: AsyncResult, groupby: str = "type", result_only: bool = False) -> None:
    if groupby not in ("type", "engine", "order"):
        raise ValueError(f"groupby must be one of 'type', 'engine', 'order', not {groupby!r}")
    printer = StreamPrinter()
    mds: list[Metadata] = ar._metadata
    results = ar._raw()
    if ar._single_result:
        md = mds[0]
        if not result_only:
            printer.write(md["stdout"])
            printer.write(md["stderr"], file=sys.stderr)
            for output in md["outputs"]:
                republish(output, md["engine_id"])
        if md["execute_result"] is not None:
            _show_result(results[0])
        return
    rows = list(zip(mds, results))
    if groupby == "engine":
        for md, value in rows:
            eid = md["engine_id"]
            if not result_only:
                printer.write(md["stdout"], f"[stdout:{eid}]")
                printer.write(md["stderr"], f"[stderr:{eid}]", file=sys.stderr)
                if md["outputs"] or md["execute_result"] is not None:
                    print(f"[output:{eid}]")
                for output in md["outputs"]:
                    republish(output, eid)
            if md["execute_result"] is not None:
                _show_result(value)
        return
    if not result_only:
        for md, _ in rows:
            printer.write(md["stdout"], f"[stdout:{md['engine_id']}]")
        for md, _ in rows:
            printer.write(md["stderr"], f"[stderr:{md['engine_id']}]", file=sys.stderr)
        if groupby == "order":
            longest = max((len(md["outputs"]) for md, _ in rows), default=0)
            for i in range(longest):
                for md, _ in rows:
                    if i < len(md["outputs"]):
                        print(f"[output:{md['engine_id']}]")
                        republish(md["outputs"][i], md["engine_id"])
        else:
            for md, _ in rows:
                if md["outputs"]:
                    print(f"[output:{md['engine_id']}]")
                for output in md["outputs"]:
                    republish(output, md["engine_id"])
    for md, value in rows:
        if md["execute_result"] is not None:
            _show_result(value)
