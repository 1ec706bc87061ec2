"""Jobs on a Dask cluster: the store and the consumer stay in the server, the work goes out.

Each attempt is one Dask task (`dask_task.run_on_worker`, the worker side; key `jupyter-
jobs-<id>-<attempt>-<executor>`, `pure=False`). On the Dask worker the task starts the job in a
process of its own, `python -m jupyter_jobs.runner`, and speaks the same frames to it as the local
executor does (protocol.py), because Dask cannot stop a running task: only a process can be ended,
and only a process group takes the job's children with it. The runner is started afresh for every
attempt (no warm pool on the workers; it costs about a second of start-up per job) and, when it
ends, whatever the job left running ends with it: its process group, and every process seen in
its tree (the task looks every `processes.TRACK_INTERVAL`, as the local executor does), those
in sessions of their own included. A runner whose Dask worker dies ends its descendants itself
before it exits (on Linux it adopts their orphans, so daemons are among them).

Messages travel through the scheduler, never through pickle in the server:
- logs and progress: `Worker.log_event` on a topic per executor, `Client.subscribe_topic` here
  (Dask's Pub/Sub was removed in 2025.4). Logs are sent in batches of at most 16 KiB every
  0.1 s; the scheduler keeps the last `distributed.admin.low-level-log-length` (1000) events of
  a topic, so at most about 16 MiB per executor.
- the outcome: the task returns plain data (str, numbers, the result and outputs as bytes), and
  this executor's client refuses to unpickle data (`deserializers` without "pickle"). Payload and
  result bytes are opaque here; only the runner loads them. Exceptions raised by Dask itself
  (KilledWorker, a task that cannot be imported on a worker) still reach the client the way Dask
  sends them: the cluster is trusted infrastructure, as Dask requires.
- stop: a `distributed.Event` per key that the task long-polls, with the grace in a `Variable`;
  the task then sends SIGTERM to the runner's process group, waits up to the grace, SIGKILLs. A
  task whose key is released (its client went away: the server died or disconnected) stops its
  job the same way, with the executor's default grace.

Dask re-runs a task whose worker died. Jobs have side effects, and the consumer owns retries, so a
re-run does not run the job again: the first run marks its key as started (an Event), and a re-run
that finds the mark reports `worker_lost` at once (the runner died with its worker: the runner
asks for SIGKILL when the thread that started it ends).

Where a job runs: the Dask worker's Python (`Task.interpreter` is not used), in the job's `cwd`
when that directory exists on the worker, else in the worker's own directory; both cases write a
note into the job's log. `jupyter_jobs` must be installed on the workers (they import this
module to run the task). The runner's memory is not counted by Dask's memory limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future, LocalCluster, Variable
from distributed import Event as DaskEvent
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker
from traitlets import Float, Unicode

from .. import shared
from ..models import FileBytes, Kind, Outcome, Progress, Reason, now
from ..worker_info import WorkerInfo, WorkerStatus
from .base import Executor, ExecutorEvents, Task
from .dask_task import run_on_worker, worker_identity
from .processes import done_outcome, failed_outcome, kill_outcome, not_started_outcome

log = logging.getLogger(__name__)

#: Serialization families this executor's client accepts from the cluster: no pickle.
_NO_PICKLE = ("dask", "msgpack", "error")
#: Payloads larger than this go to the cluster with `scatter` instead of inside the task.
_SCATTER_ABOVE = 1024 * 1024
#: How long the executor waits for a finished task's last log events to arrive (seconds).
_EVENTS_WAIT = 5.0


@dataclass(eq=False)
class _Run:
    """One task from `run` until its single `on_done`."""

    task: Task
    key: str
    future: Future | None = None
    payload: Future | None = None  # the scattered payload, kept until the run ends
    where: str | None = None  # the Dask worker that started it (its "start" event)
    received: int = 0  # events received for this key
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    killing: bool = False
    kill_reason: Reason | None = None
    unconfirmed: str | None = None  # why a kill could not be confirmed
    reported: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class DaskExecutor(Executor):
    """Runs each task on a Dask cluster, in a runner process started by the Dask task.

    Without `scheduler_address`, `start()` starts a `LocalCluster` of `max_workers`
    single-threaded worker processes (for tests and single machines) and closes it at
    `shutdown()`. `max_workers` is how many jobs this executor runs at once. `None` (the default)
    follows the cluster's total threads as the client last heard them (every 2 s by default), so
    a cluster that scales is used as it grows; at least one job runs even when an adaptive
    cluster has no worker yet, since work is what makes it scale up. A number above the
    cluster's threads makes jobs wait in Dask's queue: they stay queued (their timeout not
    running) until their task starts on a worker.

    `log_limit` and `progress_interval` are the runner's, as in the local executor;
    `kill_grace` is the SIGTERM-to-SIGKILL time used when a task stops on its own because its key
    was released (a kill brings its own grace).
    """

    name = "dask"
    #: A run starts when its task starts the runner process on a Dask worker (the "start"
    #: event), not when it is submitted: it may wait in Dask's queue for a thread first.
    reports_start = True

    scheduler_address = Unicode(
        None,
        allow_none=True,
        help="The Dask scheduler (e.g. tcp://10.0.0.5:8786). None: a LocalCluster of "
        "max_workers processes is started with the executor and closed with it.",
    ).tag(config=True)

    stop_timeout = Float(
        30.0,
        help="Seconds a kill waits, beyond its grace, for the Dask worker to confirm that the "
        "job's processes are gone; then the key is released and the kill reported.",
    ).tag(config=True)

    def __init__(
        self, events: ExecutorEvents, max_workers: int | None = None, **traits: Any
    ) -> None:
        super().__init__(events, max_workers, **traits)
        self._follow_cluster = self.max_workers is None
        if self._follow_cluster:
            self.max_workers = 1  # until the cluster says how many threads it has
        self._token = uuid.uuid4().hex[:12]
        self._topic = f"jupyter-jobs-{self._token}"
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._runs: dict[int, _Run] = {}
        self._keys: dict[str, _Run] = {}
        self._followers: set[asyncio.Task] = set()
        self._identities: dict[str, dict[str, Any]] = {}  # Dask worker address -> pid, start
        self._done_on: dict[str, int] = {}  # Dask worker address -> attempts it ran
        self._started = False
        self._closing = False

    # -- the Executor interface -----------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        address = self.scheduler_address
        if address is None:
            self._cluster = await LocalCluster(
                n_workers=None if self._follow_cluster else self.max_workers,
                threads_per_worker=1,
                processes=True,
                asynchronous=True,
                dashboard_address=":0",
            )
            address = self._cluster.scheduler_address
        try:
            self._client = await Client(
                address, asynchronous=True, set_as_default=False, deserializers=_NO_PICKLE
            )
        except (OSError, TimeoutError) as exc:
            await self._close_cluster()
            raise ConnectionError(
                f"jupyter_jobs cannot connect to the Dask scheduler at {address!r}: {exc}"
            ) from exc
        if self._follow_cluster:
            self.max_workers = max(1, sum((await self._client.nthreads()).values()))
        self._client.subscribe_topic(self._topic, self._on_event)
        self._started = True

    def free_slots(self) -> int:
        if self._closing or not self._started:
            return 0
        if self._follow_cluster and self._client is not None:
            threads = self._client.scheduler_info().get("total_threads")
            if threads is not None:
                self.max_workers = max(1, int(threads))
        return max(0, self.max_workers - len(self._runs))

    def running(self) -> list[tuple[int, int]]:
        return [(run.task.job_id, run.task.attempt) for run in self._runs.values()]

    def capabilities(self) -> dict[str, Any]:
        return {
            **super().capabilities(),
            "interpreter": False,  # the runner uses the Dask worker's Python
            "cwd": False,  # used only where the directory exists on the worker
            "max_workers": self.max_workers,
            "scheduler": self._client.scheduler.address if self._client else None,
        }

    async def workers(self) -> list[WorkerInfo]:
        """The cluster's Dask workers (the scheduler's view: its last heartbeat from each),
        with the job of ours each runs. Every attempt runs in a runner process of its own
        there, so a `fresh_worker` job is what every job is on Dask."""
        client = self._client
        if client is None or not self._started:
            return []
        found = (await client.scheduler.identity(n_workers=-1)).get("workers", {})
        unknown = [address for address in found if address not in self._identities]
        if unknown:
            try:
                self._identities.update(await client.run(worker_identity, workers=unknown))
            except Exception as exc:  # a worker leaving meanwhile: shown without its pid
                log.debug("jupyter_jobs: cannot ask Dask workers their pid: %s", exc)
        for gone in set(self._identities) - set(found):
            del self._identities[gone]
        running = {_address(run.where): run for run in self._runs.values() if run.where}
        return [
            _dask_worker(
                address,
                facts,
                self._identities.get(address, {}),
                running.get(address),
                self._done_on.get(address, 0),
            )
            for address, facts in found.items()
        ]

    async def run(self, task: Task) -> None:
        if not self._started or self._closing:
            raise RuntimeError("the Dask executor is not running")
        if task.job_id in self._runs:
            raise RuntimeError(f"job {task.job_id} is already running in this executor")
        if self.free_slots() <= 0:
            raise RuntimeError("no free worker slot: check free_slots() before run()")
        client = self._client
        run = _Run(task, f"jupyter-jobs-{task.job_id}-{task.attempt}-{self._token}")
        self._runs[task.job_id] = run
        self._keys[run.key] = run
        payload: bytes | Future = task.payload
        if isinstance(payload, FileBytes):  # the cluster's workers may be elsewhere: bytes
            payload = await asyncio.to_thread(payload.read)
        elif isinstance(payload, shared.SharedPayload):  # a function stored once: packed for them
            payload = await asyncio.to_thread(shared.packed, payload)
        if len(payload) > _SCATTER_ABOVE:  # large bytes do not belong in the task graph
            try:
                payload = run.payload = await client.scatter(payload, hash=False)
            except OSError as exc:
                message = f"the payload could not be sent to the Dask cluster: {exc}"
                self._finish(run, failed_outcome(Reason.ERROR, "DaskUnavailable", message))
                return
            if run.killing:  # killed while its payload travelled: nothing runs yet
                self._finish(run, self._killed(run, None))
                return
        job = {
            "key": run.key,
            "job_id": task.job_id,
            "attempt": task.attempt,
            "kind": Kind(task.kind).value,
            "name": task.name,
            "cwd": task.cwd,
            "interpreter": task.interpreter,
            "options": task.options,
            "log_limit": self.log_limit,
            "progress_interval": self.progress_interval,
            "grace": self.kill_grace,
        }
        run.future = client.submit(
            run_on_worker, job, payload, self._topic, key=run.key, pure=False, retries=0
        )
        follower = asyncio.create_task(self._follow(run), name=f"jupyter-jobs-{run.key}")
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def kill(self, job_id: int, reason: Reason | None, grace: float) -> None:
        run = self._runs.get(job_id)
        if run is None or run.reported:
            return
        if run.killing:
            await run.finished.wait()
            return
        run.killing, run.kill_reason = True, reason
        if run.future is None:  # its payload is still on its way: run() reports the kill
            await run.finished.wait()
            return
        client = self._client
        bound = grace + self.stop_timeout
        try:
            await Variable(f"{run.key}-grace", client).set(grace)
            await DaskEvent(f"{run.key}-stop", client).set()
            if run.where is None:  # not started as far as we know: take it out of Dask's queue
                await client.cancel([run.future], reason="cancelled by jupyter_jobs")
            await asyncio.wait_for(asyncio.shield(run.finished.wait()), bound)
            return
        except asyncio.TimeoutError:
            run.unconfirmed = f"not confirmed: no answer from the Dask worker within {bound:g} s"
        except OSError as exc:
            run.unconfirmed = f"not confirmed: the Dask scheduler is out of reach ({exc})"
        # Release the key (its worker stops the job when it hears of it) and report the kill
        # now rather than leave the job running in the store.
        log.warning("jupyter_jobs: stopping job %d on Dask: %s", job_id, run.unconfirmed)
        with contextlib.suppress(OSError):
            await asyncio.wait_for(client.cancel([run.future], force=True), 10)
        self._finish(run, self._killed(run, None))

    async def shutdown(self, grace: float) -> None:
        self._closing = True
        await asyncio.gather(*(self.kill(j, Reason.INTERRUPTED, grace) for j in list(self._runs)))
        if self._followers:  # let them tidy the scheduler before the client goes
            await asyncio.wait(self._followers, timeout=10)
        if self._client is not None:
            if self._started:
                self._client.unsubscribe_topic(self._topic)
            await self._client.close()
            self._client = None
        await self._close_cluster()
        self._started = False

    async def _close_cluster(self) -> None:
        if self._cluster is not None:
            await self._cluster.close()
            self._cluster = None

    # -- following a task -----------------------------------------------------------------

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A log, progress or start message of one of our tasks (on the loop)."""
        _, message = event
        run = self._keys.get(message.get("k")) if isinstance(message, dict) else None
        if run is None or run.reported:
            return
        run.received += 1
        run.arrived.set()
        kind = message.get("t")
        if kind == "log":
            labelled = [message["s"]] if "s" in message else []  # a thread's, a child's
            self._notify("on_log", run.task, bytes(message["data"]), *labelled)
        elif kind == "progress":
            value = Progress(message["done"], message.get("total"), message.get("message"), now())
            self._notify("on_progress", run.task, value)
        elif kind == "start" and run.where is None:
            run.where = message.get("where")  # "worker" is the scheduler's
            self._notify("on_started", run.task)

    async def _follow(self, run: _Run) -> None:
        """Wait for the task, then report its outcome (exactly once) and tidy the scheduler."""
        try:
            outcome = await self._outcome(run)
        except Exception as exc:  # a bug here must not leave the job running in the store
            log.exception("jupyter_jobs: following job %d on Dask failed", run.task.job_id)
            outcome = failed_outcome(
                Reason.ERROR, type(exc).__name__, f"the Dask executor failed: {exc}"
            )
        self._finish(run, outcome)
        run.future = run.payload = None  # releases the key on the scheduler
        # After an unconfirmed kill the signals stay: the worker may still come to read them.
        client = self._client
        if run.unconfirmed is None and client is not None and client.status == "running":
            await self._forget_signals(run)

    async def _outcome(self, run: _Run) -> Outcome:
        try:
            data = await run.future
        except FutureCancelledError as exc:
            if run.killing:
                return self._killed(run, None)
            message = f"the Dask task was cancelled ({exc.reason})"
            return failed_outcome(Reason.INTERRUPTED, "Interrupted", message)
        except KilledWorker as exc:
            message = f"Dask lost the worker(s) running this job: {exc}"
            return failed_outcome(Reason.WORKER_LOST, "WorkerLost", message)
        except Exception as exc:  # raised by Dask on the worker: not by the job, which is fenced
            message = f"the Dask task failed on the worker: {type(exc).__name__}: {exc}"
            return failed_outcome(Reason.ERROR, "DaskTaskError", message)
        await self._events_arrived(run, data.get("events", 0))
        if run.killing:  # a kill decides the outcome once it has begun
            return self._killed(run, data.get("exit"), ran=True, checkpoint=data.get("checkpoint"))
        return _outcome_of(data, run.where)

    async def _events_arrived(self, run: _Run, sent: int) -> None:
        """Let the task's last logs arrive before its outcome (they travel another path)."""
        deadline = asyncio.get_running_loop().time() + _EVENTS_WAIT
        while run.received < sent:
            run.arrived.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning(
                    "jupyter_jobs: job %d: %d of %d log/progress events from Dask arrived",
                    run.task.job_id,
                    run.received,
                    sent,
                )
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.arrived.wait(), left)

    def _killed(
        self,
        run: _Run,
        exit_text: str | None,
        ran: bool = False,
        checkpoint: bytes | None = None,
    ) -> Outcome:
        """How a killed run ends (with its last checkpoint as its result, if it sent one). At
        shutdown, one taken out of Dask's queue before it started (no "start" event, its task
        never returned, the cancel confirmed) goes back to the queue uncounted, as the Executor
        contract asks."""
        if self._closing and not ran and run.where is None and run.unconfirmed is None:
            return not_started_outcome()
        return kill_outcome(run.kill_reason, exit_text or run.unconfirmed, checkpoint)

    async def _forget_signals(self, run: _Run) -> None:
        """Remove the run's Events and Variable from the scheduler (they would pile up)."""
        try:
            await asyncio.gather(
                DaskEvent(f"{run.key}-stop", self._client).clear(),
                DaskEvent(f"{run.key}-started", self._client).clear(),
            )
            if run.killing:
                Variable(f"{run.key}-grace", self._client).delete()
        except OSError as exc:
            log.warning("jupyter_jobs: cannot tidy Dask events of job %d: %s", run.task.job_id, exc)

    def _finish(self, run: _Run, outcome: Outcome) -> None:
        """The single on_done of a run."""
        if run.reported:
            return
        run.reported = True
        self._runs.pop(run.task.job_id, None)
        self._keys.pop(run.key, None)
        if run.where:
            address = _address(run.where)
            self._done_on[address] = self._done_on.get(address, 0) + 1
        run.finished.set()
        self._notify("on_done", run.task, outcome)


def _outcome_of(data: dict[str, Any], where: str | None) -> Outcome:
    """The Outcome from what `run_on_worker` returned (plain data)."""
    status = data["status"]
    if status == "stopped":
        message = "the job was stopped on its Dask worker: its task was released"
        outcome = failed_outcome(Reason.INTERRUPTED, "Interrupted", message, data.get("exit"))
        outcome.result = data.get("checkpoint")
        return outcome
    if data.get("rerun"):
        lost = f"the Dask worker {where}" if where else "the Dask worker"
        message = (
            f"{lost} running this attempt was lost; Dask re-ran the task on "
            f"{data.get('worker')}, which does not run an attempt twice"
        )
        return failed_outcome(Reason.WORKER_LOST, "WorkerLost", message)
    return done_outcome(data, data.get("exit"))


def _address(where: str) -> str:
    """The Dask worker's address in a "start" event's `where` ("tcp://... (pid N)")."""
    return where.split(" ", 1)[0]


#: Dask's worker statuses that are shown as other than idle or busy.
_DASK_STATUS = {
    "closing_gracefully": WorkerStatus.DRAINING,
    "closing": WorkerStatus.RETIRING,
    "closed": WorkerStatus.RETIRING,
    "init": WorkerStatus.STARTING,
}


def _dask_worker(
    address: str, facts: dict[str, Any], identity: dict[str, Any], run: _Run | None, done: int
) -> WorkerInfo:
    """A Dask worker as shown, from the scheduler's `identity` and what we ran there."""
    state = _DASK_STATUS.get(facts.get("status", ""))
    if state is None:
        state = WorkerStatus.BUSY if run is not None else WorkerStatus.IDLE
    return WorkerInfo(
        id=address.split("://", 1)[-1],
        pid=identity.get("pid"),
        host=address,
        executor=DaskExecutor.name,
        state=state,
        job=run.task.job_id if run is not None else None,
        job_name=run.task.name if run is not None else None,
        started_at=identity.get("started_at"),
        heartbeat_at=facts.get("last_seen"),
        jobs_done=done,
    )
