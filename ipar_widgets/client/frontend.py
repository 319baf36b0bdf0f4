"""The one door from the client layer up to what presents it.

The client sits below the progress displays, the widgets and the magics, and imports none
of them, with three exceptions a user expects of it: a Client made inside IPython activates
``%px``, ``ar.wait_interactive()`` / ``ar.display()`` / ``ar.timeline()`` show a job, and
notebooks draw clients, results and engines' stacks with their reprs.  Those calls come
through here, each importing the layer above only when it is called (so ``import
ipar_widgets`` loads no widget code), and the layering check (``pyproject.toml``, ``[tool.importlinter]``) allows this
module, and no other one below them, to import upward.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..progress.enginewait import EngineWaitTracker
    from ..widgets.timeline import Timeline
    from .baseview import View
    from .client import Client
    from .job import Job
    from .stacks import EngineStack
    from .transfer import TransferDisplay

from .job import ReturnWhen

__all__ = [
    "activate_magics",
    "client_activated",
    "client_html",
    "display_progress",
    "engine_wait_display",
    "follow_progress",
    "transfer_display",
    "job_html",
    "stacks_html",
    "stacks_text",
    "timeline",
    "wait_interactive",
]


def client_activated(client: Client, rebind: bool = True) -> None:
    """A Client was made: inside IPython, the first one activates ``%px`` (never raises);
    with ``rebind``, also the first after the active client was closed."""
    from ..magics import register_magics_if_ipython

    register_magics_if_ipython(client, rebind=rebind)


def activate_magics(view: View, suffix: str = "") -> None:
    """Point ``%px<suffix>`` and its siblings at ``view`` (a DirectView; TypeError else)."""
    from ..magics import activate

    activate(view, suffix)


def wait_interactive(
    job: Job,
    interval: float | None = None,
    timeout: float | None = -1,
    widget: bool | None = None,
    return_when: ReturnWhen = ALL_COMPLETED,
    stream: IO[str] | None = None,
) -> None:
    """Wait for ``job`` while showing its progress: the live widget in a Jupyter kernel
    (``widget=`` overrides the detection, ``IPAR_NONINTERACTIVE=1`` forces text), the text
    display elsewhere; TimeoutError after ``timeout`` seconds.

    ``interval`` is the refresh period of the text display (the widget's refreshes are paced
    by the shared update loop); ``stream`` is where the text goes (default: ``sys.stdout``).
    """
    from ..progress import wait_in_terminal, widgets_wanted

    if widgets_wanted(widget):
        from ..widgets.progress import wait_with_widget

        wait_with_widget(job, interval=interval, timeout=timeout, return_when=return_when)
        return
    wait_in_terminal(
        job, interval=interval, timeout=timeout, return_when=return_when, stream=stream
    )


def display_progress(job: Job) -> None:
    """Show the live progress widget of ``job`` and return at once (text outside a kernel)."""
    from ..widgets.progress import display_progress as show

    show(job)


def follow_progress(
    job: Job, *, terminal: bool = False, stream: IO[str] | None = None
) -> Callable[[float], None] | None:
    """Show ``job``'s progress while the caller goes on (a joblib call's batches are sent by
    joblib, not waited for by us): the live widget in a Jupyter kernel, and elsewhere, with
    ``terminal``, the text display (``stream``, default ``sys.stderr``) in a thread of its
    own.  Returns what the caller runs when the job is over: it waits up to a number of
    seconds for the display's last word (the widget's final update, sent from the calling
    thread, or the text display's last line); None when nothing is shown."""
    from ..progress import wait_in_terminal, widgets_wanted

    if widgets_wanted(None):
        from ..widgets.progress import follow_job

        return follow_job(job)
    if not terminal:
        return None
    import sys
    import threading

    out = stream if stream is not None else sys.stderr
    thread = threading.Thread(
        target=wait_in_terminal, args=(job,), kwargs={"stream": out}, daemon=True
    )
    thread.name = "ipar-progress-line"
    thread.start()
    return thread.join


def engine_wait_display(
    interactive: bool | None, widget: bool | None, stream: IO[str] | None = None
) -> EngineWaitTracker | None:
    """Where a wait for engines shows its progress: the live widget in a Jupyter kernel
    (``widget`` overrides the detection); else the text line on ``stream`` (default
    ``sys.stderr``) when ``interactive`` is True, or when it is unset and the stream is a
    terminal.  None (no display) for ``interactive=False``, and for a log that did not ask."""
    import sys

    from ..progress import widgets_wanted
    from ..progress.enginewait import EngineWaitTerminal, EngineWaitTracker

    if interactive is False:
        return None
    if widgets_wanted(widget):
        from ..widgets.engines_wait import EngineWaitView

        view = EngineWaitView()
        return EngineWaitTracker(view.update, view.finish)
    out = stream if stream is not None else sys.stderr
    if interactive is None and not _isatty(out):
        return None
    line = EngineWaitTerminal(out)
    return EngineWaitTracker(line.update, line.finish)


def transfer_display(stream: IO[str] | None = None) -> TransferDisplay | None:
    """Where a large push/pull shows the bytes moved: the live widget in a Jupyter kernel,
    else a line on ``stream`` (default ``sys.stderr``) when it is a terminal; None (nothing)
    in a log."""
    import sys

    from ..progress import widgets_wanted
    from ..progress.transfer import TransferTerminal, TransferTracker

    if widgets_wanted(None):
        from ..widgets.transfer import TransferView

        view = TransferView()
        return TransferTracker(view.update, view.finish)
    out = stream if stream is not None else sys.stderr
    if not _isatty(out):
        return None
    line = TransferTerminal(out)
    return TransferTracker(line.update, line.finish)


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def timeline(job: Job) -> Timeline:
    """A Gantt-style chart of ``job``'s tasks (inline SVG)."""
    from ..widgets.timeline import timeline as chart

    return chart(job)


def job_html(job: Job) -> str:
    """The HTML repr of a job: its state and per-engine table."""
    from ..widgets.html import job_html as render

    return render(job)


def stacks_text(stacks: Sequence[EngineStack]) -> str:
    """The text of engines' stacks (``print(rc.stacks())``), in the order given."""
    from ..widgets.stacks import stacks_text as render

    return render(stacks)


def stacks_html(stacks: Sequence[EngineStack]) -> str:
    """The HTML of engines' stacks (``rc.stacks()`` in a notebook), in the order given."""
    from ..widgets.stacks import stacks_html as render

    return render(stacks)


def client_html(client: Client) -> str:
    """The HTML repr of a Client: the cluster's engines and their state."""
    from ..widgets.html import client_html as render

    return render(client)
