"""The one door from the client layer up to what presents it.

The client sits below the progress displays, the widgets and the magics, and imports none
of them, with three exceptions a user expects of it: a Client made inside IPython activates
``%px``, ``ar.wait_interactive()`` / ``ar.display()`` / ``ar.timeline()`` show a job, and
notebooks draw clients and results with their HTML reprs.  Those calls come through here,
each importing the layer above only when it is called (so ``import ipar_widgets`` loads no
widget code), and the layering check (``pyproject.toml``, ``[tool.importlinter]``) allows this
module, and no other one below them, to import upward.
"""

from __future__ import annotations

from concurrent.futures import ALL_COMPLETED
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from ..widgets.timeline import Timeline
    from .baseview import View
    from .client import Client
    from .job import Job

from .job import ReturnWhen

__all__ = [
    "activate_magics",
    "client_activated",
    "client_html",
    "display_progress",
    "job_html",
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


def timeline(job: Job) -> Timeline:
    """A Gantt-style chart of ``job``'s tasks (inline SVG)."""
    from ..widgets.timeline import timeline as chart

    return chart(job)


def job_html(job: Job) -> str:
    """The HTML repr of a job: its state and per-engine table."""
    from ..widgets.html import job_html as render

    return render(job)


def client_html(client: Client) -> str:
    """The HTML repr of a Client: the cluster's engines and their state."""
    from ..widgets.html import client_html as render

    return render(client)
