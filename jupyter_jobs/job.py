"""`Job`: the future-like handle users hold, the same whether it talks to the store or to a server.

A `Job` is a `concurrent.futures.Future`, so `concurrent.futures.wait` and `as_completed` work on
it, and it is awaitable. What differs between the engine's `JobQueue` (store in this process) and
the kernel API (HTTP to the Jupyter server) is only the `Backend`: how to read a record, fetch
result bytes, cancel, and wait for a change. Each backend runs one watcher thread that resolves
the futures of every unfinished handle, so waiting on many jobs costs one loop, not one per job.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import functools
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import job_types, notebooks, payload
from .buffers import Received
from .errors import IllegalTransition, JobCancelled, JobFailed, JobNotFound, JobsError
from .models import Job as JobRecord
from .models import Kind, Page, Progress, Status
from .submitter import BATCH_BYTES, Items, Submitter, exiting
from .worker_info import WorkerInfo

if TYPE_CHECKING:
    from .channels import Batch

_NOT_LOADED = object()


class Backend(abc.ABC):
    """Where `Job` handles get their facts; subclasses implement the abstract verbs."""

    #: Watcher back-off bounds in seconds when `wait_for_change` cannot block on a real signal.
    poll_min = 0.001
    poll_max = 0.25
    #: How often the watcher re-reads every watched job (catches deletions, lost signals).
    full_poll_interval = 5.0
    #: How many recently finished ids to remember (see `watch`).
    recent_limit = 10_000
    #: Seconds the watcher thread waits for a new handle once none is left, before it ends:
    #: a loop of submit-then-wait would otherwise start a thread, and open a store connection
    #: with it, for every job.
    watcher_linger = 2.0
    #: Submitted groups whose payloads are larger than this are stored on their own.
    submit_alone_over = BATCH_BYTES
    #: Whether a thread about to wait for its job to be stored stores what is queued itself
    #: (`Submitter.store_here`): where storing is a local transaction, not a request that
    #: may be retried for a minute while a server restarts.
    store_in_waiting_thread = False

    def __init__(self) -> None:
        # Weak references, a list per job: a WeakSet each cost a tenth of a submit.
        self._handles: dict[int, list[weakref.ref[Job]]] = {}
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._closed = False
        self._recent: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._submitter: Submitter | None = None
        self._new_handle = threading.Event()  # wakes a lingering watcher (see `watcher_linger`)

    @abc.abstractmethod
    def get(self, job_id: int) -> JobRecord:
        """The current record; raises JobNotFound."""

    @abc.abstractmethod
    def get_many(self, job_ids: Iterable[int]) -> list[JobRecord]:
        """Current records of the ids that exist (unknown ids are left out)."""

    @abc.abstractmethod
    def result_bytes(self, job_id: int) -> bytes | bytearray | Received:
        """The dill bytes of a succeeded job's result (or, read from a stream, the framed
        pickle with its arrays, buffers.py)."""

    @abc.abstractmethod
    def outputs(self, job_id: int) -> list[dict[str, Any]]:
        """The captured display outputs as nbformat v4 output dicts."""

    @abc.abstractmethod
    def read_log(
        self, job_id: int, offset: int = 0, stream: str | None = None
    ) -> tuple[bytes, int]:
        """Log bytes from `offset`, and the offset to read from next; of one labelled stream
        (`streams.py`; offsets in its bytes) when `stream` names one."""

    @abc.abstractmethod
    def cancel(self, job_id: int) -> JobRecord:
        """Ask for the job to be cancelled; returns the record after the request."""

    @abc.abstractmethod
    def retry(self, job_id: int) -> JobRecord:
        """Queue a failed or cancelled job again."""

    @abc.abstractmethod
    def release(self, job_id: int) -> JobRecord:
        """Let a held job run (queued now if its dependencies and time allow)."""

    @abc.abstractmethod
    def delete(self, job_id: int) -> None:
        """Remove a job that is not running."""

    @abc.abstractmethod
    def peek(self) -> JobRecord | None:
        """The job the next claim would take (`Store.peek`), or None."""

    @abc.abstractmethod
    def stats(self, type: str | None = None) -> dict[str, Any]:
        """The queue in numbers (`Store.overview`, the shape of `GET /jobs/api/stats`), of the
        jobs of job type `type` when given."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """The worker processes that run this queue's jobs."""

    @abc.abstractmethod
    def drain_worker(self, worker_id: str) -> WorkerInfo:
        """Ask a worker to halt after its current job."""

    @abc.abstractmethod
    def page(
        self,
        *,
        status: Sequence[str] | None,
        owner: str | None,
        q: str | None,
        limit: int,
        cursor: str | None,
        user: str | None = None,
        mine: bool = False,
        type: str | None = None,
    ) -> Page:
        """One page of records matching the filters, newest first: `user` names whose jobs,
        `mine` asks for the caller's own (who that is, the backend knows), `type` a job
        type."""

    def find(
        self,
        *,
        status: Sequence[str] | None,
        owner: str | None,
        q: str | None,
        limit: int,
        user: str | None = None,
        mine: bool = False,
        type: str | None = None,
    ) -> list[JobRecord]:
        """Up to `limit` records matching the filters, newest first, page after page."""
        records: list[JobRecord] = []
        cursor = None
        while len(records) < limit:
            page = self.page(
                status=status,
                owner=owner,
                q=q,
                limit=min(200, limit - len(records)),
                cursor=cursor,
                user=user,
                mine=mine,
                type=type,
            )
            records.extend(page.jobs)
            cursor = page.next_cursor
            if not cursor:
                break
        return records

    @abc.abstractmethod
    def wait_for_change(self, timeout: float) -> bool:
        """Block until something may have changed or `timeout` passed; True if signalled.

        Backends with a real signal (a doorbell, a long poll) return early on it; the watcher
        falls back to an exponential back-off between `poll_min` and `poll_max` otherwise.
        """

    def channel_next(
        self, channel: str, reader: str, after: int | None, limit: int, wait: float | None
    ) -> Batch:
        """Up to `limit` finished jobs of `channel` past `after` (None: past what `reader`
        acknowledged), waiting up to `wait` seconds (None: a while) for one (`channels.py`)."""
        raise NotImplementedError(f"{type(self).__name__} has no result channels")

    def channel_ack(self, channel: str, reader: str, seq: int) -> int:
        """Acknowledge `channel`'s jobs up to `seq` for `reader`; returns its new cursor."""
        raise NotImplementedError(f"{type(self).__name__} has no result channels")

    def poll(self, job_ids: list[int], full: bool) -> list[JobRecord]:
        """Records among `job_ids` that may have finished since the last poll (all when `full`).

        The default reads them all; a backend that can tell what finished lately reads less.
        """
        return self.get_many(job_ids)

    @abc.abstractmethod
    def store_jobs(self, items: Items) -> list[JobRecord]:
        """Store jobs in one transaction, in order (the submitter's write); raises if refused."""

    def handle(self, record: JobRecord) -> Job:
        """A new `Job` handle for `record`, watched until it finishes."""
        return Job(self, record)

    def pending(self, name: str) -> Job:
        """A handle for a job the submitter has yet to store."""
        return Job(self, None, name)

    def submit(self, items: Items) -> list[Job]:
        """Queue jobs to be stored together, in one transaction, after those queued before;
        their handles come back at once (see `submitter.py`)."""
        handles = [self.pending(spec.name) for spec, _ in items]
        with self._lock:
            if self._submitter is None:
                self._submitter = Submitter(self.store_jobs, self.submit_alone_over)
            submitter = self._submitter
        submitter.put(items, handles)
        return handles

    def store_queued(self) -> None:
        """Before waiting for a job to be stored: store what is queued in this thread, unless
        the submitter thread is storing a batch (see `store_in_waiting_thread`)."""
        submitter = self._submitter
        if submitter is not None and self.store_in_waiting_thread:
            submitter.store_here()

    def submit_and_wait(self, items: Items) -> list[Job]:
        """`submit`, then wait until the group is stored (all of it, in one transaction), or
        raise what refused it (for `map`, and for a cell that shows its widget at once)."""
        if not items:
            return []
        jobs = self.submit(items)
        jobs[0].ensure_stored()
        return jobs

    def watch(self, job: Job) -> JobRecord | None:
        """Resolve `job`'s future when it finishes (one watcher thread serves every handle).

        Returns the record of a job that finished before its handle got here: the caller
        settles the handle with it, in a thread where its callbacks may do anything.
        """
        with self._lock:
            finished_meanwhile = job.id in self._recent
            if not finished_meanwhile:
                refs = self._handles.setdefault(job.id, [])
                refs.append(weakref.ref(job))
                if len(refs) > 8:  # many short-lived handles of one running job
                    refs[:] = [ref for ref in refs if ref() is not None]
                if self._watcher is None or not self._watcher.is_alive():
                    self._start_watcher()
                else:
                    self._new_handle.set()
        if finished_meanwhile:
            # It finished between the read that made the handle and now: settle from a fresh
            # read (unless a retry made it run again, then watch it like any other).
            record = self.get(job.id)
            if record.finished:
                return record
            with self._lock:
                self._recent.pop(job.id, None)
            return self.watch(job)
        return None

    def _start_watcher(self) -> None:
        self._watcher = threading.Thread(
            target=self._watch_loop, name="jupyter-jobs-watcher", daemon=True
        )
        try:
            self._watcher.start()
        except RuntimeError:
            # Python 3.12+ starts no thread at exit, where the submitter stores what scripts
            # left queued: nobody will wait on those handles.
            self._watcher = None
            if not exiting():
                raise

    def remember_finished(self, job_ids: Iterable[int]) -> list[int]:
        """Note jobs seen finishing; returns those that have handles waiting right now.

        Under the lock `watch` takes, so every handle is either found here or finds its job in
        the remembered set when it registers: none waits for the next full poll.
        """
        with self._lock:
            waiting = []
            for job_id in job_ids:
                self._recent[job_id] = None
                self._recent.move_to_end(job_id)
                if job_id in self._handles:
                    waiting.append(job_id)
            while len(self._recent) > self.recent_limit:
                self._recent.popitem(last=False)
        return waiting

    def resolve(self, records: Iterable[JobRecord]) -> None:
        """Settle the handles of every finished record (called by the watcher and fast paths)."""
        finished = [r for r in records if r.finished]
        self.remember_finished(r.id for r in finished)
        for record in finished:
            with self._lock:
                refs = self._handles.pop(record.id, ())
            for job in _alive(refs):
                job._settle(record)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far is stored or refused; False on timeout."""
        submitter = self._submitter
        return submitter is None or submitter.flush(timeout)

    def close(self) -> None:
        """Store what was submitted, then stop the watcher (waiting for it, so it never reads
        a closed backend)."""
        if self._submitter is not None:
            self._submitter.close()
        self._closed = True
        self._wake_watcher()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(self.poll_max + 5.0)

    def _linger(self, timeout: float) -> None:
        """The watcher, following no handle, waits up to `timeout` seconds for one: `watch`
        wakes it. (`StoreBackend` waits on its doorbell instead.)"""
        self._new_handle.wait(timeout)

    def _wake_watcher(self) -> None:
        """Have a lingering watcher look again now (it is closing)."""
        self._new_handle.set()

    def _watch_loop(self) -> None:
        delay = self.poll_min
        last_full = time.monotonic()
        idle_since: float | None = None
        while not self._closed:
            full = time.monotonic() - last_full > self.full_poll_interval
            with self._lock:
                if full:  # forget handles nobody holds any more (cheap enough only now and then)
                    self._handles = {
                        i: alive
                        for i, refs in self._handles.items()
                        if (alive := [ref for ref in refs if ref() is not None])
                    }
                self._new_handle.clear()  # under the lock: a handle added later sets it again
                ids = list(self._handles)
                if not ids:
                    if idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since >= self.watcher_linger:
                        self._watcher = None
                        return
            if not ids:
                self._linger(self.watcher_linger)
                delay = self.poll_min
                continue
            idle_since = None
            signalled = self.wait_for_change(delay)
            if self._closed:
                return
            if full:
                last_full = time.monotonic()
            records = self.poll(ids, full)
            finished = [r for r in records if r.finished]
            self.resolve(finished)
            if full:  # deleted while watched: settle so no waiter hangs
                for job_id in set(ids) - {r.id for r in records}:
                    with self._lock:
                        refs = self._handles.pop(job_id, ())
                    for job in _alive(refs):
                        job._settle_missing()
            delay = self.poll_min if (finished or signalled) else min(delay * 2, self.poll_max)


def _alive(refs: Iterable[weakref.ref[Job]]) -> list[Job]:
    """The handles still held by someone."""
    return [job for job in (ref() for ref in refs) if job is not None]


class _Latch:
    """A one-shot `threading.Event` made of a bare lock, held until `set()`.

    A loop of submits makes one per job, and an Event (which builds a Condition) cost a tenth
    of the submitting process's time per job.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Open the latch (only the first call does anything)."""
        if not self._set:
            self._set = True
            self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        self._lock.release()
        return True


class Job(concurrent.futures.Future):
    """A submitted job: `result()`, `exception()`, `done()`, `cancel()`, `logs()`, `wait()`, await.

    `result()` raises `JobFailed` (with the remote type, message and traceback) when the job
    failed and `JobCancelled` when it was cancelled. The result value is loaded lazily, once.

    A handle from `submit` exists a moment before its job is stored (see `submitter.py`):
    meanwhile `done()` and `running()` say False without waiting, while `id`, `record` and the
    verbs wait until it is stored. A job that could not be stored fails its handle with the
    error that refused it: `result()` raises it, `exception()` returns it, `id` raises it.
    """

    #: The job's number in its result channel when `results()` delivered it (else None).
    channel_seq: int | None = None
    _ack: Callable[[], int] | None = None

    def __init__(self, backend: Backend, record: JobRecord | None, name: str = "") -> None:
        super().__init__()
        self._backend = backend
        self.name = record.name if record is not None else name
        self._value: Any = _NOT_LOADED
        self._value_lock = threading.Lock()
        self._refusal: JobsError | None = None
        self._known = _Latch()  # stored (it has an id) or refused
        self._cancelled = False  # settled by a cancelled end (see `cancelled`)
        if record is not None and (ended := self._bind(record)) is not None:
            self._settle(ended)

    # --- fed by the submitter (a handle from `submit` exists before its job is stored) -------
    # Both return what settles the future, if anything does yet: the submitter calls it once
    # it no longer serves the queue, because done callbacks may submit or wait on other jobs.

    def stored(self, record: JobRecord) -> Callable[[], None] | None:
        """The job is stored: the handle gets its id and is followed until it finishes."""
        ended = self._bind(record)
        return None if ended is None else functools.partial(self._settle, ended)

    def refused(self, error: JobsError) -> Callable[[], None]:
        """The job could not be stored: the handle has no id and fails with `error`."""
        self._refusal = error
        self._known.set()
        return functools.partial(self._finish, None, error)

    def ensure_stored(self) -> Job:
        """Block until the job is stored (a moment after `submit`); raise what refused it."""
        if not self._known.is_set():
            self._backend.store_queued()
        self._known.wait()
        if self._refusal is not None:
            raise self._refusal
        return self

    def _bind(self, record: JobRecord) -> JobRecord | None:
        """Tie the handle to its stored job; returns the record to settle it with if the job
        has already ended, else follows it."""
        self._id, self._record = record.id, record  # readable once `_known` is set
        self.name = record.name  # an idempotency key may have found an earlier job
        self._known.set()
        return record if record.finished else self._backend.watch(self)

    @property
    def id(self) -> int:
        """The job's id; waits until the job is stored."""
        return self.ensure_stored()._id

    # --- facts -------------------------------------------------------------------------------

    @property
    def record(self) -> JobRecord:
        """The last record seen (no request); `refresh()` fetches a new one."""
        self.ensure_stored()
        return self._record

    def refresh(self) -> JobRecord:
        """Fetch the current record, and settle the future if the job has finished."""
        self._record = self._backend.get(self.id)
        if self._record.finished and not super().done():
            self._settle(self._record)
        return self._record

    @property
    def status(self) -> Status:
        """The current status (fetched)."""
        return self.refresh().status

    @property
    def progress(self) -> Progress | None:
        """`None` until the job reports progress, then `done`, `total`, `message`."""
        return self.refresh().progress

    @property
    def attempt(self) -> int:
        return self.refresh().attempt

    def logs(self, stream: str | None = None) -> str:
        """The whole log so far, as text; or what one stream of it holds (`"main"`, a thread's
        `"thread <name>"`, a child process's `"pid <pid>"`, a `jupyter_jobs.stream` label)."""
        chunks: list[bytes] = []
        offset = 0
        while True:
            data, offset = self._backend.read_log(self.id, offset, stream)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def outputs(self) -> list[dict[str, Any]]:
        """The job's captured display outputs (nbformat v4 output dicts)."""
        return self._backend.outputs(self.id)

    # --- future protocol ---------------------------------------------------------------------
    # As dask.distributed's `Future`: `done()` and `cancelled()` read the state the backend's
    # watcher pushed (no request per call); `result()`, `exception()` and `wait()` block on it.

    def done(self) -> bool:
        """Whether the job has finished, as last pushed by the watcher (no request); False while
        being stored, True once refused."""
        return super().done() or self._refusal is not None  # refused: settled in a moment

    def running(self) -> bool:
        """Whether the job runs now (asks the store or server)."""
        if not self._known.is_set() or self.done():  # done() is True for a refused job
            return False
        return self.refresh().status is Status.RUNNING

    def cancelled(self) -> bool:
        """Whether the job ended cancelled: `result()` raises `JobCancelled` exactly then."""
        return self._cancelled

    def cancel(self) -> bool:
        """Ask for the job to be cancelled; False if it had already finished (or was refused).

        A job that is not running yet (queued, held, waiting for its time or its dependencies)
        is cancelled at once: `cancelled()` is True on return. A running job is stopped by its
        consumer (its worker is terminated, then killed after a grace period): `cancel()`
        returns True when the request is accepted, and `cancelled()` turns True once the job
        has ended cancelled (`wait()` for it). A running job that finishes before it is stopped
        keeps its outcome, and `cancelled()` stays False, as `result()` says.
        """
        self._known.wait()
        if self.done():  # finished, or refused
            return False
        try:
            self._record = self._backend.cancel(self.id)
        except IllegalTransition:  # it finished before the request arrived
            self.refresh()
            return False
        if self._record.finished:
            self._settle(self._record)
        return True

    def ack(self) -> None:
        """Acknowledge this job to the channel reader that delivered it (`results()`): once
        acknowledged, that reader, restarted, resumes after it. The iterator acknowledges a
        job when the next one is asked for; call this for the last one you handle."""
        if self._ack is None:
            raise JobsError(f"{self!r} was not delivered by results(): nothing to acknowledge")
        self._ack()

    def retry(self) -> Job:
        """Queue this failed or cancelled job again; returns a fresh handle to it."""
        return self._backend.handle(self._backend.retry(self.id))

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job finished (or `timeout` passed); returns self for chaining."""
        timeout = self._store_first(timeout)
        concurrent.futures.wait([self], timeout=timeout)
        return self

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value (for a cell: the dict of names it sent back)."""
        timeout = self._store_first(timeout)
        super().result(timeout)  # waits; raises JobFailed / JobCancelled / TimeoutError
        with self._value_lock:
            if self._value is _NOT_LOADED:
                self._value = self._decode(self._backend.result_bytes(self.id))
        return self._value

    def _store_first(self, timeout: float | None) -> float | None:
        """Store the job in this thread if it is still queued (`Backend.store_queued`: it
        would wait for that anyway); returns what is left of `timeout`."""
        if self._known.is_set():
            return timeout
        start = time.monotonic()
        self._backend.store_queued()
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - start))

    def forget_result(self) -> None:
        """Let go of the loaded value: the next `result()` loads it again, as a new copy.

        For a value whose home is now elsewhere (a cell job's names, merged into the
        notebook's namespace): a handle kept for its other uses must not keep it alive.
        """
        with self._value_lock:
            self._value = _NOT_LOADED

    def notebook(self) -> Any:
        """A notebook job's executed notebook (`nbformat.NotebookNode`), also after a failed,
        cancelled or timed-out run (as far as it ran); `ResultNotReady` while there is none."""
        return notebooks.from_result(self._backend.result_bytes(self.id))

    def _decode(self, data: bytes) -> Any:
        # A notebook job's result is its executed notebook's JSON, never a pickle. The kind never
        # changes: the record seen at submit says it, without a request for a fresh one.
        self.ensure_stored()
        if self._record.kind is Kind.NOTEBOOK:
            return notebooks.from_result(data)
        if self._record.kind is Kind.TYPED:  # JSON when the value was plain JSON
            return job_types.decode_result(data)
        return payload.loads(data)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await().__await__()

    async def _await(self) -> Any:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def wake(_: concurrent.futures.Future) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(None))

        self.add_done_callback(wake)
        await finished
        return await asyncio.to_thread(self.result)

    def __repr__(self) -> str:
        if not self._known.is_set():
            return f"<Job (being stored) {self.name!r}>"
        if self._refusal is not None:
            return f"<Job (refused) {self.name!r}: {self._refusal}>"
        r = self._record
        return f"<Job {self._id} {r.name!r} {r.status.value}>"

    # --- settling ----------------------------------------------------------------------------

    def _settle(self, record: JobRecord) -> None:
        self._record = record
        if record.status is Status.SUCCEEDED:
            self._finish(None, None)  # the value itself loads lazily in result()
        elif record.status is Status.CANCELLED:
            if not super().done():  # as `result()` will say: the first end settles it
                self._cancelled = True
            self._finish(None, JobCancelled(record.id))
        else:
            err = record.error
            failure = JobFailed(
                record.id,
                record.reason.value if record.reason else "error",
                err.type if err else "Error",
                err.message if err else "",
                err.traceback if err else "",
            )
            self._finish(None, failure)

    def _settle_missing(self) -> None:
        self._finish(None, JobNotFound(self.id))

    def _finish(self, value: Any, error: BaseException | None) -> None:
        try:
            if error is None:
                self.set_result(value)
            else:
                self.set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass  # the watcher and a caller's refresh() raced; the first one settled it
