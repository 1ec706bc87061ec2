"""gc prunes result channel cursors (`retention.prune_channel_readers`) on real SQLite files: a
cursor goes once no job it acknowledged is left in its channel, and not before; what a reader
reads after its cursor went is exactly what it would have read with it; many cursors go in
gc's short batches."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jupyter_jobs.models import JobSpec
from jupyter_jobs.store import Store, retention


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def cursors(store: Store) -> dict[tuple[str, str], int]:
    conn = sqlite3.connect(store.path)
    try:
        rows = conn.execute("SELECT channel, reader, acked FROM channel_readers").fetchall()
    finally:
        conn.close()
    return {(channel, reader): acked for channel, reader, acked in rows}


def ended(store: Store, channel: str, count: int) -> list[int]:
    """`count` jobs of `channel`, ended (cancelled while queued); their ids."""
    jobs = store.enqueue_many(
        [(JobSpec(name=f"j{i}", channel=channel), b"p") for i in range(count)]
    )
    for job in jobs:
        store.request_cancel(job.id)
    return [job.id for job in jobs]


def read(store: Store, channel: str, reader: str) -> list[int]:
    return [d.job.id for d in store.channel_next(channel, reader, limit=100).deliveries]


def test_a_cursor_goes_once_no_job_it_acknowledged_is_left_and_reading_is_unchanged(store):
    first = ended(store, "ch", 3)
    seqs = [d.seq for d in store.channel_next("ch", "slow", limit=10).deliveries]
    store.channel_ack("ch", "slow", seqs[0])  # read one of three
    store.channel_ack("ch", "done", seqs[2])  # read all three
    store.channel_ack("ch", "idle", seqs[0])
    store.gc(older_than=None)  # nothing deleted: every cursor still points at a job
    assert set(cursors(store)) == {("ch", "slow"), ("ch", "done"), ("ch", "idle")}

    store.delete(first[0])  # the one job "slow" and "idle" acknowledged
    before = {reader: read(store, "ch", reader) for reader in ("slow", "done", "idle")}
    store.gc(older_than=None)
    assert set(cursors(store)) == {("ch", "done")}  # it still has jobs it read behind it
    after = {reader: read(store, "ch", reader) for reader in ("slow", "done", "idle")}
    assert after == before == {"slow": first[1:], "done": [], "idle": first[1:]}

    later = ended(store, "ch", 2)  # positions are never reused: past the old cursors too
    for job_id in first[1:]:
        store.delete(job_id)
    store.gc(older_than=None)
    assert cursors(store) == {}
    assert read(store, "ch", "done") == later  # its old cursor would have said the same
    assert read(store, "ch", "slow") == later


def test_gc_of_the_jobs_takes_their_channels_cursors_with_them(store):
    ended(store, "gone", 2)
    ended(store, "kept", 1)
    for channel in ("gone", "kept"):
        last = store.channel_next(channel, "r", limit=10).deliveries[-1]
        store.channel_ack(channel, "r", last.seq)
    store.clear_finished()  # every job goes; their cursors wait for gc
    assert set(cursors(store)) == {("gone", "r"), ("kept", "r")}
    ended(store, "kept", 1)
    (new,) = store.channel_next("kept", "r2").deliveries
    store.channel_ack("kept", "r2", new.seq)
    store.gc(older_than=None)
    # r's jobs are gone in both channels; r2's job of "kept" is there
    assert cursors(store) == {("kept", "r2"): new.seq}


def test_many_cursors_are_pruned_in_short_batches_each_its_own_transaction(store, monkeypatch):
    ended(store, "ch", 1)
    (entry,) = store.channel_next("ch", "r0").deliveries
    for i in range(1000):
        store.channel_ack("ch", f"r{i}", entry.seq)
    store.clear_finished()
    ended(store, "live", 1)
    (live,) = store.channel_next("live", "stay").deliveries
    store.channel_ack("live", "stay", live.seq)
    calls: list[int] = []
    real = retention.prune_channel_readers

    def counted(conn: sqlite3.Connection, after: tuple[str, str], limit: int):
        calls.append(limit)
        assert conn.in_transaction  # each batch in a transaction of its own
        return real(conn, after, limit)

    monkeypatch.setattr(retention, "prune_channel_readers", counted)
    monkeypatch.setattr(retention.Batches, "largest", 64)
    store.gc(older_than=None)
    assert len(calls) >= 10 and all(16 <= limit <= 64 for limit in calls)
    assert cursors(store) == {("live", "stay"): live.seq}
