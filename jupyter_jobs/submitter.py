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
import os
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
from .shared import Payload, parts_size

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger(__name__)

Items = Sequence[tuple[JobSpec, Payload]]

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
_exiting = False

Settle = Callable[[], None]


def flush_all(timeout: float = EXIT_WAIT) -> bool:
    """Wait until every submitter in this process has stored what it holds; False if some
    did not within `timeout` (the runner calls this after each job, before it reports)."""
    deadline = time.monotonic() + timeout
    return all([s.flush(max(0.0, deadline - time.monotonic())) for s in list(_live)])


def exiting() -> bool:
    """Whether the interpreter is exiting (the exit hook below has started)."""
    return _exiting


@atexit.register
def _store_the_rest() -> None:
    """At interpreter exit, store what is still queued: a script's last submits are not lost."""
    global _exiting
    _exiting = True
    if not flush_all(EXIT_WAIT):
        left = sum(s.queued() for s in list(_live))
        log.warning("exiting with %d submitted jobs not stored after %.0f s", left, EXIT_WAIT)


def _after_fork_in_child() -> None:
    for submitter in list(_live):
        submitter._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class Group:
    """Jobs submitted together (one `submit`, or one `map`): stored in one transaction.

    `size` is its payloads' own bytes; the functions they share (`shared.py`) go once per
    batch, whatever the number of groups that call them."""

    items: Items
    handles: list[Job]
    size: int
    functions: dict[str, int]

    @property
    def weight(self) -> int:
        """The memory it holds, its functions included."""
        return self.size + sum(self.functions.values())


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
        self._sending: list[Group] = []  # the batch being stored
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None  # the one thread serving the queue

    def put(self, items: Items, handles: list[Job]) -> None:
        """Queue one group; its handles are stored or refused later, in submission order."""
        group = Group(items, handles, *parts_size(payload for _, payload in items))
        with self._cond:
            self._cond.wait_for(self._has_room)
            if self._closed:
                raise JobsError("this queue or connection was closed: nothing more is submitted")
            self._queue.append(group)
            self._queued_items += len(items)
            self._queued_bytes += group.weight
            if self._thread is None:
                try:
                    self._start_thread()
                except BaseException:  # nothing will store it: the caller hears so, now
                    self._queue.pop()
                    self._queued_items -= len(items)
                    self._queued_bytes -= group.weight
                    raise
            self._cond.notify_all()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="jupyter-jobs-submitter", daemon=True)
        thread.start()
        self._thread = thread
        _live.add(self)

    def _has_room(self) -> bool:
        return (
            self._closed
            or not self._queue
            or (self._queued_bytes < QUEUE_BYTES and self._queued_items < QUEUE_ITEMS)
        )

    def queued(self) -> int:
        """Jobs not stored yet (queued or being stored)."""
        with self._cond:
            return self._queued_items + sum(len(g.items) for g in self._sending)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was stored or refused; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._sending, timeout)

    def close(self, timeout: float = EXIT_WAIT) -> None:
        """Send what is queued, then stop the thread (further `put`s raise)."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        _live.discard(self)

    # --- the thread --------------------------------------------------------------------------

    def _has_work(self) -> bool:
        # Nothing is taken while a batch is being stored, by this thread or a caller's: order.
        return bool(self._queue or self._closed) and not self._sending

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                ready = self._cond.wait_for(self._has_work, IDLE_EXIT)
                if self._thread is not me:
                    return  # a forked child's copy of the state: not ours
                if not ready and self._queue:
                    continue  # behind a batch a caller stores (`store_here`): not idle
                if not self._queue:
                    self._thread = None
                    return
                self._sending = self._take()
                self._queued_items -= sum(len(group.items) for group in self._sending)
                self._queued_bytes -= sum(group.weight for group in self._sending)
                self._cond.notify_all()  # room for a waiting `put`
            settles: list[Settle] = []
            try:
                self._deliver(self._sending, settles)
            finally:
                with self._cond:
                    self._sending = []
                    if settles:  # hand the queue over before running anyone's callbacks
                        self._thread = None
                        self._start_successor()
                    self._cond.notify_all()
            if settles:
                for settle in settles:
                    settle()
                return

    def store_here(self) -> None:
        """Store what is queued now in the calling thread, unless a batch is being stored
        already (the submitter's thread then stores the rest, as usual).

        For a caller about to wait until its job is stored (`result()` right after `submit`):
        otherwise its job waits for the submitter's thread to wake up, often on the other CPU,
        which takes tens of microseconds on a VM, more under load. The batch, its order and
        its handles' fate are what that thread would have made of them."""
        with self._cond:
            if self._sending or not self._queue:
                return
            batch = self._sending = self._take()
            self._queued_items -= sum(len(group.items) for group in batch)
            self._queued_bytes -= sum(group.size for group in batch)
            self._cond.notify_all()  # room for a waiting `put`
        settles: list[Settle] = []
        try:
            self._deliver(batch, settles)
        finally:
            with self._cond:
                self._sending = []
                self._cond.notify_all()  # the thread may take the next batch
        for settle in settles:
            settle()

    def _start_successor(self) -> None:
        if not self._queue:
            return
        try:
            self._start_thread()
        except RuntimeError as exc:  # no thread can store them: say so on each handle
            self._fail_now(self._drop_queue(), JobsError(f"no thread to store the job: {exc}"))

    def _forked(self) -> None:
        """In a forked child: the parent's thread is gone, and what it held is the parent's to
        store; this copy of those handles fails, so that nothing here waits on them."""
        groups = [*self._sending, *self._drop_queue()]
        self._cond = threading.Condition()
        self._sending, self._thread = [], None
        error = JobsError(
            "this process was forked while the job was being stored: the parent "
            "process stores it, and only the parent's handle follows it"
        )
        self._fail_now(groups, error)

    def _drop_queue(self) -> list[Group]:
        groups, self._queue = list(self._queue), deque()
        self._queued_items = self._queued_bytes = 0
        return groups

    def _fail_now(self, groups: list[Group], error: JobsError) -> None:
        for settle in self._refuse(groups, error):
            settle()

    def _take(self) -> list[Group]:
        """The next batch: the first group, and the small groups behind it that fit (a
        function the batch shares counts once)."""
        batch = [self._queue.popleft()]
        if batch[0].size > self._alone_over:
            return batch
        items, size = len(batch[0].items), batch[0].weight
        functions = dict(batch[0].functions)
        while self._queue:
            group = self._queue[0]
            if group.size > self._alone_over:
                break
            new = {k: v for k, v in group.functions.items() if k not in functions}
            grown = size + group.size + sum(new.values())
            if items + len(group.items) > BATCH_ITEMS or grown > BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
            items += len(group.items)
            size = grown
            functions.update(new)
        return batch

    def _deliver(self, batch: list[Group], settles: list[Settle]) -> None:
        """Store a batch and bind its handles: every handle ends stored or refused. What
        settles a handle's future (its callbacks run then) is appended to `settles`."""
        items = [item for group in batch for item in group.items]
        try:
            records = self._store(items)
        except REFUSED_UNWRITTEN as exc:
            if len(batch) == 1:
                settles += self._refuse(batch, exc)
            else:  # one group was refused, and the transaction with it: find which
                for group in batch:
                    self._deliver([group], settles)
            return
        except JobsError as exc:  # unreachable, or failed maybe after writing: not sent again
            settles += self._refuse(batch, exc)
            return
        except Exception as exc:  # a bug must not leave handles waiting: each one says so
            error = JobsError(f"submitting failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            settles += self._refuse(batch, error)
            return
        if len(records) != len(items):
            error = JobsError(f"{len(records)} of {len(items)} jobs were stored")
            settles += self._refuse(batch, error)
            return
        handles = [handle for group in batch for handle in group.handles]
        for handle, record in zip(handles, records, strict=True):
            try:
                settle = handle.stored(record)
            except Exception:  # the job is stored and runs; the other handles still bind
                log.exception("job %s was stored, but its handle cannot follow it", record.id)
                continue
            if settle is not None:
                settles.append(settle)

    @staticmethod
    def _refuse(batch: list[Group], error: JobsError) -> list[Settle]:
        return [handle.refused(error) for group in batch for handle in group.handles]
