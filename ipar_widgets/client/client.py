"""Client: the connection to a cluster's controller, as ipyparallel's users know it.

The Client is a facade over the parts of a connection, one module each:

- ``transport.py``: the sockets and the I/O thread that serves them;
- ``submission.py``: signing and sending tasks (and the waiter protocol of ``apply_sync``);
- ``dispatch.py``: what each message from the controller does;
- ``ledger.py``: what the client knows of each task (``metadata``, ``results``, ...);
- ``targets.py``: the registered engines, and which of them a call goes to;
- ``rpc.py`` and ``controlplane.py``: questions to the controller and to engines;
- ``hubrecords.py``: the controller's task records (``db_query``, ``resubmit``, purges).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import zmq

from .. import error
from ..enginedeath import EngineDeath
from ..error import NoAnswer
from ..protocol.sharedmem import SharedArea
from ..protocol.wire import Message, Wire
from . import comms, frontend
from .asyncresult import AsyncHubResult, AsyncResult, Jobs
from .connect import find_client_file, load_connection_file
from .controlplane import Status, address_of, wait_for_engines
from .dispatch import Inbound, OutputListener
from .executereply import ExecuteReply as ExecuteReply  # ipyparallel's users import it here
from .futures import split_futures, wait_for_futures
from .hubrecords import HubRecords
from .job import Job
from .ledger import TaskLedger
from .metadata import Metadata
from .reconnect import Reconnection
from .rpc import Requests
from .stacks import Stacks, gather_stacks
from .submission import Submitter
from .targets import EngineTable, Targets, resolve_targets
from .transport import Transport
from .waiting import deadline_of
from .waitprogress import EngineWaitReport

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from ..cluster.cluster import Cluster
    from .executor import ViewExecutor
    from .view import BroadcastView, DirectView, LoadBalancedView

__all__ = ["Client"]


class Client:
    """A connection to a cluster's controller.

    ``Client(profile="x")`` finds the running cluster of profile ``x``; ``Client(url_file)``
    uses a connection file directly.  ``rc[i]``, ``rc[:]`` and ``rc.load_balanced_view()``
    make views to submit work through.  ``metadata``, ``results``, ``outstanding`` and
    ``history`` record what this client submitted.  All socket work happens in one background
    thread; every method is safe to call from any thread.
    """

    block = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Client:
        # Taking the constructor's arguments keeps Client constructible after something
        # replaced and restored ``__new__`` (``mock.patch.object(Client, "__new__", ...)``):
        # once a class has had a ``__new__``, object.__new__ refuses extra arguments.
        return super().__new__(cls)

    def __init__(
        self,
        url_file: str | None = None,
        profile: str | None = None,
        profile_dir: str | None = None,
        ipython_dir: str | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        debug: bool = False,
        sshserver: str | None = None,
        sshkey: str | None = None,
        password: str | None = None,
        paramiko: bool | None = None,
        timeout: float = 10,
        cluster_id: str | None = None,
        cluster: Cluster | None = None,
        controller_timeout: float = 60.0,
        rebind_magics: bool = True,
        **extra_args: Any,
    ) -> None:
        if sshserver or sshkey or password or paramiko:
            raise ValueError(
                "ipar_widgets does not tunnel over SSH; start the controller with --ip=0.0.0.0 "
                "(or tunnel its ports yourself) and pass the connection file"
            )
        if extra_args:
            raise TypeError(f"unexpected arguments to Client: {', '.join(sorted(extra_args))}")
        if ipython_dir:
            os.environ["IPYTHONDIR"] = ipython_dir
        if url_file is None:
            url_file = str(find_client_file(profile, cluster_id, profile_dir, timeout=timeout))
        self.url_file = url_file
        self.profile = profile or "default"
        self.cluster_id = cluster_id or ""
        #: the Cluster that started this client's cluster, when one did
        self.cluster = cluster
        self.debug = debug
        info = load_connection_file(url_file)
        self.session = Wire(str(info["key"]).encode())
        #: the controller's shared-memory area, when this client is on the controller's host
        shared = SharedArea.join(info.get("shm"))
        self._engines = EngineTable()
        self._ledger = ledger = TaskLedger()
        self.metadata: dict[str, Metadata] = ledger.metadata
        self.results: dict[str, Any] = ledger.results
        self.outstanding: set[str] = ledger.outstanding
        self.history: list[str] = ledger.history
        self._dispatch = inbound = Inbound(self.session, ledger, self._engines, shared)
        address = address_of(info)
        self._transport = transport = Transport(
            context or zmq.Context.instance(),
            self.session.session.encode(),
            address,
            f"tcp://{info['location']}:{info['ports']['notify']}",
            inbound.on_reply,
            inbound.on_notify,
        )
        inbound.transport = transport
        transport.next_deadline = ledger.next_deadline
        transport.on_deadline = ledger.release_overdue
        #: seconds the client waits for a controller that went away (a restored one comes
        #: back on the same ports) before it fails the pending tasks with ControllerLost
        transport.controller_timeout = float(controller_timeout)
        self._reconnection = Reconnection(self.session, transport, inbound, ledger, address)
        self._submitter = Submitter(self.session, shared, ledger, self._engines, transport)
        self._requests = Requests(self.session, transport, inbound, f"{address} (from {url_file})")
        self._records = HubRecords(self._requests.ask, ledger)
        try:
            reply = self._query("connection_request", {"shm": shared is not None}, timeout=timeout)
        except NoAnswer:
            transport.close()
            raise
        self._engines.update(
            {int(k): str(v) for k, v in reply.content["engines"].items()},
            {int(k): str(v) for k, v in (reply.content.get("engine_sets") or {}).items()},
        )
        transport.direct = True  # the answer came: the I/O thread's socket is connected
        # inside IPython: %px for this client (rebind_magics=False: only if no client had them,
        # as Cluster.start_and_connect(activate=False) asks)
        frontend.client_activated(self, rebind=rebind_magics)
        comms.relay_engine_comms(self)  # inside a kernel: engines' widgets reach the notebook

    def _engine_set_counts(self) -> dict[str, int]:
        """How many registered engines each engine set has, as this client knows (from the
        controller's notices: no request).  For the Cluster's repr."""
        return self._engines.count_by_set()

    def _engine_uuids(self) -> set[str]:
        """The registered engines' uuids, as this client knows (no request): how a wait
        counts the engines of a set the controller started (they name no set; their set
        knows their uuids)."""
        return {u for i in self._engines.ids if (u := self._engines.uuid_of(i)) is not None}

    @property
    def connection_note(self) -> str:
        """What displays say about the connection to the controller ('' while it is fine;
        "controller restarted, reconnected" after a restore)."""
        return self._reconnection.note

    # -- engines ----------------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Ids of the registered engines, kept current by the controller's notices."""
        return self._engines.ids

    @property
    def engine_deaths(self) -> Mapping[int, EngineDeath]:
        """How each engine that died since this client connected died: a read-only mapping
        of engine id -> :class:`~ipar_widgets.enginedeath.EngineDeath` (cause, exit code or
        signal, OOM evidence, peak memory, the task it ran, its last output, its
        replacement), kept current by the controller's notices."""
        return self._dispatch.deaths

    def __len__(self) -> int:
        return len(self._engines)

    def __repr__(self) -> str:
        return f"<Client: {len(self)} engines, profile {self.profile!r}>"

    def _repr_html_(self) -> str:
        return frontend.client_html(self)

    def _build_targets(self, targets: Targets) -> list[int]:
        """Engine ids from 'all'/None, an int, a list, a slice or a range."""
        return resolve_targets(self.ids, targets)

    def __getitem__(self, key: int | slice | list[int] | tuple[int, ...] | range) -> DirectView:
        """``rc[i]``, ``rc[:]``, ``rc[[0, 2]]``: ``direct_view(key)`` (one engine's view for an
        int, counted from the end when negative)."""
        if not isinstance(key, (int, slice, tuple, list, range)):
            raise TypeError(f"key by int/slice/iterable of ints only, not {type(key).__name__}")
        return self.direct_view(key)

    def __iter__(self) -> Iterator[DirectView]:
        for engine_id in self.ids:
            yield self[engine_id]

    def direct_view(self, targets: Targets = "all", **kwargs: Any) -> DirectView:
        """A DirectView on ``targets``; 'all' follows engines as they come and go, an int
        (negative: counted from the end) makes a view of that one engine."""
        from .view import DirectView

        if isinstance(targets, int):
            targets = self._build_targets(targets)[0]
        elif targets != "all" and targets is not None:
            targets = self._build_targets(targets)
        return DirectView(self, "all" if targets is None else targets, **kwargs)

    def broadcast_view(
        self, targets: Targets = "all", is_coalescing: bool = False, **kwargs: Any
    ) -> BroadcastView:
        """A BroadcastView on ``targets`` (the engines registered now, for 'all'): each call
        leaves the client once and the controller sends it on to every engine; with
        ``is_coalescing``, an apply's results also come back in one reply, as one list."""
        from .view import BroadcastView

        return BroadcastView(
            self, self._build_targets(targets), is_coalescing=is_coalescing, **kwargs
        )

    def executor(self, targets: Targets = None) -> ViewExecutor:
        """A :class:`concurrent.futures.Executor` that load-balances over ``targets``
        (default: every engine): ``submit`` returns AsyncResults, ``map`` a lazy map."""
        return self.load_balanced_view(targets).executor

    def load_balanced_view(self, targets: Targets = None, **kwargs: Any) -> LoadBalancedView:
        """A LoadBalancedView: each task goes to the least-loaded engine (of ``targets``)."""
        from .view import LoadBalancedView

        chosen = None if targets in (None, "all") else self._build_targets(targets)
        return LoadBalancedView(self, chosen, **kwargs)

    def wait_for_engines(
        self,
        n: int | None = None,
        timeout: float = -1,
        block: bool = True,
        interactive: bool | None = None,
        widget: bool | None = None,
    ) -> Future[None] | None:
        """Wait until ``n`` engines are registered (default: as many as the cluster started).

        Raises EnginesNotReady (a TimeoutError) after ``timeout`` seconds (-1: no limit), and
        EngineStartFailed (an EngineError) at once if an engine the controller started exits
        before registering, or EngineError once every engine set of this client's Cluster
        has stopped.  ``block=False`` returns a Future instead.

        While it waits it shows engines registered of those asked for, per engine set (with
        the batch job's state where the set's launcher has one): a live widget in a notebook
        (``widget=`` overrides the detection), a line on stderr in a terminal.
        ``interactive=False`` shows nothing; unset, the line is shown only when stderr is a
        TTY (a log gets nothing), True shows it anyway.  A wait already satisfied shows
        nothing.
        """
        if not block:
            future: Future[None] = Future()
            if n is not None and len(self._engines) >= n:
                future.set_result(None)  # already there: a done Future, no thread
                return future

            def run() -> None:
                try:
                    self.wait_for_engines(n, timeout, block=True, interactive=False)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(None)

            threading.Thread(target=run, daemon=True).start()
            return future

        def status() -> Status:
            current = self.status()
            listed = current.get("engines", [])
            engines = {int(e["id"]): str(e["uuid"]) for e in listed}
            sets = {int(e["id"]): str(e["engine_set"]) for e in listed if e.get("engine_set")}
            self._engines.update(engines, sets)
            wanted = int(current.get("engines_requested") or 0) if n is None else n
            failed = bool(current.get("launch_failures"))  # EngineStartFailed says more
            if self.cluster is not None and len(self._engines) < wanted and not failed:
                try:
                    self.cluster.check_engine_sets()  # no engine can come any more: EngineError
                except error.EngineError:
                    # the set's processes are gone, but the controller notes an engine that
                    # exited before registering only at its next process check (every
                    # 0.2 s): ask once more, so that its launch failure, with the log, wins
                    time.sleep(0.3)
                    current = self.status()
                    if not current.get("launch_failures"):
                        raise
            report.update(len(self._engines), wanted)
            # what rc.ids will say: the notices may have told of engines the status had not
            return {**current, "engines_registered": len(self._engines)}

        report = EngineWaitReport(self, interactive, widget)
        try:
            wait_for_engines(status, n, timeout, self._engines.wait_for_change)
        except BaseException as exc:
            report.finish(exc)
            raise
        report.finish(None)
        return None

    # -- bookkeeping --------------------------------------------------------------------------------
    def _jobs(self, jobs: Jobs | tuple[()]) -> list[str]:
        """msg_ids from an AsyncResult, a msg_id, an index into history, or a list of those."""
        if jobs is None:
            return list(self.outstanding)
        if isinstance(jobs, (str, int, AsyncResult)):
            jobs = [jobs]
        out: list[str] = []
        for job in jobs:
            if isinstance(job, AsyncResult):
                out.extend(job.msg_ids)
            elif isinstance(job, int):
                out.append(self.history[job])
            elif isinstance(job, str):
                out.append(job)
            else:
                raise TypeError(f"expected msg_ids, AsyncResults or history indices, found {job!r}")
        return out

    def add_output_listener(self, listener: OutputListener) -> None:
        """Call ``listener(engine_id, msg_id, msg_type, content)`` for every output and notice
        (in the I/O thread)."""
        self._dispatch.output_listeners.append(listener)

    def remove_output_listener(self, listener: OutputListener) -> None:
        try:
            self._dispatch.output_listeners.remove(listener)
        except ValueError:
            pass

    # -- questions and commands -----------------------------------------------------------------------
    def _query(
        self, msg_type: str, content: dict[str, Any] | None = None, *, timeout: float | None = 10
    ) -> Message:
        return self._requests.ask(msg_type, content, timeout=timeout)

    def wait(self, jobs: Jobs | Any = None, timeout: float = -1) -> bool:
        """Wait for the given tasks (default: all outstanding); True if all finished in time.

        ``jobs`` may also hold other futures (``concurrent.futures``, ``asyncio``, an
        ``executor.map`` iterator): they are waited for alongside the tasks.
        """
        named, futures = split_futures(jobs)
        deadline = deadline_of(timeout)
        msg_ids = [m for m in self._jobs(named) if m in self.outstanding]
        if msg_ids and not AsyncResult(self, msg_ids, owner=False).wait(timeout):
            return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return wait_for_futures(futures, left)

    def wait_interactive(
        self,
        jobs: Jobs | Job = None,
        interval: float = 1.0,
        timeout: float = -1.0,
        *,
        widget: bool | None = None,
    ) -> None:
        """Wait for tasks (default: every outstanding one) while showing their progress: the
        live widget in a notebook, a line refreshed every ``interval`` seconds in a terminal.
        TimeoutError after ``timeout`` seconds (-1: no limit)."""
        job: Job
        if jobs is None:
            pending = self.outstanding
            msg_ids = [m for m in self.history if m in pending]
            if not msg_ids:
                return
            job = AsyncResult(self, msg_ids, "outstanding tasks", owner=False)
        elif isinstance(jobs, Job):
            job = jobs
        elif (
            isinstance(jobs, (list, tuple))
            and jobs
            and all(isinstance(j, AsyncResult) for j in jobs)
        ):
            job = AsyncResult.join(*jobs)
        else:
            job = AsyncResult(self, self._jobs(jobs), "tasks", owner=False)
        frontend.wait_interactive(job, interval=interval, timeout=timeout, widget=widget)

    def abort(self, jobs: Jobs = None, targets: Targets = None, block: bool | None = None) -> None:
        """Abort tasks that have not started (default: every outstanding task of this client).

        ``targets`` limits it to tasks waiting on those engines.
        """
        tasks = self._ledger.controller_tasks(self._jobs(jobs))
        if targets is not None:
            engines = set(self._build_targets(targets))
            tasks = [(m, engine_id) for m, engine_id in tasks if engine_id in engines]
        msg_ids = [m for m, _ in tasks]
        if msg_ids:
            self._query("abort_request", {"msg_ids": msg_ids})

    def clear(self, targets: Targets = None, block: bool | None = None) -> None:
        """Reset the namespace of the target engines."""
        self._requests.ask_engines(self._build_targets(targets), "clear_request", {})

    def send_signal(
        self, sig: int | str, targets: Targets = None, block: bool | None = None
    ) -> None:
        """Send a signal (``signal.SIGINT`` or ``'SIGINT'`` interrupts a task) to the target
        engines."""
        if isinstance(sig, str):
            name = sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()
            try:
                sig = int(signal.Signals[name])
            except KeyError:
                raise ValueError(f"unknown signal {sig!r}; expected e.g. 'SIGINT' or 2") from None
        self._requests.ask_engines(
            self._build_targets(targets), "signal_request", {"signum": int(sig)}
        )

    def stacks(
        self, targets: Targets = None, timeout: float = 5.0, *, tasks: Jobs = None
    ) -> Stacks:
        """Where is it stuck?  The Python stack of the task each target engine (default:
        all) runs now, asked of its control channel while the task holds the shell: engine
        id -> :class:`~ipar_widgets.client.stacks.EngineStack`, the longest-running task
        first, idle engines after.

        ``tasks`` (msg_ids or AsyncResults) keeps only the engines running one of those.
        Returns within ``timeout`` seconds: an engine that does not answer by then (its task
        holds the GIL in C code) gets a result that says so.  Not in ipyparallel.
        """
        ids = self._build_targets(targets)
        wanted = None if tasks is None else self._controller_ids(self._jobs(tasks))
        return gather_stacks(self._requests, ids, timeout, tasks=wanted)

    def shutdown(
        self,
        targets: Targets = "all",
        restart: bool = False,
        hub: bool = False,
        block: bool | None = None,
    ) -> None:
        """Stop the target engines; with ``hub=True`` stop the whole cluster."""
        if restart:
            raise ValueError("engines cannot be restarted in place; stop them and add new ones")
        if hub:
            self._query("shutdown_request", {"hub": True}, timeout=30)
            return
        ids = self._build_targets(targets)
        self._query("shutdown_request", {"targets": ids}, timeout=30)
        self._engines.unregistered(ids)

    def queue_status(self, targets: Targets = "all", verbose: bool = False) -> dict[Any, Any]:
        """Per engine: tasks queued, load-balanced tasks held, and tasks completed;
        ``"unassigned"``: load-balanced tasks not yet handed to an engine."""
        content: dict[str, Any] = {"verbose": verbose}
        if targets not in ("all", None):
            content["targets"] = self._build_targets(targets)
        reply = self._query("queue_request", content).content
        status: dict[Any, Any] = {int(k): v for k, v in reply["engines"].items()}
        status["unassigned"] = reply["unassigned"]
        if isinstance(targets, int):
            return dict(status[targets])
        return status

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The controller's view of the cluster: engines, their state, task counts, uptime."""
        content = dict(self._query("status_request", timeout=timeout).content)
        content.pop("status", None)
        return content

    # -- the controller's records (see hubrecords.py) -------------------------------------------------
    def db_query(
        self, query: dict[str, Any], keys: str | list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The controller's records of the tasks that match ``query``, oldest first.

        ``query`` is MongoDB-style: ``{field: value}`` or ``{field: {"$op": value}}`` with
        ``$lt $gt $lte $gte $eq $ne $in $nin $exists``, over the fields ipyparallel's
        records have (``msg_id``, ``submitted``, ``engine_uuid``, ``result_content`` ...).
        ``keys``: the fields to return (``msg_id`` is always there); by default every field
        but ``buffers`` and ``result_buffers``.  Dates are timezone-aware datetimes.
        """
        return self._records.db_query(query, keys)

    def task_arguments(self, msg_ids: Sequence[str], timeout: float = 5.0) -> dict[str, str | None]:
        """Short reprs (at most 200 characters) of tasks' arguments, read from the
        controller's records (None for a task whose record does not hold them); NoAnswer
        after ``timeout`` seconds.  What the failure groups of the progress widget show."""
        from .taskargs import task_arguments

        return task_arguments(self._requests.ask, msg_ids, timeout)

    def hub_history(self) -> list[str]:
        """Every msg_id the controller holds a record of, ordered by submission time."""
        return self._records.history()

    def resubmit(
        self,
        indices_or_msg_ids: Jobs = None,
        metadata: dict[str, Any] | None = None,
        block: bool | None = None,
    ) -> AsyncHubResult:
        """Run tasks again (finished, failed, aborted or still running), under new msg_ids.

        The new tasks are this client's: an AsyncHubResult for them is returned (one
        result per task, as a list).  ``metadata`` updates the originals' (``retries``,
        ``timeout`` ...).  NoSuchTask (a KeyError) if the controller has no record of one.
        """
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        new_ids = self._records.resubmit(self._jobs(indices_or_msg_ids), metadata)
        ar = AsyncHubResult(self, new_ids, owner=False, single=False)
        if block if block is not None else self.block:
            ar.wait()
        return ar

    def result_status(self, msg_ids: Jobs, status_only: bool = True) -> dict[str, Any]:
        """``{"pending": [...], "completed": [...]}`` for the tasks; with
        ``status_only=False`` also each completed task's result under its msg_id (a failed
        one raises: alone as itself, several as a CompositeError)."""
        ids = self._jobs(msg_ids)
        pending, completed = self._records.status(ids)
        out: dict[str, Any] = {"pending": pending, "completed": completed}
        if not status_only and completed:
            results = self.get_result(completed, owner=False).get(return_exceptions=True)
            out.update(zip(completed, results))
            failures = [r for r in results if isinstance(r, error.RemoteError)]
            if len(completed) == 1 and failures:
                raise failures[0]
            error.collect_exceptions(results, "result_status")
        return out

    def _controller_ids(self, msg_ids: list[str]) -> list[str]:
        """The msg_ids the controller records for these tasks (a coalescing broadcast's
        parts in its place)."""
        return [m for m, _ in self._ledger.controller_tasks(msg_ids)]

    def purge_local_results(
        self, jobs: Jobs | tuple[()] = (), targets: Targets | tuple[()] = ()
    ) -> None:
        """Forget results and metadata in this client: of ``jobs`` (msg_ids, history
        indices, AsyncResults, or ``'all'``) and of the tasks that ran on ``targets``.

        RuntimeError if one of them is still outstanding; ValueError if neither is given.
        """
        if jobs == "all":
            self._records.purge_local(None)
            return
        self._records.purge_local(self._purge_ids(jobs, targets, "purge_local_results"))

    def purge_hub_results(
        self, jobs: Jobs | tuple[()] = (), targets: Targets | tuple[()] = ()
    ) -> None:
        """Make the controller forget finished tasks: ``jobs`` (or ``'all'``) and every task
        that ran on ``targets``.  It refuses (ControllerRefused) tasks not finished yet."""
        msg_ids: list[str] | str = (
            "all" if jobs == "all" else (self._controller_ids(self._jobs(jobs)) if jobs else [])
        )
        self._records.purge_hub(msg_ids, self._build_targets(targets) if targets else [])

    def purge_results(self, jobs: Jobs | tuple[()] = (), targets: Targets | tuple[()] = ()) -> None:
        """Forget tasks here (:meth:`purge_local_results`) and in the controller
        (:meth:`purge_hub_results`)."""
        # the controller's ids first: forgetting a coalescing broadcast forgets its parts' ids
        hub_jobs = jobs if jobs == "all" or not jobs else self._controller_ids(self._jobs(jobs))
        self.purge_local_results(jobs, targets)
        self.purge_hub_results(hub_jobs, targets)

    def purge_everything(self) -> None:
        """Forget every finished task, here and in the controller, and this client's history."""
        self.purge_results("all")
        self.history.clear()

    def _purge_ids(
        self, jobs: Jobs | tuple[()], targets: Targets | tuple[()], what: str
    ) -> list[str]:
        if not jobs and not targets:
            raise ValueError(
                f"{what} needs jobs (msg_ids, history indices, AsyncResults or 'all') or "
                "targets (engine ids)"
            )
        msg_ids = self._jobs(jobs) if jobs else []
        if targets:
            engines = set(self._build_targets(targets))
            msg_ids += [
                m
                for m, md in list(self.metadata.items())
                if isinstance(md["engine_id"], int) and md["engine_id"] in engines
            ]
        return msg_ids

    def get_result(
        self, indices_or_msg_ids: Jobs = None, block: bool | None = None, owner: bool = False
    ) -> AsyncResult:
        """An AsyncResult for tasks by msg_id (or history index), also tasks submitted by
        another client: their results and outputs come from the controller's records."""
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        # one msg_id (or history index) gives a single value; a list gives a list
        single = isinstance(indices_or_msg_ids, (str, int)) or (
            isinstance(indices_or_msg_ids, AsyncResult) and indices_or_msg_ids._single_result
        )
        msg_ids = self._jobs(indices_or_msg_ids)
        if self._ledger.knows(msg_ids):
            ar: AsyncResult = AsyncResult(self, msg_ids, owner=owner, single=single)
        else:
            self._fetch_records(msg_ids)
            ar = AsyncHubResult(self, msg_ids, owner=owner, single=single)
        if block if block is not None else self.block:
            ar.wait()
        return ar

    def _fetch_records(self, msg_ids: list[str]) -> None:
        """Replay the controller's record of tasks (reply and outputs) as if they arrived now,
        and ask the controller to forward the replies of those still running."""
        answer = self._query("result_request", {"msg_ids": msg_ids, "watch": True})
        self._dispatch.replay(msg_ids, answer)

    # -- dask.distributed -------------------------------------------------------------------------------
    def become_dask(
        self,
        targets: Targets = "all",
        port: int = 0,
        nanny: bool = False,
        scheduler_args: dict[str, Any] | None = None,
        **worker_args: Any,
    ) -> Any:
        """Turn the engines into a dask.distributed cluster and return a ``distributed.Client``
        connected to it (needs ``distributed`` here and on the engines).

        A Scheduler starts on the first of ``targets`` (on ``port``; 0: any free one), unless
        one runs on an engine already, and a Worker inside each target engine (in a
        subprocess with ``nanny=True``), each in a thread of its own, so a task running in the
        engine does not stall it.  ``scheduler_args`` go to ``distributed.Scheduler``, the
        other keywords to ``distributed.Worker`` (``nthreads`` defaults to 1).  In the
        engines' namespace the worker is ``distributed_worker`` (and ``dask_worker``).
        """
        from .dask import become_dask

        return become_dask(self, targets, port, nanny, scheduler_args, worker_args)

    def stop_dask(self, targets: Targets = "all") -> None:
        """Stop the Workers that :meth:`become_dask` started on ``targets``, and its Scheduler."""
        from .dask import stop_dask

        stop_dask(self, targets)

    become_distributed = become_dask
    stop_distributed = stop_dask

    # -- magics and lifecycle -------------------------------------------------------------------------
    def activate(self, targets: Targets = "all", suffix: str = "") -> DirectView:
        """Make the %px magics act on a DirectView of ``targets`` (suffix: ``%px<suffix>``)."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def spin(self) -> None:
        """Kept for compatibility: results arrive in the background, nothing to do."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (nothing can be sent any more)."""
        return self._transport.closed

    def close(self, linger: float | None = None) -> None:
        """Disconnect from the controller; the cluster keeps running."""
        if not self._transport.closed:
            self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._transport.closed:
                self._transport.close(timeout=0)
        except Exception:
            pass
