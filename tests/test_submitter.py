"""The background submitter: order, batching, and that every handle ends stored or refused.

The transport is a function here so that a test decides when a write "answers"; the real ones
are exercised in test_queue.py (the store) and integration/test_kernel_api.py (the server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from jupyter_jobs import submitter as submitter_module
from jupyter_jobs.errors import InvalidRequest, JobsError, ServerUnavailable
from jupyter_jobs.models import Job as JobRecord
from jupyter_jobs.models import JobSpec, Kind
from jupyter_jobs.submitter import Submitter

from waiting import wait_until

WAIT = 30.0


class Handle:
    """What the submitter feeds: records the outcome."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.record: JobRecord | None = None
        self.error: JobsError | None = None
        self.known = threading.Event()

    def stored(self, record: JobRecord) -> None:
        self.record = record
        self.known.set()

    def refused(self, error: JobsError) -> Callable[[], None]:
        self.error = error
        self.known.set()
        return self.on_refused

    def on_refused(self) -> None:
        """Like a done callback: runs once the submitter no longer serves the queue."""


class Server:
    """A transport that stores names in order, can hold a request, and refuses on demand."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.refuse: set[str] = set()
        self.fail_with: Exception | None = None
        self.threads: list[threading.Thread] = []  # that made each request

    def store(self, items: list[tuple[JobSpec, bytes]]) -> list[JobRecord]:
        names = [spec.name for spec, _ in items]
        self.requests.append(names)
        self.threads.append(threading.current_thread())
        self.entered.set()
        assert self.release.wait(WAIT)
        if self.fail_with is not None:
            raise self.fail_with
        if bad := self.refuse.intersection(names):
            raise InvalidRequest(f"refused {sorted(bad)}")
        first = sum(len(r) for r in self.requests)
        return [record(first + i, name) for i, name in enumerate(names)]


def record(job_id: int, name: str) -> JobRecord:
    return JobRecord.from_json(
        {"id": job_id, "name": name, "kind": "function", "status": "queued", "owner": "t"}
    )


def spec(name: str) -> JobSpec:
    return JobSpec(kind=Kind.FUNCTION, name=name, owner="t")


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def submitter(server: Server) -> Iterator[Submitter]:
    sub = Submitter(server.store, alone_over=100)
    yield sub
    server.release.set()
    sub.close()


def put(submitter: Submitter, *names: str, size: int = 1) -> list[Handle]:
    handles = [Handle(n) for n in names]
    submitter.put([(spec(n), b"x" * size) for n in names], handles)  # type: ignore[arg-type]
    return handles


def test_a_lone_submit_goes_at_once(submitter, server):
    (handle,) = put(submitter, "a")
    assert handle.known.wait(WAIT)
    assert handle.record is not None and handle.record.name == "a"
    assert server.requests == [["a"]]


def test_submits_made_during_a_request_go_together_in_order(submitter, server):
    server.release.clear()
    first = put(submitter, "first")
    assert server.entered.wait(WAIT)
    later = [h for i in range(50) for h in put(submitter, f"job{i}")]
    server.release.set()
    assert submitter.flush(WAIT)
    assert server.requests == [["first"], [f"job{i}" for i in range(50)]]
    ids = [h.record.id for h in [*first, *later]]
    assert ids == sorted(ids) and len(set(ids)) == 51


def test_a_refused_group_fails_alone_and_groups_stay_whole(submitter, server):
    server.release.clear()
    put(submitter, "first")
    assert server.entered.wait(WAIT)
    before = put(submitter, "b0", "b1")  # one group: stored together or not at all
    bad = put(submitter, "bad", "bad-sibling")
    after = put(submitter, "c")
    server.refuse = {"bad"}
    server.release.set()
    assert submitter.flush(WAIT)
    assert server.requests[1] == ["b0", "b1", "bad", "bad-sibling", "c"]
    assert server.requests[2:] == [["b0", "b1"], ["bad", "bad-sibling"], ["c"]]
    assert all(h.record is not None for h in [*before, *after])
    assert all(isinstance(h.error, InvalidRequest) and "bad" in str(h.error) for h in bad)


def test_an_unreachable_server_fails_the_batch_and_the_next_submit_tries_again(submitter, server):
    server.fail_with = ServerUnavailable("no answer")
    handles = put(submitter, "a", "b")
    assert submitter.flush(WAIT)
    assert [type(h.error) for h in handles] == [ServerUnavailable, ServerUnavailable]
    assert server.requests == [["a", "b"]]  # not resent: the server may have stored them
    server.fail_with = None
    (again,) = put(submitter, "c")
    assert again.known.wait(WAIT) and again.record is not None


def test_a_bug_in_sending_refuses_with_an_error_that_names_it(submitter, server):
    server.fail_with = TypeError("unexpected keyword")
    (handle,) = put(submitter, "a")
    assert handle.known.wait(WAIT)
    assert isinstance(handle.error, JobsError)
    assert "TypeError: unexpected keyword" in str(handle.error)
    assert isinstance(handle.error.__cause__, TypeError)


def test_large_payloads_go_alone(submitter, server):
    server.release.clear()
    put(submitter, "first")
    assert server.entered.wait(WAIT)
    put(submitter, "small1")
    put(submitter, "big", size=500)
    put(submitter, "small2")
    server.release.set()
    assert submitter.flush(WAIT)
    assert server.requests == [["first"], ["small1"], ["big"], ["small2"]]


def test_a_closed_submitter_sends_what_it_has_then_refuses_more(server):
    sub = Submitter(server.store, alone_over=100)
    handles = put(sub, "a", "b")
    sub.close()
    assert all(h.record is not None for h in handles)
    with pytest.raises(JobsError, match="closed"):
        put(sub, "late")


def test_an_idle_thread_ends_and_the_next_submit_starts_another(server, monkeypatch):
    monkeypatch.setattr(submitter_module, "IDLE_EXIT", 0.05)
    sub = Submitter(server.store, alone_over=100)
    (first,) = put(sub, "a")
    assert first.known.wait(WAIT)
    wait_until(lambda: sub._thread is None, WAIT, what="the idle thread ended")
    (second,) = put(sub, "b")
    assert second.known.wait(WAIT) and second.record is not None
    sub.close()


def test_a_full_queue_makes_submit_wait_for_room(submitter, server, monkeypatch):
    monkeypatch.setattr(submitter_module, "QUEUE_ITEMS", 5)
    server.release.clear()
    put(submitter, "first")
    assert server.entered.wait(WAIT)  # taken: the queue is empty again, the write hangs
    put(submitter, *[f"q{i}" for i in range(5)])
    late: list[Handle] = []
    blocked = threading.Thread(target=lambda: late.extend(put(submitter, "late")))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive() and not late  # no room until the store takes the queue
    server.release.set()
    blocked.join(WAIT)
    assert not blocked.is_alive() and late[0].known.wait(WAIT)
    assert server.requests[-1] == ["late"]


def test_a_failure_that_may_have_written_is_not_sent_again(submitter, server):
    server.release.clear()
    put(submitter, "first")
    assert server.entered.wait(WAIT)
    one = put(submitter, "a")
    two = put(submitter, "b")
    server.fail_with = JobsError("HTTP 500: the answer was lost")  # stored or not: unknown
    server.release.set()
    assert submitter.flush(WAIT)
    assert server.requests[1:] == [["a", "b"]]  # one try: resending could store them twice
    assert all("HTTP 500" in str(h.error) for h in [*one, *two])


def test_callbacks_run_after_the_thread_hands_the_queue_over(submitter, server):
    """A done callback may submit and wait: it must not need the thread that runs it."""
    server.refuse = {"bad"}
    (bad,) = put(submitter, "bad")
    again: list[Handle] = []

    def callback() -> None:
        (handle,) = put(submitter, "from-callback")
        assert handle.known.wait(WAIT)  # stored by the next thread
        again.append(handle)

    bad.on_refused = callback  # type: ignore[method-assign]
    wait_until(lambda: again, WAIT, what="the callback's own submit was stored")
    assert again[0].record is not None and isinstance(bad.error, InvalidRequest)


def test_a_thread_that_cannot_start_fails_that_submit_and_not_the_next(server, monkeypatch):
    sub = Submitter(server.store, alone_over=100)
    real_start = threading.Thread.start
    failed: list[bool] = []

    def start_once_fails(self: threading.Thread) -> None:
        if not failed:
            failed.append(True)
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start_once_fails)
    with pytest.raises(RuntimeError, match="can't start"):
        put(sub, "a")
    (b,) = put(sub, "b")
    assert b.known.wait(WAIT) and b.record is not None
    assert server.requests == [["b"]]  # the refused submit was not stored behind the caller
    sub.close()


def test_a_caller_about_to_wait_stores_what_is_queued_itself(server, monkeypatch):
    """`result()` right after `submit` stores the job in its own thread (`store_here`), as the
    submitter's thread would have: here no thread ever starts, so the caller stored them."""
    monkeypatch.setattr(Submitter, "_start_thread", lambda self: None)
    sub = Submitter(server.store, alone_over=100)
    handles = put(sub, "a", "b") + put(sub, "c")
    sub.store_here()
    assert server.requests == [["a", "b", "c"]]
    assert server.threads == [threading.current_thread()]
    assert [h.record.name for h in handles if h.record] == ["a", "b", "c"]
    sub.close()


def test_a_caller_leaves_a_batch_being_stored_to_the_thread(submitter, server):
    server.release.clear()
    put(submitter, "first")
    assert server.entered.wait(WAIT)  # the thread stores it, and its write hangs
    (a,) = put(submitter, "a")
    caller = threading.Thread(target=submitter.store_here)
    caller.start()
    caller.join(WAIT)
    assert not caller.is_alive()  # it did not wait behind that write...
    assert server.requests == [["first"]]  # ...nor store "a" ahead of "first"
    server.release.set()
    assert a.known.wait(WAIT)
    assert server.requests == [["first"], ["a"]]


def test_the_thread_takes_nothing_while_a_caller_stores_a_batch(server, monkeypatch):
    start_thread = Submitter._start_thread
    monkeypatch.setattr(Submitter, "_start_thread", lambda self: None)
    sub = Submitter(server.store, alone_over=100)
    server.release.clear()
    (a,) = put(sub, "a")
    caller = threading.Thread(target=sub.store_here)
    caller.start()
    assert server.entered.wait(WAIT)  # the caller's write of "a" hangs
    start_thread(sub)  # now a thread serves the queue too
    (b,) = put(sub, "b")
    assert not b.known.wait(0.3)  # "b" is not stored beside or ahead of "a"
    assert server.requests == [["a"]]
    server.release.set()
    assert a.known.wait(WAIT) and b.known.wait(WAIT)
    assert server.requests == [["a"], ["b"]]
    assert server.threads[1] is not threading.current_thread()  # the thread stored "b"
    caller.join(WAIT)
    sub.close()
