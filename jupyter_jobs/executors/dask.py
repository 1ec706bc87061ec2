"""Jobs on a Dask cluster: the store and the consumer stay in the server, the work goes out.

Each attempt is one Dask task (`_run_on_worker`, key `jupyter-jobs-<id>-<attempt>-<executor>`,
`pure=False`). On the Dask worker the task starts the job in a process of its own,
`python -m jupyter_jobs.runner`, and speaks the same frames to it as the local executor does
(protocol.py), because Dask cannot stop a running task: only a process can be ended, and only a
process group takes the job's children with it. The runner is started afresh for every attempt
(no warm pool on the workers; it costs about a second of start-up per job) and, when it ends,
whatever the job left running in its process group ends with it.

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
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future, LocalCluster, Variable, get_client, get_worker
from distributed import Event as DaskEvent
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from .. import protocol
from ..models import JobError, Kind, Outcome, Progress, Reason, Status, now
from ..oslayer import new_group_options
from .base import Executor, ExecutorEvents, Task

# Process handling and kill outcomes shared with the local executor.
from .processes import (
    describe_exit,
    failed_outcome,
    group_alive,
    kill_outcome,
    last_words,
    not_started_outcome,
    signal_group,
)

log = logging.getLogger(__name__)

#: Serialization families this executor's client accepts from the cluster: no pickle.
_NO_PICKLE = ("dask", "msgpack", "error")
#: Payloads larger than this go to the cluster with `scatter` instead of inside the task.
_SCATTER_ABOVE = 1024 * 1024
#: How long the executor waits for a finished task's last log events to arrive (seconds).
_EVENTS_WAIT = 5.0

_POLL = 1.0  # seconds between two looks at the stop signal on the worker (a long poll)
_LOG_FLUSH = 0.1  # seconds a log line may wait on the worker to share an event with others
_LOG_CHUNK = 16 * 1024  # bytes of log per event, at most
_START_TIMEOUT = 60.0  # seconds for a runner to say it is ready
_STDERR_TAIL = 16384  # bytes of the runner's own stderr kept for a worker_lost error


# -- the server side ----------------------------------------------------------------------------


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

    `scheduler_address` is the cluster's scheduler (`c.JobsApp.dask_scheduler_address`); without
    one, `start()` starts a `LocalCluster` of `max_workers` single-threaded worker processes (for
    tests and single machines) and closes it at `shutdown()`. `max_workers` is how many jobs this
    executor runs at once. `None` (the default) follows the cluster's total threads as the client
    last heard them (every 2 s by default), so a cluster that scales is used as it grows; at
    least one job runs even when an adaptive cluster has no worker yet, since work is what makes
    it scale up. A number above the cluster's threads makes jobs wait in Dask's queue: they
    stay queued (their timeout not running) until their task starts on a worker.

    `log_limit` and `progress_interval` are the runner's, as in the local executor; `grace` is the
    SIGTERM-to-SIGKILL time used when a task stops on its own because its key was released (a
    kill brings its own grace); `stop_timeout` bounds how long a kill waits, beyond the grace,
    for the worker to confirm the job's processes are gone.
    """

    name = "dask"
    #: A run starts when its task starts the runner process on a Dask worker (the "start"
    #: event), not when it is submitted: it may wait in Dask's queue for a thread first.
    reports_start = True

    def __init__(
        self,
        events: ExecutorEvents,
        max_workers: int | None = None,
        *,
        scheduler_address: str | None = None,
        log_limit: int | None = 10 * 1024 * 1024,
        progress_interval: float = 1.0,
        grace: float = 5.0,
        stop_timeout: float = 30.0,
    ) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        super().__init__(events, max_workers or 1)
        self._follow_cluster = max_workers is None
        self.scheduler_address = scheduler_address
        self.log_limit = log_limit
        self.progress_interval = progress_interval
        self.grace = grace
        self.stop_timeout = stop_timeout
        self._token = uuid.uuid4().hex[:12]
        self._topic = f"jupyter-jobs-{self._token}"
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._runs: dict[int, _Run] = {}
        self._keys: dict[str, _Run] = {}
        self._followers: set[asyncio.Task] = set()
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
        if len(task.payload) > _SCATTER_ABOVE:  # large bytes do not belong in the task graph
            try:
                payload = run.payload = await client.scatter(task.payload, hash=False)
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
            "grace": self.grace,
        }
        run.future = client.submit(
            _run_on_worker, job, payload, self._topic, key=run.key, pure=False, retries=0
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
            self._notify("on_log", run, bytes(message["data"]))
        elif kind == "progress":
            value = Progress(message["done"], message.get("total"), message.get("message"), now())
            self._notify("on_progress", run, value)
        elif kind == "start" and run.where is None:
            run.where = message.get("where")  # "worker" is the scheduler's
            self._notify("on_started", run)

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
            return self._killed(run, data.get("exit"), ran=True)
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

    def _killed(self, run: _Run, exit_text: str | None, ran: bool = False) -> Outcome:
        """How a killed run ends. At shutdown, one taken out of Dask's queue before it started
        (no "start" event, its task never returned, the cancel confirmed) goes back to the
        queue uncounted, as the Executor contract asks."""
        if self._closing and not ran and run.where is None and run.unconfirmed is None:
            return not_started_outcome()
        return kill_outcome(run.kill_reason, exit_text or run.unconfirmed)

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
        run.finished.set()
        self._notify("on_done", run, outcome)

    def _notify(self, method: str, run: _Run, *value: Any) -> None:
        try:
            getattr(self.events, method)(run.task.job_id, run.task.attempt, *value)
        except Exception:
            log.exception("%s for job %s raised", method, run.task.job_id)


def _outcome_of(data: dict[str, Any], where: str | None) -> Outcome:
    """The Outcome from what `_run_on_worker` returned (plain data)."""
    status = data["status"]
    if status == "stopped":
        message = "the job was stopped on its Dask worker: its task was released"
        return failed_outcome(Reason.INTERRUPTED, "Interrupted", message, data.get("exit"))
    if data.get("rerun"):
        lost = f"the Dask worker {where}" if where else "the Dask worker"
        message = (
            f"{lost} running this attempt was lost; Dask re-ran the task on "
            f"{data.get('worker')}, which does not run an attempt twice"
        )
        return failed_outcome(Reason.WORKER_LOST, "WorkerLost", message)
    error = data.get("error")
    return Outcome(
        status=Status(status),
        reason=Reason(data["reason"]) if data.get("reason") else None,
        error=JobError(error["type"], error["message"], error.get("traceback", ""))
        if error
        else None,
        result=data.get("result"),
        outputs=data.get("outputs"),
        exit=data.get("exit"),
    )


# -- the worker side: runs inside a Dask worker process ---------------------------------------


def _run_on_worker(job: dict[str, Any], payload: bytes, topic: str) -> dict[str, Any]:
    """The Dask task of one attempt: run it in a runner process, return how it ended."""
    attempt = _Attempt(job, topic)
    try:
        outcome = attempt.run(payload)
    finally:
        attempt.close()
    return {**outcome, "events": attempt.report.sent, "worker": attempt.where}


class _Reporter:
    """Sends a job's logs and progress to the executor as Dask events, in order, logs batched."""

    def __init__(self, worker: Any, topic: str, key: str) -> None:
        self.worker = worker
        self.topic = topic
        self.key = key
        self.sent = 0
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        flusher = threading.Thread(target=self._flush_periodically, name="jobs-dask-logs")
        flusher.daemon = True
        flusher.start()

    def publish(self, kind: str, **fields: Any) -> None:
        with self._lock:
            self._flush()
            self._send(kind, fields)

    def log(self, data: bytes) -> None:
        with self._lock:
            self._buffer += data
            if len(self._buffer) >= _LOG_CHUNK:
                self._flush()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._flush()

    def _send(self, kind: str, fields: dict[str, Any]) -> None:
        self.worker.log_event(self.topic, {"k": self.key, "t": kind, **fields})
        self.sent += 1

    def _flush(self) -> None:
        while self._buffer:
            chunk = bytes(self._buffer[:_LOG_CHUNK])
            del self._buffer[:_LOG_CHUNK]
            self._send("log", {"data": chunk})

    def _flush_periodically(self) -> None:
        while not self._closed.wait(_LOG_FLUSH):
            with self._lock:
                self._flush()


class _Attempt:
    """One run of the task on a worker: the runner process, the conversation, the stop watch."""

    def __init__(self, job: dict[str, Any], topic: str) -> None:
        self.job = job
        self.key = job["key"]
        self.worker = get_worker()
        self.client = get_client()
        self.where = f"{self.worker.address} (pid {os.getpid()})"
        self.report = _Reporter(self.worker, topic, self.key)
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()  # signals vs reaping: never signal a reaped pid
        self.reaped = False
        self.stopped = False  # ended by a stop (kill or released key)
        self.problem: str | None = None  # why the conversation with the runner broke off
        self.over = threading.Event()  # the runner is gone: stop watching

    def close(self) -> None:
        self.over.set()
        self.report.close()

    def run(self, payload: bytes) -> dict[str, Any]:
        started = DaskEvent(f"{self.key}-started", self.client)
        if started.is_set():
            return {"status": "failed", "reason": "worker_lost", "rerun": True}
        started.set()
        cwd = self._placement()
        with tempfile.TemporaryFile() as stderr:
            try:
                sock = self._spawn(stderr)
            except OSError as exc:
                message = f"cannot start the job's process on {self.where}: {exc}"
                error = {"type": "WorkerStartError", "message": message}
                return {"status": "failed", "reason": "worker_lost", "error": error}
            self.report.publish("start", where=self.where, pid=self.proc.pid)
            threading.Thread(target=self._watch, name="jobs-dask-stop", daemon=True).start()
            ready, done = self._converse(sock, payload, cwd)
            returncode = self._reap()
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - _STDERR_TAIL))
            output = stderr.read().decode(errors="replace").strip()
        return self._outcome(ready, done, describe_exit(returncode), output)

    def _placement(self) -> str | None:
        """The job's directory if this worker has it; the log notes where the job runs elsewhere."""
        cwd, interpreter = self.job.get("cwd"), self.job.get("interpreter")
        if interpreter and os.path.realpath(interpreter) != os.path.realpath(sys.executable):
            note = f"[jupyter_jobs: running with the Dask worker's Python {sys.executable}]\n"
            self.report.log(note.encode())
        if cwd and not os.path.isdir(cwd):
            note = (
                f"[jupyter_jobs: directory {cwd} does not exist on Dask worker {self.where}; "
                f"running in {os.getcwd()}]\n"
            )
            self.report.log(note.encode())
            return None
        return cwd

    def _spawn(self, stderr: Any) -> socket.socket:
        parent_sock, child_sock = socket.socketpair()
        fd = child_sock.fileno()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_jobs.runner", str(fd), str(os.getpid())],
                pass_fds=(fd,),
                **new_group_options(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        except OSError:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        return parent_sock

    def _converse(
        self, sock: socket.socket, payload: bytes, cwd: str | None
    ) -> tuple[protocol.Frame | None, protocol.Frame | None]:
        """Hand the job to the runner and forward what it says; returns (ready, done) frames."""
        ready = done = None
        sock.settimeout(_START_TIMEOUT)
        channel = protocol.Channel(sock)
        try:
            ready = channel.recv()
            if ready is None or ready[0]["t"] != "ready":
                return None, None
            sock.settimeout(None)
            channel.send(self._job_header(cwd), payload)
            while done is None and (frame := channel.recv()) is not None:
                header, body = frame
                if header["t"] == "log":
                    self.report.log(body)
                elif header["t"] == "progress":
                    fields = {k: header.get(k) for k in ("done", "total", "message")}
                    self.report.publish("progress", **fields)
                elif header["t"] == "done":
                    done = frame
        except TimeoutError:
            ready, self.problem = None, f"it did not start within {_START_TIMEOUT:g} s"
            self._signal(signal.SIGKILL)
        except (OSError, protocol.ProtocolError) as exc:
            # The runner died mid-frame (a kill), or spoke nonsense: it cannot be trusted.
            self.problem = f"{type(exc).__name__}: {exc}"
            self._signal(signal.SIGKILL)
        finally:
            channel.close()  # a runner that finished reads the end of stream and exits
        return ready, done

    def _job_header(self, cwd: str | None) -> dict[str, Any]:
        job = self.job
        return {
            "t": "job",
            **{k: job[k] for k in ("job_id", "attempt", "kind", "name", "options")},
            "cwd": cwd,
            "progress_interval": job["progress_interval"],
            "log_limit": job["log_limit"],
        }

    def _reap(self) -> int:
        """Wait for the runner to exit, end what its job left in its group, then reap it."""
        pid = self.proc.pid
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited; the zombie keeps the pid
        with self.lock:
            signal_group(pid, signal.SIGKILL)
            self.reaped = True
            return self.proc.wait()

    def _signal(self, sig: int) -> None:
        with self.lock:
            if not self.reaped:
                signal_group(self.proc.pid, sig)

    def _watch(self) -> None:
        """Stop the runner when the executor asks, or when Dask released this task's key."""
        stop = DaskEvent(f"{self.key}-stop", self.client)
        grace = None
        while grace is None:
            try:
                asked = stop.wait(timeout=_POLL)
            except Exception as exc:  # the scheduler is out of reach: look again later
                log.debug("jupyter_jobs: waiting for a stop of %s: %s", self.key, exc)
                asked = False
                self.over.wait(_POLL)
            if self.over.is_set():
                return
            if asked:
                grace = self._asked_grace()
            elif self._released():
                grace = self.job["grace"]
        self._terminate(grace)

    def _asked_grace(self) -> float:
        try:
            return float(Variable(f"{self.key}-grace", self.client).get(timeout=_POLL))
        except Exception as exc:
            log.warning("jupyter_jobs: no grace for %s (%s); using the default", self.key, exc)
            return float(self.job["grace"])

    def _released(self) -> bool:
        state = self.worker.state.tasks.get(self.key)
        return state is None or state.state == "cancelled"

    def _terminate(self, grace: float) -> None:
        """SIGTERM to the runner's process group, up to `grace` seconds, then SIGKILL."""
        with self.lock:
            if self.reaped:
                return
            self.stopped = True
            signal_group(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(self.proc.pid):
            time.sleep(0.02)
        self._signal(signal.SIGKILL)

    def _outcome(
        self,
        ready: protocol.Frame | None,
        done: protocol.Frame | None,
        exit_text: str,
        output: str,
    ) -> dict[str, Any]:
        if done is not None:
            header, body = done
            result_len = header.get("result_len", 0)
            outputs_len = header.get("outputs_len", 0)
            return {
                "status": header["status"],
                "reason": header.get("reason"),
                "error": header.get("error"),
                "result": body[:result_len] if header.get("has_result") else None,
                "outputs": body[result_len : result_len + outputs_len]
                if header.get("has_outputs")
                else None,
            }
        if self.stopped:
            return {"status": "stopped", "exit": exit_text}
        words = self.problem or last_words(output)
        said = f": {words}" if words else ""
        pid = self.proc.pid
        when = "before it was ready" if ready is None else "while running the job"
        message = f"the job's process (pid {pid} on {self.where}) died {when}: {exit_text}{said}"
        error = {"type": "WorkerLost", "message": message, "traceback": output}
        return {"status": "failed", "reason": "worker_lost", "error": error, "exit": exit_text}
