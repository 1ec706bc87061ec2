"""The consumer: moves jobs from the store to an executor and records what happens to them.

It is one asyncio task (in the Jupyter server's loop, or in `jupyter jobs consumer`). Each tick it
writes what the executor reported (starts, logs, progress, outcomes: batched, in one writer thread
so the loop never blocks on SQLite and the writes never contend with each other), kills what was
cancelled or timed out, promotes pending jobs whose time came, fires due schedules, recovers
orphans, and claims as many queued jobs as the executor has free slots. Garbage collection runs
in a thread of its own beside the ticks: a large one takes seconds or minutes, in short
transactions between which the writer's go on. A claimed job stays
queued until the executor reports that its code began: only then is it running, with that moment
as its `started_at`. It wakes at once on a change made in this process (store subscription) or
another (doorbell), and otherwise sleeps until the next due time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from . import chains
from .errors import JobsError
from .executors.base import Executor, ExecutorEvents, Task
from .models import Change, FileBytes, Job, JobError, Kind, Outcome, Progress, Reason, Status
from .oslayer import process_alive, process_start_time
from .store import Claimed, Store
from .store.attempts import LogItem
from .worker_info import WorkerInfo

log = logging.getLogger(__name__)

ExecutorFactory = Callable[[ExecutorEvents], Executor]
T = TypeVar("T")

#: Seconds a reported start may wait to share a commit: a short job's start then goes with its
#: outcome (one commit a job, as before starts were written), a long one shows running this late.
START_WRITE_DELAY = 0.05
#: Seconds between looks for due schedules (a look is one indexed read unless one is due).
SCHEDULE_CHECK_INTERVAL = 1.0
#: Seconds between two looks at the executor's workers: written into the store when they
#: changed, so any process lists them (`store/workers.py`), and drains asked there applied.
WORKERS_INTERVAL = 1.0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def make_consumer_id() -> str:
    """`host:pid:start-time`: enough for another process on this host to tell if we are alive."""
    pid = os.getpid()
    started = process_start_time(pid)
    return f"{socket.gethostname()}:{pid}:{'0' if started is None else f'{started:.3f}'}"


def consumer_is_alive(consumer_id: str) -> bool:
    """False only when we can prove the consumer process is gone (same host, pid dead/reused).

    A consumer on another host cannot be checked from here, nor one whose start time was
    unknown ('0') or written by a version that counted clock ticks (no '.'): its lease decides.
    """
    try:
        host, pid_text, started_text = consumer_id.rsplit(":", 2)
        pid = int(pid_text)
        started = float(started_text) if "." in started_text else None
    except ValueError:
        return False
    if host != socket.gethostname():
        return True
    return process_alive(pid, started)


@dataclass
class _Running:
    """A job handed to the executor: claimed, and running once it started."""

    job_id: int
    attempt: int
    timeout: float | None
    deadline: float | None = None  # set when the job starts (see `on_started`)
    killing: bool = False


class Consumer:
    """Claims, dispatches and records jobs for one store, with one executor.

    Used by the Jupyter server extension, by `jupyter jobs consumer`, and by
    `JobQueue.start_consumer()`. Call `await start()` inside a running loop, `await stop()` at the
    end; `wake()` from the loop's thread when something changed.
    """

    def __init__(
        self,
        store: Store,
        executor_factory: ExecutorFactory,
        *,
        consumer_id: str | None = None,
        lease: float = 30.0,
        heartbeat_interval: float = 5.0,
        progress_interval: float = 1.0,
        kill_grace: float = 5.0,
        retention_seconds: float | None = None,
        retention_bytes: int | None = None,
        gc_interval: float = 3600.0,
        clock: Callable[[], float] = time.time,
        owns_loop: bool = False,
    ) -> None:
        self.store = store
        self.consumer_id = consumer_id or make_consumer_id()
        self.lease = lease
        self.heartbeat_interval = min(heartbeat_interval, lease / 3)
        self.progress_interval = progress_interval
        self.kill_grace = kill_grace
        self.retention_seconds = retention_seconds
        self.retention_bytes = retention_bytes
        self.gc_interval = gc_interval
        #: the time schedules fire by (tests pass a fake one; jobs' own times stay real)
        self.clock = clock
        #: Nothing but this consumer runs on its loop (`jupyter jobs consumer`, a `JobQueue`'s
        #: consumer thread): its per-job writes may run on the loop itself (`_per_job`).
        self.owns_loop = owns_loop
        self.executor = executor_factory(self)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobs-store")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._woken = False  # a tick is due (see `wake`)
        self._waiter: asyncio.Future[None] | None = None  # what `_sleep` waits on
        self._stopping = False
        self._running: dict[int, _Running] = {}
        #: Output per attempt, as runs of one stream each ("" the main stream: `streams.py`).
        self._logs: dict[tuple[int, int], list[tuple[str, bytearray]]] = {}
        self._progress: dict[tuple[int, int], Progress] = {}
        self._progress_written: dict[int, float] = {}
        self._outcomes: list[tuple[int, int, Outcome]] = []
        self._starts: list[tuple[int, int, float]] = []
        self._start_timer: asyncio.TimerHandle | None = None  # wakes to write `_starts`
        self._cancel_ids: set[int] = set()
        self._kills: set[asyncio.Task[None]] = set()
        self._listener = None
        self._unsubscribe: Callable[[], None] | None = None
        self._due = dict.fromkeys(
            ("heartbeat", "recover", "promote", "gc", "schedules", "workers"), 0.0
        )
        self._workers_written: tuple[list[WorkerInfo], float] | None = None  # and when
        self._store_due: float | None = None
        self._bell = False
        self._collecting: asyncio.Task[None] | None = None  # a gc under way
        self._stop_collecting = threading.Event()

    # --- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover orphans, start the executor, and begin consuming."""
        self._loop = asyncio.get_running_loop()
        await self._in_writer(self.store.recover, consumer_is_alive)
        self.executor.leftovers_dir = self.store.workspace.root / "processes"
        self.executor.result_dir = await asyncio.to_thread(self.store.incoming)
        self.executor.start_log = self.store.start_log_of(self.consumer_id)
        await self.executor.start()
        self._unsubscribe = self.store.subscribe(self._on_store_changes)
        self._listener = self.store.listen()
        self._listener.on_loop(self._loop, self._on_bell)
        self._task = self._loop.create_task(self._run(), name="jupyter-jobs-consumer")

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, end running jobs (interrupted, or requeued where retries remain)."""
        if self._task is None:
            return
        self._stopping = True
        self._stop_collecting.set()  # after the batch under way: the rest waits for the next
        self.wake()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._collecting is not None:
            await self._collecting
        await self.executor.shutdown(self.kill_grace if grace is None else grace)
        await self._flush()  # claims given back that a worker began count (`start_log.py`)
        try:
            await self._in_writer(self.store.forget_workers, self.consumer_id)
        except Exception:  # they age out of listings (`store/workers.py`)
            log.exception("jupyter_jobs: cannot remove this consumer's workers from the store")
        if self.executor.start_log is not None:
            await asyncio.to_thread(self.executor.start_log.remove)
        if self._unsubscribe:
            self._unsubscribe()
        if self._listener is not None:
            self._listener.close()
        self._writer.shutdown(wait=True)
        self._task = None

    def wake(self) -> None:
        """Run a tick soon (from the loop's thread)."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- executor events (on the loop) -------------------------------------------------------

    def on_log(self, job_id: int, attempt: int, data: bytes, stream: str = "") -> None:
        runs = self._logs.setdefault((job_id, attempt), [])
        if runs and runs[-1][0] == stream:
            runs[-1][1].extend(data)
        else:
            runs.append((stream, bytearray(data)))
        self.wake()

    def on_progress(self, job_id: int, attempt: int, progress: Progress) -> None:
        self._progress[(job_id, attempt)] = progress
        self.wake()

    def on_started(self, job_id: int, attempt: int) -> None:
        """The job runs from here, and its timeout with it: a job can wait in the executor after
        its claim (behind another job in a busy worker, or for a worker to start). The start is
        written with the next flush, at most `START_WRITE_DELAY` later (its time is now)."""
        started = time.time()
        if self._start_timer is None and self._loop is not None:
            self._start_timer = self._loop.call_later(START_WRITE_DELAY, self.wake)
        self._starts.append((job_id, attempt, started))
        run = self._running.get(job_id)
        if run is not None and run.attempt == attempt and run.timeout:
            run.deadline = started + run.timeout

    def on_done(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self._running.pop(job_id, None)
        self._outcomes.append((job_id, attempt, outcome))
        self.wake()

    # --- wake-ups from elsewhere -------------------------------------------------------------

    def _on_store_changes(self, changes: list[Change]) -> None:
        """Store subscription: runs in whichever thread committed; hop to the loop.

        Only what gives this consumer work wakes it: a job to claim, a cancel. A job that ended
        does not (its dependents that may run now come as their own `queued` transitions), or
        each of its own outcomes would cost it a tick and an empty claim transaction."""
        relevant = [
            c
            for c in changes
            if c.what in ("created", "cancel_requested")
            or (c.what == "transition" and c.job.status is Status.QUEUED)
        ]
        if relevant and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._apply_changes, relevant)

    def _apply_changes(self, changes: list[Change]) -> None:
        for change in changes:
            if change.what == "cancel_requested":
                self._cancel_ids.add(change.job.id)
        self.wake()

    def _on_bell(self) -> None:
        # Only other stores ring: our own store's changes came through the subscription.
        self._bell = True
        self.wake()

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._tick()
            except Exception:
                # A failed tick (disk full, a locked database past the busy timeout) must not end
                # the consumer: log it with its traceback and try again after a pause.
                log.exception("jupyter_jobs consumer tick failed; retrying in 1 s")
                await asyncio.sleep(1.0)
            await self._sleep(self._seconds_to_next_due())
            self._woken = False

    async def _sleep(self, timeout: float) -> None:
        """Until `wake()` or `timeout` seconds. A bare future and a timer rather than
        `wait_for` on an event, which makes a task per wait and takes more loop turns to
        resume: every job waits here twice (for its claim, for its outcome)."""
        if self._woken or timeout <= 0:
            return
        assert self._loop is not None
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _tick(self) -> None:
        now = time.time()
        self._handle_cancels()
        self._check_timeouts(now)
        if self._bell:
            self._bell = False
            if self._running:  # else no job of ours can have a cancel to pick up: claim at once
                await self._after_bell()
        await self._maintenance(now)
        await self._flush_and_claim()

    async def _flush(self) -> None:
        """Write what the executor reported (used on stop, when nothing more is claimed)."""
        reports = self._take_reports()
        if any(reports):
            with self._kept_on_failure(*reports):
                await self._per_job(self.store.record, *reports)

    async def _flush_and_claim(self) -> None:
        """Record reports and claim into the free slots in one transaction, so a finished job's
        slot is refilled after a single hop to the writer thread and a single commit."""
        while True:
            logs, progress, outcomes, starts = self._take_reports()
            free = 0 if self._stopping else self.executor.free_slots()
            if not (logs or progress or outcomes or starts or free > 0):
                return
            claim = (self.consumer_id, free, self.lease)
            with self._kept_on_failure(logs, progress, outcomes, starts):
                _, claimed = await self._per_job(
                    self.store.record_and_claim, logs, progress, outcomes, claim, starts
                )
            for item in claimed:
                await self._dispatch(item)
            if len(claimed) < free or free <= 0:
                return

    def _take_reports(
        self,
    ) -> tuple[
        list[LogItem],
        list[tuple[int, int, Progress]],
        list[tuple[int, int, Outcome]],
        list[tuple[int, int, float]],
    ]:
        """Take the buffered logs, the progress that is due, the outcomes and the starts."""
        now = time.time()
        finishing = {(j, a) for j, a, _ in self._outcomes}
        progress = []
        for key in list(self._progress):
            last = self._progress_written.get(key[0], 0.0)
            if key in finishing or now - last >= self.progress_interval:
                progress.append((*key, self._progress.pop(key)))
                self._progress_written[key[0]] = now
        logs: list[LogItem] = [
            (j, a, bytes(data), stream) if stream else (j, a, bytes(data))
            for (j, a), runs in self._logs.items()
            for stream, data in runs
        ]
        self._logs = {}
        outcomes, self._outcomes = self._outcomes, []
        for job_id, _, _ in outcomes:
            self._progress_written.pop(job_id, None)
        starts, self._starts = self._starts, []
        if self._start_timer is not None:  # written now: a wake-up for them would find nothing
            self._start_timer.cancel()
            self._start_timer = None
        return logs, progress, outcomes, starts

    @contextlib.contextmanager
    def _kept_on_failure(
        self,
        logs: list[LogItem],
        progress: list[tuple[int, int, Progress]],
        outcomes: list[tuple[int, int, Outcome]],
        starts: list[tuple[int, int, float]],
    ) -> Iterator[None]:
        """Put taken reports back if writing them fails (a locked or full disk): the next tick
        writes them. Dropped, a finished job's result would be lost, and the job would end
        `interrupted` when its lease ran out."""
        try:
            yield
        except BaseException:
            self._starts[:0] = starts
            self._outcomes[:0] = outcomes
            for job_id, attempt, data, *stream in reversed(logs):  # before what came since
                runs = self._logs.setdefault((job_id, attempt), [])
                runs.insert(0, (stream[0] if stream else "", bytearray(data)))
            for job_id, attempt, value in progress:
                self._progress.setdefault((job_id, attempt), value)  # a newer one wins
            raise

    def _handle_cancels(self) -> None:
        ids, self._cancel_ids = self._cancel_ids, set()
        for job_id in ids:
            self._kill(job_id, None)

    def _check_timeouts(self, now: float) -> None:
        for run in list(self._running.values()):
            if run.deadline is not None and now >= run.deadline:
                self._kill(run.job_id, Reason.TIMEOUT)

    def _kill(self, job_id: int, reason: Reason | None) -> None:
        run = self._running.get(job_id)
        if run is None or run.killing:
            return
        run.killing = True
        task = asyncio.get_running_loop().create_task(
            self.executor.kill(job_id, reason, self.kill_grace)
        )
        self._kills.add(task)
        task.add_done_callback(self._kill_done)

    def _kill_done(self, task: asyncio.Task[None]) -> None:
        self._kills.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("killing a job failed", exc_info=task.exception())

    async def _after_bell(self) -> None:
        """Another process changed the database: pick up cancels of jobs we run."""
        requested = await self._in_writer(self.store.cancel_requested, self.consumer_id)
        for job_id, _attempt in requested:
            self._kill(job_id, None)

    async def _maintenance(self, now: float) -> None:
        due = self._due
        if now >= due["heartbeat"] and self._running:
            ids = list(self._running)
            renewed_at = time.time()  # the store's new leases end no earlier than this + lease
            cancel = await self._in_writer(self.store.heartbeat, self.consumer_id, ids, self.lease)
            self.executor.renew_lease(self._run_deadline(renewed_at + self.lease))
            for job_id in cancel:
                self._kill(job_id, None)
        if now >= due["heartbeat"]:
            due["heartbeat"] = now + self.heartbeat_interval
        if now >= due["recover"]:
            await self._in_writer(self.store.recover, consumer_is_alive)
            due["recover"] = now + self.lease / 2
        if now >= due["promote"] or (self._store_due is not None and now >= self._store_due):
            await self._in_writer(self.store.promote)
            self._store_due = await self._in_writer(self.store.next_due)
            if self._store_due is not None and self._store_due <= now:
                # Only a running job's lease can be due already (another consumer's, which
                # stopped renewing it): end it now, rather than spin until the recover timer.
                await self._in_writer(self.store.recover, consumer_is_alive)
                due["recover"] = now + self.lease / 2
                self._store_due = await self._in_writer(self.store.next_due)
                if self._store_due is not None:
                    self._store_due = max(self._store_due, now + 1.0)
            due["promote"] = now + 1.0
        if now >= due["workers"]:
            await self._sync_workers(now)
            due["workers"] = now + WORKERS_INTERVAL
        if now >= due["schedules"]:
            # Runs of due schedules become jobs (one transaction; `store/schedules.py`).
            fired = await self._in_writer(self.store.fire_schedules, self.clock())
            if fired:
                log.info("jupyter_jobs: %d scheduled run(s) created", len(fired))
            due["schedules"] = now + SCHEDULE_CHECK_INTERVAL
        if now >= due["gc"]:
            if self._collecting is None:  # (else the last one is still at it)
                self._collecting = asyncio.create_task(self._collect_garbage())
            due["gc"] = now + self.gc_interval

    async def _collect_garbage(self) -> None:
        """`Store.gc` in a thread of its own, not the writer's: claims, outcomes and
        heartbeats go on meanwhile (gc leaves the write lock free most of the time)."""
        try:
            deleted = await asyncio.to_thread(
                self.store.gc,
                self.retention_seconds,
                self.retention_bytes,
                self._stop_collecting,
            )
            if deleted:
                log.info("jupyter_jobs: garbage-collected %d finished jobs", len(deleted))
        except Exception:  # tried again at the next interval; the ticks go on
            log.exception("jupyter_jobs: garbage collection failed")
        finally:
            self._collecting = None

    async def _sync_workers(self, now: float) -> None:
        """Write the executor's workers into the store when they changed, and at least every
        heartbeat interval (readers tell a live consumer by it); drain those another process
        asked to (`Store.request_drain`)."""
        asked = await self._write_workers(now)
        while asked:  # drained: written again at once, so readers see it draining
            for worker_id in asked:
                try:
                    await self.executor.drain(worker_id)
                except JobsError as exc:
                    log.warning("jupyter_jobs: cannot drain worker %s: %s", worker_id, exc)
            asked = await self._write_workers(now)

    async def _write_workers(self, now: float) -> list[str]:
        """`Store.sync_workers` with the executor's workers, unless they are as last written
        less than a heartbeat interval ago; the drains asked since."""
        infos = await self.executor.workers()
        written = self._workers_written
        same = (
            written is not None
            and now - written[1] < self.heartbeat_interval
            and len(written[0]) == len(infos)
            and all(a.same_as(b) for a, b in zip(written[0], infos, strict=True))
        )
        asked = await self._in_writer(
            self.store.sync_workers, self.consumer_id, None if same else infos
        )
        if not same:
            self._workers_written = (infos, now)
        return asked

    async def _dispatch(self, item: Claimed) -> None:
        job = item.job
        self._running[job.id] = _Running(job.id, job.attempt, job.timeout)
        payload = item.payload
        if job.kind is Kind.CELL and job.after:  # it sees the names of the cells before it
            payload = await asyncio.to_thread(self._bundle, payload, job)
        task = Task(
            job_id=job.id,
            attempt=job.attempt,
            kind=job.kind,
            name=job.name,
            payload=payload,
            interpreter=job.interpreter,
            cwd=job.cwd,
            options=job.options,
            fresh_worker=job.fresh_worker,
            lease_until=self._run_deadline(job.lease_until or time.time() + self.lease),
        )
        try:
            await self.executor.run(task)
        except Exception as exc:
            # A claimed job the executor refused must not linger until its lease runs out: it
            # ends now as interrupted (and is retried where it allows retries).
            log.exception("jupyter_jobs: could not hand job %d to the executor", job.id)
            error = JobError("DispatchError", f"the executor did not take the job: {exc}")
            self.on_done(job.id, job.attempt, Outcome(Status.FAILED, Reason.INTERRUPTED, error))
            return
        if not self.executor.reports_start and job.id in self._running:
            self.on_started(job.id, job.attempt)  # it cannot tell: taken counts as started

    def _run_deadline(self, lease_until: float) -> float:
        """When a run must stop unless renewed: a heartbeat interval before its lease ends, so
        it is over (stopped by its worker, see `Executor.renew_lease`) before another consumer
        may take the claim over; renewals come every heartbeat interval."""
        return lease_until - self.heartbeat_interval

    def _bundle(self, payload: bytes | FileBytes, job: Job) -> bytes:
        """`payload` with the results of the cell jobs `job` runs after (chains.py)."""
        data = payload.read() if isinstance(payload, FileBytes) else payload
        return chains.bundle(data, self._upstream(job))

    def _upstream(self, job: Job) -> list[bytes]:
        """The results of the cell jobs `job` runs after, in its `after` order (opaque bytes:
        only the worker loads them)."""
        records = {r.id: r for r in self.store.get_many(job.after)}
        return [
            self.store.result(i)
            for i in job.after
            if i in records
            and records[i].kind is Kind.CELL
            and records[i].status is Status.SUCCEEDED
        ]

    def _seconds_to_next_due(self) -> float:
        now = time.time()
        times = [self._due["heartbeat"] if self._running else None, self._due["recover"]]
        times.append(self._due["promote"])
        times.append(self._due["schedules"])
        times.append(self._due["workers"])
        times.append(self._store_due)
        times.extend(r.deadline for r in self._running.values())
        if self._progress:
            times.append(now + self.progress_interval)
        upcoming = [t for t in times if t is not None]
        return max(0.0, min(upcoming) - now) if upcoming else 1.0

    async def _per_job(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call every job makes (its claim, its reports: short transactions).

        When the loop serves this consumer alone and none of its jobs runs, nothing else
        waits on the loop meanwhile: the call runs right there. The hop to the writer thread
        and back would wake two threads, and each wake-up of a thread on the other CPU costs
        some 30 µs on a VM (more under load), while a lone short job, start to end, takes
        under 2 ms. While jobs run, their workers' frames keep the loop busy, and SQLite
        releases the interpreter: the writer thread lets the loop read them meanwhile. On a
        shared loop (the Jupyter server's), always the writer thread."""
        if self.owns_loop and not self._running:
            return fn(*args)
        return await self._in_writer(fn, *args)

    async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the single writer thread, so the loop never waits on SQLite."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self._writer, fn, *args)
