"""The engine's Python API end to end: JobQueue + in-process consumer + real worker processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import os
import select
import sqlite3
import subprocess
import sys
import threading

import pytest

from jupyter_jobs import JobQueue, oslayer
from jupyter_jobs.errors import (
    IllegalTransition,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobsError,
    PayloadError,
)
from jupyter_jobs.models import JobSpec, Kind, Reason, Status
from jupyter_jobs.payload import cell_payload

import jobfuncs
from waiting import wait_until


def test_submit_and_result(queue):
    job = queue.submit(jobfuncs.add, 2, b=40, name="answer")
    assert job.result(timeout=30) == 42
    assert job.status is Status.SUCCEEDED
    assert job.name == "answer"
    assert job.done() and not job.running() and not job.cancelled()
    assert job.exception() is None


def test_a_forgotten_result_loads_again_as_a_new_copy(queue):
    job = queue.submit(jobfuncs.cwd_and_python)
    first = job.result(timeout=30)
    assert job.result() is first  # loaded once
    job.forget_result()
    again = job.result()
    assert again == first and again is not first


def test_a_queues_jobs_and_schedules_are_the_os_users_unless_it_names_one(queue, db_path):
    me = oslayer.user_name()
    job = queue.submit(jobfuncs.add, 1, 2)
    assert (job.record.user, job.record.user_display_name) == (me, me)
    schedule = queue.schedule(jobfuncs.add, every=60, parameters={"a": 1, "b": 1})
    assert schedule.user == me
    with JobQueue(db_path, user="robot") as other:
        theirs = other.submit(jobfuncs.add, 3, 4)
        assert theirs.record.user == "robot"
        assert [j.id for j in other.jobs(mine=True)] == [theirs.id]
        assert [j.id for j in other.jobs(user=me)] == [job.id]
        assert theirs.result(timeout=30) == 7
    assert [j.id for j in queue.jobs(mine=True)] == [job.id]


def test_lambda_and_closure_travel_by_value(queue):
    offset = 7
    job = queue.submit(lambda x: x + offset, 3)
    assert job.result(timeout=30) == 10


def test_failure_raises_with_remote_traceback(queue):
    job = queue.submit(jobfuncs.fail, "bad input")
    with pytest.raises(JobFailed) as info:
        job.result(timeout=30)
    err = info.value
    assert err.reason == Reason.ERROR.value
    assert err.type == "ValueError"
    assert err.remote_message == "bad input"
    assert "jobfuncs.py" in err.remote_traceback and "raise ValueError" in err.remote_traceback
    assert isinstance(job.exception(), JobFailed)
    assert job.record.reason is Reason.ERROR


def test_map_is_one_batch_and_keeps_order(queue):
    jobs = queue.map(jobfuncs.add, range(50))
    ids = [j.id for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [j.result(timeout=60) for j in jobs] == list(range(50))


def test_futures_wait_and_as_completed(queue):
    jobs = [queue.submit(jobfuncs.sleep, 0.05 * i) for i in range(4)]
    done, not_done = concurrent.futures.wait(jobs, timeout=60)
    assert not not_done and len(done) == 4
    again = [queue.submit(jobfuncs.add, i) for i in range(5)]
    results = sorted(f.result() for f in concurrent.futures.as_completed(again, timeout=60))
    assert results == [0, 1, 2, 3, 4]


def test_awaitable(queue):
    async def main():
        a = queue.submit(jobfuncs.add, 1, 2)
        b = queue.submit(jobfuncs.add, 3, 4)
        return await asyncio.wait_for(asyncio.gather(a, b), 60)

    assert asyncio.run(main()) == [3, 7]


def test_progress_is_none_until_reported(queue):
    job = queue.submit(jobfuncs.progress_steps, 5)
    job.result(timeout=30)
    progress = job.progress
    assert progress is not None
    assert (progress.done, progress.total, progress.message) == (5, 5, "step 5")
    plain = queue.submit(jobfuncs.add, 1)
    plain.result(timeout=30)
    assert plain.progress is None


def test_logs(queue):
    job = queue.submit(jobfuncs.print_lines, 3)
    job.result(timeout=30)
    assert job.logs() == "line 0\nline 1\nline 2\n"


def test_cancel_running_job(queue, tmp_path):
    marks = tmp_path / "marks"
    job = queue.submit(jobfuncs.mark_then_sleep, str(marks), 60)
    wait_until(lambda: marks.exists())
    assert job.cancel() is True
    with pytest.raises(JobCancelled):
        job.result(timeout=30)
    assert job.cancelled()
    assert job.status is Status.CANCELLED
    assert job.cancel() is False  # already finished


def test_timeout_fails_with_reason(queue):
    job = queue.submit(jobfuncs.sleep, 60, timeout=0.5)
    with pytest.raises(JobFailed) as info:
        job.result(timeout=30)
    assert info.value.reason == "timeout"


def test_retries_with_backoff_and_visible_attempt(queue, tmp_path):
    marks = tmp_path / "marks"
    job = queue.submit(jobfuncs.fail_until, str(marks), 3, retries=3, retry_delay=0.05)
    assert job.result(timeout=60) == 3
    assert job.attempt == 3
    assert [line.split()[1] for line in marks.read_text().splitlines()] == ["1", "2", "3"]


def test_dependencies_run_in_order_and_failure_propagates(queue, tmp_path):
    marks = tmp_path / "marks"
    first = queue.submit(jobfuncs.mark_then_sleep, str(marks), 0.2)
    second = queue.submit(jobfuncs.mark, str(marks), after=first)
    assert second.result(timeout=60) == second.id
    ids = [int(line.split()[0]) for line in marks.read_text().splitlines()]
    assert ids == [first.id, second.id]

    bad = queue.submit(jobfuncs.fail)
    child = queue.submit(jobfuncs.noop, after=[bad])
    grandchild = queue.submit(jobfuncs.noop, after=[child.id])
    with pytest.raises(JobFailed) as info:
        grandchild.result(timeout=60)
    assert info.value.reason == Reason.DEPENDENCY_FAILED.value
    assert child.status is Status.FAILED


def test_run_at_and_expiry(queue):
    later = queue.submit(jobfuncs.add, 1, run_at=dt.timedelta(seconds=0.5))
    assert later.status is Status.PENDING
    assert later.result(timeout=30) == 1
    assert later.record.started_at >= later.record.created_at + 0.45

    expired = queue.submit(
        jobfuncs.noop, after=queue.submit(jobfuncs.sleep, 1.5), expires_at=dt.timedelta(seconds=0.3)
    )
    with pytest.raises(JobFailed) as info:
        expired.result(timeout=30)
    assert info.value.reason == Reason.EXPIRED.value


def test_worker_crash_is_worker_lost_with_signal(queue):
    job = queue.submit(jobfuncs.crash)
    with pytest.raises(JobFailed) as info:
        job.result(timeout=30)
    assert info.value.reason == Reason.WORKER_LOST.value
    assert "9" in info.value.remote_message or "SIGKILL" in info.value.remote_message
    # The pool replaced the worker: the next job runs.
    assert queue.submit(jobfuncs.add, 5).result(timeout=30) == 5


def test_cwd_and_interpreter(queue, tmp_path):
    job = queue.submit(jobfuncs.cwd_and_python, cwd=str(tmp_path), interpreter=sys.executable)
    cwd, python = job.result(timeout=30)
    assert os.path.realpath(cwd) == os.path.realpath(tmp_path)
    assert python == sys.executable


def test_unpicklable_argument_is_named(queue):
    gen = (i for i in range(3))
    with pytest.raises(PayloadError) as info:
        queue.submit(jobfuncs.add, gen)
    assert "generator" in str(info.value)


def test_get_jobs_delete(queue):
    job = queue.submit(jobfuncs.add, 1)
    job.result(timeout=30)
    assert queue.get(job.id).result() == 1
    assert job.id in [j.id for j in queue.jobs(status=["succeeded"])]
    queue.delete(job.id)
    with pytest.raises(JobNotFound):
        queue.get(job.id)


def test_illegal_actions_are_refused(queue):
    job = queue.submit(jobfuncs.add, 1)
    job.result(timeout=30)
    with pytest.raises(IllegalTransition):
        queue.retry(job.id)
    with pytest.raises(IllegalTransition):
        queue.store.request_cancel(job.id)


def test_unknown_option_is_a_type_error(queue):
    with pytest.raises(TypeError, match="bogus"):
        queue.map(jobfuncs.add, [1], bogus=True)


def test_jobs_submitted_before_a_consumer_starts_run_when_it_does(db_path):
    with JobQueue(db_path) as q:
        jobs = q.map(jobfuncs.add, range(5))
        assert {j.status for j in jobs} == {Status.QUEUED}
        q.start_consumer(max_workers=1)
        assert [j.result(timeout=60) for j in jobs] == list(range(5))


def test_map_with_an_idempotency_key_is_one_job_per_item_once(queue):
    first = queue.map(jobfuncs.add, [1, 2, 3], idempotency_key="batch")
    assert len({j.id for j in first}) == 3
    again = queue.map(jobfuncs.add, [1, 2, 3], idempotency_key="batch")
    assert [j.id for j in again] == [j.id for j in first]
    assert [j.result(timeout=60) for j in again] == [1, 2, 3]


def test_submits_in_a_loop_are_stored_in_order_in_few_transactions(queue, monkeypatch):
    writes: list[int] = []
    enqueue_many = queue.store.enqueue_many

    def counting(items, user):
        writes.append(len(items))
        return enqueue_many(items, user)

    monkeypatch.setattr(queue.store, "enqueue_many", counting)
    jobs = [queue.submit(jobfuncs.add, i) for i in range(300)]
    ids = [j.id for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert sum(writes) == 300 and len(writes) < 300  # what piled up went together
    assert [j.result(timeout=60) for j in jobs] == list(range(300))


def test_a_thread_waiting_on_a_job_not_yet_stored_stores_it_itself(queue, monkeypatch):
    """`result()`, `id` and `wait()` right after `submit` store what is queued in the calling
    thread rather than wait for the submitter's thread to wake up (here it never starts)."""
    from jupyter_jobs.submitter import Submitter

    monkeypatch.setattr(Submitter, "_start_thread", lambda self: None)
    assert queue.submit(jobfuncs.add, 2, 3).result(timeout=30) == 5
    assert queue.get(queue.submit(jobfuncs.noop).id).name == "noop"
    assert queue.submit(jobfuncs.add, 1).wait(timeout=30).done()
    refused = queue.submit(jobfuncs.add, 2, after=[10**9])
    with pytest.raises(JobNotFound):  # refused while storing it: it fails as it would have
        refused.result(timeout=30)


def test_a_job_the_store_refuses_fails_alone(queue):
    before = queue.submit(jobfuncs.add, 1)
    bad = queue.submit(jobfuncs.add, 2, after=[10**9])
    later = queue.submit(jobfuncs.add, 3)
    with pytest.raises(JobNotFound):
        bad.result(timeout=30)
    assert isinstance(bad.exception(timeout=30), JobNotFound)
    assert bad.done() and not bad.running() and not bad.cancelled() and not bad.cancel()
    with pytest.raises(JobNotFound):
        bad.id  # noqa: B018  (a job that was never stored has no id)
    assert "refused" in repr(bad)
    assert before.result(timeout=30) == 1 and later.result(timeout=30) == 3
    with pytest.raises(JobNotFound):  # map is one transaction: refused at once, all of it
        queue.map(jobfuncs.add, [1, 2], after=[10**9])


def test_a_script_that_exits_right_after_submitting_loses_no_job(db_path):
    script = (
        "import sys, jobfuncs\n"
        "from jupyter_jobs import JobQueue\n"
        "q = JobQueue(sys.argv[1], owner='exiting')\n"
        "for i in range(300):\n"
        "    q.submit(jobfuncs.add, i)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", script, str(db_path)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    with JobQueue(db_path) as q:
        stored = q.jobs(owner="exiting", limit=500)
        assert len(stored) == 300
        q.start_consumer(max_workers=2)
        assert sorted(j.result(timeout=60) for j in stored) == list(range(300))


@contextlib.contextmanager
def submits_held(db_path):
    """Hold SQLite's write lock from another connection: submits stay queued meanwhile, so a
    test can act on a handle before its job is stored."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_done_callbacks_of_jobs_settled_when_stored_may_submit_and_wait(queue, db_path):
    failed = queue.submit(jobfuncs.fail, "first")
    assert failed.exception(timeout=30) is not None
    seen: list[object] = []

    def on_done(job):
        # read the handle, then submit and wait: the submitter must not be this thread
        seen.append(
            (job.exception(), [j.result(timeout=30) for j in queue.map(jobfuncs.add, [1, 2])])
        )

    with submits_held(db_path):
        refused = queue.submit(jobfuncs.noop, after=[10**9])  # refused when stored
        doomed = queue.submit(jobfuncs.noop, after=[failed])  # stored already failed
        refused.add_done_callback(on_done)
        doomed.add_done_callback(on_done)
    wait_until(lambda: len(seen) == 2, 60, what="both callbacks ran to the end")
    assert {type(error) for error, _ in seen} == {JobNotFound, JobFailed}
    assert [results for _, results in seen] == [[1, 2], [1, 2]]
    assert queue.submit(jobfuncs.add, 5).result(timeout=30) == 5


def test_a_cell_job_that_submits_stores_them_all_before_it_is_reported(queue, db_path):
    code = (
        "from jupyter_jobs import JobQueue\n"
        "import jobfuncs\n"
        f"inner = JobQueue({str(db_path)!r})\n"
        "handles = [inner.submit(jobfuncs.noop, name='child') for i in range(300)]\n"
    )
    data, _ = cell_payload(code, {})
    spec = JobSpec(kind=Kind.CELL, name="fan-out", owner="t", options={"no_return": True})
    parent = queue.get(queue.store.enqueue(spec, data).id)
    assert parent.exception(timeout=120) is None  # its worker retires right after
    children = queue.store.query(q="child", limit=500).jobs
    assert len(children) == 300


def test_a_forked_child_submits_with_its_own_thread(queue):
    assert queue.submit(jobfuncs.add, 1).result(timeout=30) == 1  # the parent's thread exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            job = queue.submit(jobfuncs.add, 2)
            os.write(write, b"stored" if job._known.wait(20) else b"never stored")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], 60)
        said = pipe.read() if ready else b"no answer"
    os.waitpid(pid, 0)
    assert said == b"stored"


def test_a_handle_takes_the_name_of_the_job_its_key_found(queue):
    first = queue.submit(jobfuncs.noop, name="first", idempotency_key="k")
    again = queue.submit(jobfuncs.add, 1, name="second", idempotency_key="k")
    assert again.id == first.id and again.name == again.record.name == "first"


def test_short_lived_handles_of_a_running_job_do_not_pile_up(db_path):
    with JobQueue(db_path) as q:  # no consumer: the job stays queued
        kept = q.submit(jobfuncs.noop)
        for _ in range(2000):
            assert q.get(kept.id).status is Status.QUEUED  # a throwaway handle each time
        assert len(q.backend._handles[kept.id]) <= 9


def test_one_watcher_thread_follows_waits_one_after_another_then_ends(db_path):
    """Waiting on one job after another starts no thread (and no store connection) per job:
    the watcher waits for the next handle a while, and ends once nothing came for that long."""
    with JobQueue(db_path) as q:
        q.start_consumer(max_workers=1)
        watchers: set[threading.Thread] = set()
        for _ in range(5):
            assert q.submit(jobfuncs.add, 1, 2).result(timeout=60) == 3
            watchers |= {t for t in threading.enumerate() if t.name == "jupyter-jobs-watcher"}
        assert len(watchers) == 1
        q.backend.watcher_linger = 0.1
        (watcher,) = watchers
        watcher.join(timeout=30)
        assert not watcher.is_alive()
        assert q.submit(jobfuncs.add, 2, 2).result(timeout=60) == 4  # a new one takes over


def test_a_lingering_watcher_is_woken_by_the_jobs_ring_not_by_its_handle(db_path, monkeypatch):
    """Between jobs the watcher waits on the doorbell: a submit wakes no thread of this process
    (the consumer, elsewhere, needs the CPU then); the ring of the job that ends settles it."""
    from jupyter_jobs.queue import StoreBackend

    waits: list[float] = []  # the watcher's waits while it follows a handle
    real = StoreBackend.wait_for_change

    def counting(self: StoreBackend, timeout: float) -> bool:
        waits.append(timeout)
        return real(self, timeout)

    monkeypatch.setattr(StoreBackend, "wait_for_change", counting)
    with JobQueue(db_path) as serving, JobQueue(db_path) as client:  # a ring from "elsewhere"
        serving.start_consumer(max_workers=1)
        assert client.submit(jobfuncs.add, 1, 2).result(timeout=60) == 3  # the watcher starts
        waits.clear()
        for n in range(5):
            assert client.submit(jobfuncs.add, n, 1).result(timeout=60) == n + 1
        assert waits == []


def test_closing_a_queue_wakes_its_watcher_lingering_on_the_doorbell(db_path):
    q = JobQueue(db_path)
    q.start_consumer(max_workers=1)
    q.backend.watcher_linger = 600.0
    lingering = threading.Event()
    linger = q.backend._linger

    def noting(timeout: float) -> None:
        lingering.set()
        linger(timeout)

    q.backend._linger = noting  # type: ignore[method-assign]
    assert q.submit(jobfuncs.add, 1, 2).result(timeout=60) == 3
    assert lingering.wait(60)
    (watcher,) = [t for t in threading.enumerate() if t.name == "jupyter-jobs-watcher"]
    q.backend.poll_max = 300.0  # close would wait this long (and more) for an unwoken watcher
    closing = threading.Thread(target=q.close)
    closing.start()
    closing.join(60)
    assert not closing.is_alive()
    assert not watcher.is_alive()


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("timeout", float("nan"), "timeout must be a number of seconds"),
        ("timeout", float("inf"), "timeout must be a number of seconds"),
        ("retry_delay", 1e999, "retry_delay must be a number of seconds"),
        ("run_at", float("-inf"), "run_at must be a time"),
        ("expires_at", 1e300, "expires_at must be a time"),
        ("priority", 2**64, "priority must be between"),
        ("retries", 2**64, "retries must be between"),
    ],
)
def test_numbers_that_are_not_finite_or_out_of_range_are_refused_by_name(
    queue, option, value, words
):
    with pytest.raises(InvalidRequest, match=words):
        queue.submit(jobfuncs.add, 1, 2, **{option: value})
    with pytest.raises(InvalidRequest, match=words):
        queue.map(jobfuncs.add, [1, 2], **{option: value})
    assert sum(queue.store.counts().values()) == 0  # nothing stored, no item of the map either


class CountingCalls:
    """Counts the calls each thread makes to a backend's reading verbs."""

    VERBS = ("get", "get_many", "poll", "result_bytes", "cancel")

    def __init__(self, backend, monkeypatch) -> None:
        self.calls: list[tuple[str, str]] = []
        for verb in self.VERBS:
            original = getattr(backend, verb)

            def counted(*args, _verb=verb, _original=original, **kwargs):
                self.calls.append((_verb, threading.current_thread().name))
                return _original(*args, **kwargs)

            monkeypatch.setattr(backend, verb, counted)

    def made_by_this_thread(self) -> list[str]:
        here = threading.current_thread().name
        return [verb for verb, thread in self.calls if thread == here]


def test_done_reads_the_state_the_watcher_pushed_and_asks_nothing(queue, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    job = queue.submit(jobfuncs.wait_for_file, str(gate), 60)
    job.id  # noqa: B018  (stored)
    calls = CountingCalls(queue.backend, monkeypatch)
    assert not any(job.done() for _ in range(200))
    assert calls.made_by_this_thread() == []
    gate.touch()
    wait_until(job.done)  # the watcher's push, not a read of ours
    assert calls.made_by_this_thread() == []
    assert job.result(timeout=0) is None


def test_cancelled_agrees_with_cancel_and_result(queue, tmp_path):
    gate = tmp_path / "gate"
    first = queue.submit(jobfuncs.wait_for_file, str(gate), 60, name="blocker")
    held = queue.submit(jobfuncs.add, 1, after=[first])  # waits: cancelled at once
    assert not held.cancelled()
    assert held.cancel() is True
    assert held.cancelled() and held.done()
    with pytest.raises(JobCancelled):
        held.result(timeout=0)
    gate.touch()
    assert first.result(timeout=60) is None
    assert first.cancel() is False and not first.cancelled()


def test_a_running_job_is_cancelled_once_it_has_ended_cancelled(queue, tmp_path):
    marks = tmp_path / "marks"
    job = queue.submit(jobfuncs.mark_then_sleep, str(marks), 60)
    wait_until(lambda: marks.exists())
    assert job.cancel() is True  # accepted: the worker is being stopped
    wait_until(job.cancelled)  # pushed by the watcher, without a wait()
    assert job.done() and isinstance(job.exception(timeout=0), JobCancelled)


def test_a_cancelled_job_is_caught_as_any_cancelled_future(queue):
    job = queue.submit(jobfuncs.add, 1, hold=True)
    job.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        job.result(timeout=30)
    with pytest.raises(JobsError):
        job.result(timeout=30)

    async def awaited():
        return await job

    with pytest.raises(JobCancelled):  # not turned into the awaiting task's own cancellation
        asyncio.run(awaited())


def test_a_held_job_runs_once_released(queue):
    job = queue.submit(jobfuncs.add, 20, b=22, hold=True)
    assert job.refresh().status is Status.PENDING and not job.done()
    released = queue.release(job.id)
    assert released.id == job.id and released.record.status is not Status.PENDING
    assert job.result(timeout=60) == 42
    with pytest.raises(IllegalTransition):
        queue.release(job.id)


def test_map_names_each_job_by_its_index(queue):
    jobs = queue.map(jobfuncs.add, [1, 2, 3], name="adding", priority=2)
    assert [j.name for j in jobs] == ["adding[0]", "adding[1]", "adding[2]"]
    assert {j.record.priority for j in jobs} == {2}
    unnamed = queue.map(jobfuncs.add, [5])
    assert unnamed[0].name == "add[0]"
    assert [j.result(timeout=60) for j in jobs + unnamed] == [1, 2, 3, 5]


def test_delete_and_list_through_the_front_end(queue):
    job = queue.submit(jobfuncs.add, 1, name="to delete")
    job.result(timeout=60)
    assert job.id in [j.id for j in queue.jobs("succeeded", q="to delete")]
    queue.delete(job.id)
    assert job.id not in [j.id for j in queue.jobs()]
    with pytest.raises(JobNotFound):
        queue.get(job.id)
