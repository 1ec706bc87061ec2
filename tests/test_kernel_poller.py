"""The kernel's one poller: one batched fetch per tick, back-off, and it stops when all finish.

The fetch here reads records from a dict (the poller is only the loop; the real server and
`/status?ids=` are exercised by tests/integration/test_kernel_api.py).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import threading

from jupyter_jobs.errors import ServerUnavailable
from jupyter_jobs.kernel.poller import Poller, next_delay
from jupyter_jobs.models import Job, Kind, Progress, Status

from waiting import wait_until


def record(job_id: int, status: Status = Status.RUNNING, **fields) -> Job:
    return Job(id=job_id, name=f"j{job_id}", kind=Kind.FUNCTION, owner="o", status=status, **fields)


class Server:
    """Records by id, and every fetch made (each one is a list of ids)."""

    def __init__(self, records: list[Job]) -> None:
        self.records = {r.id: r for r in records}
        self.fetches: list[list[int]] = []
        self.failing: Exception | None = None
        self.lock = threading.Lock()

    def fetch(self, ids: list[int]) -> list[Job]:
        with self.lock:
            self.fetches.append(sorted(ids))
            if self.failing is not None:
                raise self.failing
            return [self.records[i] for i in ids if i in self.records]

    def set(self, job_id: int, **changes) -> None:
        with self.lock:
            self.records[job_id] = dataclasses.replace(self.records[job_id], **changes)


class Watcher:
    def __init__(self) -> None:
        self.seen: list[Job] = []
        self.missing: list[int] = []
        self.errors: list[Exception] = []

    def observe(self, r: Job) -> None:
        self.seen.append(r)

    def observe_missing(self, job_id: int) -> None:
        self.missing.append(job_id)

    def observe_error(self, exc: Exception) -> None:
        self.errors.append(exc)


def test_back_off_doubles_while_nothing_changes_and_resets_on_a_change():
    delay = 0.2
    steps = []
    for changed in (False, False, False, False, False, True, False):
        delay = next_delay(delay, changed, 0.2, 2.0)
        steps.append(delay)
    assert steps == [0.4, 0.8, 1.6, 2.0, 2.0, 0.2, 0.4]


def test_one_fetch_per_tick_for_every_watcher_then_the_thread_stops():
    server = Server([record(i) for i in range(1, 21)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    watchers = [Watcher() for _ in range(20)]
    for i, w in enumerate(watchers, start=1):
        poller.watch(i, w)
    registered = len(server.fetches)
    wait_until(lambda: all(w.seen for w in watchers), timeout=10)
    for i in range(1, 21):
        server.set(i, status=Status.SUCCEEDED)
    wait_until(lambda: not poller.running, timeout=10)
    assert all(w.seen[-1].status is Status.SUCCEEDED for w in watchers)
    # every fetch asks about every job still watched (never one request per job): once all
    # were registered, the sets only shrink, as finished jobs drop out
    fetches = [set(ids) for ids in server.fetches[registered:]]
    assert fetches[0] == set(range(1, 21))
    assert all(later <= earlier for earlier, later in itertools.pairwise(fetches))
    assert poller.requests == len(server.fetches)


def test_a_job_that_disappears_is_reported_missing_and_dropped():
    server = Server([record(1)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    w = Watcher()
    poller.watch(1, w)
    wait_until(lambda: w.seen, timeout=10)
    del server.records[1]
    wait_until(lambda: w.missing == [1], timeout=10)
    wait_until(lambda: not poller.running, timeout=10)


def test_server_errors_reach_the_watchers_and_polling_recovers():
    server = Server([record(1)])
    server.failing = ServerUnavailable("server restarting")
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    w = Watcher()
    poller.watch(1, w)
    wait_until(lambda: w.errors, timeout=10)
    assert isinstance(poller.error, ServerUnavailable)
    server.failing = None
    server.set(1, status=Status.FAILED)
    wait_until(lambda: w.seen and w.seen[-1].status is Status.FAILED, timeout=10)
    assert poller.error is None
    wait_until(lambda: not poller.running, timeout=10)


def test_a_progress_change_ends_wait_tick():
    server = Server([record(1)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    watcher = Watcher()
    poller.watch(1, watcher)
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(poller.wait_tick(30)))
    waiter.start()
    step = iter(range(1, 10**6))

    def moved() -> bool:  # keep reporting progress until the waiter has seen a tick
        server.set(1, progress=Progress(next(step), 10**6))
        return bool(woken)

    wait_until(moved, timeout=10)
    waiter.join(10)
    assert woken == [True]
    server.set(1, status=Status.SUCCEEDED)
    wait_until(lambda: not poller.running, timeout=10)


def test_watchers_are_held_weakly():
    server = Server([record(1), record(2)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    kept, dropped = Watcher(), [Watcher()]
    poller.watch(1, kept)
    poller.watch(2, dropped[0])
    wait_until(lambda: kept.seen and dropped[0].seen, timeout=10)
    dropped.clear()
    gc.collect()
    wait_until(lambda: server.fetches[-1] == [1], timeout=10)
    assert poller.watched() == [1]
    server.set(1, status=Status.SUCCEEDED)
    wait_until(lambda: not poller.running, timeout=10)


class Handle(Watcher):
    """A watcher that may not want news (a job handle nobody waits on)."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_on = False

    def wanted(self) -> bool:
        return self.waited_on


def test_jobs_nobody_waits_on_are_not_asked_about():
    server = Server([record(1), record(2)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    handle, widget = Handle(), Watcher()
    poller.watch(1, handle)
    poller.watch(2, widget)
    wait_until(lambda: widget.seen, timeout=10)
    assert all(ids == [2] for ids in server.fetches)
    assert handle.seen == []
    handle.waited_on = True
    poller.poke()
    wait_until(lambda: handle.seen, timeout=10)
    assert server.fetches[-1] == [1, 2]
    server.set(1, status=Status.SUCCEEDED)
    server.set(2, status=Status.SUCCEEDED)
    wait_until(lambda: not poller.running, timeout=10)


def test_a_watcher_that_watches_again_sees_a_finished_job_run_again():
    """What a widget does for a failed or cancelled job: a retry from elsewhere reaches it."""
    server = Server([record(1)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02, dormant_delay=0.05)

    class Follower(Watcher):
        def observe(self, r: Job) -> None:
            super().observe(r)
            if r.finished and r.status is not Status.SUCCEEDED:
                poller.watch(r.id, self)

    follower = Follower()
    poller.watch(1, follower)
    server.set(1, status=Status.CANCELLED)
    wait_until(lambda: follower.seen and follower.seen[-1].status is Status.CANCELLED, 10)
    ticks = len(server.fetches)
    wait_until(lambda: len(server.fetches) > ticks + 2, timeout=10)  # still asked about
    server.set(1, status=Status.RUNNING, attempt=2)
    wait_until(lambda: follower.seen[-1].attempt == 2, timeout=10)
    server.set(1, status=Status.SUCCEEDED)
    wait_until(lambda: not poller.running, timeout=10)
    assert follower.seen[-1].status is Status.SUCCEEDED


def test_a_handle_nobody_follows_is_not_fed_the_records_its_widget_asks_for():
    """Settled by whoever waits on it, in that thread (a `%%job` cell's names come back by the
    callback that settling runs): the poller, asking for the widget, leaves it alone."""
    server = Server([record(1)])
    poller = Poller(server.fetch, min_delay=0.01, max_delay=0.02)
    handle, widget = Handle(), Watcher()
    poller.watch(1, handle)
    poller.watch(1, widget)
    server.set(1, status=Status.SUCCEEDED)
    wait_until(lambda: widget.seen and widget.seen[-1].finished, timeout=10)
    wait_until(lambda: not poller.running, timeout=10)
    assert handle.seen == []
