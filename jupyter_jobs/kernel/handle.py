"""`RemoteJob`: the engine's `Job` handle, fed over HTTP, shown as a widget in a notebook.

Two things differ from the engine's handle. Waiting (`wait`, `result`, `exception`) long-polls
the server's batched result endpoint (see `HttpBackend.collect`), so a finished job is seen
within a round trip instead of at the next poller tick, and the other handles that finished
meanwhile are settled by the same answer. And in IPython the handle displays as the live
`JobWidget`. Waiting never touches the user's namespace: a `%%job` cell's names come back by
the done callback its magic registers on the handle.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ..job import Job
from ..models import Job as JobRecord
from ..models import Status
from .client import LONG_POLL, settled

if TYPE_CHECKING:
    from .client import HttpBackend


class RemoteJob(Job):
    """A job submitted through the Jupyter server (same interface as `jupyter_jobs.job.Job`)."""

    _backend: HttpBackend

    def __init__(self, backend: HttpBackend, record: JobRecord | None, name: str = "") -> None:
        self._stale = False
        self._prefetched: bytes | None = None
        self._followed = False  # `done()` or `cancel()` asked: the poller pushes its state
        super().__init__(backend, record, name)

    @property
    def backend(self) -> HttpBackend:
        """The connection this handle talks through (the widget fetches logs and outputs)."""
        return self._backend

    # --- fed by the poller -------------------------------------------------------------------

    def observe(self, record: JobRecord) -> None:
        """A fresh record from the poller; settles the future when the job has finished."""
        self._record = record
        self._stale = False
        if record.finished and not settled(self):
            self._settle(record)

    def wanted(self) -> bool:
        """Whether the poller must follow this job: only if something waits on the future
        (`add_done_callback`, `await`, `concurrent.futures.wait`/`as_completed`) or asked
        `done()`, `cancelled()` or `cancel()`. `wait()` and `result()` long-poll on their own,
        so a plain `submit(...).result()` costs no polling, and a handle nobody follows is
        settled in the thread that waits on it.
        """
        return bool(self._followed or self._waiters)

    def _follow(self) -> None:
        """Have the poller push this handle's state from now on (it skipped it until now)."""
        self._followed = True
        if self._known.is_set() and not settled(self):
            self._backend.poller.watch(self.id, self)  # again, if it let go at the job's end
            self._backend.poller.poke()

    def add_done_callback(self, fn: Any, *, follow: bool = True) -> None:
        """Call `fn(self)` once the future is settled, in the thread that settles it.

        With `follow=False` the poller does not follow the job for `fn`'s sake: `fn` runs when
        the handle is settled otherwise, mostly by a `wait()` or `result()`, in that thread.
        `%%job` registers its namespace work so: after a `wait()` on the kernel's main thread
        the cell's names are there (without one, its widget brings them between cells).
        """
        super().add_done_callback(fn)
        if follow and not self._followed:
            self._follow()

    def done(self) -> bool:
        """Whether the job has finished, as the poller last saw it (no request: the first call
        has the poller follow this job, so a loop on `done()` sees it end within a tick)."""
        if not self._followed:
            self._follow()
        return super().done()

    def cancelled(self) -> bool:
        if not self._followed:
            self._follow()
        return super().cancelled()

    def cancel(self) -> bool:
        self._follow()  # `cancelled()` must turn True without a `wait()`
        return super().cancel()

    def observe_missing(self, job_id: int) -> None:
        if not settled(self):
            self._settle_missing()

    # --- facts -------------------------------------------------------------------------------

    @property
    def record(self) -> JobRecord:
        """The last record seen; fetched again only if a long poll settled the job without one."""
        self.ensure_stored()
        if self._stale:
            self.refresh()
        return self._record

    def refresh(self) -> JobRecord:
        record = super().refresh()
        self._stale = False
        return record

    # --- waiting -----------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> RemoteJob:
        """Block until the job finished or `timeout` passed (long polls, no busy loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._known.wait(timeout):  # still on its way to the server
            return self
        if self._refusal is not None:  # its future is failed a moment after, by the submitter
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            concurrent.futures.wait([self], left)
            return self
        while not settled(self):
            # The server is asked at least once, so `result(timeout=0)` sees a finished job.
            left = LONG_POLL if deadline is None else max(0.0, deadline - time.monotonic())
            self._backend.collect(self, min(left, LONG_POLL))
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self

    def found_result(self, data: bytes) -> None:
        """The job succeeded and its result bytes came with a batch: keep them for `result()`
        (they live as long as this handle, so a dropped handle drops them)."""
        if not settled(self):
            self._prefetched = data
            self._stale = True
            self._settle(dataclasses.replace(self._record, status=Status.SUCCEEDED))

    def result(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        data, self._prefetched = self._prefetched, None
        if data is not None:
            self._backend.keep_result(self.id, data)  # taken by the load in `Job.result`
        return super().result(0 if timeout is not None else None)

    def forget_result(self) -> None:
        """Let go of the result, loaded or prefetched: `result()` fetches it from the server
        again (a cell job's widget calls this once the names are in the namespace)."""
        self._prefetched = None
        super().forget_result()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.wait(timeout)
        return super().exception(0 if timeout is not None else None)

    # --- notebook display and pickling -------------------------------------------------------

    def _ipython_display_(self) -> None:
        from .widget import show

        show(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Shipped into another job (a cell variable, an argument), a handle becomes the same job
        # looked up again there: workers inherit the server's JUPYTER_JOBS_URL.
        from .api import get

        return (get, (self.id,))
