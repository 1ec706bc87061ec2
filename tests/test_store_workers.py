"""The workers table (`store/workers.py`): what consumers write, what any process lists, and
drains asked through it, on real store files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from jupyter_jobs.errors import WorkerNotFound
from jupyter_jobs.store import Store
from jupyter_jobs.store.workers import STALE_AFTER
from jupyter_jobs.worker_info import WorkerInfo, WorkerStatus


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def worker(pid: int, state: WorkerStatus = WorkerStatus.IDLE, **fields) -> WorkerInfo:
    return WorkerInfo(
        id=f"h:{pid}", pid=pid, host="h", executor="local", state=state, drainable=True, **fields
    )


def everyone(consumer: str) -> bool:
    return True


def test_what_a_consumer_writes_another_store_lists(store: Store, db_path: Path) -> None:
    assert store.sync_workers("c1", [worker(1), worker(2, WorkerStatus.BUSY, job=7)]) == []
    with Store(db_path) as other:
        listed = other.workers(everyone)
    assert [(w.id, w.state, w.job, w.consumer) for w in listed] == [
        ("h:1", WorkerStatus.IDLE, None, "c1"),
        ("h:2", WorkerStatus.BUSY, 7, "c1"),
    ]
    assert all(time.time() - w.reported_at < 30 for w in listed)
    # A new description replaces the old: a worker gone is gone.
    store.sync_workers("c1", [worker(2)])
    assert [w.id for w in store.workers(everyone)] == ["h:2"]
    store.forget_workers("c1")
    assert store.workers(everyone) == []


def test_a_drain_is_handed_to_the_workers_consumer_once(store: Store, db_path: Path) -> None:
    store.sync_workers("c1", [worker(1), worker(2)])
    store.sync_workers("c2", [worker(3)])
    with Store(db_path) as other:  # another process asks
        asked = other.request_drain("h:2", everyone)
    assert asked.state is WorkerStatus.DRAINING and not asked.drainable and asked.consumer == "c1"
    shown = {w.id: w.state for w in store.workers(everyone)}
    assert shown == {"h:1": "idle", "h:2": "draining", "h:3": "idle"}
    assert store.sync_workers("c2", None) == []
    assert store.sync_workers("c1", None) == ["h:2"]
    assert store.sync_workers("c1", None) == []  # handed out once
    with pytest.raises(WorkerNotFound):
        store.request_drain("h:99", everyone)


def test_workers_of_gone_or_silent_consumers_are_not_listed(store: Store, db_path: Path) -> None:
    store.sync_workers("alive", [worker(1)])
    store.sync_workers("dead", [worker(2)])
    store.sync_workers("silent", [worker(3)])
    with sqlite3.connect(db_path) as conn:  # it last wrote long ago
        conn.execute(
            "UPDATE workers SET reported_at = ? WHERE consumer = 'silent'",
            (time.time() - STALE_AFTER - 1,),
        )
    listed = store.workers(lambda consumer: consumer != "dead")
    assert [w.id for w in listed] == ["h:1"]
    with pytest.raises(WorkerNotFound):
        store.request_drain("h:2", lambda consumer: consumer != "dead")
    # The next write of any consumer deletes the silent one's rows.
    store.sync_workers("alive", [worker(1)])
    with sqlite3.connect(db_path) as conn:
        consumers = {row[0] for row in conn.execute("SELECT consumer FROM workers")}
    assert consumers == {"alive", "dead"}
