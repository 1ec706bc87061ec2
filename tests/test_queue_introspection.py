"""Queue introspection: `Store.peek` (the claim's own rule, without its effects), and
`JobQueue.peek`, `len`, `is_empty` and `stats` on real store files."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from jupyter_jobs import JobQueue
from jupyter_jobs.models import JobSpec, Outcome, Status
from jupyter_jobs.store import Store

import jobfuncs
from store_driver import claim, finish
from waiting import wait_until

OK = Outcome(Status.SUCCEEDED, result=b"")


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def fill(store: Store, seed: int) -> None:
    """A queue with every rule of the claim in play: priorities, several owners (fair share),
    held jobs, jobs after others, a future `run_at`, an expired one, and claimed ones."""
    rng = random.Random(seed)
    owners = ["a.ipynb", "b.ipynb", "c.ipynb", "script:1"]
    specs = []
    for i in range(60):
        specs.append(
            JobSpec(
                name=f"j{i}",
                owner=rng.choice(owners),
                priority=rng.choice([0, 0, 0, 1, 5]),
                hold=rng.random() < 0.1,
                run_at=time.time() + 3600 if rng.random() < 0.05 else None,
                expires_at=time.time() - 1 if rng.random() < 0.05 else None,
            )
        )
    jobs = store.enqueue_many([(s, b"") for s in specs])
    store.enqueue_many([(JobSpec(name="after", after=[jobs[0].id]), b"")])
    claim(store, "other-consumer", 3, 60)  # held by another consumer: not claimable


def owners_table(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT owner, last_claim FROM owners ORDER BY owner").fetchall()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_peek_is_the_job_the_next_claim_takes_until_the_queue_is_empty(
    store: Store, seed: int
) -> None:
    fill(store, seed)
    taken = 0
    while True:
        peeked = store.peek()
        claimed = claim(store, "c1", 1, 60)
        if peeked is None:
            assert claimed == []
            break
        assert [c.job.id for c in claimed] == [peeked.id], f"after {taken} claims"
        taken += 1
    assert taken > 30  # the rules left most jobs claimable
    assert store.peek() is None


def test_peek_takes_nothing_and_notes_nothing(store: Store, db_path: Path) -> None:
    store.enqueue_many([(JobSpec(name=f"j{i}", owner=f"nb{i % 3}"), b"") for i in range(9)])
    claim(store, "c1", 2, 60)  # the owners served are noted by a claim
    before = owners_table(db_path)
    first = store.peek()
    again = store.peek()
    assert first is not None and again is not None and first.id == again.id
    assert owners_table(db_path) == before
    job = store.get(first.id)
    assert job.status is Status.QUEUED and job.lease_until is None and job.attempt == 0


def test_peeking_does_not_change_the_order_claims_follow(tmp_path: Path) -> None:
    """Two equal stores: one peeked before every claim, one never; the same claims."""
    orders = []
    for name, peek in (("peeked", True), ("plain", False)):
        with Store(tmp_path / name / "jobs.db") as store:
            fill(store, 7)
            order = []
            while True:
                if peek:
                    store.peek()
                claimed = claim(store, "c1", 2, 60)
                if not claimed:
                    break
                order.extend(c.job.name for c in claimed)
            orders.append(order)
    assert orders[0] == orders[1] and orders[0]


def test_nothing_to_peek_while_jobs_wait_for_time_release_or_others(store: Store) -> None:
    first = store.enqueue(JobSpec(name="first", hold=True), b"")
    store.enqueue(JobSpec(name="later", run_at=time.time() + 3600), b"")
    store.enqueue(JobSpec(name="after", after=[first.id]), b"")
    assert store.peek() is None
    store.release(first.id)
    assert store.peek().id == first.id


def test_overview_counts_the_queue(store: Store) -> None:
    store.enqueue_many([(JobSpec(name="q"), b"") for _ in range(3)])
    store.enqueue(JobSpec(name="held", hold=True), b"")
    (claimed,) = claim(store, "c1", 1, 60)
    finish(store, claimed.job.id, claimed.job.attempt, OK)
    numbers = store.overview()
    assert numbers["queued"] == 2 and numbers["pending"] == 1 and numbers["running"] == 0
    assert numbers["counts"][Status.SUCCEEDED.value] == 1
    assert numbers["db_size"] > 0 and numbers["workspace_bytes"] >= 0


def test_jobqueue_peek_len_is_empty_and_stats(db_path: Path) -> None:
    with JobQueue(db_path, owner="nb.ipynb") as q:
        assert q.is_empty() and len(q) == 0 and q.peek() is None and q
        held = q.submit(jobfuncs.add, 1, 1, hold=True)
        low = q.submit(jobfuncs.add, 1, 2)
        high = q.submit(jobfuncs.add, 1, 3, priority=5)
        q.backend.flush(30)
        assert len(q) == 2 and not q.is_empty()  # the held job cannot run yet
        assert q.peek().id == high.id  # priority first
        stats = q.stats()
        assert stats["queued"] == 2 and stats["pending"] == 1
        assert "executor" not in stats  # no consumer here
        q.register_type(jobfuncs.add, "adder")
        assert q.submit_typed("adder", {"a": 1}, hold=True).id  # stored
        typed = q.stats(type="adder")  # the numbers of that job type's jobs only
        assert (typed["pending"], typed["queued"], sum(typed["counts"].values())) == (1, 0, 1)
        assert q.stats()["pending"] == 2
        q.start_consumer(max_workers=1)
        assert high.result(timeout=60) == 4 and low.result(timeout=60) == 3
        wait_until(q.is_empty, 30, what="the queue empties")
        assert q.peek() is None
        assert q.stats()["executor"] == "local" and q.stats()["max_workers"] == 1
        assert q.release(held.id).result(timeout=60) == 2


def test_jobqueue_lists_its_consumers_workers_and_drains_one(db_path: Path) -> None:
    with JobQueue(db_path) as q:
        assert q.workers() == []  # no consumer serves the database yet
        q.start_consumer(max_workers=1)
        worker = wait_until(
            lambda: [w for w in q.workers() if w.state == "idle"], 30, what="a listed worker"
        )[0]
        assert psutil.pid_exists(worker.pid) and worker.consumer is not None
        drained = q.drain_worker(worker.id)
        assert drained.id == worker.id and drained.state == "draining"
        wait_until(lambda: not _running(worker.pid), 30, what="the drained worker exits")
        wait_until(
            lambda: worker.id not in {w.id for w in q.workers()}, 30, what="it is no longer listed"
        )
        assert q.submit(jobfuncs.add, 2, 2).result(timeout=60) == 4  # another one runs jobs


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
