"""The flags of the parallel magics, and how their string values become Python values."""

from __future__ import annotations

import ast
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core import magic_arguments
from IPython.core.error import UsageError

from ..client.targets import Targets

F = TypeVar("F", bound=Callable[..., Any])

GROUPINGS = ("type", "engine", "order")


# IPython's magic_arguments is untyped: these give its calls types, once


def argument(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """One flag of a magic (``magic_arguments.argument``)."""
    return magic_arguments.argument(*args, **kwargs)


def magic_args() -> Callable[[F], F]:
    """Builds the flag parser of a magic from its ``argument`` decorators."""
    return magic_arguments.magic_arguments()


def parse(magic: Callable[..., Any], line: str) -> Any:
    """The flags in ``line``, parsed as ``magic`` declares them."""
    return magic_arguments.parse_argstring(magic, line)


def named(name: str) -> Callable[[F], F]:
    """The name usage and errors give the magic (``%px``, not the method's name); goes right
    under ``@magic_args()``."""

    def mark(f: F) -> F:
        setattr(f, "argcmd_name", name)  # noqa: B010  (what IPython's usage reads)
        return f

    return mark


def _apply(f: F, arguments: list[Any]) -> F:
    # the last decorator applied is listed first in the usage: keep the order written here
    for add in reversed(arguments):
        f = add(f)
    return f


def execution_flags(f: F) -> F:
    """Flags that say where and how code runs: shared by ``%%px`` and ``%pxconfig``."""
    arg = argument
    return _apply(
        f,
        [
            arg(
                "-b",
                "--block",
                action="store_const",
                const=True,
                dest="block",
                help="wait for the engines and show their output (blocking)",
            ),
            arg(
                "-a",
                "--noblock",
                action="store_const",
                const=False,
                dest="block",
                help="return an AsyncResult at once; %%pxresult shows its output later",
            ),
            arg(
                "--stream",
                action="store_const",
                const=True,
                dest="stream",
                help="show the engines' output as it arrives (blocking only; the default)",
            ),
            arg(
                "--no-stream",
                action="store_const",
                const=False,
                dest="stream",
                help="show the engines' output once every engine has finished",
            ),
            arg(
                "-t",
                "--targets",
                type=str,
                default=None,
                help="engines to run on: 'all', an id (1), a list ([0,2]) or a slice (::2, 1:3)",
            ),
            arg(
                "--verbose",
                action="store_const",
                const=True,
                dest="verbose",
                help="say on which engines each execution runs",
            ),
            arg(
                "--no-verbose",
                action="store_const",
                const=False,
                dest="verbose",
                help="do not say on which engines each execution runs (the default)",
            ),
            arg(
                "--progress-after",
                dest="progress_after",
                type=float,
                default=None,
                help="seconds to wait before showing a progress line (default 2; 0: at once; "
                "-1: never)",
            ),
            arg(
                "--signal-on-interrupt",
                dest="signal_on_interrupt",
                type=str,
                default=None,
                help="signal sent to the engines when a blocking execution is interrupted: a "
                "name (SIGINT, the default) or a number; 0 sends nothing",
            ),
        ],
    )


def grouping_flags(f: F) -> F:
    """How the output of several engines is laid out: ``%%px``, ``%pxresult``, ``%pxconfig``."""
    arg = argument
    return _apply(
        f,
        [
            arg(
                "-r",
                action="store_const",
                const="order",
                dest="groupby",
                help="same as --group-outputs=order",
            ),
            arg(
                "-e",
                action="store_const",
                const="engine",
                dest="groupby",
                help="same as --group-outputs=engine",
            ),
            arg(
                "--group-outputs",
                dest="groupby",
                type=str,
                choices=GROUPINGS,
                default=None,
                help="how output shown at the end is laid out: 'type' (all stdout, then all "
                "stderr, then displays and results; the default), 'engine' (everything of "
                "one engine, then the next) or 'order' (like type, with the n-th display of "
                "every engine together).  Streamed output comes as it arrives.",
            ),
        ],
    )


def save_flag(f: F) -> F:
    """``-o NAME``: keep the AsyncResult in the user namespace (``%%px``, ``%pxresult``)."""
    return argument(
        "-o",
        "--out",
        dest="save_name",
        type=str,
        default=None,
        help="store the AsyncResult in the user namespace under this name",
    )(f)


def parse_targets(text: str) -> Targets:
    """``--targets`` text as view targets: 'all', an int, a list of ints, or a slice.

    A slice stays a slice here; ``%%px --targets`` applies it when the cell is sent,
    ``%pxconfig`` at once (:func:`resolve_config_targets`).
    """
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()  # IPython's argument splitting keeps quotes
    if text == "all":
        return "all"
    if ":" in text and not text.startswith(("[", "(")):
        parts = text.split(":")
        try:
            bounds = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            bounds = []
        if 2 <= len(bounds) <= 3:
            return slice(*bounds)
    else:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return list(value)
    raise UsageError(
        f"--targets {text!r}: expected 'all', an engine id (1), a list of ids ([0, 2]) "
        "or a slice (::2)"
    )


def parse_signal(spec: str | int) -> int:
    """A ``--signal-on-interrupt`` value as a signal number (0: send nothing)."""
    text = str(spec).strip()
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(
            f"--signal-on-interrupt {text!r}: expected a signal name (SIGINT, SIGTERM, ...) "
            "or number (2, 15, ...; 0 sends nothing)"
        ) from None


def signal_spec(text: str) -> str | int:
    """A ``--signal-on-interrupt`` value checked, and kept as written (a number as an int):
    the interrupt message names the signal the way the user did, as ipyparallel's does."""
    parse_signal(text)
    text = text.strip()
    return int(text) if text.isdigit() else text


def resolve_config_targets(text: str, ids: list[int]) -> Targets:
    """``%pxconfig --targets`` text as the view's new targets: a slice is taken of the
    engines registered now (``-t ::2`` gives a list of ids), as ipyparallel does."""
    targets = parse_targets(text)
    if isinstance(targets, slice):
        return list(ids[targets])
    return targets


def describe_targets(ids: list[int] | int | str) -> str:
    """How ``--verbose`` names the engines of an execution."""
    if isinstance(ids, (int, str)):
        return str(ids)
    if len(ids) > 10:
        head = ", ".join(map(str, ids[:4]))
        tail = ", ".join(map(str, ids[-4:]))
        return f"[{head}, ..., {tail}]"
    return str(list(ids))
