"""Races and kills against real processes: several consumers, kill -9 of workers and consumers."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from consumers import assert_no_errors, kill_loop, start_consumer, stop

from jupyter_jobs import JobQueue
from jupyter_jobs.consumer import consumer_is_alive
from jupyter_jobs.errors import JobFailed
from jupyter_jobs.models import Reason, Status

import jobfuncs
from waiting import wait_until

pytestmark = pytest.mark.slow


def marks_of(path: Path) -> Counter:
    if not path.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines())


def test_four_consumers_run_each_of_2000_jobs_exactly_once(db_path, tmp_path):
    marks = tmp_path / "marks"
    with JobQueue(db_path) as q:
        jobs = q.map(jobfuncs.mark, [str(marks)] * 2000)
        consumers = [start_consumer(db_path, workers=1) for _ in range(4)]
        try:
            wait_until(lambda: q.store.counts()["succeeded"] == 2000, timeout=240, interval=0.2)
        finally:
            logs = [stop(proc) for proc in consumers]
        for log in logs:
            assert_no_errors(log)
        counts = marks_of(marks)
        assert set(counts) == {j.id for j in jobs}
        assert max(counts.values()) == 1
        assert {r.attempt for r in q.store.get_many([j.id for j in jobs])} == {1}


def test_kill_9_of_a_worker_mid_job(queue, tmp_path):
    pidfile = tmp_path / "pid"
    job = queue.submit(jobfuncs.ignore_sigterm_and_sleep, str(pidfile), 60)
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text()))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(JobFailed) as info:
        job.result(timeout=30)
    assert info.value.reason == Reason.WORKER_LOST.value
    assert "SIGKILL" in info.value.remote_message or "signal 9" in info.value.remote_message


@pytest.mark.parametrize("retries", [0, 2])
def test_kill_9_of_the_consumer_mid_run_then_restart(db_path, tmp_path, retries):
    marks = tmp_path / "marks"
    with JobQueue(db_path) as q:
        jobs = [
            q.submit(jobfuncs.mark_then_sleep, str(marks), 0.01, retries=retries)
            for _ in range(200)
        ]
        first = start_consumer(db_path)
        wait_until(lambda: q.store.counts()["succeeded"] >= 50, timeout=120, interval=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        second = start_consumer(db_path)
        try:
            wait_until(
                lambda: (
                    sum(q.store.counts()[s] for s in ("succeeded", "failed", "cancelled")) == 200
                ),
                timeout=180,
                interval=0.1,
            )
        finally:
            log = stop(second)
        assert_no_errors(log)
        records = q.store.get_many([j.id for j in jobs])
        statuses = Counter(r.status for r in records)
        assert statuses[Status.RUNNING] == 0 and statuses[Status.QUEUED] == 0
        failed = [r for r in records if r.status is Status.FAILED]
        assert all(r.reason is Reason.INTERRUPTED for r in failed)
        if retries:
            assert statuses[Status.SUCCEEDED] == 200
        else:
            assert statuses[Status.SUCCEEDED] + len(failed) == 200
        # Every succeeded job ran its final attempt once; nothing ran more times than attempts.
        counts = marks_of(marks)
        for r in records:
            if r.status is Status.SUCCEEDED:
                assert 1 <= counts[r.id] <= r.attempt


def test_a_killed_consumers_claims_no_worker_began_go_back_uncounted(db_path, tmp_path):
    """kill -9 of a consumer holding a job that ran (its outcome unwritten), one its worker
    began unseen (the consumer was stopped) and jobs sent ahead or waiting that never began:
    the first two count as interrupted attempts, the others come back with their attempt
    unchanged, then run once each."""
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    with JobQueue(db_path) as q:
        first = start_consumer(db_path, workers=1)
        try:
            for job in [q.submit(jobfuncs.noop) for _ in range(20)]:
                job.result(timeout=60)  # short jobs: the executor now claims and sends ahead
            ran = q.submit(jobfuncs.mark_then_wait, str(marks), str(gate))
            began = q.submit(jobfuncs.mark_then_sleep, str(marks), 600)
            waiting = [q.submit(jobfuncs.mark, str(marks)) for _ in range(5)]
            ids = [ran.id, began.id, *(j.id for j in waiting)]
            wait_until(lambda: all(r.claimed for r in q.store.get_many(ids[1:])), timeout=60)
            wait_until(lambda: marks_of(marks)[ran.id] == 1, timeout=60)
            os.kill(first.pid, signal.SIGSTOP)  # from here on, it hears nothing
            gate.touch()  # `ran` ends; its worker begins `began`, sent to it ahead
            wait_until(lambda: marks_of(marks)[began.id] == 1, timeout=60)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(30)
        # Claimed, not started as far as the store knows (`ran` may show running).
        assert [r.status for r in q.store.get_many(ids[1:])] == [Status.QUEUED] * 6
        recovered = {r.id: r for r in q.store.recover(consumer_is_alive)}
        assert set(recovered) == set(ids)
        for job in (ran, began):
            record = recovered[job.id]
            assert (record.status, record.reason, record.attempt) == (
                Status.FAILED,
                Reason.INTERRUPTED,
                1,
            )
        for job in waiting:
            record = recovered[job.id]
            assert (record.status, record.attempt, record.lease_until) == (Status.QUEUED, 0, None)
        second = start_consumer(db_path, workers=1)
        try:
            assert [job.result(timeout=60) for job in waiting] == [j.id for j in waiting]
        finally:
            log = stop(second)
        assert_no_errors(log)
        assert [r.attempt for r in q.store.get_many([j.id for j in waiting])] == [1] * 5
        assert marks_of(marks) == Counter(ids)


def traces(path: Path) -> list[tuple[int, int, float]]:
    """(job id, attempt, time) of each line `jobfuncs.mark_alive` wrote to `path`."""
    if not path.exists():
        return []
    return [(int(i), int(a), float(t)) for i, a, t in map(str.split, path.read_text().splitlines())]


def test_a_stalled_consumers_attempt_ends_before_another_consumer_takes_its_job(db_path, tmp_path):
    """A consumer stopped (SIGSTOP) past its lease cannot stop its workers: they stop
    themselves before the lease runs out, so the attempt that takes over never runs alongside."""
    lease = 3.0
    with JobQueue(db_path) as q:
        stalled = start_consumer(db_path, workers=1, lease=lease)
        other = None
        try:
            job = q.submit(jobfuncs.mark_alive, str(tmp_path), 2 * lease, retries=2)
            wait_until(lambda: traces(tmp_path / "alive"), timeout=60)
            os.kill(stalled.pid, signal.SIGSTOP)
            other = start_consumer(db_path, workers=1, lease=lease)
            assert job.result(timeout=60) == job.id
        finally:
            os.kill(stalled.pid, signal.SIGCONT)
            logs = [stop(proc) for proc in (stalled, other) if proc is not None]
        assert_no_errors(logs[1])
        record = q.get(job.id)
        assert record.status is Status.SUCCEEDED and record.attempt == 2
        starts = {a: t for _, a, t in traces(tmp_path / "starts")}
        alive_first = [t for _, a, t in traces(tmp_path / "alive") if a == 1]
        assert set(starts) == {1, 2}
        assert max(alive_first) < starts[2]  # attempt 1 was over before attempt 2 began
        assert [a for _, a, _ in traces(tmp_path / "ends")] == [2]


def test_every_handle_settles_without_the_periodic_full_poll(db_path):
    """Finishes seen by the watcher must reach handles registered while it polled."""
    with JobQueue(db_path) as q:
        q.backend.full_poll_interval = float("inf")  # only finished_since may settle them
        consumer = start_consumer(db_path)
        try:
            q.submit(jobfuncs.noop).result(timeout=60)  # the watcher is running from here on
            for _ in range(3):
                jobs = q.map(jobfuncs.add, range(1000))
                assert [j.result(timeout=60) for j in jobs] == list(range(1000))
        finally:
            log = stop(consumer)
        assert_no_errors(log)


def test_a_kill_loop_loses_no_job_and_runs_no_attempt_twice(db_path, tmp_path):
    """Random kill -9s of workers and of the consumer, and one of a real Jupyter server, under
    300 short jobs (the long version is `benchmarks/chaos.py`): every job ends, none lost; no
    attempt's code ran twice; the jobs a killed consumer or server held are labelled as soon as
    the next one starts."""
    report = kill_loop(db_path, tmp_path, jobs=300, kills=12, seed=17, server_kills=1)
    assert report.kills["worker"] >= 3 and report.kills["consumer"] >= 2, report.kills
    assert report.kills["server"] == 1, report.kills
    assert "Traceback" not in report.last_log, report.last_log[-3000:]
    assert "Traceback" not in report.last_server_log, report.last_server_log[-3000:]
    # Only a job that lost its worker too often may fail (poisoned), never silently.
    assert all(r.reason is Reason.WORKER_LOST for r in report.not_succeeded), report.not_succeeded
    assert report.attempts_completed_twice == []
    assert report.succeeded_without_their_run == []
    assert max(report.label_seconds) < 5.0  # a consumer's start (~1 s) and its recovery
