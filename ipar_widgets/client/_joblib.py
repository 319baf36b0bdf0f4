"""joblib's parallel backend on a view: ``Parallel(backend="ipyparallel")`` runs its batches
of calls as tasks on the cluster's engines.

This module imports joblib (``ipyparallel.client._joblib`` does too); nothing else of
ipar_widgets imports it until a backend is registered, so joblib stays optional.

How joblib drives a backend: ``configure`` at the start of a ``Parallel`` call says how many
batches may run at once; ``submit`` sends one batch (a callable joblib builds from several
``delayed`` calls) and arranges for joblib's callback to run when it ends; the callback
collects the result through ``retrieve_result_callback`` and dispatches the next batch;
``abort_everything`` follows the first error; ``stop_call`` and ``terminate`` end the call.

The batches of one call form one job (:class:`~ipar_widgets.client.paralleljob.
ParallelCallJob`), which one progress display follows: the live widget in a notebook (by
default), the text line in a terminal (``progress=True``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from joblib.parallel import (  # type: ignore[import-untyped]
    AutoBatchingMixin,
    ParallelBackendBase,
    register_parallel_backend,
)

from ..error import NoEnginesRegistered, TaskAborted
from . import frontend
from .job import unfinished
from .paralleljob import ParallelCallJob, batch_name, batch_size

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .baseview import View
    from .lbview import LoadBalancedView

__all__ = ["IPythonParallelBackend", "register_view", "DEFAULT_NAMES"]

#: the names the default registration uses: ipyparallel's, and ours
DEFAULT_NAMES = ("ipyparallel", "ipar_widgets")

#: what makes a backend's view when none is given: a view and what closes it afterwards
Connect = Callable[[], "tuple[View, Callable[[], None]]"]


def _connect_default_client() -> tuple[View, Callable[[], None]]:
    """A view on the default profile's running cluster (a Client of our own, closed after)."""
    from .client import Client

    rc = Client()
    return rc.load_balanced_view(), rc.close


class IPythonParallelBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """Runs joblib's batches on the engines of a view (a LoadBalancedView; a DirectView's
    engines are load-balanced over).

    ``n_jobs`` is how many batches run at once: -1 (the default) every engine of the view,
    -k all but k-1 of them, k at most k engines.  The batch sizes adapt to the tasks'
    durations (joblib's auto-batching).  The first error aborts the batches that have not
    started and is raised in the caller, with the engine's traceback.  ``jobs`` holds the
    AsyncResults of the current (or latest) ``Parallel`` call.

    ``view=None`` connects to the cluster of the default profile (``connect`` overrides how;
    ``ipar_widgets.register_joblib_backend()`` starts a cluster when none runs), and closes
    that connection when the call ends.

    ``progress`` shows one progress display per ``Parallel`` call, over all its batches
    (counts in joblib tasks, the per-engine table, failures, Cancel): None (the default) the
    live widget in a notebook and nothing elsewhere, True also the text line on stderr
    outside a notebook, False nothing.  Set it with ``parallel_config(backend="ipyparallel",
    progress=False)`` or here.  Cancel aborts the batches that have not started, and those
    joblib dispatches after it are not sent; the call then raises TaskAborted saying so.
    """

    supports_retrieve_callback = True  # results are collected as they come: generators too
    default_n_jobs = -1  # Parallel() without n_jobs uses every engine

    def __init__(
        self,
        view: View | None = None,
        *,
        connect: Connect | None = None,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if progress not in (None, True, False):
            raise ValueError(
                "progress must be None (a widget in notebooks only), True (also a text line in "
                f"a terminal) or False (no display), found {progress!r}"
            )
        super().__init__(**kwargs)
        self.progress = progress
        #: how to connect again after terminate() closed our own connection (None: the view
        #: was given, and is the caller's to close)
        self._connect: Connect | None = None
        self._close: Callable[[], None] | None = None
        if view is None:
            self._connect = connect or _connect_default_client
            view, self._close = self._connect()
        self._view = view
        self._balanced: LoadBalancedView | None = None
        #: the AsyncResults of the current (or latest) Parallel call, in submission order
        self.jobs: list[AsyncResult] = []
        self._jobs_lock = threading.Lock()
        self._callbacks: ThreadPoolExecutor | None = None
        #: bounds the batches running at once when n_jobs asks for fewer than every engine
        self._slots: threading.BoundedSemaphore | None = None
        #: the current (or latest) Parallel call's batches as one job: what its display shows
        self.call_job: ParallelCallJob | None = None
        self._shown = False  # the current call's display is up
        self._aborted = False  # the current call aborted (an error, Ctrl-C, Cancel)
        self._line_done: Callable[[float], None] | None = None

    @property
    def view(self) -> View:
        """The view the batches are sent through."""
        return self._view

    # -- how many at once -------------------------------------------------------------------------
    def _engines(self) -> int:
        try:
            return len(self._view)
        except NoEnginesRegistered:
            return 0

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """How many batches run at once for ``n_jobs``: the view's engines for -1 (or None),
        all but ``k-1`` of them for ``-k``, at most ``n_jobs`` of them otherwise.

        joblib runs everything in this process when this is 1, so the answer is 1 only for
        ``n_jobs=1``: a view with one engine reports 2 and its batches still run there.
        """
        if n_jobs == 0:
            raise ValueError(
                "n_jobs == 0 has no meaning; use -1 for every engine of the view, or a number "
                "of engines"
            )
        if n_jobs == 1:
            return 1
        engines = self._engines()
        if engines == 0:
            raise NoEnginesRegistered(
                f"the joblib backend's view ({self._view!r}) has no engines; start some "
                "(cluster.start_engines_sync(n) or `ipar start -n N`) before calling Parallel"
            )
        if n_jobs is None or n_jobs < 0:
            wanted = max(engines + 1 + (n_jobs or -1), 1)
        else:
            wanted = min(n_jobs, engines)
        return max(wanted, 2)

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **backend_kwargs: Any,
    ) -> int:
        """Start of a ``Parallel`` call (or ``with Parallel(...)``): reconnect if a previous
        call closed our own connection, and set how many batches may run at once."""
        if self._close is None and self._connect is not None and self._view.client.closed:
            self._view, self._close = self._connect()
            self._balanced = None
        self.parallel = parallel
        n = self.effective_n_jobs(n_jobs)
        engines = self._engines()
        self._slots = threading.BoundedSemaphore(n) if n < engines else None
        if self._callbacks is None:
            self._callbacks = ThreadPoolExecutor(1, thread_name_prefix="ipar-joblib")
        return n

    def start_call(self) -> None:
        """A new ``Parallel`` call: ``jobs`` starts empty, and so does its job (shown once its
        first batch is sent, so that the display has the function's name)."""
        with self._jobs_lock:
            self.jobs = []
            self.call_job = ParallelCallJob(self._view.client)
            self._shown = False
            self._aborted = False
            self._line_done = None

    def stop_call(self) -> None:
        """The ``Parallel`` call ended (returned or raised): its job is over once the
        batches still counted have finished; after an abort at once (joblib drops the
        results of batches still running), so the display's final state is the call's."""
        job = self.call_job
        if job is None:
            return
        job.close(abandon=self._aborted)
        line_done, self._line_done = self._line_done, None
        if line_done is not None:
            line_done(2.0)  # the display's final state, before the caller goes on

    def _call_job(self) -> ParallelCallJob:
        """The current call's job (joblib before 1.3 has no start_call: one per backend)."""
        with self._jobs_lock:
            if self.call_job is None:
                self.call_job = ParallelCallJob(self._view.client)
            return self.call_job

    def _show(self, job: ParallelCallJob) -> None:
        """Show the call's display once, at its first batch (in the caller's thread, so a
        notebook shows it in the cell that made the call)."""
        if self._shown or self.progress is False:
            return
        self._shown = True
        self._line_done = frontend.follow_progress(job, terminal=bool(self.progress))

    def _submitting_view(self) -> View:
        """Where batches go: the view itself, or for a DirectView a load-balanced view over
        its engines (a DirectView would run every batch on each of them)."""
        from .directview import DirectView

        if not isinstance(self._view, DirectView):
            return self._view
        if self._balanced is None:
            client = self._view.client
            self._balanced = client.load_balanced_view(
                client._build_targets(self._view._engine_targets())
            )
        return self._balanced

    # -- one batch -----------------------------------------------------------------------------------
    def submit(self, func: Callable[[], Any], callback: Callable[[Any], None] | None = None) -> Any:
        """Send one batch; ``callback(ar)`` runs when it ends, in a thread of this backend
        (never in the client's I/O thread: joblib's callback reads the caller's iterator and
        sends the next batch)."""
        slots = self._slots
        if slots is not None:
            slots.acquire()
        job = self._call_job()
        runner = self._callbacks
        if job.cancelled:
            # Cancel was clicked: what joblib sends after it is not sent; retrieving it
            # raises the cancellation, which ends the call
            if slots is not None:
                slots.release()
            unsent = _NotSent()
            if callback is not None and runner is not None:
                runner.submit(callback, unsent)
            return unsent
        try:
            ar = self._submitting_view().apply_async(func)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        with self._jobs_lock:
            self.jobs.append(ar)
        job.add(ar, batch_size(func), batch_name(func))
        self._show(job)

        def done(_: Any) -> None:
            if slots is not None:
                slots.release()
            if callback is not None and runner is not None:
                try:
                    runner.submit(callback, ar)
                except RuntimeError:
                    pass  # the call ended (terminate) while this batch ran: nobody waits

        ar.add_done_callback(done)
        return ar

    def retrieve_result_callback(self, out: AsyncResult) -> Any:
        """The batch's list of results; a failed call raises its RemoteError (with the
        engine's traceback), a cancelled call a TaskAborted that says so."""
        job = self.call_job
        if isinstance(out, _NotSent):
            raise self._cancelled(job)
        try:
            return out.result()
        except TaskAborted as exc:
            if job is None or not job.cancelled:
                raise
            raise self._cancelled(job) from exc

    @staticmethod
    def _cancelled(job: ParallelCallJob | None) -> TaskAborted:
        """The error a cancelled call raises, saying how far it got."""
        if job is None:
            return TaskAborted("the Parallel call was cancelled")
        done, sent = job.batches()
        return TaskAborted(
            f"{job.name} was cancelled (Cancel in its progress display, or client.abort): "
            f"{done} of the {sent} batches sent had finished; those not started were "
            "aborted, and joblib's later batches were not sent"
        )

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """After an error (or Ctrl-C): abort the batches of this call that have not started.
        Those running finish on their engines; their results are dropped."""
        self._aborted = True
        with self._jobs_lock:
            pending = [m for ar in self.jobs for m in unfinished(ar)]
        if pending and not self._view.client.closed:
            self._view.client.abort(pending)

    def terminate(self) -> None:
        """End of a ``Parallel`` call: stop the callback thread, close our own connection."""
        if self._callbacks is not None:
            self._callbacks.shutdown(wait=False)
            self._callbacks = None
        self.reset_batch_stats()
        if self.call_job is not None:
            self.call_job.close(abandon=True)  # no batch reports once the connection closes
        if self._close is not None:
            close, self._close = self._close, None
            close()


class _NotSent:
    """A batch joblib dispatched after Cancel: never sent.  joblib hands it back to
    ``retrieve_result_callback``, which raises the cancellation."""

    def ready(self) -> bool:
        return True


def register_view(view: View, name: str, make_default: bool) -> None:
    """Register ``view`` as joblib backend ``name`` (the default name under ours too)."""

    def make(**kwargs: Any) -> IPythonParallelBackend:
        return IPythonParallelBackend(view=view, **kwargs)

    register(make, name, make_default)


def register(factory: Callable[..., IPythonParallelBackend], name: str, make_default: bool) -> None:
    """Register ``factory`` under ``name``, and when that is ipyparallel's default name, also
    under ``'ipar_widgets'``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"the backend name must be a non-empty string, found {name!r}")
    names = DEFAULT_NAMES if name == DEFAULT_NAMES[0] else (name,)
    for each in names:
        register_parallel_backend(each, factory, make_default=make_default and each == name)
