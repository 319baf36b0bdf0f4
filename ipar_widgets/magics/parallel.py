"""ParallelMagics: %px, %%px, %pxresult, %pxconfig and %autopx, bound to one DirectView."""

from __future__ import annotations

import os
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import no_var_expand

from ..client.asyncresult import AsyncResult
from ..client.job import Job
from ..client.targets import resolve_targets
from ..client.view import DirectView
from ..error import AlreadyDisplayedError, CompositeError, NoEnginesRegistered, RemoteError
from ..progress import widgets_wanted
from . import autopx
from .kernel import KernelOutputs, KernelProgress
from .live import LiveOutputs, OutputFeed, unfinished_engines, wait_for_cell
from .options import (
    argument,
    describe_targets,
    execution_flags,
    grouping_flags,
    magic_args,
    named,
    parse,
    parse_signal,
    parse_targets,
    resolve_config_targets,
    save_flag,
    signal_spec,
)
from .terminal import TerminalOutputs, TerminalProgress
from .text import as_remote_error, interrupt_text
from .widgetprogress import WidgetProgress

#: seconds an interrupted execution waits for the engines it signalled to stop (it returns
#: anyway after that; ``--no-stream`` output is shown only if they stopped)
INTERRUPTED_WAIT = 3.0


def _in_kernel(shell: Any) -> bool:
    """Whether the frontend behind ``shell`` can update outputs in place (a Jupyter kernel)."""
    return getattr(shell, "kernel", None) is not None


def _kernel_progress(shell: Any, job: Job) -> WidgetProgress | KernelProgress:
    """A blocking cell's progress in a kernel: the live progress widget (bar and per-engine
    table), or the text line where widgets are not wanted (``IPAR_NONINTERACTIVE=1``)."""
    return WidgetProgress(job) if widgets_wanted(None) else KernelProgress(shell)


class ParallelMagics:
    """The parallel magics of one suffix (``%px<suffix>`` ...), acting on one DirectView.

    The view's ``targets`` and ``block`` are the defaults of every execution; the other
    defaults (``verbose``, ``stream``, ``groupby``, ``progress_after``,
    ``signal_on_interrupt``) live here.  All of them can be changed with ``%pxconfig``.
    """

    def __init__(self, shell: Any, view: DirectView | None, suffix: str = "") -> None:
        self.shell = shell
        self.suffix = suffix
        self._view = view
        #: print on which engines each execution runs
        self.verbose = False
        #: show engines' output as it arrives; off when IPAR_NONINTERACTIVE=1
        self.stream = os.environ.get("IPAR_NONINTERACTIVE") != "1"
        #: layout of output shown at the end: 'type', 'engine' or 'order'
        self.groupby = "type"
        #: seconds a blocking execution runs before a progress line appears (-1: never)
        self.progress_after = 2.0
        #: signal sent to the engines on Ctrl-C during a blocking execution, as given: a name
        #: or a number (0: none)
        self.signal_on_interrupt: str | int = "SIGINT"
        #: the AsyncResult of the last execution, for %pxresult
        self.last_result: AsyncResult | None = None
        self._autopx: autopx.AutoPx | None = None

    # -- the view -----------------------------------------------------------------------------------
    @property
    def view(self) -> DirectView:
        """The DirectView the magics act on; after ``%load_ext`` alone, one on every engine of
        the default profile's cluster, connected at first use."""
        if self._view is None:
            from ..client.client import Client

            client = Client()  # in IPython, the new client may bind itself to these magics
            if self._view is None:
                view = client.direct_view("all")
                view.block = True
                self._view = view
        assert self._view is not None
        return self._view

    def bind(self, view: DirectView) -> None:
        self._view = view

    @property
    def name(self) -> str:
        return f"%px{self.suffix}"

    def register(self) -> None:
        """Make the magics known to the shell under this suffix's names."""
        manager = self.shell.magics_manager
        suffix = self.suffix
        manager.register_function(self.px, "line", f"px{suffix}")
        manager.register_function(self.cell_px, "cell", f"px{suffix}")
        manager.register_function(self.pxresult, "line", f"pxresult{suffix}")
        manager.register_function(self.pxconfig, "line", f"pxconfig{suffix}")
        manager.register_function(self.autopx, "line", f"autopx{suffix}")
        if not suffix:
            manager.register_function(self.pxresult, "line", "result")  # older name of %pxresult

    # -- the magics -----------------------------------------------------------------------------------
    @no_var_expand
    def px(self, line: str = "") -> AsyncResult | None:
        """Run one line of code on the engines: ``%px import numpy as np``.

        Blocking or not, targets and the other defaults come from ``%pxconfig`` (or the active
        view); ``%%px`` takes the same options per cell.
        """
        return self.execute(line)

    @magic_args()
    @named("%px")
    @execution_flags
    @grouping_flags
    @save_flag
    @argument(
        "--local",
        action="store_true",
        help="also run the cell here, after sending it to the engines",
    )
    def cell_px(self, line: str = "", cell: str | None = None) -> AsyncResult | None:
        """Run the cell on the engines.

        Blocking (the default of the view a Client activates), it shows each engine's output
        labelled ``[stdout:0]``, ``[stderr:1]``, ``Out[0:3]``, with its displays and errors, as
        it arrives; with ``--noblock`` it returns the AsyncResult at once.
        """
        args = parse(self.cell_px, line)
        ar = self.execute(
            cell or "",
            targets=parse_targets(args.targets) if args.targets else None,
            block=args.block,
            stream=args.stream,
            groupby=args.groupby,
            save_name=args.save_name,
            progress_after=args.progress_after,
            signal_on_interrupt=(
                signal_spec(args.signal_on_interrupt) if args.signal_on_interrupt else None
            ),
            local=args.local,
            verbose=args.verbose,
        )
        # under %autopx every cell is a %%px cell: nothing to show for it (%pxresult has it)
        return None if self._autopx is not None else ar

    @magic_args()
    @named("pxresult")
    @grouping_flags
    @save_flag
    def pxresult(self, line: str = "") -> None:
        """Show the outputs of the last %px execution (waiting for it if needed).

        After ``%px --noblock`` this is how its output is seen; ``-o NAME`` stores its
        AsyncResult instead of showing it.
        """
        args = parse(self.pxresult, line)
        ar = self.last_result
        if ar is None:
            raise UsageError(
                f"{self.name}result shows the last {self.name} execution, "
                f"and there has been none yet."
            )
        if args.save_name:
            self.shell.user_ns[args.save_name] = ar
            return
        # the execution was detached on purpose: Ctrl-C here stops the wait, not the engines
        self._show_at_end(ar, args.groupby or self.groupby, None, self.progress_after)

    @magic_args()
    @named("pxconfig")
    @execution_flags
    @grouping_flags
    def pxconfig(self, line: str = "") -> None:
        """Set the defaults of %px and %%px: targets, blocking, streaming, verbosity, ..."""
        args = parse(self.pxconfig, line)
        if args.targets:
            self.view.targets = resolve_config_targets(args.targets, self.view.client.ids)
        if args.block is not None:
            self.view.block = args.block
        if args.verbose is not None:
            self.verbose = args.verbose
        if args.stream is not None:
            self.stream = args.stream
        if args.groupby is not None:
            self.groupby = args.groupby
        if args.progress_after is not None:
            self.progress_after = args.progress_after
        if args.signal_on_interrupt is not None:
            self.signal_on_interrupt = signal_spec(args.signal_on_interrupt)

    def autopx(self, line: str = "") -> None:
        """Send every following cell to the engines (as ``%%px``), until %autopx again."""
        if self._autopx is None:
            self._autopx = autopx.enable(self.shell, self.suffix)
            print(f"%autopx{self.suffix} enabled")
        else:
            autopx.disable(self.shell, self._autopx)
            self._autopx = None
            print(f"%autopx{self.suffix} disabled")

    # -- running code ---------------------------------------------------------------------------------
    def execute(
        self,
        code: str,
        *,
        targets: Any = None,
        block: bool | None = None,
        stream: bool | None = None,
        groupby: str | None = None,
        save_name: str | None = None,
        progress_after: float | None = None,
        signal_on_interrupt: str | int | None = None,
        local: bool = False,
        verbose: bool | None = None,
    ) -> AsyncResult | None:
        """Send ``code`` to the engines; unset options take this suffix's defaults.

        Returns the AsyncResult when not blocking; blocking, shows the outputs and raises the
        engines' errors.  Ctrl-C while blocking sends ``signal_on_interrupt`` to the engines
        still running the cell, says so on stderr and returns, as ipyparallel does.
        """
        view = self.view
        block = view.block if block is None else block
        stream = self.stream if stream is None else stream
        feed = OutputFeed(view.client, outputs=stream) if block else None
        try:
            try:
                if verbose if verbose is not None else self.verbose:
                    where = self._describe(view, targets)
                    kind = "Parallel" if block else "Async parallel"
                    print(f"{kind} execution on engine(s): {where}")
                ar: AsyncResult = view.execute(code, silent=False, targets=targets, block=False)
            except (NoEnginesRegistered, IndexError) as exc:
                raise UsageError(str(exc)) from None  # no engines, or no such engine
            ar.name = "%px"  # <AsyncResult(%px): pending>, as ipyparallel shows it
            self.last_result = ar
            if save_name:
                self.shell.user_ns[save_name] = ar
            if local:
                self.shell.run_cell(code)
            if not block:
                return ar
            assert feed is not None
            after = self.progress_after if progress_after is None else progress_after
            groupby = groupby or self.groupby
            try:
                if stream:
                    self._show_live(ar, feed, after)
                else:
                    self._show_at_end(ar, groupby, feed, after)
            except KeyboardInterrupt:
                spec = (
                    self.signal_on_interrupt if signal_on_interrupt is None else signal_on_interrupt
                )
                self._interrupted(ar, spec, None if stream else groupby)
        finally:
            if feed is not None:
                feed.close()
        return None

    def _describe(self, view: Any, targets: Any) -> str:
        targets = view.targets if targets is None else targets
        if targets is None or isinstance(targets, str):
            return "all"
        if isinstance(targets, int):
            return str(targets)
        return describe_targets(resolve_targets(view.client.ids, targets))

    def _show_live(self, ar: AsyncResult, feed: OutputFeed, progress_after: float) -> None:
        kernel = _in_kernel(self.shell)
        outputs: LiveOutputs = KernelOutputs(self.shell) if kernel else TerminalOutputs()
        # a terminal's progress line would tangle with the printed output: only in a kernel
        progress = _kernel_progress(self.shell, ar) if kernel else None
        wait_for_cell(
            ar,
            feed,
            outputs=outputs,
            progress=progress,
            name=self.name,
            progress_after=progress_after,
        )
        if _errors(ar):
            try:
                ar.get()  # one engine (an int target): its RemoteError, shown again in full
            except CompositeError as exc:
                raise AlreadyDisplayedError(exc) from None  # the count, under the tracebacks

    def _show_at_end(
        self,
        ar: AsyncResult,
        groupby: str,
        feed: OutputFeed | None,
        progress_after: float,
    ) -> None:
        if not ar.ready():
            feed = feed or OutputFeed(self.view.client, outputs=False)
            progress: Any = (
                _kernel_progress(self.shell, ar) if _in_kernel(self.shell) else TerminalProgress()
            )
            wait_for_cell(
                ar,
                feed,
                outputs=None,
                progress=progress,
                name=self.name,
                progress_after=progress_after,
            )
        _errors(ar)  # names the engine in errors that arrived without it
        ar.display_outputs(groupby)
        ar.get()  # raises the engines' errors, each traceback headed [engine:execute]

    def _interrupted(self, ar: AsyncResult, spec: str | int, groupby: str | None) -> None:
        """Ctrl-C during a blocking execution: signal the engines that still run it (none for
        signal 0), give them a moment to stop, and, if nothing was streamed, show what they
        printed.

        The moment matters beyond the output: a cell that stops with an error makes its
        engine abort the cells already queued behind it, so the next %px sent while the
        engines are still stopping would be aborted too.
        """
        print(interrupt_text(spec), file=sys.stderr)
        signum = parse_signal(spec)
        running = unfinished_engines(ar)
        if signum and running:
            try:
                ar.client.send_signal(signum, targets=running)
            except Exception as exc:  # an engine gone, or not answering within its bound
                print(
                    f"could not send signal {spec} to engine(s) {running}: {exc}",
                    file=sys.stderr,
                )
            else:
                ar.wait(INTERRUPTED_WAIT)
        if groupby is not None and ar.ready():
            ar.display_outputs(groupby)


def _errors(job: Job) -> list[RemoteError]:
    """The finished tasks' errors, each naming its engine, in the order of the tasks."""
    arrived = dict(job.arrived_since(0))
    return [
        as_remote_error(value, md["engine_id"])
        for msg_id, md in zip(job.msg_ids, job.task_metadata, strict=True)
        if isinstance(value := arrived.get(msg_id), BaseException)
    ]
