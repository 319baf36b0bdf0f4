"""Exceptions raised by ipar_widgets.

The hierarchy (names follow ipyparallel's public API, so ``except ipp.error.X`` keeps working)::

    Exception
    ├── IPythonError                 base of every ipar_widgets error
    │   ├── KernelError              something went wrong on an engine or in the cluster
    │   │   ├── EngineError          an engine died or stopped answering while it held a task
    │   │   │   └── EngineStartFailed    an engine the cluster started exited before registering
    │   │   ├── NoEnginesRegistered  a request needs engines and none are registered
    │   │   ├── TaskAborted          the task was aborted before it ran
    │   │   ├── TaskTimeout          the task did not start within its ``timeout``
    │   │   ├── TaskRejectError      the scheduler refused the task (no engine may run it)
    │   │   ├── UnmetDependency      the task's dependencies are not met on this engine
    │   │   │   └── ImpossibleDependency    they can never be met on any engine
    │   │   │       ├── DependencyTimeout   they were not met within the timeout
    │   │   │       └── InvalidDependency   a dependency refers to an unknown task
    │   │   └── RemoteError          the task raised: carries ename, evalue, traceback, engine
    │   │       ├── CompositeError   several tasks raised: carries every RemoteError
    │   │       ├── AlreadyDisplayedError  the error was already shown (``%px``)
    │   │       └── NoSuchTask (also KeyError)  the controller has no record of a task
    │   ├── ClusterError (also RuntimeError)  starting, stopping or asking a cluster failed
    │   │   ├── ClusterNotFound (also FileNotFoundError)  no running cluster matches that
    │   │   ├── ControllerRefused (also ValueError)  the controller refused a request, and why
    │   │   ├── NoAnswer (also TimeoutError)        the controller did not answer in time
    │   │   ├── ControllerLost (also ConnectionError)  it stayed unreachable past the grace
    │   │   │   └── TaskLost      a restored controller had no record of a pending task
    │   │   └── EnginesNotReady (also TimeoutError) fewer engines registered than waited for
    │   └── ClientClosed (also RuntimeError)   the Client was closed; connect a new one
    ├── TimeoutError (builtin)       a wait ran out of time (``error.TimeoutError`` is the builtin)
    └── SerializationError (TypeError)  a function or argument could not be pickled

The second bases keep ``except OSError`` / ``except ValueError`` / ``except TimeoutError``
working where Python or ipyparallel code expects those kinds; each error's text says what was
expected, what was found and what to do, and its attributes carry the same facts.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from .enginedeath import EngineDeath

__all__ = [
    "IPythonError",
    "KernelError",
    "EngineError",
    "NoEnginesRegistered",
    "TaskAborted",
    "TaskTimeout",
    "TaskRejectError",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "RemoteError",
    "CompositeError",
    "AlreadyDisplayedError",
    "NoSuchTask",
    "EngineStartFailed",
    "ClusterError",
    "ClusterNotFound",
    "ControllerRefused",
    "NoAnswer",
    "ControllerLost",
    "TaskLost",
    "EnginesNotReady",
    "ClientClosed",
    "TimeoutError",
    "SerializationError",
    "collect_exceptions",
    "wrap_exception",
    "unwrap_exception",
]

TimeoutError = builtins.TimeoutError


class IPythonError(Exception):
    """Base of every exception ipar_widgets raises on purpose."""


class KernelError(IPythonError):
    """Something went wrong on an engine or in the cluster.

    ``engine_id`` names the engine it concerns (None when none does) and ``engine_info``
    holds what the reporter said of it (``engine_id``, ``method``, ...).
    """

    engine_id: int | None = None
    engine_info: dict[str, Any]


class EngineError(KernelError):
    """An engine died or stopped answering while it held a task.

    ``death`` is the controller's record of how (an
    :class:`~ipar_widgets.enginedeath.EngineDeath`: exit code or signal, OOM evidence, peak
    memory, the task it ran, its last output), None when there is none (an engine that was
    stopped, or one the controller never knew).  ``exit_code``, ``signal``, ``oom``,
    ``peak_rss`` and ``output_tail`` read the same facts.
    """

    death: EngineDeath | None = None

    @property
    def exit_code(self) -> int | None:
        """The engine process's exit code (None: killed by a signal, or not known)."""
        return self.death.exit_code if self.death is not None else None

    @property
    def signal(self) -> str | None:
        """The name of the signal that killed it (``"SIGKILL"``), None if none did."""
        return self.death.signal if self.death is not None else None

    @property
    def oom(self) -> bool:
        """Whether the evidence says the kernel's OOM killer killed it."""
        return self.death.oom if self.death is not None else False

    @property
    def peak_rss(self) -> int | None:
        """Its peak resident memory in bytes, where known."""
        return self.death.peak_rss if self.death is not None else None

    @property
    def output_tail(self) -> tuple[str, ...]:
        """The last lines the task it ran printed."""
        return self.death.output_tail if self.death is not None else ()


class NoEnginesRegistered(KernelError):
    """A request needs engines and the controller has none registered."""

    def __str__(self) -> str:
        base = super().__str__() or "This operation requires engines."
        return base + " Try: rc.wait_for_engines(n), or start some with: ipar engines add -n 2"


class TaskAborted(KernelError):
    """The task was aborted (``ar.abort()``, ``rc.abort()``) before it started."""


class TaskTimeout(KernelError):
    """The task did not start within the ``timeout`` it was submitted with."""


class TaskRejectError(KernelError):
    """The scheduler refused the task because no registered engine may run it."""


class UnmetDependency(KernelError):
    """The task's dependencies are not met on the engine that received it."""


class ImpossibleDependency(UnmetDependency):
    """The task's dependencies can never be met on any engine."""


class DependencyTimeout(ImpossibleDependency):
    """The task's dependencies were not met within its timeout."""


class InvalidDependency(ImpossibleDependency):
    """A dependency names a task the controller does not know."""


class EngineStartFailed(EngineError):
    """An engine the cluster started exited before it registered.

    ``returncode`` is its exit code, ``log`` the path of its log and ``log_tail`` the log's
    last lines (they usually say why: a bad argument, a missing module).
    """

    def __init__(self, returncode: int | None, log: str, log_tail: str, what: str = "an engine"):
        self.returncode = returncode
        self.log = log
        self.log_tail = log_tail
        super().__init__(
            f"{what} exited with code {returncode} before registering; the end of its log "
            f"({log}):\n{log_tail}"
        )


class ClusterError(IPythonError, RuntimeError):
    """Starting, stopping or asking a cluster failed; the text says why and what to do."""


class ClusterNotFound(ClusterError, FileNotFoundError):
    """No running cluster matches the profile, cluster id or connection file given."""


class ControllerRefused(ClusterError, ValueError):
    """The controller refused a request: ``request`` is its type, ``reason`` the
    controller's own explanation."""

    def __init__(self, request: str, reason: str) -> None:
        self.request = request
        self.reason = reason
        super().__init__(reason)


class NoAnswer(ClusterError, TimeoutError):
    """The controller did not answer ``request`` within ``timeout`` seconds."""

    def __init__(self, request: str, timeout: float | None, address: str = "") -> None:
        self.request = request
        self.timeout = timeout
        self.address = address
        where = f"the controller at {address}" if address else "the controller"
        within = f" within {timeout:g} s" if timeout is not None else ""
        super().__init__(
            f"{where} did not answer{within}; is the cluster running? "
            f"(see: ipar list; the request was {request})"
        )


class ControllerLost(ClusterError, ConnectionError):
    """The controller at ``address`` was unreachable for ``waited`` seconds, longer than the
    client waits for one restored in its place; the pending task ``msg_id`` cannot finish."""

    def __init__(self, address: str, waited: float, msg_id: str = "", text: str = "") -> None:
        self.address = address
        self.waited = waited
        self.msg_id = msg_id
        super().__init__(
            text
            or f"the controller at {address} has been unreachable for {waited:.0f} s "
            f"(Client.controller_timeout); task {msg_id} cannot finish. If the controller "
            "crashed, `ipar start --restore` brings it back with its records; connect a new "
            "Client then (rc.get_result(msg_ids) finds the tasks that finished)"
        )


class TaskLost(ControllerLost):
    """The controller was restored without a record of task ``msg_id``: it was submitted too
    shortly before the crash to reach the task database, and no engine that rejoined had it."""

    def __init__(self, address: str, msg_id: str) -> None:
        super().__init__(
            address,
            0.0,
            msg_id,
            f"the controller at {address} was restored without a record of task {msg_id}: it "
            "was submitted less than a moment (the task database's commit interval) before "
            "the controller died, so it was not in the database yet, and no engine that "
            "rejoined had it (if it ran, its engine died too). Submit it again.",
        )


class EnginesNotReady(ClusterError, TimeoutError):
    """Fewer engines than waited for registered within the timeout: ``registered`` of
    ``wanted``, after ``timeout`` seconds."""

    def __init__(self, registered: int, wanted: int, timeout: float, detail: str = "") -> None:
        self.registered = registered
        self.wanted = wanted
        self.timeout = timeout
        super().__init__(
            f"{registered} engine(s) registered of the {wanted} waited for, after {timeout:g} s"
            + detail
        )


class ClientClosed(IPythonError, RuntimeError):
    """The Client was closed (``rc.close()``, or the cluster it used stopped); the text says
    what could not be done.  Connect a new Client to go on."""

    def __init__(self, what: str = "", *, text: str | None = None) -> None:
        if text is None:
            text = "this client is closed" + (f": cannot {what}" if what else "")
            text += "; connect a new Client to go on"
        super().__init__(text)


class SerializationError(TypeError):
    """A function, argument or result could not be pickled; the message names the object."""


def _engine_label(engine_info: Mapping[str, Any] | None) -> str:
    if not engine_info:
        return "[Engine Exception]"
    engine_id = engine_info.get("engine_id", "?")
    method = engine_info.get("method", "?")
    return f"[{engine_id}:{method}]"


class RemoteError(KernelError):
    """An exception raised by a task on an engine.

    ``ename`` and ``evalue`` are the remote exception's type name and text, ``traceback`` the
    remote traceback as IPython formatted it (lines, possibly with ANSI colours) and
    ``engine_info`` a dict with at least ``engine_id`` and ``method`` (``apply``/``execute``).
    """

    method: str | None = None

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: str | list[str] = "",
        engine_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.ename = ename
        self.evalue = evalue
        if isinstance(traceback, list):
            traceback = "\n".join(traceback)
        self.traceback = traceback
        self.engine_info = dict(engine_info or {})
        self.engine_id = self.engine_info.get("engine_id")
        self.method = self.engine_info.get("method")
        super().__init__(ename, evalue, traceback, self.engine_info)

    def __repr__(self) -> str:
        return f"<Remote[{self.engine_id}]:{self.ename}({self.evalue})>"

    def __str__(self) -> str:
        return f"{_engine_label(self.engine_info)} {self.ename}: {self.evalue}"

    def render_traceback(self) -> list[str]:
        """The traceback lines to show for this error (the remote traceback, or ename: evalue)."""
        if self.traceback:
            return self.traceback.splitlines()
        return [f"{self.ename}: {self.evalue}"]

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting the local frames, so a remote error reads
        # like a local one: a header naming the engine, then the engine's own traceback.
        return [_engine_label(self.engine_info), *self.render_traceback()]

    def print_traceback(self) -> None:
        print("\n".join(self._render_traceback_()))

    def raise_exception(self) -> None:
        raise self


class CompositeError(RemoteError):
    """Several tasks raised; ``elist`` holds every :class:`RemoteError`.

    Its text and rendering show the first :attr:`tb_limit` tracebacks and count the rest.
    """

    tb_limit = 4

    def __init__(self, message: str, elist: list[RemoteError]) -> None:
        self.msg = message
        self.elist = list(elist)
        first = self.elist[0] if self.elist else None
        KernelError.__init__(self, message, self.elist)
        self.ename = first.ename if first else "CompositeError"
        self.evalue = first.evalue if first else message
        self.traceback = first.traceback if first else ""
        self.engine_info = dict(first.engine_info) if first else {}
        self.engine_id = first.engine_id if first else None
        self.method = first.method if first else None

    def __str__(self) -> str:
        lines = [f"{self.msg} ({len(self.elist)} error{'s' if len(self.elist) != 1 else ''})"]
        for err in self.elist[: self.tb_limit]:
            lines.append(str(err))
        more = len(self.elist) - self.tb_limit
        if more > 0:
            lines.append(f"... {more} more exception{'s' if more != 1 else ''} ...")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CompositeError({len(self.elist)} errors)"

    def render_traceback(self, excid: int | None = None) -> list[str]:
        if excid is not None:
            return self.elist[excid]._render_traceback_()
        lines: list[str] = []
        for err in self.elist[: self.tb_limit]:
            lines.extend(err._render_traceback_())
            lines.append("")
        more = len(self.elist) - self.tb_limit
        if more > 0:  # the last line says how many are not shown, as in ipyparallel
            lines.append(f"... {more} more exception{'s' if more != 1 else ''} ...")
        else:
            lines.append(f"{len(self.elist)} error{'s' if len(self.elist) != 1 else ''}")
        return lines

    def _render_traceback_(self) -> list[str]:
        return self.render_traceback()

    def print_traceback(self, excid: int | None = None) -> None:
        print("\n".join(self.render_traceback(excid)))

    def raise_exception(self, excid: int = 0) -> None:
        """Raise the ``excid``-th remote error on its own."""
        raise self.elist[excid]


class AlreadyDisplayedError(RemoteError):
    """A RemoteError whose traceback the parallel magics already printed."""

    def __init__(self, original: RemoteError | CompositeError) -> None:
        self.original_error = original
        RemoteError.__init__(
            self, original.ename, original.evalue, original.traceback, original.engine_info
        )

    def __str__(self) -> str:
        return "tracebacks above"

    def render_traceback(self) -> list[str]:
        count = len(getattr(self.original_error, "elist", [self.original_error]))
        return [f"{count} errors"] if count != 1 else ["1 error"]

    def _render_traceback_(self) -> list[str]:
        return self.render_traceback()


class NoSuchTask(RemoteError, KeyError):
    """The controller has no record of a task: it was never submitted to this cluster, or its
    record was purged or dropped to keep the records within their bounds.

    It is the controller's ``KeyError`` (``ename`` is ``"KeyError"``), so both
    ``except KeyError`` and code that checks a RemoteError's ``ename`` catch it.
    """

    def __init__(self, evalue: str) -> None:
        RemoteError.__init__(self, "KeyError", evalue, "", {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (NoSuchTask, (self.evalue,))

    def __str__(self) -> str:
        return self.evalue

    def _render_traceback_(self) -> list[str]:
        return [f"NoSuchTask: {self.evalue}"]


def collect_exceptions(results: Iterable[Any] | Mapping[Any, Any], method: str) -> Any:
    """Raise a CompositeError if any result is a RemoteError; otherwise return the results."""
    values = list(results.values()) if isinstance(results, Mapping) else list(results)
    errors = [r for r in values if isinstance(r, RemoteError)]
    if not errors:
        return results
    flat: list[RemoteError] = []
    for err in errors:
        flat.extend(err.elist if isinstance(err, CompositeError) else [err])
    raise CompositeError(f"one or more exceptions raised in: {method}", flat)


def wrap_exception(engine_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Describe the exception being handled as the content of an error reply."""
    etype, evalue, tb = sys.exc_info()
    import traceback as tb_mod

    return {
        "status": "error",
        "ename": etype.__name__ if etype else "Exception",
        "evalue": str(evalue),
        "traceback": tb_mod.format_exception(etype, evalue, tb),
        "engine_info": dict(engine_info or {}),
    }


_CLUSTER_KINDS: tuple[type[KernelError], ...] = (
    EngineError,
    TaskAborted,
    TaskTimeout,
    TaskRejectError,
    UnmetDependency,
    ImpossibleDependency,
    DependencyTimeout,
    InvalidDependency,
    NoEnginesRegistered,
)


def _rebuild_task_failure(
    ename: str,
    evalue: str,
    traceback: str,
    engine_info: dict[str, Any],
    death: EngineDeath | None = None,
) -> RemoteError:
    failure = _TASK_FAILURES[ename](ename, evalue, traceback, engine_info)
    if death is not None and isinstance(failure, EngineError):
        failure.death = death
    return failure


def _task_failure_class(kind: type[KernelError]) -> type[RemoteError]:
    """``kind`` as a task's failure: an instance is a ``kind`` and also a RemoteError.

    The cluster itself fails a task when its engine dies, it is aborted, it times out or its
    dependencies can never be met.  ipyparallel reports those as a RemoteError whose ``ename``
    names the kind; ipar_widgets raises the kind's own class, so ``except ipp.EngineError``
    and ``except RemoteError as e: e.ename == "EngineError"`` both work.
    """

    def reduce(self: RemoteError) -> tuple[Any, ...]:
        # the class has its kind's name, which the module maps to the kind itself
        death = getattr(self, "death", None)  # an EngineError's record of its engine's death
        return (
            _rebuild_task_failure,
            (self.ename, self.evalue, self.traceback, self.engine_info, death),
        )

    namespace = {"__module__": __name__, "__doc__": kind.__doc__, "__reduce__": reduce}
    return type(kind.__name__, (kind, RemoteError), namespace)


#: ename -> the class a task failed by the cluster raises (see _task_failure_class)
_TASK_FAILURES: dict[str, type[RemoteError]] = {
    kind.__name__: _task_failure_class(kind) for kind in _CLUSTER_KINDS
}


def unwrap_exception(content: Mapping[str, Any]) -> Exception:
    """Turn the content of an error reply into the exception the client raises.

    Errors the cluster itself produced (an engine died, a task was aborted, a dependency can
    never be met) become their own classes, which are RemoteErrors too (``ename`` is the
    class's name, ``evalue`` the text the controller wrote); anything the user's code raised
    becomes a plain :class:`RemoteError`.
    """
    ename = str(content.get("ename", "Exception"))
    evalue = str(content.get("evalue", ""))
    engine_info = dict(content.get("engine_info") or {})
    traceback = content.get("traceback") or ""
    if content.get("origin") == "cluster" and ename == "KeyError":
        return NoSuchTask(evalue)
    if content.get("origin") == "cluster" and ename in _TASK_FAILURES:
        failure = _TASK_FAILURES[ename](ename, evalue, traceback, engine_info)
        death = content.get("death")
        if isinstance(failure, EngineError) and isinstance(death, Mapping):
            failure.death = EngineDeath.from_json(dict(death))
        return failure
    return RemoteError(ename, evalue, traceback, engine_info)
