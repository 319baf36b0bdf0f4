"""The live progress widget: ``ar.wait_interactive()`` and ``ar.display()`` in a notebook.

One composite of standard ipywidgets (no front-end code of our own, so it renders in
JupyterLab, Notebook 7 and VS Code):

- a bar row: an ``IntProgress`` labelled with the function name (red from the first failure
  on), the Cancel button, and the "Interrupt running tasks" button Cancel offers;
- an ``HTML`` body: counts, times, ETA range, speedup, busy engines, then the per-engine table
  (:func:`~ipar_widgets.widgets.html.progress_html`, the same HTML as the static snapshot);
- an ``Accordion`` (dom class ``ipar-failure-groups``) with one section per failure group
  (``ValueError: bad input <n> ×37``: progress/failures.py), each with its first traceback and
  its first tasks' arguments, added at the first failure; the "Retry failed" button beside
  the bar from then on (``job.retry_failed()``; the widget then follows the new tasks);
- a note line for what Cancel did.

The widgets hold no logic: :meth:`ProgressView.changes` turns a snapshot into the traits
that differ, and the shared :mod:`~ipar_widgets.widgets.loop` sends them.  When the job ends
the output is replaced (same display id) by a bundle carrying the widget *and* a static
``text/plain`` and ``text/html`` picture of the final state, which is what a saved or exported
notebook shows where widgets do not render.
"""

from __future__ import annotations

import html
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED
from typing import Any

import ipywidgets as w
from IPython.display import display, update_display

from ..client.job import Job, RetriedTasks, condition_for, unfinished
from ..client.stacks import StacksClient
from ..client.waiting import wait_until
from ..progress import widgets_wanted
from ..progress.failures import GROUPS_SHOWN, FailureGroup
from ..progress.placement import query_placement
from ..progress.snapshot import ProgressTracker, Snapshot
from . import templates
from .clicks import route_off_main_thread
from .html import group_details_html, more_failures_html, progress_html, progress_text
from .loop import Changes, UpdateLoop, get_loop
from .notify import JobNotifications, job_notice, notify_job_ended
from .stacks import STACKS_TIMEOUT, area_html, asking_html, failed_html

__all__ = ["ProgressView", "display_progress", "follow_job", "wait_with_widget", "REFRESH_PERIOD"]

#: least seconds between two refreshes of one widget
REFRESH_PERIOD = 0.25
#: how often the blocked cell re-checks its job when no result arrives (the condition
#: variable wakes it at once when one does)
WAIT_SLICE = 0.5

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class ProgressView:
    """The widgets of one job and what to show in them; see the module docstring."""

    def __init__(
        self,
        job: Job,
        *,
        blocking: bool = False,
        period: float = REFRESH_PERIOD,
        loop: UpdateLoop | None = None,
        placement: bool = True,
    ) -> None:
        self.job = job
        self.blocking = blocking
        self.period = period
        self.loop = loop or get_loop()
        self.tracker = ProgressTracker(job)
        self.display_id = uuid.uuid4().hex
        self.ask_placement = placement
        self.state_word: str | None = None  # "cancelled", "timed out", "interrupted"
        self.note = ""
        self.cancel_requested = False
        self.interrupt_offered = False
        self.clicks_routed = False
        #: the "Where is it stuck?" area ('' until the button is clicked; widgets/stacks.py)
        self.stacks_html = ""
        self.stacks_asking = False
        #: tell the front end when the job ends (widgets/notify.py): the user is not
        #: watching a job shown with ar.display(), nor one a wait stopped following
        self.notify_when_done = False
        self.last_snapshot: Snapshot | None = None
        self.retrying = False  # a Retry click is being handled
        self._closed = threading.Event()
        self._publish_lock = threading.Lock()  # the final picture, against a retry
        self._published_groups: tuple[FailureGroup, ...] = ()
        self._build()
        # what a retry of an ended job brings back
        self._live_controls = tuple(self.controls.children)

    # -- the widgets ------------------------------------------------------------------------------
    def _build(self) -> None:
        total = max(1, len(self.job))
        self.style = w.HTML(value=templates.STYLE_TAG, layout=w.Layout(display="none"))
        self.bar = w.IntProgress(
            value=0,
            min=0,
            max=total,
            description=self.job.name[:24],
            bar_style="info",
            style={"description_width": "initial"},
            layout=w.Layout(flex="1 1 auto", width="auto", max_width="640px"),
        )
        self.cancel_button = _action_button(
            "Cancel",
            "stop",
            "abort the tasks that have not started",
            self._on_cancel,
            style="warning",
        )
        self.interrupt_button = _action_button(
            "Interrupt running tasks",
            "bolt",
            "send SIGINT to the engines running this job's tasks",
            self._on_interrupt,
            style="danger",
            css_display="none",
        )
        # offered only where the job's client can ask engines for their stacks (a Client)
        self.stacks_button = _action_button(
            "Where is it stuck?",
            "search",
            "show the Python stack of each running task, the longest-running first",
            self._on_stacks,
            css_display="" if isinstance(self.job.client, StacksClient) else "none",
        )
        # made when first needed, each complete in its opening message: every widget made
        # up front costs its opening messages in every job's display, most of which never
        # fail nor get asked where they are stuck
        self.stacks_area: w.HTML | None = None
        self.retry_button: w.Button | None = None
        self.controls = w.HBox([self.cancel_button, self.interrupt_button, self.stacks_button])
        self.bar_row = w.HBox([self.bar, self.controls], layout=w.Layout(align_items="center"))
        self.body = w.HTML(value="")
        self.failure: w.Accordion | None = None  # the failure groups, made at the first failure
        self._group_panes: list[w.HTML] = []  # the sections' contents, reused as groups change
        self.more_failures: w.HTML | None = None  # "and K more kinds of failure", when needed
        self.note_html = w.HTML(value="")
        self.box = w.VBox(
            [self.style, self.bar_row, self.body, self.note_html],
            layout=w.Layout(width="100%"),
            _dom_classes=("ipar-progress",),
        )

    def _failure_panes(self, groups: tuple[FailureGroup, ...]) -> tuple[w.HTML, ...]:
        """One section content per shown group; a new one is made complete (its value in
        its opening message), so a new group costs no update of its own."""
        for group in groups[len(self._group_panes) :]:
            self._group_panes.append(w.HTML(value=group_details_html(group)))
        return tuple(self._group_panes[: len(groups)])

    # -- showing --------------------------------------------------------------------------------
    def bundle(self, snap: Snapshot | None = None) -> dict[str, Any]:
        """The output's mimebundle: the widget view, plus the static picture of ``snap``."""
        snap = snap or self.tracker.snapshot()
        return {
            _WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id},
            "text/plain": progress_text(snap, self.state_word),
            "text/html": progress_html(snap, state=self.state_word),
        }

    def show(self) -> None:
        """Display the widget (in the calling cell) and start refreshing it."""
        display(self.bundle(), raw=True, display_id=self.display_id)
        self.loop.add(self)
        self.job.add_done_callback(lambda _: self.loop.wake())
        if isinstance(self.job, RetriedTasks):  # ar.retry_failed() in code, or our button
            self.job.add_retry_callback(lambda _: self._follow_retried())

    def finished(self) -> None:
        """The loop sent the final update: make the output carry the final static picture."""
        with self._publish_lock:
            if not self.job.ready():
                return  # a retry gave the job new tasks: the next final update publishes
            snap = self.last_snapshot or self.tracker.snapshot()
            first = not self._closed.is_set()
            if not first and snap.failure_groups == self._published_groups:
                return  # published; again only when failed tasks' arguments came since
            self._closed.set()
            self._published_groups = snap.failure_groups
        from IPython import get_ipython

        if get_ipython() is None:
            return  # nowhere to publish (the widget's model was used without a shell)
        update_display(self.bundle(snap), raw=True, display_id=self.display_id)
        if first and self.notify_when_done:
            notice = job_notice(snap, self.state_word)
            if JobNotifications.instance().wanted(notice):
                # one message, within the budget the updates keep
                self.loop.send_message(lambda: notify_job_ended(self.box, notice))

    # -- the loop's side --------------------------------------------------------------------------
    def done(self) -> bool:
        return self.job.ready() and not self.blocking

    def snapshot(self) -> Snapshot:
        placement = None
        if self.ask_placement and not self.job.ready():
            placement = query_placement(self.job.client, timeout=1.0)
        snap = self.tracker.snapshot(placement)
        self.last_snapshot = snap
        return snap

    def wanted(self, snap: Snapshot, final: bool) -> list[tuple[Any, dict[str, Any]]]:
        """What every widget should hold for ``snap``."""
        failed = snap.failed > 0
        ended = final or snap.ready
        bar_style = (
            "danger" if failed else ("success" if ended and snap.state == "done" else "info")
        )
        if ended and not failed and snap.aborted:
            bar_style = "warning"
        # in order of importance: a refresh short of budget sends the first ones
        wanted: list[tuple[Any, dict[str, Any]]] = [
            (self.bar, {"max": max(1, snap.total), "value": snap.finished, "bar_style": bar_style}),
            (
                self.body,
                {"value": progress_html(snap, state=self.state_word, style=False, failure=False)},
            ),
        ]
        if ended:
            wanted.append((self.controls, {"children": ()}))
        else:
            wanted.append((self.controls, {"children": self._live_controls}))  # after a retry
            wanted.append((self.cancel_button, {"disabled": self.cancel_requested}))
            wanted.append((self.stacks_button, {"disabled": self.stacks_asking}))
            wanted.append(
                (
                    self.interrupt_button.layout,
                    {"display": "" if self.interrupt_offered else "none"},
                )
            )
        wanted.append((self.note_html, {"value": self._note_html()}))
        if self.stacks_html and self.stacks_area is None:
            self.stacks_area = w.HTML(value=self.stacks_html, _dom_classes=("ipar-stacks",))
        if self.stacks_area is not None:
            wanted.append((self.stacks_area, {"value": self.stacks_html}))
        first, rest = self._failures_wanted(snap)
        wanted[2:2] = first  # showing the failure area comes right after the bar and body
        return wanted + rest

    def _retry_button(self) -> w.Button:
        """The Retry button, made at the first failure of a job that can retry."""
        if self.retry_button is None:
            self.retry_button = _action_button(
                "Retry failed",
                "redo",
                "run the failed tasks again (on other engines where their engine died)",
                self._on_retry,
                style="warning",
            )
            if self.clicks_routed:
                route_off_main_thread(self.retry_button)
        return self.retry_button

    def route_clicks(self) -> bool:
        """Have the buttons' clicks handled while the cell blocks (widgets/clicks.py); the
        Retry button, made later, follows.  False where the kernel cannot."""
        buttons = [self.cancel_button, self.interrupt_button, self.stacks_button]
        if self.retry_button is not None:
            buttons.append(self.retry_button)
        self.clicks_routed = route_off_main_thread(*buttons)
        return self.clicks_routed

    def _failures_wanted(self, snap: Snapshot) -> tuple[Changes, Changes]:
        """The Retry button and the failure groups (one Accordion section each, after the
        body), as (what matters most, the rest); a group shown for the first time starts
        the fetch of its first tasks' arguments."""
        retriable = isinstance(self.job, RetriedTasks) and snap.failed_tasks > 0
        first: Changes = []
        wanted: Changes = []
        if retriable or self.retry_button is not None:
            button = self._retry_button()
            first.append((self.bar_row, {"children": (self.bar, self.controls, button)}))
            wanted.append((button, {"disabled": self.retrying}))
            wanted.append((button.layout, {"display": "" if retriable else "none"}))
        groups = snap.failure_groups[:GROUPS_SHOWN]
        if self.failure is None and not groups:
            first.append((self.box, {"children": self._box_children(False)}))
            return first, wanted
        panes = self._failure_panes(groups)
        titles = tuple(g.label[:200] for g in groups)
        if self.failure is None:
            self.failure = w.Accordion(
                children=panes,
                titles=titles,
                selected_index=None,
                _dom_classes=("ipar-failure-groups",),
            )
        more = more_failures_html(snap.failure_groups)
        if more and self.more_failures is None:
            self.more_failures = w.HTML(value=more)
        first.append((self.box, {"children": self._box_children(bool(groups))}))
        # last: a count may lag a refresh when the budget is short
        wanted += [(pane, {"value": group_details_html(g)}) for pane, g in zip(panes, groups)]
        if self.more_failures is not None:
            wanted.append((self.more_failures, {"value": more}))
        wanted.append((self.failure, {"children": panes, "titles": titles}))
        if groups:
            # the arguments of tasks shown for the first time (a no-op when none is new),
            # fetched off this thread; a refresh follows when they are in
            self.tracker.fetch_arguments(on_done=self._arguments_in)
        return first, wanted

    def _box_children(self, failures: bool) -> tuple[Any, ...]:
        """The box's widgets: the failure groups after the body, then the stacks area."""
        children: list[Any] = [self.style, self.bar_row, self.body]
        if failures and self.failure is not None:
            children.append(self.failure)
            if self.more_failures is not None:
                children.append(self.more_failures)
        if self.stacks_area is not None:
            children.append(self.stacks_area)
        children.append(self.note_html)
        return tuple(children)

    def _arguments_in(self) -> None:
        """The failed tasks' arguments came (in the fetching thread): shown at the next
        refresh; once the job has ended the loop takes the view back for one more final
        update, and the static picture is published again."""
        self.loop.follow_again(self)

    def changes(self, final: bool = False) -> Changes:
        snap = self.snapshot()
        out: Changes = []
        for widget, traits in self.wanted(snap, final):
            diff = {k: v for k, v in traits.items() if _differs(getattr(widget, k), v)}
            if diff:
                out.append((widget, diff))
        return out

    def _note_html(self) -> str:
        note = html.escape(self.note)  # plain text: an error's message may hold '<'
        return f'<div class="ipar-box ipar-muted">{note}</div>' if note else ""

    # -- the buttons (run in our subshell, or in the main thread once it is free) ------------------
    def _on_cancel(self, _button: Any = None) -> None:
        if self.cancel_requested:
            return
        self.cancel_requested = True
        self.state_word = "cancelled"
        pending = unfinished(self.job)
        try:
            if pending:
                self.job.client.abort(pending)
        except Exception as exc:
            self.note = f"Cancel failed: {exc}"
        else:
            running = self._running_engines()
            self.note = "Cancelled: the tasks not yet started are aborted."
            if running:
                self.note += (
                    f" {len(running)} task{'s' if len(running) > 1 else ''} still running"
                    f" (engine{'s' if len(running) > 1 else ''} "
                    f"{', '.join(map(str, running))})."
                )
                self.interrupt_offered = True
        self.loop.wake()

    def _on_interrupt(self, _button: Any = None) -> None:
        engines = self._running_engines()
        if not engines:
            self.note = "Nothing left running."
        else:
            try:
                self.job.client.send_signal(signal.SIGINT, targets=engines)
            except Exception as exc:
                self.note = f"Interrupt failed: {exc}"
            else:
                self.note = f"Interrupted engine{'s' if len(engines) > 1 else ''} {', '.join(map(str, engines))}."
        self.interrupt_offered = False
        self.loop.wake()

    def _on_stacks(self, _button: Any = None) -> None:
        """Ask the engines running this job's tasks for their stacks and show them; it
        blocks up to STACKS_TIMEOUT, so its click is routed off the main thread."""
        client = self.job.client
        if self.stacks_asking or not isinstance(client, StacksClient):
            return
        self.stacks_asking = True
        self.stacks_html = asking_html()
        self.loop.wake()
        try:
            found = client.stacks(timeout=STACKS_TIMEOUT, tasks=unfinished(self.job))
        except Exception as exc:
            self.stacks_html = failed_html(str(exc))
        else:
            self.stacks_html = area_html(list(found.values()), time.strftime("%H:%M:%S"))
        finally:
            self.stacks_asking = False
        self.loop.wake()

    def _on_retry(self, _button: Any = None) -> None:
        """Resubmit the failed tasks; the widget follows the new ones to the end (the update
        loop takes it back if it had sent its final update)."""
        job = self.job
        if self.retrying or not isinstance(job, RetriedTasks):
            return
        self.retrying = True
        self.loop.wake()
        try:
            outcome = job.retry_failed()
        except Exception as exc:
            self.note = f"Could not retry: {exc}"
        else:
            self.note = str(outcome)
            if outcome:
                self._follow_retried()
        finally:
            self.retrying = False
        self.loop.wake()

    def _follow_retried(self) -> None:
        """A retry gave the job new tasks: follow them to the end, as a new run (Cancel is
        back, the final picture and notice are published again)."""
        self.state_word = None
        self.cancel_requested = self.interrupt_offered = False
        with self._publish_lock:
            self._closed.clear()
        self.loop.follow_again(self)

    def _running_engines(self) -> list[int]:
        """Engines running one of this job's tasks, per the controller."""
        placement = query_placement(self.job.client)
        if placement is None:
            return []
        ours = set(unfinished(self.job))
        return sorted(e for e, m in placement.running.items() if m in ours)


def _action_button(
    description: str,
    icon: str,
    tooltip: str,
    on_click: Callable[[w.Button], None],
    *,
    style: str = "",
    css_display: str | None = None,
) -> w.Button:
    """One of the display's buttons, as wide as its label (``css_display="none"``: hidden until
    the display shows it)."""
    button = w.Button(
        description=description,
        icon=icon,
        button_style=style,
        tooltip=tooltip,
        layout=w.Layout(width="auto", display=css_display),
    )
    button.on_click(on_click)
    return button


def _differs(current: Any, wanted: Any) -> bool:
    if isinstance(current, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return len(current) != len(wanted) or any(
            a is not b and a != b for a, b in zip(current, wanted, strict=True)
        )
    return bool(current != wanted)


def display_progress(job: Job) -> None:
    """``ar.display()``: show the live widget and return at once; it keeps updating until the
    job ends, then shows the final state (``get_loop().wait_idle()`` waits for that).

    Outside a kernel (or with ``IPAR_NONINTERACTIVE=1``) it prints the job's state once.
    """
    if not widgets_wanted(None):
        print(progress_text(ProgressTracker(job).snapshot()))
        return
    view = ProgressView(job)
    view.notify_when_done = True
    view.route_clicks()
    view.show()


def follow_job(job: Job) -> Callable[[float], None]:
    """Show the live widget of a job that the caller's own code waits for (a joblib
    ``Parallel`` call's batches): no done-notification, since the user is watching the cell.
    Returns what the caller runs when its wait ends: it waits up to that many seconds for the
    job to be over, then sends the final update from the calling thread, so a notebook run
    headless (whose runner stops listening when the cell ends) keeps the final state."""
    # not ``blocking``: if the caller's wait never ends here (joblib raised and skipped it),
    # the loop still sends the final state once the job is over
    view = ProgressView(job)
    view.route_clicks()
    view.show()

    def end(timeout: float) -> None:
        wait_until(job, condition_for(job, ALL_COMPLETED), timeout, interval=WAIT_SLICE)
        if job.ready():
            view.loop.finish(view)  # now, from the cell's thread (a no-op if the loop was first)

    return end


def wait_with_widget(
    job: Job,
    interval: float | None = None,
    timeout: float | None = -1,
    return_when: Any = ALL_COMPLETED,
) -> None:
    """The notebook form of ``wait_interactive``: block the cell until ``return_when``,
    with the live widget; TimeoutError after ``timeout`` seconds.

    If the wait ends before the job does (a timeout, ``return_when``, an interrupt), the
    widget goes on following the job, like ``ar.display()``.
    """
    period = REFRESH_PERIOD if interval is None else max(REFRESH_PERIOD, float(interval))
    view = ProgressView(job, blocking=True, period=period)
    view.route_clicks()
    if not view.clicks_routed:
        view.cancel_button.tooltip = (
            "this kernel handles the click once the cell returns; "
            "use ar.display() or interrupt the kernel to stop waiting"
        )
        view.stacks_button.tooltip = (
            "this kernel handles the click once the cell returns; "
            "use ar.display(), or ar.stacks() in another kernel, to ask while tasks run"
        )
    view.show()
    try:
        finished = wait_until(job, condition_for(job, return_when), timeout, interval=WAIT_SLICE)
    except KeyboardInterrupt:
        _stop_waiting(view, "Stopped waiting (the kernel was interrupted); the tasks go on.")
        raise
    if job.ready():
        view.blocking = False  # the cell returns: a retry or late arguments end it again
        view.loop.finish(view)
    elif finished:
        _stop_waiting(view, "")
    else:
        _stop_waiting(view, f"Stopped waiting after {timeout} s; the tasks go on.")
        raise TimeoutError(f"{job.name}: not done after {timeout} s")


def _stop_waiting(view: ProgressView, note: str) -> None:
    """The cell stops waiting but the job goes on: the loop keeps the widget live and sends
    the final update when the job ends, and the notice (nobody watches it any more)."""
    if note:
        view.note = note
    view.notify_when_done = True
    view.blocking = False
    view.loop.wake()
