"""The job list by job type (`Store.query(type=...)`, `?type=`) on real SQLite files: pages
through the type's own indexes, counts kept per type by triggers and equal to a scan after
every kind of write, the type combined with the other filters, and an existing database's
typed jobs counted by the migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jupyter_jobs.models import JobSpec, JobUser, Kind, Outcome, Status
from jupyter_jobs.store import Store
from jupyter_jobs.store.schema import SELECT_JOBS

import old_schemas
from store_driver import claim, finish, started

STATUSES = [s.value for s in Status]
ALICE, BOB = JobUser("alice", "Alice"), JobUser("bob", "Bob")


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "jobs.db")
    yield s
    s.close()


def typed(type_name: str, owner: str = "app", **fields) -> tuple[JobSpec, bytes]:
    spec = JobSpec(kind=Kind.TYPED, name=type_name, owner=owner, type=type_name, **fields)
    return spec, b'{"type": "x", "parameters": {}, "entry_point": "m:f"}\n'


def plain(owner: str = "app", **fields) -> tuple[JobSpec, bytes]:
    return JobSpec(name="f", owner=owner, **fields), b"payload"


def scanned(store: Store, **where: str) -> dict[str, int]:
    """Jobs per status of the filter, counted from the jobs table itself."""
    conn = sqlite3.connect(store.path)
    try:
        sql = " AND ".join(["1", *(f"{column} = ?" for column in where)])
        rows = conn.execute(
            f"SELECT status, COUNT(*) FROM jobs WHERE {sql} GROUP BY status", tuple(where.values())
        ).fetchall()
    finally:
        conn.close()
    return {**dict.fromkeys(STATUSES, 0), **dict(rows)}


def check_type_counts(store: Store) -> None:
    """The kept counts of every type, alone and with a user and a notebook, equal a scan."""
    conn = sqlite3.connect(store.path)
    try:
        combos = conn.execute("SELECT DISTINCT type, user, owner FROM jobs").fetchall()
    finally:
        conn.close()
    for type_name, user, owner in combos:
        if type_name is None:
            continue
        assert store.counts(type=type_name) == scanned(store, type=type_name)
        assert store.overview(type=type_name)["counts"] == scanned(store, type=type_name)
        numbers = store.overview(user, type_name)  # `GET /stats?type=&user=`
        assert numbers["counts"] == scanned(store, type=type_name, user=user)
        assert numbers["queued"] == numbers["counts"]["queued"]
        assert store.query(type=type_name, limit=1).counts == scanned(store, type=type_name)
        both = store.query(type=type_name, user=user, limit=1).counts
        assert both == scanned(store, type=type_name, user=user)
        assert store.counts(owner, None, type_name) == scanned(store, type=type_name, owner=owner)


def test_type_counts_follow_every_kind_of_write(store: Store) -> None:
    a, b, c, _ = store.enqueue_many(
        [typed("train", retries=1, retry_delay=0.0), typed("train", owner="nb.ipynb"),
         typed("explain", hold=True), plain()],
        ALICE,
    )  # fmt: skip
    store.enqueue_many([typed("train"), plain()], BOB)
    check_type_counts(store)  # submit
    for item in claim(store, "c1", 6, 60.0):
        assert started(store, item.job.id, item.job.attempt)
        if item.job.id == a.id:
            failed = Outcome(Status.FAILED)
            finish(store, a.id, item.job.attempt, failed)  # retried: queued again
        else:
            finish(store, item.job.id, item.job.attempt, Outcome(Status.SUCCEEDED, result=b"1"))
    check_type_counts(store)  # claim, start, finish, automatic retry
    assert store.get(a.id).status is Status.QUEUED
    store.release(c.id)
    store.request_cancel(c.id)
    check_type_counts(store)  # release, cancel
    store.retry(c.id)
    check_type_counts(store)  # explicit retry
    store.request_cancel(a.id)
    store.delete(b.id)
    check_type_counts(store)  # delete
    assert store.gc(older_than=0)
    check_type_counts(store)  # gc
    store.clear_finished()
    check_type_counts(store)  # clear
    # all that is left of the typed jobs is alice's explain, queued again
    assert store.counts(type="explain")["queued"] == 1
    assert sum(store.counts(type="train").values()) == 0


def test_a_types_list_pages_newest_first_with_the_other_filters(store: Store) -> None:
    made = store.enqueue_many(
        [typed("train") if i % 3 else plain() for i in range(30)]
        + [typed("train", owner="nb.ipynb"), typed("explain")],
        ALICE,
    )
    store.enqueue_many([typed("train", owner="nb.ipynb")], BOB)
    trains = [j.id for j in sorted(made, key=lambda j: -j.id) if j.type == "train"]
    ids, cursor = [], None
    while True:
        page = store.query(type="train", user="alice", limit=7, cursor=cursor)
        ids += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids == trains
    assert page.counts["queued"] == len(trains) == 21
    assert store.query(type="train", limit=500).counts["queued"] == 22  # bob's too
    by_owner = store.query(type="train", owner="nb.ipynb", limit=50)
    assert {j.user for j in by_owner.jobs} == {"alice", "bob"} and by_owner.counts["queued"] == 2
    assert store.query(type="train", status=["running"], limit=5).jobs == []
    assert [j.type for j in store.query(type="explain", limit=5).jobs] == ["explain"]
    assert store.query(type="none-such", limit=5).jobs == []
    assert sum(store.query(type="none-such", limit=5).counts.values()) == 0
    # a search within a type: names through the index, notebooks among the type's counts
    found = store.query(type="train", q="nb.ip", limit=50)
    assert sorted(j.id for j in found.jobs) == sorted(j.id for j in by_owner.jobs)
    assert found.counts["queued"] == 2
    named = store.query(type="explain", q="expl", limit=50)
    assert [j.type for j in named.jobs] == ["explain"] and named.counts["queued"] == 1
    short = store.query(type="train", q="tr", limit=500)  # under a trigram: a LIKE scan
    assert len(short.jobs) == 22 and short.counts["queued"] == 22


def test_a_types_list_and_counts_seek_their_indexes(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    try:
        for sql, params in [
            (f"{SELECT_JOBS} WHERE type = ? AND 1 ORDER BY id DESC LIMIT 5", ("t",)),
            (f"{SELECT_JOBS} WHERE type = ? AND status = ? ORDER BY id DESC LIMIT 5", ("t", "q")),
            (
                "SELECT status, SUM(n) FROM type_counts WHERE user = ? AND type = ? "
                "GROUP BY status",
                ("u", "t"),
            ),
        ]:
            plan = " ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "SEARCH" in plan and "SCAN" not in plan, (sql, plan)
    finally:
        conn.close()


def test_the_type_migration_counts_the_typed_jobs_already_there(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    old_schemas.schema_before(conn, "type_counts")
    conn.executemany(
        "INSERT INTO jobs (name, kind, owner, status, created_at, type, user) "
        "VALUES ('t', ?, 'nb', ?, 1.0, ?, 'alice')",
        [
            ("typed", "succeeded", "train"),
            ("typed", "queued", "train"),
            ("function", "queued", None),
        ],
    )
    conn.close()
    with Store(path) as s:
        assert s.counts(type="train") == {**dict.fromkeys(STATUSES, 0), "succeeded": 1, "queued": 1}
        assert [j.id for j in s.query(type="train", user="alice").jobs] == [2, 1]
        check_type_counts(s)
