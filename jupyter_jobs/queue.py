"""`JobQueue`: the engine's Python API, the `Jobs` front end (`front.py`) over a store file.

`StoreBackend` is what differs from the kernel's `jj.*` (`kernel/client.py`'s `HttpBackend`):
it reads and acts on the store in this process. Jobs submitted here run wherever a consumer
serves the same database: the Jupyter server, a `jupyter jobs consumer` process, or a consumer
this object starts in a background thread (`start_consumer()`, for scripts and tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import shared, typed_run
from .channels import Batch
from .consumer import Consumer, consumer_is_alive
from .errors import InvalidRequest, JobsError
from .executors.local import LocalExecutor
from .front import Jobs
from .job import Backend, Job
from .job_types import JobType
from .models import Change, JobSpec, JobUser, Page
from .models import Job as JobRecord
from .schedules import Schedule, ScheduleSpec
from .store import Store
from .submitter import EXIT_WAIT, Items
from .type_registry import TypeRegistry
from .worker_info import WorkerInfo


class StoreBackend(Backend):
    """`Job` handles backed by a store in this process; woken by its doorbell and subscription.

    The jobs it stores belong to `user` (default: the OS user running this process)."""

    store_in_waiting_thread = True  # a local transaction

    def __init__(self, store: Store, user: JobUser | None = None) -> None:
        super().__init__()
        self.store = store
        self.user = JobUser.of_process() if user is None else user
        self._listener = None
        self._mark = store.finished_since(None)[1]
        self._unsubscribe = store.subscribe(self._on_changes)
        # Installed types are imported here, on first need: this is the user's own process.
        self.types = TypeRegistry(store, typed_run.describe_installed)

    def _on_changes(self, changes: list[Change]) -> None:
        self.resolve(c.job for c in changes if c.what == "transition" and c.job.finished)

    def store_jobs(self, items: Items) -> list[JobRecord]:
        # The store takes bytes: a framed payload's parts are joined, once, as a pickle was.
        return self.store.enqueue_many(
            [(spec, shared.joined(payload)) for spec, payload in items], self.user
        )

    def get(self, job_id: int) -> JobRecord:
        return self.store.get(job_id)

    def get_many(self, job_ids: Iterable[int]) -> list[JobRecord]:
        return self.store.get_many(job_ids)

    def result_bytes(self, job_id: int) -> bytes:
        return self.store.result(job_id)

    def outputs(self, job_id: int) -> list[dict[str, Any]]:
        return json.loads(self.store.outputs(job_id))

    def read_log(
        self, job_id: int, offset: int = 0, stream: str | None = None
    ) -> tuple[bytes, int]:
        if stream is None:
            return self.store.read_log(job_id, offset)
        found = self.store.read_log_streams(job_id, offset, stream=stream)[1]
        return found.data, found.next_offset

    def cancel(self, job_id: int) -> JobRecord:
        return self.store.request_cancel(job_id)

    def retry(self, job_id: int) -> JobRecord:
        return self.store.retry(job_id)

    def release(self, job_id: int) -> JobRecord:
        return self.store.release(job_id)

    def delete(self, job_id: int) -> None:
        self.store.delete(job_id)

    def peek(self) -> JobRecord | None:
        return self.store.peek()

    def stats(self, type: str | None = None) -> dict[str, Any]:
        return self.store.overview(type=type)

    def workers(self) -> list[WorkerInfo]:
        return self.store.workers(consumer_is_alive)

    def drain_worker(self, worker_id: str) -> WorkerInfo:
        return self.store.request_drain(worker_id, consumer_is_alive)

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
        user = self.user.username if mine else user
        return self.store.query(
            status=status, owner=owner, q=q, limit=limit, cursor=cursor, user=user, type=type
        )

    def poll(self, job_ids: list[int], full: bool) -> list[JobRecord]:
        finished, self._mark = self.store.finished_since(self._mark)
        if full or finished is None:
            return self.get_many(job_ids)
        return self.get_many(self.remember_finished(finished))

    def wait_for_change(self, timeout: float) -> bool:
        # Only other stores ring it: this store's own changes arrive through the subscription.
        if self._listener is None:  # rings before this were missed: the short wait stands
            self._listener = self.store.listen()
        elif not self._listener.polling:
            # Every job that ends rings (or, ended here, is pushed): the timeout is only the
            # fallback, and a short one would read the store for nothing while a job runs.
            timeout = max(timeout, self.poll_max)
        return self._listener.wait(timeout)

    def _linger(self, timeout: float) -> None:
        """Waits on the doorbell rather than for a handle: registering one (a submit) then
        wakes no thread, at the moment the consumer needs a CPU to claim the job; the ring of
        the job that ends does. Each ring is followed by a look at what finished, which settles
        the handles registered meanwhile, or lets one registered next find its job finished
        (`watch`). A polling listener would see rings late: it waits for a handle as usual."""
        listener = self._listener
        if listener is None or listener.polling:
            super()._linger(timeout)
        elif listener.wait(timeout) and not self._closed:
            with self._lock:
                ids = list(self._handles)
            self.resolve(self.poll(ids, full=False))

    def _wake_watcher(self) -> None:
        super()._wake_watcher()
        if self._listener is not None:
            self._listener.wake()

    def channel_next(
        self, channel: str, reader: str, after: int | None, limit: int, wait: float | None
    ) -> Batch:
        batch = self.store.channel_next(channel, reader, after, limit)
        if batch.deliveries or wait == 0:
            return batch
        # Registered before the next read, so a job that ends in between still wakes us: this
        # process's commits through the subscription, other processes' through the doorbell.
        with self.store.listen() as listener:

            def on_changes(changes: list[Change]) -> None:
                if any(c.job.channel == channel and c.job.finished for c in changes):
                    listener.wake()

            unsubscribe = self.store.subscribe(on_changes)
            try:
                deadline = None if wait is None else time.monotonic() + wait
                while True:
                    batch = self.store.channel_next(channel, reader, after, limit)
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if batch.deliveries or left == 0:
                        return batch
                    listener.wait(left)
            finally:
                unsubscribe()

    def channel_ack(self, channel: str, reader: str, seq: int) -> int:
        return self.store.channel_ack(channel, reader, seq)

    def add_schedule(self, spec: ScheduleSpec, payload: bytes | None, owner: str) -> Schedule:
        if spec.target["kind"] == "typed":  # its parameters checked now, as a submit's
            payload = self.types.schedule_payload(spec)
        elif payload is None:  # a notebook: snapshotted now, as a submit would
            path = Path(spec.target["path"]).expanduser()
            try:
                payload = path.read_bytes()
            except OSError as exc:
                raise InvalidRequest(f"target.path: cannot read {path}: {exc}") from None
        return self.store.add_schedule(spec, owner, payload, user=self.user)

    def schedules(self) -> list[Schedule]:
        return self.store.schedules()

    def get_schedule(self, schedule_id: int) -> Schedule:
        return self.store.get_schedule(schedule_id)

    def update_schedule(self, schedule_id: int, changes: dict[str, Any]) -> Schedule:
        return self.store.update_schedule(schedule_id, changes)

    def delete_schedule(self, schedule_id: int) -> None:
        self.store.delete_schedule(schedule_id)

    def submit_typed(self, spec: JobSpec) -> Job:
        """Checked here, at the call; stored in the background as `submit`'s jobs are."""
        return self.submit([self.types.prepare(spec)])[0]

    def register_type(self, job_type: JobType, functions: bytes) -> JobType:
        return self.types.register(job_type, functions)

    def job_types(self) -> list[JobType]:
        return self.types.all()

    def get_job_type(self, name: str) -> JobType:
        return self.types.get(name)

    def delete_job_type(self, name: str) -> None:
        self.types.delete(name)

    def close(self) -> None:
        super().close()
        self._unsubscribe()
        if self._listener is not None:
            self._listener.close()


class ConsumerThread:
    """A `Consumer` on its own event loop in a background thread (scripts and tests)."""

    def __init__(self, store: Store, max_workers: int | None, **options: Any) -> None:
        self._store = store
        self._max_workers = max_workers or os.cpu_count() or 1
        self._options = options
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.consumer: Consumer | None = None
        self._thread = threading.Thread(target=self._main, name="jupyter-jobs-consumer")
        self._thread.daemon = True
        self._thread.start()
        if not self._ready.wait(60):
            raise JobsError("the consumer did not start within 60 s")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            options = {"owns_loop": True, **self._options}  # its loop serves it alone
            self.consumer = Consumer(self._store, self._executor, **options)
            await self.consumer.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await self.consumer.stop()

    def _executor(self, consumer: Consumer) -> LocalExecutor:
        """Workers that follow the consumer's settings, as the server's do (`JobsApp`)."""
        return LocalExecutor(
            consumer,
            self._max_workers,
            progress_interval=consumer.progress_interval,
            kill_grace=consumer.kill_grace,
        )

    def stop(self, timeout: float = 60.0) -> None:
        """End running jobs (recorded interrupted) and stop the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise JobsError(f"the consumer did not stop within {timeout} s")


class JobQueue(Jobs):
    """Submit and follow jobs stored in one SQLite file: the `Jobs` front end over the store.

    >>> with JobQueue("jobs.db") as q:
    ...     q.start_consumer()
    ...     q.submit(pow, 2, 10).result()
    1024

    Its jobs and schedules belong to `user` (default: the OS user running it, as
    `jupyter jobs list --mine` takes it) and come from `owner` (default `script:<pid>`).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        owner: str | None = None,
        user: str | None = None,
        **store_options: Any,
    ) -> None:
        self.store = Store(path, **store_options)
        self.owner = owner or f"script:{os.getpid()}"
        self.user = JobUser(user, user) if user is not None else JobUser.of_process()
        super().__init__(StoreBackend(self.store, self.user), lambda: self.owner)
        self._consumer: ConsumerThread | None = None

    def stats(self, *, type: str | None = None) -> dict[str, Any]:
        """`Jobs.stats`, with this queue's consumer's executor when it runs one."""
        numbers = super().stats(type=type)
        consumer = self._consumer.consumer if self._consumer is not None else None
        if consumer is not None:
            numbers.update(executor=consumer.executor.name)
            numbers.update(max_workers=consumer.executor.max_workers)
        return numbers

    # --- running -----------------------------------------------------------------------------

    def start_consumer(self, max_workers: int | None = None, **options: Any) -> ConsumerThread:
        """Run a consumer for this store in a background thread until `close()`."""
        if self._consumer is None:
            self._consumer = ConsumerThread(self.store, max_workers, **options)
        return self._consumer

    def close(self) -> None:
        """Store what was submitted, stop the consumer this queue started (if any) and
        release the store."""
        self.backend.flush(EXIT_WAIT)
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None
        self.backend.close()
        self.store.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
