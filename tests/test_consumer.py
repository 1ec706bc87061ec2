"""The consumer's own rules: priorities, cancel, progress rate, logs, stop and recovery."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import dill
import pytest

from jupyter_jobs import JobQueue
from jupyter_jobs.consumer import consumer_is_alive, make_consumer_id
from jupyter_jobs.errors import JobFailed
from jupyter_jobs.models import Change, JobSpec, Reason, Status
from jupyter_jobs.payload import function_payload

import jobfuncs
import workers_util as wu
from store_driver import claim, started
from waiting import wait_until


def test_consumer_id_liveness():
    me = make_consumer_id()
    assert consumer_is_alive(me)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    host = me.split(":")[0]
    assert not consumer_is_alive(f"{host}:{proc.pid}:12345")
    assert consumer_is_alive("some-other-host:1:1")  # cannot tell: the lease decides
    assert not consumer_is_alive("garbage")


def test_priority_order_with_one_worker(db_path, tmp_path):
    marks = tmp_path / "marks"
    with JobQueue(db_path) as q:
        low = [q.submit(jobfuncs.mark, str(marks), priority=0) for _ in range(3)]
        high = [q.submit(jobfuncs.mark, str(marks), priority=5) for _ in range(3)]
        q.start_consumer(max_workers=1)
        for job in low + high:
            job.result(timeout=60)
    order = [int(line.split()[0]) for line in marks.read_text().splitlines()]
    assert order == [j.id for j in high] + [j.id for j in low]


def test_fair_share_across_owners(db_path, tmp_path):
    marks = tmp_path / "marks"
    with JobQueue(db_path, owner="a.ipynb") as a, JobQueue(db_path, owner="b.ipynb") as b:
        a_jobs = [a.submit(jobfuncs.mark, str(marks)) for _ in range(4)]
        b_jobs = [b.submit(jobfuncs.mark, str(marks)) for _ in range(2)]
        a.start_consumer(max_workers=1)
        for job in a_jobs + b_jobs:
            job.result(timeout=60)
    owner = {j.id: "a" for j in a_jobs} | {j.id: "b" for j in b_jobs}
    order = "".join(owner[int(line.split()[0])] for line in marks.read_text().splitlines())
    # b's jobs are not starved behind a's older ones: they interleave.
    assert order.index("b") <= 2 and order.count("b") == 2


def test_progress_writes_are_rate_limited_last_value_kept(db_path):
    with JobQueue(db_path) as q:
        changes: list[Change] = []
        q.store.subscribe(lambda cs: changes.extend(c for c in cs if c.what == "progress"))
        q.start_consumer(max_workers=1, progress_interval=0.5)
        job = q.submit(jobfuncs.progress_steps, 200, 0.005)  # ~1 s of progress calls
        job.result(timeout=60)
        writes = [c for c in changes if c.job.id == job.id]
        assert 1 <= len(writes) <= 6
        assert writes[-1].job.progress.done == 200
        assert job.progress.message == "step 200"


def test_logs_stream_while_running(db_path):
    with JobQueue(db_path) as q:
        q.start_consumer(max_workers=1)
        job = q.submit(jobfuncs.chatty_then_sleep, 60)
        wait_until(lambda: "started" in job.logs(), timeout=30)
        assert job.status is Status.RUNNING
        job.cancel()


def test_big_payloads_and_results_pass_between_store_and_worker_as_files(db_path):
    import numpy as np

    data = np.arange(300_000.0)  # 2.4 MB: its payload and its result are the job's files
    with JobQueue(db_path) as q:
        q.start_consumer(max_workers=1)
        job = q.submit(jobfuncs.add, data, data)
        back = job.result(timeout=60)
        assert np.array_equal(back, data * 2) and back.flags.owndata
        folder = q.store.workspace_root / str(job.id)
        assert {"payload", "result.1"} <= {p.name for p in folder.iterdir()}
        # the worker read the payload file itself and left its result for the store to take
        assert list(q.store.incoming().iterdir()) == []


def test_cancel_queued_and_pending_is_immediate(db_path):
    with JobQueue(db_path) as q:
        queued = q.submit(jobfuncs.noop)
        pending = q.submit(jobfuncs.noop, after=queued)
        assert q.cancel(pending.id).status is Status.CANCELLED
        assert q.cancel(queued.id).status is Status.CANCELLED


def test_stop_interrupts_running_and_keeps_queued(db_path, tmp_path):
    marks = tmp_path / "marks"
    q = JobQueue(db_path)
    q.start_consumer(max_workers=1, kill_grace=1.0)
    running = q.submit(jobfuncs.mark_then_sleep, str(marks), 60)
    retrying = q.submit(jobfuncs.mark_then_sleep, str(marks), 60, retries=1)
    waiting = q.submit(jobfuncs.noop)
    wait_until(lambda: marks.exists())
    q.close()
    with JobQueue(db_path) as again:
        first = again.store.get(running.id)
        assert first.status is Status.FAILED and first.reason is Reason.INTERRUPTED
        assert again.store.get(retrying.id).status is Status.QUEUED
        assert again.store.get(waiting.id).status is Status.QUEUED
        again.start_consumer(max_workers=2)
        assert again.get(waiting.id).result(timeout=60) is None


def old_finished_jobs(queue: JobQueue, n: int) -> None:
    """`n` failed jobs (each ran after a cancelled one), stored in one transaction."""
    first = queue.store.enqueue(JobSpec(name="old"), b"")
    queue.store.request_cancel(first.id)
    queue.store.enqueue_many([(JobSpec(name=f"old {i}", after=[first.id]), b"") for i in range(n)])


def held_in_gc(queue: JobQueue, until: threading.Event) -> threading.Event:
    """Hold the store's gc after its first batch until `until`: a subscriber, called in the
    thread that committed (gc's own, for deletions). Set once gc is held."""
    held = threading.Event()

    def hold(changes: list[Change]) -> None:
        if any(c.what == "deleted" for c in changes) and not held.is_set():
            held.set()
            until.wait(60)

    queue.store.subscribe(hold)
    return held


def failed_counted_and_scanned(queue: JobQueue) -> tuple[int, int]:
    conn = sqlite3.connect(queue.store.path)
    try:
        (scanned,) = conn.execute("SELECT count(*) FROM jobs WHERE status = 'failed'").fetchone()
    finally:
        conn.close()
    return queue.store.counts()["failed"], scanned


def test_the_consumer_runs_jobs_while_its_gc_is_under_way(db_path):
    """gc runs in a thread of its own: held between two of its batches, the consumer still
    claims, runs and records jobs (in the writer thread, gc blocked them all until it ended)."""
    with JobQueue(db_path) as q:
        old_finished_jobs(q, 2000)
        go_on = threading.Event()
        held = held_in_gc(q, go_on)
        q.start_consumer(max_workers=1, retention_seconds=0.0)
        wait_until(held.is_set, 30, what="the gc's first batch")
        assert q.submit(jobfuncs.add, 2, 3).result(timeout=60) == 5
        assert q.store.counts()["failed"] > 0  # the gc still held
        go_on.set()
        wait_until(lambda: q.store.counts()["failed"] == 0, 60, what="the gc's end")


def test_stopping_the_consumer_ends_its_gc_after_the_batch_under_way(db_path):
    with JobQueue(db_path) as q:
        old_finished_jobs(q, 3000)
        go_on = threading.Event()
        held = held_in_gc(q, go_on)
        consumer = q.start_consumer(max_workers=1, retention_seconds=0.0)
        wait_until(held.is_set, 30, what="the gc's first batch")
        stopping = threading.Thread(target=consumer.stop)
        stopping.start()
        assert consumer.consumer is not None
        wait_until(consumer.consumer._stop_collecting.is_set, 30, what="gc asked to stop")
        go_on.set()
        stopping.join(60)
        assert not stopping.is_alive()
        counted, scanned = failed_counted_and_scanned(q)
        assert 0 < counted == scanned < 3000  # stopped after one batch, counts in step
        q.store.gc(older_than=0)  # the next one goes on
        assert failed_counted_and_scanned(q) == (0, 0)


def test_jobs_of_a_dead_consumer_are_recovered_at_start(db_path):
    """A consumer that vanished (kill -9) leaves `running` and claimed rows; the next one
    resolves them: each attempt ends interrupted, and runs again where it allows retries."""
    with JobQueue(db_path) as q:
        spec = JobSpec(name="orphan", owner="t")
        payload = function_payload(jobfuncs.noop, (), {})
        plain = q.store.enqueue(spec, payload)
        spec_retry = JobSpec(name="orphan-retry", owner="t", retries=1)
        retried = q.store.enqueue(spec_retry, payload)
        waiting = q.store.enqueue(JobSpec(name="claimed", owner="t", retries=1), payload)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait(10)
        dead_id = f"{make_consumer_id().split(':')[0]}:{dead.pid}:1"
        claimed = claim(q.store, dead_id, 10, lease=3600)
        assert {c.job.id for c in claimed} == {plain.id, retried.id, waiting.id}
        for c in claimed:
            if c.job.id != waiting.id:
                started(q.store, c.job.id, c.job.attempt)
        q.start_consumer(max_workers=1)
        assert q.get(waiting.id).result(timeout=30) is None
        assert q.store.get(waiting.id).attempt == 2
        lost = q.get(plain.id)
        with pytest.raises(JobFailed) as info:
            lost.result(timeout=30)
        assert info.value.reason == Reason.INTERRUPTED.value
        assert q.get(retried.id).result(timeout=30) is None
        assert q.store.get(retried.id).attempt == 2


def test_cancel_from_another_process_reaches_the_consumer(db_path, tmp_path):
    marks = tmp_path / "marks"
    with JobQueue(db_path) as q:
        q.start_consumer(max_workers=1)
        job = q.submit(jobfuncs.mark_then_sleep, str(marks), 60)
        wait_until(lambda: marks.exists())
        env = dict(os.environ)
        out = subprocess.run(
            [sys.executable, "-m", "jupyter_jobs.cli", "cancel", str(job.id), "--db", str(db_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        assert out.stdout == f"job {job.id}: running (cancelling)\n"
        assert job.wait(timeout=30).status is Status.CANCELLED


def test_a_ring_with_none_of_its_jobs_running_claims_without_asking_for_cancels(
    db_path, monkeypatch
):
    """A ring from another process (here a second store on the file) usually means a new job.
    With none of the consumer's jobs running, no cancel can be its to pick up: it claims at
    once rather than reading the store first."""
    from jupyter_jobs.store import Store

    asked: list[str] = []
    real = Store.cancel_requested

    def counting(self: Store, consumer: str) -> list[tuple[int, int]]:
        asked.append(consumer)
        return real(self, consumer)

    monkeypatch.setattr(Store, "cancel_requested", counting)
    with JobQueue(db_path) as serving, JobQueue(db_path) as client:
        serving.start_consumer(max_workers=1)
        client.submit(jobfuncs.noop).result(timeout=60)  # may be claimed before its ring came
        asked.clear()
        for n in range(6):
            assert client.submit(jobfuncs.add, n, 1).result(timeout=60) == n + 1
    # (A timer's tick may claim a job between its commit and its ring, once in a long while.)
    assert len(asked) <= 1, asked


def test_a_job_costs_a_claim_and_an_outcome_write_and_no_idle_ones(db_path, monkeypatch):
    """Jobs one after another: each is claimed in one transaction and recorded in another. The
    consumer is not woken again by its own outcome, nor by a start already written with it: each
    such tick would be a claim transaction that finds nothing (holding the write lock)."""
    from jupyter_jobs.store import Store

    busy: list[bool] = []  # per record_and_claim: did it write or claim anything?
    real = Store.record_and_claim

    def counting(self: Store, logs=(), progress=(), outcomes=(), claim=None, starts=()):
        finished, claimed = real(self, logs, progress, outcomes, claim, starts)
        busy.append(bool(logs or progress or outcomes or starts or claimed))
        return finished, claimed

    monkeypatch.setattr(Store, "record_and_claim", counting)
    with JobQueue(db_path) as q:
        q.start_consumer(max_workers=1)
        q.submit(jobfuncs.noop).result(timeout=60)  # the worker is warm
        busy.clear()
        began = time.monotonic()
        for _ in range(30):
            q.submit(jobfuncs.noop).result(timeout=60)
        elapsed = time.monotonic() - began
        idle = busy.count(False)
    assert busy.count(True) >= 60
    # Only the consumer's own timers (due promotions, schedules: about once a second each) may
    # have found nothing to do.
    assert idle <= 2 * elapsed + 2, (idle, elapsed)


@pytest.mark.expect_consumer_errors
async def test_a_claimed_job_the_executor_refuses_ends_interrupted_not_lost(db_path):
    from jupyter_jobs.consumer import Consumer
    from jupyter_jobs.executors.local import LocalExecutor
    from jupyter_jobs.store import Store

    class Overcommitting(LocalExecutor):
        """Reports one slot more than it takes: the consumer claims a job run() refuses."""

        prefetch_limit = 0

        def free_slots(self) -> int:
            return super().free_slots() + 1

    store = Store(db_path)
    payload = function_payload(jobfuncs.sleep, (0.5,), {})
    ids = [store.enqueue(JobSpec(name=f"j{i}"), payload).id for i in range(3)]
    consumer = Consumer(store, lambda events: Overcommitting(events, 2))
    await consumer.start()
    try:
        await wu.wait_for(lambda: all(j.finished for j in store.get_many(ids)), timeout=60)
    finally:
        await consumer.stop()
    jobs = store.get_many(ids)
    store.close()
    assert sorted(j.status.value for j in jobs) == ["failed", "succeeded", "succeeded"]
    [refused] = [j for j in jobs if j.status is Status.FAILED]
    assert refused.reason is Reason.INTERRUPTED
    assert "did not take the job" in refused.error.message


@pytest.mark.expect_consumer_errors  # the failed write is logged, then retried
async def test_a_failed_write_keeps_the_outcome_for_the_next_tick(db_path):
    import sqlite3

    from jupyter_jobs.consumer import Consumer
    from jupyter_jobs.executors.local import LocalExecutor
    from jupyter_jobs.store import Store

    store = Store(db_path)
    real, failed = store.record_and_claim, []

    def locked_once(logs=(), progress=(), outcomes=(), claim=None, starts=()):
        if outcomes and not failed:
            failed.append(list(outcomes))
            raise sqlite3.OperationalError("database is locked")
        return real(logs, progress, outcomes, claim, starts)

    store.record_and_claim = locked_once
    consumer = Consumer(store, lambda events: LocalExecutor(events, 1))
    await consumer.start()
    try:
        job = store.enqueue(JobSpec(name="add"), function_payload(jobfuncs.add, (2, 3), {}))
        await wu.wait_for(lambda: store.get(job.id).finished, timeout=60)
    finally:
        await consumer.stop()
    final = store.get(job.id)
    result = store.result(job.id)
    store.close()
    assert failed, "the write never failed: the test did not test anything"
    assert final.status is Status.SUCCEEDED and final.attempt == 1
    assert dill.loads(result) == 5


async def test_a_lease_that_runs_out_elsewhere_is_recovered_at_once_without_spinning(db_path):
    from jupyter_jobs.consumer import Consumer
    from jupyter_jobs.executors.local import LocalExecutor
    from jupyter_jobs.store import Store

    store = Store(db_path)
    job = store.enqueue(JobSpec(name="x"), function_payload(jobfuncs.noop, (), {}))
    [claimed] = claim(store, "otherhost:123:0", 1, 1.5)  # elsewhere, seen only through its lease
    started(store, job.id, claimed.job.attempt)
    calls, real = [], store.promote
    store.promote = lambda: calls.append(1) or real()
    consumer = Consumer(store, lambda events: LocalExecutor(events, 1), lease=30.0)
    await consumer.start()
    try:
        # The recover timer is lease / 2 = 15 s away: the lease itself must be noticed.
        await wu.wait_for(lambda: store.get(job.id).status is not Status.RUNNING, timeout=10)
        await wu.wait_for(lambda: store.get(job.id).finished, timeout=30)
    finally:
        await consumer.stop()
    final = store.get(job.id)
    store.close()
    assert final.status is Status.FAILED and final.reason is Reason.INTERRUPTED
    assert len(calls) < 30, f"{len(calls)} promote() transactions: the consumer spun"


@contextlib.asynccontextmanager
async def noting_write_threads(db_path, workers: int, owns_loop: bool):
    """A store and its consumer; yields the list of the threads in which each write that
    recorded an outcome or claimed a job ran."""
    from jupyter_jobs.consumer import Consumer
    from jupyter_jobs.executors.local import LocalExecutor
    from jupyter_jobs.store import Store

    store = Store(db_path)
    threads: list[threading.Thread] = []
    real = store.record_and_claim

    def noting(logs=(), progress=(), outcomes=(), claim=None, starts=()):
        finished, claimed = real(logs, progress, outcomes, claim, starts)
        if outcomes or claimed:
            threads.append(threading.current_thread())
        return finished, claimed

    store.record_and_claim = noting
    consumer = Consumer(store, lambda events: LocalExecutor(events, workers), owns_loop=owns_loop)
    await consumer.start()
    try:
        yield store, threads
    finally:
        await consumer.stop()
        store.close()


async def run_one_after_another(store, n: int) -> None:
    payload = function_payload(jobfuncs.add, (2, 3), {})
    for _ in range(n):
        job = store.enqueue(JobSpec(name="add"), payload)
        await wu.wait_for(lambda job=job: store.get(job.id).finished, timeout=60)


@pytest.mark.parametrize("owns_loop", [True, False])
async def test_a_lone_jobs_writes_run_on_the_loop_only_when_the_loop_is_the_consumers(
    db_path, owns_loop
):
    """A consumer with a loop of its own (`jupyter jobs consumer`, a JobQueue's thread) writes
    the claim and the outcome of a lone job on the loop: the hop to the writer thread and back
    would cost two thread wake-ups. On a shared loop (the server's), never."""
    async with noting_write_threads(db_path, 1, owns_loop) as (store, threads):
        await run_one_after_another(store, 5)
    assert len(threads) >= 10  # a claim and an outcome each
    on_the_loop = [t is threading.current_thread() for t in threads]
    assert on_the_loop == [owns_loop] * len(threads)


async def test_writes_made_while_a_job_runs_go_to_the_writer_thread(db_path):
    """Meanwhile the loop reads the running job's frames (SQLite lets go of the interpreter)."""
    async with noting_write_threads(db_path, 2, owns_loop=True) as (store, threads):
        slow = store.enqueue(JobSpec(name="slow"), function_payload(jobfuncs.sleep, (30,), {}))
        await wu.wait_for(lambda: store.get(slow.id).status is Status.RUNNING, timeout=60)
        threads.clear()
        await run_one_after_another(store, 5)
        assert store.get(slow.id).status is Status.RUNNING  # it ran all along
        assert len(threads) >= 10
        assert threading.current_thread() not in threads
        store.request_cancel(slow.id)


@contextlib.asynccontextmanager
async def one_warm_worker(db_path, workers: int = 1):
    """A store and its consumer of `workers` workers, which has just run short jobs, so that it
    claims ahead and sends jobs ahead to its busy workers."""
    from jupyter_jobs.consumer import Consumer
    from jupyter_jobs.executors.local import LocalExecutor
    from jupyter_jobs.store import Store

    store = Store(db_path)
    consumer = Consumer(store, lambda events: LocalExecutor(events, workers), kill_grace=1.0)
    await consumer.start()
    try:
        payload = function_payload(jobfuncs.noop, (), {})
        warm = [store.enqueue(JobSpec(name="warm"), payload).id for _ in range(30)]
        await wu.wait_for(lambda: all(j.finished for j in store.get_many(warm)), timeout=60)
        yield store, consumer
    finally:
        await consumer.stop()  # a no-op when the test stopped it
        store.close()


async def test_a_timeout_counts_from_the_start_not_the_claim(db_path):
    async with one_warm_worker(db_path) as (store, _):
        slow = store.enqueue(JobSpec(name="slow"), function_payload(jobfuncs.sleep, (4,), {}))
        quick = function_payload(jobfuncs.noop, (), {})
        # Claimed with the slow one and queued behind it for ~4 s: longer than their timeout.
        short = [store.enqueue(JobSpec(name="s", timeout=2.0), quick).id for _ in range(5)]
        ids = [slow.id, *short]
        await wu.wait_for(lambda: all(j.finished for j in store.get_many(ids)), timeout=60)
        jobs = store.get_many(short)
    assert [j.status for j in jobs] == [Status.SUCCEEDED] * 5, [(j.reason, j.error) for j in jobs]


async def test_a_stop_puts_jobs_claimed_but_never_started_back_in_the_queue(db_path):
    async with one_warm_worker(db_path) as (store, consumer):
        slow = store.enqueue(JobSpec(name="slow"), function_payload(jobfuncs.sleep, (60,), {}))
        quick = function_payload(jobfuncs.noop, (), {})
        rest = [store.enqueue(JobSpec(name="s"), quick).id for _ in range(20)]

        def claimed_behind_slow() -> bool:
            jobs = store.get_many(rest)
            return store.get(slow.id).status is Status.RUNNING and any(j.claimed for j in jobs)

        await wu.wait_for(claimed_behind_slow, timeout=60)
        await consumer.stop()
        after = store.get_many(rest)
        ended = store.get(slow.id)
        log = store.start_log_of(consumer.consumer_id)
        assert [p.name for p in log.folder.iterdir()] == ["owner"]  # its starts, read, removed
    assert ended.status is Status.FAILED and ended.reason is Reason.INTERRUPTED
    assert {j.status for j in after} <= {Status.QUEUED, Status.SUCCEEDED}, [
        (j.id, j.status, j.reason) for j in after
    ]
    assert all(j.attempt == 0 for j in after if j.status is Status.QUEUED)


async def test_jobs_sent_ahead_to_busy_workers_stay_queued_until_they_really_start(
    db_path, tmp_path
):
    async with one_warm_worker(db_path, workers=2) as (store, _):
        began: dict[int, float] = {}  # job id -> when it was announced out of the queue

        def announced(changes: list[Change]) -> None:
            for c in changes:  # (a job that starts and ends in one commit skips `running`)
                if c.what == "transition" and c.previous is Status.QUEUED:
                    assert c.job.id not in began, "announced twice"
                    began[c.job.id] = time.time()

        store.subscribe(announced)
        gate = tmp_path / "gate"
        payload = function_payload(jobfuncs.wait_for_file, (str(gate),), {})
        ids = [store.enqueue(JobSpec(name="long"), payload).id for _ in range(4)]

        def two_run_two_wait() -> list:
            jobs = store.get_many(ids)
            running = [j for j in jobs if j.status is Status.RUNNING]
            return len(running) == 2 and all(j.claimed for j in jobs if j not in running) and jobs

        jobs = await wu.wait_for(two_run_two_wait, timeout=60)
        waiting = [j for j in jobs if j.status is Status.QUEUED]
        assert [j.started_at for j in waiting] == [None, None]
        stats = store.stats()
        assert (stats["running"], stats["queued"]) == (2, 2)
        assert len(store.query(status=["running"]).jobs) == 2
        assert sorted(began) == sorted(j.id for j in jobs if j.status is Status.RUNNING)
        opened = time.time()
        gate.touch()
        await wu.wait_for(lambda: all(j.finished for j in store.get_many(ids)), timeout=60)
        ended = {j.id: j for j in store.get_many(ids)}
    assert {j.status for j in ended.values()} == {Status.SUCCEEDED}
    for job in waiting:  # they began once the first two ended, and their clocks with them
        assert ended[job.id].started_at >= opened and began[job.id] >= opened


async def test_a_job_cancelled_while_it_waits_in_the_executor_never_starts(db_path, tmp_path):
    async with one_warm_worker(db_path, workers=2) as (store, _):
        gate = tmp_path / "gate"
        payload = function_payload(jobfuncs.wait_for_file, (str(gate),), {})
        ids = [store.enqueue(JobSpec(name="long"), payload).id for _ in range(4)]
        jobs = await wu.wait_for(
            lambda: store.counts()["running"] == 2 and store.get_many(ids), timeout=60
        )
        victim = next(j for j in jobs if j.claimed)
        store.request_cancel(victim.id)
        await wu.wait_for(lambda: store.get(victim.id).finished, timeout=30)
        cancelled = store.get(victim.id)
        gate.touch()
        await wu.wait_for(lambda: all(j.finished for j in store.get_many(ids)), timeout=60)
        others = [j for j in store.get_many(ids) if j.id != victim.id]
    assert (cancelled.status, cancelled.started_at, cancelled.attempt) == (
        Status.CANCELLED,
        None,
        1,
    )
    assert [j.status for j in others] == [Status.SUCCEEDED] * 3


def test_the_headless_consumer_reads_the_servers_config_files(db_path, tmp_path):
    """`jupyter jobs consumer` runs with the server's configuration: `c.JobsApp` and the
    executor's section, from the config files in the Jupyter config path."""
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.py").write_text(
        "c.JobsApp.log_limit = 100\nc.JobsApp.executor_class = 'local'\n"
    )
    (config_dir / "jupyter_jobs_config.json").write_text('{"LocalExecutor": {"max_workers": 3}}')
    stderr = tmp_path / "consumer.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_jobs.cli", "consumer", "--db", str(db_path), "--json"],
            stderr=err,
            cwd=tmp_path,
        )
    try:
        wait_until(lambda: "\n" in stderr.read_text() or proc.poll() is not None, timeout=60)
        started = json.loads(stderr.read_text().splitlines()[0])
        assert started["executor"] == "local" and started["max_workers"] == 3
        with JobQueue(db_path) as q:
            job = q.submit(jobfuncs.print_lines, 50)
            assert job.wait(timeout=60).status is Status.SUCCEEDED
            log = job.logs()
        # The limit of 100 bytes is applied (by the worker, or else by the store).
        assert log.startswith("line 0") and len(log) < 300
        assert "[jupyter_jobs: output over 100 bytes" in log or "truncated at 100 bytes" in log
        assert len(log) < 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, stderr.read_text()
