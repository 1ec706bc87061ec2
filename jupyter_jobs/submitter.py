"""Store submitted jobs in the background, in order, batching what piles up meanwhile.

Why: a submit that waited for its own write cost a transaction each (a commit, and a turn on
SQLite's write lock against the consumer), and through the Jupyter server a whole authenticated
request each (about 2.5 ms here, most of it jupyter_server's per-request work). `submit` now
serializes and checks its job in the caller's thread, hands it to this one thread and returns;
the thread stores whatever has queued up since its last write in one transaction (and, from a
kernel, one request). A lone submit still goes at once, alone. This is group commit, and what
`concurrent.futures` executors, Dask and Ray do with their submits.

What does not change: jobs are stored in the order they were submitted; a handle's `id` exists
only once its job is stored (DESIGN.md's "once submit returns an id, the job survives"); every
handle ends either stored or refused with the error that refused it, never left waiting; what is
queued when the interpreter exits is stored first. Groups (`map()`, one transaction) are never
split; a batch refused because of one group is stored again group by group, so only that
group's handles fail.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidRequest, JobNotFound, JobsError, PayloadTooLarge
from .models import Job as JobRecord
from .models import JobSpec

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger(__name__)

Items = Sequence[tuple[JobSpec, bytes]]

#: Jobs in one batch at most (the server takes up to 10,000 in a request).
BATCH_ITEMS = 1000
#: Payload bytes in one batch at most; a group above `alone_over` goes on its own.
BATCH_BYTES = 4 * 2**20
#: Payload bytes and jobs the queue holds at most; beyond, `put` waits for room (a loop that
#: submits faster than the store takes its jobs must not fill memory).
QUEUE_BYTES = 64 * 2**20
QUEUE_ITEMS = 20_000
#: Refusals raised before anything is written (a bad spec, an unknown job in `after=`, a
#: payload over the limit): only these make a batch be stored again, group by group.
REFUSED_UNWRITTEN = (InvalidRequest, JobNotFound, PayloadTooLarge)
#: How long interpreter exit waits for submits still on their way.
EXIT_WAIT = 30.0
#: Seconds the thread waits for more work before it ends (the next submit starts another).
IDLE_EXIT = 2.0

#: Submitters that may hold queued jobs, for the exit hook (weak: an idle one may go away).
_live: weakref.WeakSet[Submitter] = weakref.WeakSet()


@atexit.register
def _store_the_rest() -> None:
    """At interpreter exit, store what is still queued: a script's last submits are not lost."""
    deadline = time.monotonic() + EXIT_WAIT
    for submitter in list(_live):
        submitter.flush(max(0.0, deadline - time.monotonic()))


@dataclass
class Group:
    """Jobs submitted together (one `submit`, or one `map`): stored in one transaction."""

    items: Items
    handles: list[Job]
    size: int


class Submitter:
    """One background thread that stores queued groups with `store(items) -> records`.

    `store` gets the items of one or more whole groups and returns their records in order, or
    raises; groups whose payloads are over `alone_over` bytes are always stored on their own
    (so they can go as multipart instead of base64 in JSON).
    """

    def __init__(
        self, store: Callable[[Items], list[JobRecord]], alone_over: int = BATCH_BYTES
    ) -> None:
        self._store = store
        self._alone_over = alone_over
        self._queue: deque[Group] = deque()
        self._queued_items = 0
        self._queued_bytes = 0
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, items: Items, handles: list[Job]) -> None:
        """Queue one group; its handles are stored or refused later, in submission order."""
        group = Group(items, handles, sum(len(payload) for _, payload in items))
        with self._cond:
            self._cond.wait_for(self._has_room)
            if self._closed:
                raise JobsError("this queue or connection was closed: nothing more is submitted")
            self._queue.append(group)
            self._queued_items += len(items)
            self._queued_bytes += group.size
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jupyter-jobs-submitter", daemon=True
                )
                self._thread.start()
                _live.add(self)
            self._cond.notify_all()

    def _has_room(self) -> bool:
        return (
            self._closed
            or not self._queue
            or (self._queued_bytes < QUEUE_BYTES and self._queued_items < QUEUE_ITEMS)
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was stored or refused; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = EXIT_WAIT) -> None:
        """Send what is queued, then stop the thread (further `put`s raise)."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        _live.discard(self)

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed, IDLE_EXIT)
                if not self._queue:
                    self._thread = None
                    return
                batch = self._take()
                self._queued_items -= sum(len(group.items) for group in batch)
                self._queued_bytes -= sum(group.size for group in batch)
                self._busy = True
                self._cond.notify_all()  # room for a waiting `put`
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _take(self) -> list[Group]:
        """The next batch: the first group, and the small groups behind it that fit."""
        batch = [self._queue.popleft()]
        if batch[0].size > self._alone_over:
            return batch
        items, size = len(batch[0].items), batch[0].size
        while self._queue:
            group = self._queue[0]
            if group.size > self._alone_over:
                break
            if items + len(group.items) > BATCH_ITEMS or size + group.size > BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
            items += len(group.items)
            size += group.size
        return batch

    def _deliver(self, batch: list[Group]) -> None:
        """Store a batch and bind its handles; every handle ends stored or refused."""
        items = [item for group in batch for item in group.items]
        try:
            records = self._store(items)
        except REFUSED_UNWRITTEN as exc:
            if len(batch) == 1:
                self._refuse(batch, exc)
            else:  # one group was refused, and the transaction with it: find which
                for group in batch:
                    self._deliver([group])
            return
        except JobsError as exc:  # unreachable, or failed maybe after writing: not sent again
            self._refuse(batch, exc)
            return
        except Exception as exc:  # a bug must not leave handles waiting: each one says so
            error = JobsError(f"submitting failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._refuse(batch, error)
            return
        if len(records) != len(items):
            self._refuse(batch, JobsError(f"{len(records)} of {len(items)} jobs were stored"))
            return
        handles = [handle for group in batch for handle in group.handles]
        for handle, record in zip(handles, records, strict=True):
            try:
                handle.stored(record)
            except Exception:  # the job is stored and runs; the other handles still bind
                log.exception("job %s was stored, but its handle cannot follow it", record.id)

    @staticmethod
    def _refuse(batch: list[Group], error: JobsError) -> None:
        for group in batch:
            for handle in group.handles:
                handle.refused(error)
