"""Races and kills against real processes: several consumers, kill -9 of workers and consumers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from jupyter_jobs import JobQueue
from jupyter_jobs.errors import JobFailed
from jupyter_jobs.models import Reason, Status

import jobfuncs
from waiting import wait_until

pytestmark = pytest.mark.slow


def start_consumer(db: Path, workers: int = 2) -> subprocess.Popen:
    """A `jupyter jobs consumer` process; its stderr goes to a file beside the database."""
    log = db.with_name(f"consumer-{os.urandom(4).hex()}.log")
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_jobs.cli",
                "consumer",
                "--db",
                str(db),
                "--max-workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    """Stop the consumer; returns what it wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise
    return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def assert_no_errors(stderr: str) -> None:
    """A consumer that logged a traceback failed a tick, even if it recovered afterwards."""
    assert "Traceback" not in stderr, stderr[-3000:]


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


def test_every_handle_settles_without_the_periodic_full_poll(db_path):
    """Finishes seen by the watcher must reach handles registered while it polled."""
    with JobQueue(db_path) as q:
        q._backend.full_poll_interval = float("inf")  # only finished_since may settle them
        consumer = start_consumer(db_path)
        try:
            q.submit(jobfuncs.noop).result(timeout=60)  # the watcher is running from here on
            for _ in range(3):
                jobs = q.map(jobfuncs.add, range(1000))
                assert [j.result(timeout=60) for j in jobs] == list(range(1000))
        finally:
            log = stop(consumer)
        assert_no_errors(log)
