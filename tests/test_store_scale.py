"""The store's kept data (counts, byte totals, search index) and its batched gc.

Counts and totals are kept by triggers so that listing and stats never read the jobs table;
these tests compare them with what a scan of the tables says, after every kind of write, and
after a gc stopped or killed between two of its batches. Search goes through a trigram index;
its results must be exactly those of the old `LIKE %q%` rule.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from jupyter_jobs.models import Change, JobError, JobSpec, Kind, Outcome, Progress, Reason, Status
from jupyter_jobs.store import Store, retention
from jupyter_jobs.store.queries import has_search_index
from jupyter_jobs.store.schema import fts_available

import old_schemas
from store_driver import append_log, claim, finish, set_progress, started
from waiting import wait_until

STATUSES = [s.value for s in Status]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "jobs.db", inline_limit=100)
    yield s
    s.close()


def scanned_counts(conn: sqlite3.Connection, owner: str | None = None) -> dict[str, int]:
    where, params = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
    rows = conn.execute(f"SELECT status, COUNT(*) FROM jobs {where} GROUP BY status", params)
    return {**dict.fromkeys(STATUSES, 0), **dict(rows.fetchall())}


def check_kept(store: Store) -> None:
    """The kept counts (all, and per owner) and byte totals equal a scan of the tables."""
    conn = sqlite3.connect(store.path)
    try:
        assert store.counts() == scanned_counts(conn)
        assert store.query(limit=1).counts == scanned_counts(conn)
        for (owner,) in conn.execute("SELECT DISTINCT owner FROM jobs").fetchall():
            assert store.counts(owner) == scanned_counts(conn, owner)
            assert store.query(owner=owner, limit=1).counts == scanned_counts(conn, owner)
        (blobs,) = conn.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()
        (logs,) = conn.execute("SELECT COALESCE(SUM(log_size), 0) FROM jobs").fetchone()
        stats = store.stats()
        assert stats["workspace_bytes"] == blobs + logs
        assert stats["total"] == sum(scanned_counts(conn).values())
    finally:
        conn.close()


def test_kept_counts_and_totals_follow_every_kind_of_write(store: Store) -> None:
    check_kept(store)
    a, b, c = store.enqueue_many(
        [
            (JobSpec(name="a", owner="nb1.ipynb", retries=1, retry_delay=0.0), b"p" * 500),
            (JobSpec(name="b", owner="nb2.ipynb"), b"small"),
            (JobSpec(name="c", owner="nb1.ipynb", hold=True), b""),
        ]
    )
    dependent = store.enqueue(JobSpec(name="d", owner="nb2.ipynb", after=[b.id]), b"")
    check_kept(store)  # submit

    [claimed] = claim(store, "c1", 1, 60.0)  # the oldest queued: a
    assert claimed.job.id == a.id
    check_kept(store)  # claim
    assert started(store, a.id, claimed.job.attempt)
    check_kept(store)  # start
    append_log(store, a.id, claimed.job.attempt, b"x" * 300)
    set_progress(store, a.id, claimed.job.attempt, Progress(done=1, total=2))
    check_kept(store)  # log, progress
    failed = Outcome(Status.FAILED, Reason.ERROR, JobError("E", "m", "tb"), result=b"r" * 200)
    finish(store, a.id, claimed.job.attempt, failed)
    assert store.get(a.id).status is Status.QUEUED  # retried by its policy
    check_kept(store)  # finish with a retry

    both = claim(store, "c1", 2, 60.0)
    assert sorted(c.job.id for c in both) == [a.id, b.id]
    for item in both:
        assert started(store, item.job.id, item.job.attempt)
        finish(store, item.job.id, item.job.attempt, Outcome(Status.SUCCEEDED, result=b"y" * 250))
    check_kept(store)  # finish, replacing the result blob of a's attempt before
    assert store.get(a.id).status is Status.SUCCEEDED

    store.release(c.id)
    check_kept(store)  # release
    store.request_cancel(c.id)
    check_kept(store)  # cancel
    store.retry(c.id)
    check_kept(store)  # retry

    claimed_b = claim(store, "lost", 2, 60.0)
    assert claimed_b
    assert started(store, claimed_b[0].job.id, claimed_b[0].job.attempt)
    store.recover(lambda consumer: consumer != "lost")
    check_kept(store)  # recover

    store.delete(dependent.id)
    check_kept(store)  # delete
    assert store.gc(older_than=0)
    check_kept(store)  # gc
    store.clear_finished()
    check_kept(store)  # clear


def test_an_existing_database_gets_its_counts_totals_and_index(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    old_schemas.schema_before(conn, "status_counts")  # before the counts were kept
    for i, status in enumerate(["queued", "succeeded", "succeeded", "failed"], start=1):
        conn.execute(
            "INSERT INTO jobs (id, name, kind, owner, status, created_at, log_size) "
            "VALUES (?, ?, 'function', ?, ?, 1.0, ?)",
            (i, f"old job {i}", f"nb{i % 2}.ipynb", status, 10 * i),
        )
        conn.execute(
            "INSERT INTO blobs (job_id, kind, size, data) VALUES (?, 'payload', 3, x'010203')",
            (i,),
        )
    conn.close()
    s = Store(path)
    try:
        check_kept(s)
        assert s.stats()["workspace_bytes"] == 4 * 3 + 10 + 20 + 30 + 40
        assert [j.id for j in s.query(q="old job 3").jobs] == [3]
    finally:
        s.close()


NAMES = [
    "train model",
    "Train Model v2",
    "100% done",
    "under_score",
    "back\\slash",
    'say "hi"',
    "it's",
    "café au lait",
    "CAFÉ",
    "naïve Bayes",
    "日本語のジョブ",
    "emoji 🚀 launch",
    "a AND b OR c",
    "NEAR(x y)",
    "star*",
    "-minus",
    "ab",
    "",
]
QUERIES = [
    "train", "TRAIN", "model", "v2", "%", "100%", "0%", "_", "under_", "r_s", "\\", "back\\",
    '"', 'say "', "'", "it's", "café", "CAFÉ", "afé", "Café", "naïve", "日本", "本語の", "🚀",
    "emoji 🚀", "AND", "a AND b", "OR c", "NEAR(", "*", "star*", "-", "-minus", "a", "ab",
    "abc", "nb", "notebooks/", ".ipynb", "o", "zzz", " ", "  ",
]  # fmt: skip


def like_rule(
    conn: sqlite3.Connection, q: str, owner: str | None = None
) -> tuple[list[int], dict[str, int]]:
    """Ids (newest first) and counts per status of the jobs the old `LIKE %q%` rule finds."""
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    sql = "SELECT id, status FROM jobs WHERE (name LIKE ? ESCAPE '\\' OR owner LIKE ? ESCAPE '\\')"
    params: list[str] = [pattern, pattern]
    if owner is not None:
        sql += " AND owner = ?"
        params.append(owner)
    rows = conn.execute(sql + " ORDER BY id DESC", params).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    for _, status in rows:
        counts[status] += 1
    return [r[0] for r in rows], counts


def searchable_store(path: Path) -> Store:
    s = Store(path)
    owners = ["notebooks/Analysis.ipynb", "notebooks/café.ipynb", "x.ipynb"]
    jobs = s.enqueue_many(
        [(JobSpec(name=n, owner=owners[i % 3]), b"") for i, n in enumerate(NAMES * 2)]
    )
    for job in jobs[::4]:
        s.request_cancel(job.id)
    return s


def assert_search_equals_like(s: Store) -> None:
    conn = sqlite3.connect(s.path)
    try:
        for q in QUERIES:
            for owner in (None, "notebooks/café.ipynb"):
                ids, counts = like_rule(conn, q, owner)
                page = s.query(q=q, owner=owner, limit=500)
                assert ([j.id for j in page.jobs], page.counts) == (ids, counts), (q, owner)
                cancelled = s.query(q=q, owner=owner, status=["cancelled"], limit=3)
                wanted = [i for i in ids if s.get(i).status is Status.CANCELLED]
                assert [j.id for j in cancelled.jobs] == wanted[:3], (q, owner)
                assert (cancelled.next_cursor is not None) == (len(wanted) > 3)
                if cancelled.next_cursor:
                    rest = s.query(
                        q=q, owner=owner, status=["cancelled"], limit=500,
                        cursor=cancelled.next_cursor,
                    )  # fmt: skip
                    assert [j.id for j in rest.jobs] == wanted[3:]
    finally:
        conn.close()


@pytest.mark.skipif(
    not fts_available(sqlite3.connect(":memory:")), reason="no FTS5 trigram in this SQLite"
)
def test_search_through_the_index_finds_what_like_finds(tmp_path: Path) -> None:
    s = searchable_store(tmp_path / "jobs.db")
    try:
        assert has_search_index(s._db.conn())
        assert_search_equals_like(s)
        s.delete(s.query(q="train model", limit=1).jobs[0].id)  # the index follows deletes
        assert_search_equals_like(s)
    finally:
        s.close()


def test_search_without_the_index_scans_with_like(tmp_path: Path) -> None:
    s = searchable_store(tmp_path / "jobs.db")
    try:
        conn = s._db.conn()
        for trigger in ("jobs_fts_insert", "jobs_fts_delete", "jobs_fts_update"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute("DROP TABLE IF EXISTS jobs_fts")
        assert not has_search_index(conn)
        assert_search_equals_like(s)
    finally:
        s.close()


def test_gc_deletes_in_batches_and_the_file_shrinks(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db")
    try:
        jobs = s.enqueue_many([(JobSpec(name=f"job {i}"), os.urandom(3000)) for i in range(3000)])
        keep = s.enqueue(JobSpec(name="queued"), b"")
        for job in jobs:
            s.request_cancel(job.id)  # queued, so cancelled at once: finished
        s._db.checkpoint()
        before = os.stat(s.path).st_size
        published: list[list[Change]] = []
        s.subscribe(published.append)
        deleted = s.gc(older_than=0)
        assert deleted == [j.id for j in jobs]
        assert len(published) >= 2  # one list of changes per batch, not one for all
        assert all(c.what == "deleted" for batch in published for c in batch)
        assert sum(len(batch) for batch in published) == len(jobs)
        assert [j.id for j in s.query(limit=10).jobs] == [keep.id]
        check_kept(s)
        assert os.stat(s.path).st_size < before / 4
    finally:
        s.close()


def test_gc_of_a_database_without_incremental_vacuum_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    sqlite3.connect(path).execute("CREATE TABLE older (x)").connection.close()  # no auto vacuum
    s = Store(path)
    try:
        jobs = s.enqueue_many([(JobSpec(name="j"), os.urandom(3000)) for _ in range(300)])
        for job in jobs:
            s.request_cancel(job.id)
        assert s.gc(older_than=0) == [j.id for j in jobs]
        check_kept(s)
        assert s._db.conn().execute("PRAGMA freelist_count").fetchone()[0] > 0
    finally:
        s.close()


def finished_jobs(s: Store, n: int, name: str = "old job") -> list[int]:
    """`n` failed jobs, stored in one transaction (each runs after a cancelled one)."""
    first = s.enqueue(JobSpec(name="cancelled"), b"")
    s.request_cancel(first.id)
    jobs = s.enqueue_many(
        [(JobSpec(name=f"{name} {i}", owner=f"nb{i % 3}.ipynb", after=[first.id]), b"p" * 50)
         for i in range(n)]
    )  # fmt: skip
    assert all(job.status is Status.FAILED for job in jobs)
    return [first.id, *(job.id for job in jobs)]


def assert_search_finds_what_like_finds(s: Store, queries: list[str]) -> None:
    conn = sqlite3.connect(s.path)
    try:
        for q in queries:
            ids, counts = like_rule(conn, q)
            page = s.query(q=q, limit=100)
            assert ([j.id for j in page.jobs], page.counts) == (ids[:100], counts), q
    finally:
        conn.close()


GC_ONCE = """
import sys
from jupyter_jobs.store import Store, retention
Store(sys.argv[1]).gc(older_than=0)
"""


def test_a_gc_killed_between_batches_leaves_a_consistent_store_and_the_next_finishes(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "jobs.db")
    try:
        old = finished_jobs(s, 10_000)
        kept = s.enqueue(JobSpec(name="old job, queued"), b"")
        s._db.checkpoint()
        before = os.stat(s.path).st_size
        gc = subprocess.Popen([sys.executable, "-c", GC_ONCE, str(s.path)])
        try:
            left = wait_until(
                lambda: 0 < (n := s.counts()["failed"]) < len(old) - 1 and n,
                60,
                0.002,
                what="gc under way",
            )
        finally:
            gc.kill()  # kill -9: between two batches, or in one (rolled back)
            gc.wait(30)
        assert 0 < s.counts()["failed"] <= left
        check_kept(s)
        assert_search_finds_what_like_finds(s, ["old job", "job 99", "queued", "nb1"])

        left_ids = [j.id for j in s.get_many(old)]
        assert sorted(s.gc(older_than=0)) == left_ids
        assert [j.id for j in s.query(limit=10).jobs] == [kept.id]
        check_kept(s)
        assert_search_finds_what_like_finds(s, ["old job", "job 99", "queued"])
        assert os.stat(s.path).st_size < before / 2
    finally:
        s.close()


def test_a_gc_stopped_after_a_batch_keeps_counts_and_the_next_one_goes_on(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "jobs.db")
    try:
        old = finished_jobs(s, 3000)
        stop = threading.Event()
        s.subscribe(lambda changes: stop.set())  # in the gc's thread, after its first batch
        first = s.gc(older_than=0, stop=stop)
        assert 0 < len(first) < len(old) and first == old[: len(first)]
        check_kept(s)
        assert_search_finds_what_like_finds(s, ["old job", "job 2999"])
        rest = s.gc(older_than=0)
        assert first + rest == old
        check_kept(s)
        assert s.counts() == dict.fromkeys(STATUSES, 0)
    finally:
        s.close()


def test_a_deletion_publishes_brief_records_not_whole_ones(store: Store) -> None:
    job = store.enqueue(
        JobSpec(
            name="typed",
            kind=Kind.TYPED,
            owner="nb.ipynb",
            type="t",
            parameters={"x": 1},
            channel="ch",
        ),
        b"",
    )
    [claimed] = claim(store, "c1", 1, 60.0)
    assert started(store, job.id, claimed.job.attempt)
    error = JobError("ValueError", "bad", "Traceback ... " * 100)
    finish(store, job.id, claimed.job.attempt, Outcome(Status.FAILED, Reason.ERROR, error))
    whole = store.get(job.id)
    assert whole.error == error and whole.parameters == {"x": 1}
    published: list[Change] = []
    store.subscribe(published.extend)
    assert store.gc(older_than=0) == [job.id]
    [change] = published
    gone = change.job
    assert change.what == "deleted"
    assert (gone.id, gone.name, gone.owner, gone.user, gone.status, gone.reason) == (
        whole.id, whole.name, whole.owner, whole.user, whole.status, whole.reason
    )  # fmt: skip
    assert (gone.type, gone.channel, gone.attempt, gone.finished_at) == (
        "t", "ch", whole.attempt, whole.finished_at
    )  # fmt: skip
    assert gone.error is None and gone.parameters is None  # not read


def test_while_gc_copies_the_wal_back_the_other_commits_of_the_process_leave_it_to_gc(
    store: Store,
) -> None:
    def autocheckpoint_of_a_commit_in_another_thread() -> int:
        found: list[int] = []

        def submit() -> None:
            store.enqueue(JobSpec(name="j"), b"")
            found.append(store._db.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0])

        thread = threading.Thread(target=submit)
        thread.start()
        thread.join(30)
        return found[0]

    assert autocheckpoint_of_a_commit_in_another_thread() == 1000  # SQLite's default
    with store._db.checkpointing():
        assert autocheckpoint_of_a_commit_in_another_thread() == 0
    assert autocheckpoint_of_a_commit_in_another_thread() == 1000


def test_gc_prunes_a_long_finished_log_to_its_newest_entries(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "FINISHED_LOG_KEEP", 100)
    ids = finished_jobs(store, 500)
    mark = store.finished_since(None)[1]
    store.gc()
    conn = sqlite3.connect(store.path)
    try:
        logged = [r[0] for r in conn.execute("SELECT job_id FROM finished_log ORDER BY seq")]
    finally:
        conn.close()
    assert logged == ids[-100:]
    assert store.finished_since(mark) == ([], mark)
