"""One poller per kernel: a background thread that asks the server about every watched job at once.

Widgets and unfinished `Job` handles register here. Each tick is ONE batched
`GET /jobs/api/status?ids=...` request, whatever the number of jobs; the tick interval starts
short and doubles while nothing changes (0.2 s -> 2 s, or 0.5 s while a future is waited on),
drops back as soon as something moves, and the thread ends once no job is watched any more.
A widget keeps following a failed or cancelled job (a retry from the sidebar may run it again):
while only finished jobs are watched, the ticks slow down to one every 5 s (`dormant_delay`).
Handles nobody waits on through their future are not asked about at all (`wanted`): a script
that submits thousands of jobs and calls `result()` (which long-polls) costs no polling.

The thread runs beside the kernel's main thread, so widgets keep moving while the kernel
executes another cell.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import JobsError
from ..models import Job as JobRecord

log = logging.getLogger(__name__)


class Watcher(Protocol):
    """What the poller feeds: a widget or a `RemoteJob` handle.

    A watcher may also have `wanted() -> bool`: False means nobody needs news of it right now
    (a handle nobody waits on through its future), so the tick leaves its job out.
    """

    def observe(self, record: JobRecord) -> None: ...

    def observe_missing(self, job_id: int) -> None: ...


def signature(record: JobRecord) -> tuple[Any, ...]:
    """What counts as a change worth polling faster for (not the mere passing of time)."""
    p = record.progress
    return (
        record.status,
        record.attempt,
        record.cancel_requested,
        record.log_size,
        (p.done, p.total, p.message) if p else None,
    )


def next_delay(delay: float, changed: bool, low: float, high: float) -> float:
    """Back to `low` when something changed, else double up to `high`."""
    return low if changed else min(delay * 2, high)


def _wants(watcher: Any) -> bool:
    wanted = getattr(watcher, "wanted", None)
    return wanted is None or bool(wanted())


class Poller:
    """Polls the jobs its watchers care about; watchers are held weakly and dropped once their
    job has finished (a watcher that wants more, e.g. after a retry, registers again)."""

    def __init__(
        self,
        fetch: Callable[[list[int]], list[JobRecord]],
        min_delay: float = 0.2,
        max_delay: float = 2.0,
        blocked_delay: float = 0.5,
        dormant_delay: float = 5.0,
    ) -> None:
        self._fetch = fetch
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.blocked_delay = blocked_delay
        self.dormant_delay = dormant_delay
        self._watchers: dict[int, weakref.WeakSet[Any]] = {}
        self._seen: dict[int, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._tick = threading.Condition()
        self._ticks = 0
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.requests = 0  # batched status requests made (tests and benchmarks read it)
        self.error: JobsError | None = None  # the last failed tick's error, None once it works

    def watch(self, job_id: int, watcher: Watcher) -> None:
        """Feed `watcher` the records of `job_id` until the job finishes."""
        with self._lock:
            self._watchers.setdefault(int(job_id), weakref.WeakSet()).add(watcher)
            self._stopped = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jupyter-jobs-poller", daemon=True
                )
                self._thread.start()

    def poke(self) -> None:
        """Tick now (after a submit, cancel or retry the user expects to see it at once)."""
        self._wake.set()

    def watched(self) -> list[int]:
        with self._lock:
            return [i for i, ws in self._watchers.items() if len(ws)]

    def _wanted(self) -> tuple[list[int], bool]:
        """The ids this tick asks about (a watcher wants news), and whether a future is among
        them: someone blocked on a result should not wait out the widgets' slowest back-off."""
        with self._lock:
            watchers = {i: list(ws) for i, ws in self._watchers.items()}
        ids, blocked = [], False
        for job_id, ws in watchers.items():
            wants = [w for w in ws if _wants(w)]
            if wants:
                ids.append(job_id)
                blocked = blocked or any(hasattr(w, "wanted") for w in wants)
        return ids, blocked

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def wait_tick(self, timeout: float) -> bool:
        """Block until the next tick that saw a change, or `timeout`; True if one came."""
        with self._tick:
            ticks = self._ticks
            return self._tick.wait_for(lambda: self._ticks != ticks, timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        delay = self.min_delay
        while True:
            with self._lock:
                self._watchers = {i: ws for i, ws in self._watchers.items() if len(ws)}
                ids = list(self._watchers)
                if self._stopped or not ids:
                    self._thread = None
                    self._seen = {i: s for i, s in self._seen.items() if i in self._watchers}
                    return
            wanted, blocked = self._wanted()
            changed = self._tick_once(wanted) if wanted else False
            high = min(self.max_delay, self.blocked_delay) if blocked else self.max_delay
            if not blocked and self._dormant(wanted):
                high = max(high, self.dormant_delay)
            delay = next_delay(delay, changed, self.min_delay, high)
            self._wake.wait(delay)
            self._wake.clear()

    def _dormant(self, ids: list[int]) -> bool:
        """Whether every job asked about had finished at the last look: only a retry from
        elsewhere can change them, and that need not show within two seconds."""
        seen = [self._seen.get(i) for i in ids]
        return bool(seen) and all(s is not None and s[0].finished for s in seen)

    def _tick_once(self, ids: list[int]) -> bool:
        """One batched request, dispatched to the watchers; True if anything changed."""
        try:
            records = self._fetch(ids)
        except Exception as exc:
            # The server may be restarting: say so to the widgets and keep trying, slowly.
            if not isinstance(exc, JobsError):
                log.exception("jupyter_jobs: polling the server failed")
                exc = JobsError(f"polling the server failed: {exc!r}")
            self.error = exc
            self._dispatch_error(ids, exc)
            return False
        self.requests += 1
        recovered, self.error = self.error is not None, None
        changed = recovered
        for record in records:
            sig = signature(record)
            if self._seen.get(record.id) != sig:
                self._seen[record.id] = sig
                changed = True
            self._dispatch(record.id, lambda w, r=record: w.observe(r), record.finished)
        for job_id in set(ids) - {r.id for r in records}:
            changed = True
            self._dispatch(job_id, lambda w, i=job_id: w.observe_missing(i), True)
        if changed:
            with self._tick:
                self._ticks += 1
                self._tick.notify_all()
        return changed

    def _dispatch(self, job_id: int, call: Callable[[Any], None], final: bool) -> None:
        """Feed the watchers of `job_id` that want news (a handle nobody follows is settled by
        whoever waits on it, in that thread; at the end it lets go, and watches again if
        followed later)."""
        with self._lock:
            watchers = list(self._watchers.get(job_id, ()))
            if final:
                self._watchers.pop(job_id, None)
        again = []
        for watcher in filter(_wants, watchers):
            try:
                call(watcher)
            except JobsError as exc:
                # The server failed a request the watcher made (its outputs, its log): the
                # job's last word must not be lost to a blip, so it is told again next tick.
                log.warning("jupyter_jobs: updating job %s failed, will retry: %s", job_id, exc)
                again.append(watcher)
            except Exception:  # a broken widget must not stop the others' updates
                log.exception("jupyter_jobs: updating %r for job %s failed", watcher, job_id)
        if final and again:
            with self._lock:
                for watcher in again:
                    self._watchers.setdefault(job_id, weakref.WeakSet()).add(watcher)

    def _dispatch_error(self, ids: list[int], exc: JobsError) -> None:
        for job_id in ids:
            with self._lock:
                watchers = list(self._watchers.get(job_id, ()))
            for watcher in watchers:
                observe_error = getattr(watcher, "observe_error", None)
                if observe_error is not None:
                    observe_error(exc)
