"""The store on real SQLite files: life rules, ordering, fencing, races between real processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import jupyter_jobs
from jupyter_jobs import oslayer
from jupyter_jobs import store as store_module
from jupyter_jobs.errors import (
    IllegalTransition,
    InvalidRequest,
    JobNotFound,
    NotAllowed,
    ResultNotReady,
    StorageError,
    WorkspaceConflict,
)
from jupyter_jobs.models import (
    TRANSITIONS,
    Change,
    FileBytes,
    JobError,
    JobSpec,
    JobUser,
    Kind,
    Outcome,
    Progress,
    Reason,
    Status,
    now,
)
from jupyter_jobs.oslayer import filesystem_type
from jupyter_jobs.start_log import Recorder
from jupyter_jobs.store import MIGRATIONS, Store, moves

import old_schemas
from store_driver import (
    append_log,
    append_log_many,
    by_dead_owner,
    claim,
    finish,
    finish_many,
    set_progress,
    started,
)
from waiting import wait_until

REPO = Path(jupyter_jobs.__file__).resolve().parent.parent
OK = Outcome(Status.SUCCEEDED, result=b"ok")


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def spec(name: str = "job", **kwargs) -> JobSpec:
    return JobSpec(name=name, **kwargs)


def start(store: Store, job_id: int, consumer: str = "c1", lease: float = 60.0) -> int:
    """Claim `job_id` (it must be the only queued job) and start it; returns its attempt."""
    claimed = claim(store, consumer, 1, lease)
    assert [c.job.id for c in claimed] == [job_id]
    attempt = claimed[0].job.attempt
    assert started(store, job_id, attempt)
    return attempt


def fail(reason: Reason = Reason.ERROR, exit: str | None = None) -> Outcome:
    return Outcome(Status.FAILED, reason, JobError("ValueError", "boom", "tb"), exit=exit)


def python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def communicate(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


# -- files, journal, schema -------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        s = Store(tmp_path / "a" / "b" / "jobs.db", inline_limit=10)
        job = s.enqueue(spec(), b"x" * 100)
        attempt = start(s, job.id)
        append_log(s, job.id, attempt, b"hello\n")
        finish(s, job.id, attempt, Outcome(Status.SUCCEEDED, result=b"r" * 100, outputs=b"[]"))
        listener = s.listen()
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700
    for name in ("jobs.db", "jobs.db-wal", "jobs.db-shm"):
        assert mode(tmp_path / "a" / "b" / name) == 0o600, name
    assert mode(s.workspace_root) == 0o700
    assert mode(s.workspace_root / str(job.id)) == 0o700
    files = list((s.workspace_root / str(job.id)).iterdir())
    assert {f.name for f in files} == {"payload", "log", "result.1"}
    assert all(mode(f) == 0o600 for f in files)
    assert mode(s.doorbell.directory) == 0o700
    assert mode(listener.path) == 0o600
    listener.close()
    s.close()


def test_small_jobs_need_no_workspace_folder(store: Store) -> None:
    job = store.enqueue(spec(), b"tiny")
    attempt = start(store, job.id)
    finish(store, job.id, attempt, OK)
    assert not (store.workspace_root / str(job.id)).exists()
    assert store.result(job.id) == b"ok"


# -- one workspace folder per database --------------------------------------------------------


def finished_job(s: Store, log: bytes, result: bytes) -> int:
    """A job that logged `log` and succeeded with `result`; its id."""
    job = s.enqueue(spec(), b"p")
    attempt = start(s, job.id)
    append_log(s, job.id, attempt, log)
    finish(s, job.id, attempt, Outcome(Status.SUCCEEDED, result=result))
    return job.id


def test_two_databases_in_one_folder_each_get_their_own_results_and_logs(
    tmp_path: Path,
) -> None:
    a = Store(tmp_path / "a.db", inline_limit=10)
    b = Store(tmp_path / "b.db", inline_limit=10)
    assert finished_job(a, b"AAA\n", b"A" * 100) == finished_job(b, b"BBB\n", b"B" * 100) == 1
    assert (a.result(1), a.read_log(1)[0]) == (b"A" * 100, b"AAA\n")
    assert (b.result(1), b.read_log(1)[0]) == (b"B" * 100, b"BBB\n")
    assert a.workspace_root == tmp_path / "a.db.files" and mode(a.workspace_root) == 0o700
    assert mode(a.workspace_root / "workspace-id") == 0o600
    a.delete(1)
    assert b.result(1) == b"B" * 100
    a.close()
    b.close()


OPENER = """
import sys
from jupyter_jobs.store import Store
sys.stdin.readline()  # all start together
with Store(sys.argv[1]) as s:
    print(s.workspace_root)
"""


def test_processes_creating_one_database_at_once_all_open_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    procs = [python(OPENER, str(path)) for _ in range(4)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    assert {communicate(p).strip() for p in procs} == {str(tmp_path / "jobs.db.files")}
    assert sorted(os.listdir(tmp_path / "jobs.db.files")) == ["workspace-id"]
    with Store(path) as s:
        assert finished_job(s, b"log\n", b"r") == 1


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_new_database_refuses_the_files_a_deleted_one_left(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = Store(path, inline_limit=10)
    finished_job(old, b"old log\n", b"R" * 100)
    old.close()
    remove_database(path)
    before = {p: p.read_bytes() for p in old.workspace_root.rglob("*") if p.is_file()}
    with pytest.raises(WorkspaceConflict, match=r"jobs\.db\.files"):
        Store(path)
    assert not path.exists()  # refused before anything was created
    assert {p: p.read_bytes() for p in old.workspace_root.rglob("*") if p.is_file()} == before
    shutil.rmtree(old.workspace_root)
    with Store(path) as new:
        assert finished_job(new, b"new\n", b"n") == 1 and new.read_log(1)[0] == b"new\n"


def test_a_folder_marked_for_another_database_is_refused_unread(tmp_path: Path) -> None:
    a = Store(tmp_path / "a.db", inline_limit=10)
    b = Store(tmp_path / "b.db", inline_limit=10)
    finished_job(a, b"AAA\n", b"A" * 100)
    finished_job(b, b"BBB\n", b"B" * 100)
    a.close()
    b.close()
    a.workspace_root.rename(tmp_path / "swap")
    b.workspace_root.rename(a.workspace_root)
    with pytest.raises(WorkspaceConflict, match="belongs to another database"):
        Store(tmp_path / "a.db")
    assert (a.workspace_root / "1" / "log").read_bytes() == b"BBB\n"


def test_an_unmarked_folder_that_holds_files_is_refused(tmp_path: Path) -> None:
    stray = tmp_path / "jobs.db.files" / "1"
    stray.mkdir(parents=True)
    (stray / "log").write_bytes(b"whose?\n")
    with pytest.raises(WorkspaceConflict, match="holds files"):
        Store(tmp_path / "jobs.db")
    (tmp_path / "jobs.db").touch()  # an existing (empty) database: checked after it opens
    with pytest.raises(WorkspaceConflict, match="no workspace-id"):
        Store(tmp_path / "jobs.db")
    assert (stray / "log").read_bytes() == b"whose?\n"


def legacy_database(path: Path, logs: dict[int, bytes], result: bytes | None = None) -> None:
    """A database as versions before workspace ids wrote it: jobs with these logs (files in
    `jobs/` beside it, appended to, as two such databases in one folder did), and job 1's
    result in a file."""
    conn = sqlite3.connect(path, isolation_level=None)
    old_schemas.schema_before(conn, "CREATE TABLE meta")
    folder = path.parent / "jobs"
    for job_id, log in logs.items():
        conn.execute(
            "INSERT INTO jobs (id, name, kind, status, created_at, finished_at, log_size) "
            "VALUES (?, 'old', 'function', 'succeeded', 1.0, 2.0, ?)",
            (job_id, len(log)),
        )
        (folder / str(job_id)).mkdir(parents=True, exist_ok=True)
        with open(folder / str(job_id) / "log", "ab") as f:
            f.write(log)
    if result is not None:
        conn.execute(
            "INSERT INTO blobs (job_id, kind, attempt, size, path) "
            "VALUES (1, 'result', 1, ?, '1/result.1')",
            (len(result),),
        )
        (folder / "1" / "result.1").write_bytes(result)
    conn.close()


def test_a_database_from_before_workspace_ids_takes_its_jobs_folder_along(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    legacy_database(path, {1: b"old log\n", 2: b"two\n"}, result=b"R" * 100)
    with caplog.at_level(logging.WARNING, "jupyter_jobs.workspace"), Store(path) as s:
        assert s.result(1) == b"R" * 100 and s.read_log(2)[0] == b"two\n"
        assert not (tmp_path / "jobs").exists() and mode(s.workspace_root) == 0o700
    assert "moved the job files" in caplog.text
    with Store(path) as s:  # once: the next open just checks the marker
        assert s.read_log(1)[0] == b"old log\n"
        assert finished_job(s, b"three\n", b"3") == 3


def test_two_old_databases_sharing_a_jobs_folder_never_read_each_others_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy_database(tmp_path / "a.db", {1: b"AAA\n"})
    legacy_database(tmp_path / "b.db", {1: b"BBB\n", 2: b"B2\n"}, result=b"B" * 100)
    shared = {p: p.read_bytes() for p in (tmp_path / "jobs").rglob("*") if p.is_file()}
    with caplog.at_level(logging.WARNING, "jupyter_jobs.workspace"):
        with Store(tmp_path / "a.db") as a:  # jobs/2 is not one of a's
            assert a.read_log(1)[0] == b""
        assert "holds 2, which no job of this database made" in caplog.text
        with Store(tmp_path / "b.db") as b:  # jobs/1/log holds a's lines too
            assert b.read_log(1)[0] == b"" and b.read_log(2)[0] == b""
            with pytest.raises(StorageError, match="missing"):
                b.result(1)
        assert "1/log has 8 bytes" in caplog.text
    assert {p: p.read_bytes() for p in (tmp_path / "jobs").rglob("*") if p.is_file()} == shared


def test_default_path_is_in_the_jupyter_data_dir() -> None:
    from jupyter_core.paths import jupyter_data_dir

    assert store_module.default_db_path() == Path(jupyter_data_dir()) / "jupyter_jobs" / "jobs.db"


def test_wal_is_on_locally(store: Store, db_path: Path) -> None:
    assert store.journal_mode == "wal"
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def fake_mounts(monkeypatch: pytest.MonkeyPatch, mounts: list[tuple[str, str]]) -> None:
    """No NFS here: the mount table is the one thing faked."""
    monkeypatch.setattr(oslayer, "_read_mounts", lambda: mounts)


def test_network_filesystem_uses_the_rollback_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_mounts(monkeypatch, [("/", "ext4"), (str(tmp_path), "nfs4")])
    with caplog.at_level(logging.WARNING, logger="jupyter_jobs.store"):
        s = Store(tmp_path / "home" / "jobs.db")
    assert s.journal_mode == "delete"
    assert "network filesystem (nfs4)" in caplog.text
    assert "local path" in caplog.text
    job = s.enqueue(spec(), b"x")
    assert s.get(job.id).status is Status.QUEUED
    conn = sqlite3.connect(s.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    s.close()


def test_wal_forced_on_a_network_filesystem_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mounts(monkeypatch, [("/", "ext4"), (str(tmp_path / "nfs"), "nfs")])
    with pytest.raises(StorageError, match="local path"):
        Store(tmp_path / "nfs" / "jobs.db", journal_mode="wal")
    s = Store(tmp_path / "local" / "jobs.db", journal_mode="wal")
    assert s.journal_mode == "wal"
    s.close()


def test_filesystem_type_takes_the_longest_mount_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mounts(monkeypatch, [("/", "ext4"), ("/home", "nfs"), ("/home/me/fast", "xfs")])
    assert filesystem_type("/home/me/x/jobs.db") == "nfs"
    assert filesystem_type("/home/me/fast/jobs.db") == "xfs"
    assert filesystem_type("/homework/jobs.db") == "ext4"
    assert filesystem_type("/home") == "nfs"


def test_real_mount_table_is_read() -> None:
    mounts = oslayer._read_mounts()
    assert any(point == "/" for point, _ in mounts)
    assert filesystem_type("/") is not None


def test_migrations_upgrade_an_old_database_and_keep_data(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    sqlite3.connect(path).close()  # an empty database: user_version 0
    s = Store(path)
    job = s.enqueue(spec("kept"), b"x")
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
    s = Store(path)
    assert s.get(job.id).name == "kept"
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        Store(path)


def test_bad_journal_mode_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="journal_mode"):
        Store(tmp_path / "jobs.db", journal_mode="memory")


# -- transitions ----------------------------------------------------------------------------


def test_every_move_the_store_makes_is_in_the_table(store: Store) -> None:
    seen: list[tuple[Status, Status]] = []
    store.subscribe(
        lambda changes: seen.extend(
            (c.previous, c.job.status) for c in changes if c.what == "transition"
        )
    )
    a = store.enqueue(spec(retries=1, retry_delay=0), b"")
    b = store.enqueue(spec(after=[a.id]), b"")
    finish(store, a.id, start(store, a.id), fail())
    finish(store, a.id, start(store, a.id), OK)
    finish(store, b.id, start(store, b.id), fail(Reason.TIMEOUT))
    store.retry(b.id)
    store.request_cancel(b.id)
    assert seen
    assert all(target in TRANSITIONS[previous] for previous, target in seen)


def test_illegal_moves_are_refused_and_not_written(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    finish(store, job.id, start(store, job.id), OK)
    with pytest.raises(IllegalTransition):
        store.request_cancel(job.id)
    with pytest.raises(IllegalTransition, match="only failed or cancelled"):
        store.retry(job.id)
    queued = store.enqueue(spec(), b"")
    with pytest.raises(IllegalTransition):
        store.retry(queued.id)
    assert store.get(job.id).status is Status.SUCCEEDED
    assert store.get(queued.id).status is Status.QUEUED


def test_outcome_must_be_finished(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    attempt = start(store, job.id)
    with pytest.raises(InvalidRequest):
        finish(store, job.id, attempt, Outcome(Status.RUNNING))
    assert store.get(job.id).status is Status.RUNNING


# -- enqueue --------------------------------------------------------------------------------


def test_enqueue_stores_every_field(store: Store) -> None:
    s = JobSpec(
        kind="cell",
        name="train",
        owner="nb.ipynb",
        priority=3,
        timeout=5.0,
        retries=2,
        retry_delay=0.5,
        interpreter="/usr/bin/python3",
        cwd="/tmp",
        idempotency_key="k",
        options={"return": ["x"]},
    )
    job = store.enqueue(s, b"payload")
    assert job.status is Status.QUEUED
    assert job.created_at == job.queued_at
    assert abs(job.created_at - now()) < 60
    again = store.get(job.id)
    assert again == job
    assert again.to_json()["kind"] == "cell"
    assert again.options == {"return": ["x"]}
    assert again.payload_size == 7
    claimed = claim(store, "c", 5, 60)
    assert claimed[0].payload == b"payload"
    assert claimed[0].job.attempt == 1
    assert claimed[0].job.consumer == "c"


def test_bad_input_is_named(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="priority"):
        store.enqueue(spec(priority="high"), b"")
    with pytest.raises(InvalidRequest, match="payload must be bytes"):
        store.enqueue(spec(), "text")
    with pytest.raises(InvalidRequest, match="options must be JSON"):
        store.enqueue(spec(options={"f": object()}), b"")
    with pytest.raises(JobNotFound):
        store.enqueue(spec(after=[999]), b"")
    with pytest.raises(InvalidRequest, match="options must be JSON"):
        store.enqueue(spec(options={"threshold": float("nan")}), b"")
    with pytest.raises(InvalidRequest, match="priority must be between"):
        store.enqueue(spec(priority=2**70), b"")
    with pytest.raises(InvalidRequest, match="after must list job ids"):
        store.enqueue(spec(after=[2**70]), b"")
    assert store.counts() == dict.fromkeys([s.value for s in Status], 0)


def test_enqueue_many_is_one_ordered_all_or_nothing_batch(store: Store) -> None:
    jobs = store.enqueue_many([(spec(f"j{i}"), f"{i}".encode()) for i in range(1000)])
    assert [j.name for j in jobs] == [f"j{i}" for i in range(1000)]
    assert [j.id for j in jobs] == list(range(jobs[0].id, jobs[0].id + 1000))
    assert store.get(jobs[500].id).name == "j500"
    with pytest.raises(JobNotFound):
        store.enqueue_many([(spec("fine"), b""), (spec("bad", after=[10**9]), b"")])
    assert store.counts()["queued"] == 1000
    claimed = claim(store, "c", 1000, 60)
    assert {c.payload for c in claimed} == {f"{i}".encode() for i in range(1000)}


def test_large_payloads_go_to_files(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db", inline_limit=100)
    small, big = s.enqueue_many([(spec(), b"s" * 100), (spec(), b"b" * 101)])
    assert not (s.workspace_root / str(small.id)).exists()
    assert (s.workspace_root / str(big.id) / "payload").read_bytes() == b"b" * 101
    claimed = {c.job.id: c.payload for c in claim(s, "c", 2, 60)}
    assert claimed[small.id] == b"s" * 100
    # a large one is handed over as its file (a local worker reads it), not read into memory
    assert claimed[big.id] == FileBytes(str(s.workspace_root / str(big.id) / "payload"), 101)
    assert claimed[big.id].read() == b"b" * 101
    s.close()


def test_a_spooled_payload_becomes_its_jobs_file_and_a_small_one_its_row(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db", inline_limit=100)
    big, small, again = s.spool(), s.spool(), s.spool()
    for spool, data in ((big, b"b" * 101), (small, b"s" * 100), (again, b"x" * 200)):
        spool.write(data[:50])
        spool.write(data[50:])
    first = s.enqueue(spec(idempotency_key="k"), big.stored())
    tiny = s.enqueue(spec(), small.stored())
    assert s.enqueue(spec(idempotency_key="k"), again.stored()).id == first.id
    payload = s.workspace_root / str(first.id) / "payload"
    assert payload.read_bytes() == b"b" * 101 and mode(payload) == 0o600
    assert not big.path.exists() and not small.path.exists()  # moved, and read into its row
    assert not (s.workspace_root / str(tiny.id)).exists()
    assert again.path.exists()  # a known key: no job took it, and its maker discards it
    again.discard()
    assert list(s.incoming().iterdir()) == []
    claimed = {c.job.id: c.payload for c in claim(s, "c", 2, 60)}
    assert claimed == {first.id: FileBytes(str(payload), 101), tiny.id: b"s" * 100}
    s.close()


def test_a_result_left_as_a_file_is_taken_by_its_job_and_a_stale_ones_removed(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "jobs.db", inline_limit=100)
    job = s.enqueue(spec(), b"p")
    attempt = start(s, job.id)
    left, stale = s.incoming() / f"{'a' * 32}.result", s.incoming() / f"{'b' * 32}.result"
    left.write_bytes(b"r" * 500)
    stale.write_bytes(b"an attempt that is not the job's any more")
    outcomes = [
        (job.id, attempt, Outcome(Status.SUCCEEDED, result=FileBytes(str(left), 500))),
        (job.id, attempt + 1, Outcome(Status.SUCCEEDED, result=FileBytes(str(stale), 42))),
    ]
    assert [j is not None for j in finish_many(s, outcomes)] == [True, False]
    assert s.result(job.id) == b"r" * 500 and s.get(job.id).result_size == 500
    assert (s.workspace_root / str(job.id) / f"result.{attempt}").exists()
    assert list(s.incoming().iterdir()) == []
    s.close()


def test_a_result_file_goes_back_when_its_transaction_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path / "jobs.db", inline_limit=100)
    job = s.enqueue(spec(), b"p")
    attempt = start(s, job.id)
    left = s.incoming() / f"{'c' * 32}.result"
    left.write_bytes(b"r" * 500)
    outcome = Outcome(Status.SUCCEEDED, result=FileBytes(str(left), 500))

    def disk_full(tx: object, finished: object) -> None:  # a failure that cannot run here
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(moves, "resolve_dependents", disk_full)
    with pytest.raises(OSError, match="No space"):
        finish(s, job.id, attempt, outcome)
    assert left.read_bytes() == b"r" * 500  # back, for the consumer's next try
    assert s.get(job.id).status is Status.RUNNING
    monkeypatch.undo()
    assert finish(s, job.id, attempt, outcome).status is Status.SUCCEEDED
    assert s.result(job.id) == b"r" * 500 and not left.exists()
    s.close()


def test_uploads_a_dead_server_left_are_removed_when_the_store_opens(db_path: Path) -> None:
    s = Store(db_path)
    old, fresh = s.spool(), s.spool()
    old.write(b"an upload cut short a while ago")
    old.close()
    fresh.close()
    s.close()
    long_ago = time.time() - 2 * 24 * 3600
    os.utime(old.path, (long_ago, long_ago))
    Store(db_path).close()
    assert not old.path.exists() and fresh.path.exists()  # one may still be arriving


def test_idempotency_key_returns_the_existing_job(store: Store) -> None:
    first = store.enqueue(spec(idempotency_key="k1"), b"a")
    second = store.enqueue(spec("other", idempotency_key="k1"), b"b")
    assert second.id == first.id
    assert second.name == first.name
    batch = store.enqueue_many(
        [(spec(idempotency_key="k2"), b""), (spec(), b""), (spec(idempotency_key="k2"), b"")]
    )
    assert batch[0].id == batch[2].id != batch[1].id
    assert store.counts()["queued"] == 3


def test_idempotency_under_thread_races(store: Store) -> None:
    ids: list[int] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        barrier.wait(timeout=10)
        ids.append(store.enqueue(spec(idempotency_key="same"), b"x").id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert store.counts()["queued"] == 1


IDEMPOTENT_SUBMITTER = """
import json, sys
from jupyter_jobs.store import Store
from jupyter_jobs.models import JobSpec
store = Store(sys.argv[1])
order = range(60) if sys.argv[2] == "up" else reversed(range(60))
print(json.dumps({k: store.enqueue(JobSpec(name="j", idempotency_key=f"k{k}"), b"").id
                  for k in order}))
"""


def test_idempotency_across_processes(store: Store, db_path: Path) -> None:
    procs = [python(IDEMPOTENT_SUBMITTER, str(db_path), way) for way in ("up", "down")]
    up, down = (json.loads(communicate(p)) for p in procs)
    assert up == down
    assert len(set(up.values())) == 60
    assert store.counts()["queued"] == 60


# -- claim ----------------------------------------------------------------------------------


def test_claim_takes_highest_priority_first(store: Store) -> None:
    low = store.enqueue(spec(priority=0), b"")
    high = store.enqueue(spec(priority=5), b"")
    mid = store.enqueue(spec(priority=1), b"")
    negative = store.enqueue(spec(priority=-2), b"")
    order = [c.job.id for c in claim(store, "c", 10, 60)]
    assert order == [high.id, mid.id, low.id, negative.id]


def test_claim_shares_fairly_across_owners_oldest_first(store: Store) -> None:
    a = [j.id for j in store.enqueue_many([(spec(owner="a"), b"") for _ in range(5)])]
    b = [j.id for j in store.enqueue_many([(spec(owner="b"), b"") for _ in range(2)])]
    order = [c.job.id for c in claim(store, "c", 5, 60)]
    assert order == [a[0], b[0], a[1], b[1], a[2]]
    assert [c.job.id for c in claim(store, "c", 5, 60)] == a[3:]


def test_claim_counts_jobs_already_running(store: Store) -> None:
    a = [j.id for j in store.enqueue_many([(spec(owner="a"), b"") for _ in range(4)])]
    assert [c.job.id for c in claim(store, "c", 2, 60)] == [a[0], a[1]]
    b = store.enqueue(spec(owner="b"), b"")
    c = store.enqueue(spec(owner="c"), b"")
    # a has 2 running, b and c none: b and c go first (oldest first), then a
    assert [x.job.id for x in claim(store, "c", 3, 60)] == [b.id, c.id, a[2]]


def test_claim_skips_jobs_not_yet_due_and_sets_the_lease(store: Store) -> None:
    later = store.enqueue(spec(retries=1, retry_delay=3600), b"")
    finish(store, later.id, start(store, later.id), fail())
    ready = store.enqueue(spec(), b"")
    before = time.time()
    claimed = claim(store, "c", 5, 30)
    assert [c.job.id for c in claimed] == [ready.id]
    job = claimed[0].job
    assert job.claimed and job.consumer == "c"
    assert before + 30 <= job.lease_until <= time.time() + 30
    assert claim(store, "c", 5, 30) == []


CLAIMER = """
import json, sys
from jupyter_jobs.store import Store
from jupyter_jobs.models import Outcome, Status
store = Store(sys.argv[1])
name, got = sys.argv[2], []
print("ready", flush=True)
sys.stdin.readline()  # start together: a real race
while True:
    claimed = store.record_and_claim(claim=(name, 1 + len(got) % 4, 60))[1]
    if not claimed:
        break
    got += [c.job.id for c in claimed]
    store.record(outcomes=[(c.job.id, c.job.attempt, Outcome(Status.SUCCEEDED, result=c.payload))
                           for c in claimed])
print(json.dumps(got))
"""


@pytest.mark.slow
def test_four_processes_claim_every_job_exactly_once(store: Store, db_path: Path) -> None:
    jobs = store.enqueue_many([(spec(owner=f"o{i % 7}"), str(i).encode()) for i in range(2000)])
    procs = [python(CLAIMER, str(db_path), f"consumer-{n}") for n in range(4)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    claimed = [json.loads(communicate(p)) for p in procs]
    everything = [i for part in claimed for i in part]
    assert sorted(everything) == sorted(j.id for j in jobs)
    assert sum(1 for part in claimed if part) >= 2, "the processes should have competed"
    done = store.get_many(j.id for j in jobs)
    assert {(j.status, j.attempt) for j in done} == {(Status.SUCCEEDED, 1)}
    assert store.result(jobs[1234].id) == b"1234"


def test_finished_among_reads_only_the_ended_jobs_in_the_order_asked(store: Store) -> None:
    c = store.enqueue(spec("c"), b"")
    finish(store, c.id, start(store, c.id), Outcome(Status.SUCCEEDED, result=b"r"))
    b = store.enqueue(spec("b", options={"k": 1}), b"")
    finish(store, b.id, start(store, b.id), fail())
    a = store.enqueue(spec("a"), b"")
    ended, missing = store.finished_among([10**6, c.id, a.id, b.id])
    assert [(j.id, j.status) for j in ended] == [(c.id, Status.SUCCEEDED), (b.id, Status.FAILED)]
    assert ended[1].options == {"k": 1} and ended[0].options == {} and ended[0].after == []
    assert missing == [10**6]
    assert store.finished_among([]) == ([], [])


# -- consumer verbs ------------------------------------------------------------------------


def test_heartbeat_extends_only_the_consumers_leases(store: Store) -> None:
    mine, theirs = store.enqueue_many([(spec(), b""), (spec(), b"")])
    claim(store, "me", 1, 10)
    claim(store, "them", 1, 10)
    before = store.get(mine.id).lease_until
    assert store.heartbeat("me", [mine.id, theirs.id], 100) == []
    assert store.get(mine.id).lease_until > before + 50
    assert store.get(theirs.id).lease_until < before + 50
    store.request_cancel(mine.id)
    assert store.heartbeat("me", [mine.id], 100) == [mine.id]
    assert store.cancel_requested("me") == [(mine.id, 1)]
    assert store.cancel_requested("them") == []


def test_stale_attempt_cannot_finish_report_or_log(store: Store) -> None:
    job = store.enqueue(spec(retries=1, retry_delay=0), b"")
    first = start(store, job.id, "old", lease=0.01)
    wait_until(lambda: store.recover(lambda consumer: True))
    second = start(store, job.id, "new")
    assert (first, second) == (1, 2)
    assert finish(store, job.id, first, Outcome(Status.SUCCEEDED, result=b"stale")) is None
    assert set_progress(store, job.id, first, Progress(1, 2)) is False
    assert append_log(store, job.id, first, b"stale\n") == -1
    current = store.get(job.id)
    assert current.status is Status.RUNNING
    assert current.progress is None
    assert store.read_log(job.id) == (b"", 0)
    assert set_progress(store, job.id, second, Progress(1, 2, "half")) is True
    assert store.get(job.id).progress.message == "half"
    assert finish(store, job.id, second, OK).status is Status.SUCCEEDED
    assert finish(store, job.id, second, Outcome(Status.SUCCEEDED, result=b"again")) is None
    assert store.result(job.id) == b"ok"
    assert finish(store, 10**6, 1, OK) is None


def test_failed_attempts_are_retried_with_backoff(store: Store) -> None:
    job = store.enqueue(spec(retries=2, retry_delay=0.05), b"")
    after_first = finish(store, job.id, start(store, job.id), fail())
    assert after_first.status is Status.QUEUED
    assert after_first.reason is None
    assert after_first.error.message == "boom"  # the last attempt's error stays visible
    assert after_first.not_before == pytest.approx(after_first.queued_at + 0.05)
    claimed = wait_until(lambda: claim(store, "c", 1, 60))
    after_second = finish(store, job.id, claimed[0].job.attempt, fail(Reason.TIMEOUT))
    assert after_second.not_before == pytest.approx(after_second.queued_at + 0.1)
    claimed = wait_until(lambda: claim(store, "c", 1, 60))
    assert claimed[0].job.attempt == 3
    assert claimed[0].job.progress is None
    final = finish(store, job.id, 3, fail())
    assert (final.status, final.reason, final.attempt) == (Status.FAILED, Reason.ERROR, 3)
    assert final.finished_at is not None


def test_payload_failures_are_not_retried(store: Store) -> None:
    job = store.enqueue(spec(retries=3, retry_delay=0), b"")
    final = finish(store, job.id, start(store, job.id), fail(Reason.PAYLOAD))
    assert (final.status, final.reason) == (Status.FAILED, Reason.PAYLOAD)


def test_poison_jobs_stop_after_the_limit(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db", poison_limit=3)
    job = s.enqueue(spec(retries=10, retry_delay=0), b"")
    for attempt in (1, 2):
        after = finish(s, job.id, start(s, job.id), fail(Reason.WORKER_LOST, "killed by signal 9"))
        assert (after.status, after.worker_losses) == (Status.QUEUED, attempt)
    final = finish(
        s, job.id, start(s, job.id), Outcome(Status.FAILED, Reason.WORKER_LOST, exit="exit code 3")
    )
    assert (final.status, final.reason, final.worker_losses) == (
        Status.FAILED,
        Reason.WORKER_LOST,
        3,
    )
    assert "exit code 3" in final.error.message
    assert "poison" in final.error.message
    s.close()


def test_worker_lost_error_names_the_exit(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    final = finish(
        store, job.id, start(store, job.id), fail(Reason.WORKER_LOST, "killed by signal 9")
    )
    assert final.reason is Reason.WORKER_LOST
    assert "killed by signal 9" in final.error.message


def test_dependencies_run_in_order(store: Store) -> None:
    a = store.enqueue(spec("a"), b"")
    b = store.enqueue(spec("b", after=[a.id]), b"")
    c = store.enqueue(spec("c", after=[a.id, b.id]), b"")
    assert (b.status, c.status) == (Status.PENDING, Status.PENDING)
    assert store.get(c.id).after == [a.id, b.id]
    finish(store, a.id, start(store, a.id), OK)
    assert store.get(b.id).status is Status.QUEUED
    assert store.get(c.id).status is Status.PENDING
    finish(store, b.id, start(store, b.id), OK)
    assert store.get(c.id).status is Status.QUEUED
    d = store.enqueue(spec("d", after=[a.id]), b"")
    assert d.status is Status.QUEUED


def test_a_failure_fails_the_whole_chain(store: Store) -> None:
    a = store.enqueue(spec("a"), b"")
    b = store.enqueue(spec("b", after=[a.id]), b"")
    c = store.enqueue(spec("c", after=[b.id]), b"")
    finish(store, a.id, start(store, a.id), fail())
    for job in store.get_many([b.id, c.id]):
        assert (job.status, job.reason) == (Status.FAILED, Reason.DEPENDENCY_FAILED)
    assert str(a.id) in store.get(b.id).error.message
    late = store.enqueue(spec("late", after=[c.id]), b"")
    assert (late.status, late.reason) == (Status.FAILED, Reason.DEPENDENCY_FAILED)
    with pytest.raises(IllegalTransition, match="retry that one first"):
        store.retry(b.id)


def test_retry_of_a_dependent_waits_for_its_retried_dependency(store: Store) -> None:
    a = store.enqueue(spec("a"), b"")
    b = store.enqueue(spec("b", after=[a.id]), b"")
    store.request_cancel(a.id)
    assert store.get(b.id).reason is Reason.DEPENDENCY_FAILED
    store.retry(a.id)
    assert store.retry(b.id).status is Status.PENDING
    finish(store, a.id, start(store, a.id), OK)
    assert store.get(b.id).status is Status.QUEUED


def test_run_at_holds_a_job_until_its_time(store: Store) -> None:
    later = now() + 0.3
    job = store.enqueue(spec(run_at=later), b"")
    assert job.status is Status.PENDING
    assert store.next_due() == pytest.approx(later)
    assert claim(store, "c", 1, 60) == []
    promoted = wait_until(lambda: store.promote(), timeout=10)
    assert [j.id for j in promoted] == [job.id]
    assert promoted[0].status is Status.QUEUED
    assert store.next_due() is None


def test_run_at_and_dependencies_both_apply(store: Store) -> None:
    a = store.enqueue(spec("a"), b"")
    b = store.enqueue(spec("b", after=[a.id], run_at=now() + 3600), b"")
    finish(store, a.id, start(store, a.id), OK)
    assert store.get(b.id).status is Status.PENDING
    assert store.promote() == []


def test_held_jobs_wait_for_release(store: Store) -> None:
    job = store.enqueue(spec(hold=True), b"")
    assert (job.status, job.held, store.get(job.id).held) == (Status.PENDING, True, True)
    assert store.promote() == []
    released = store.release(job.id)
    assert (released.status, released.held) == (Status.QUEUED, False)
    with pytest.raises(IllegalTransition, match=f"job {job.id} is not held"):
        store.release(job.id)


def test_a_released_job_keeps_its_place_in_the_queue(store: Store) -> None:
    held = store.enqueue(spec("held", hold=True), b"")
    store.enqueue_many([(spec("second"), b""), (spec("third"), b"")])
    changes: list[Change] = []
    store.subscribe(changes.extend)
    released = store.release(held.id)
    assert [(c.what, c.job.id, c.job.status) for c in changes] == [
        ("released", held.id, Status.QUEUED),
        ("transition", held.id, Status.QUEUED),
    ]
    assert (released.created_at, released.priority) == (held.created_at, held.priority)
    order = [c.job.name for c in claim(store, "c", 3, 60)]
    assert order == ["held", "second", "third"]  # submitted first, so claimed first


def test_a_released_job_still_waits_for_the_jobs_it_runs_after(store: Store) -> None:
    before = store.enqueue(spec("before"), b"")
    job = store.enqueue(spec(after=[before.id], hold=True), b"")
    changes: list[Change] = []
    store.subscribe(changes.extend)
    released = store.release(job.id)
    assert (released.status, released.held, released.actions) == (
        Status.PENDING,
        False,
        ["cancel", "delete"],
    )
    assert [(c.what, c.job.held) for c in changes] == [("released", False)]
    finish(store, before.id, start(store, before.id), OK)
    assert store.get(job.id).status is Status.QUEUED


def test_only_held_pending_jobs_can_be_released(store: Store) -> None:
    queued = store.enqueue(spec(), b"")
    with pytest.raises(IllegalTransition, match="is not held: it is queued"):
        store.release(queued.id)
    cancelled = store.enqueue(spec(hold=True), b"")
    store.request_cancel(cancelled.id)
    with pytest.raises(IllegalTransition):
        store.release(cancelled.id)
    with pytest.raises(JobNotFound):
        store.release(10**6)


def test_jobs_expire_when_not_started_in_time(store: Store) -> None:
    deadline = now() + 0.2
    waiting = store.enqueue(spec(expires_at=deadline, hold=True), b"")
    queued = store.enqueue(spec(expires_at=deadline), b"")
    dependent = store.enqueue(spec(after=[queued.id]), b"")
    assert store.next_due() == pytest.approx(deadline)
    expired = wait_until(lambda: store.promote(), timeout=10)
    assert {j.id for j in expired} == {waiting.id, queued.id, dependent.id}
    for job in store.get_many([waiting.id, queued.id]):
        assert (job.status, job.reason) == (Status.FAILED, Reason.EXPIRED)
    assert store.get(dependent.id).reason is Reason.DEPENDENCY_FAILED
    retried = store.retry(queued.id)
    assert retried.expires_at is None  # an explicit retry does not expire again at once
    assert store.promote() == []


def test_recover_requeues_or_fails_jobs_of_dead_consumers(store: Store) -> None:
    kept, retried, lost = store.enqueue_many(
        [(spec("kept"), b""), (spec("retried", retries=1, retry_delay=0), b""), (spec(), b"")]
    )
    start(store, kept.id, "alive")
    for claimed in claim(store, "dead", 2, 60):
        assert started(store, claimed.job.id, claimed.job.attempt)
    changed = store.recover(lambda consumer: consumer == "alive")
    assert {j.id for j in changed} == {retried.id, lost.id}
    assert store.get(kept.id).status is Status.RUNNING
    assert store.get(retried.id).status is Status.QUEUED
    final = store.get(lost.id)
    assert (final.status, final.reason) == (Status.FAILED, Reason.INTERRUPTED)
    assert "consumer dead" in final.error.message
    assert store.recover(lambda consumer: consumer == "alive") == []


def test_recover_takes_back_expired_leases(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    start(store, job.id, "slow", lease=0.05)
    changed = wait_until(lambda: store.recover(lambda consumer: True) or store.get(job.id).finished)
    final = store.get(job.id)
    assert changed
    assert (final.status, final.reason) == (Status.FAILED, Reason.INTERRUPTED)
    assert "lease expired" in final.error.message


def test_next_due_reports_retries_and_leases(store: Store) -> None:
    job = store.enqueue(spec(retries=1, retry_delay=100), b"")
    attempt = start(store, job.id, lease=50)
    assert store.next_due() == pytest.approx(store.get(job.id).lease_until)
    requeued = finish(store, job.id, attempt, fail())
    assert store.next_due() == pytest.approx(requeued.not_before)


# -- actions ------------------------------------------------------------------------------------


def test_cancel_in_each_state(store: Store) -> None:
    first = store.enqueue(spec(), b"")
    pending = store.enqueue(spec(after=[first.id]), b"")
    second = store.enqueue(spec(after=[pending.id]), b"")
    queued = store.enqueue(spec(), b"")
    cancelled = store.request_cancel(pending.id)
    assert (cancelled.status, cancelled.finished_at is not None) == (Status.CANCELLED, True)
    assert store.get(second.id).reason is Reason.DEPENDENCY_FAILED
    assert store.request_cancel(queued.id).status is Status.CANCELLED
    assert store.request_cancel(first.id).status is Status.CANCELLED
    job = store.enqueue(spec(retries=5), b"")
    attempt = start(store, job.id)
    asked = store.request_cancel(job.id)
    assert (asked.status, asked.cancel_requested) == (Status.RUNNING, True)
    # an attempt that fails after a cancel request is not retried
    final = finish(store, job.id, attempt, fail())
    assert final.status is Status.CANCELLED
    with pytest.raises(IllegalTransition):
        store.request_cancel(job.id)
    with pytest.raises(JobNotFound):
        store.request_cancel(10**6)


def test_cancelled_outcome_and_explicit_retry(store: Store) -> None:
    job = store.enqueue(spec(retries=1, retry_delay=0), b"")
    attempt = start(store, job.id)
    store.request_cancel(job.id)
    final = finish(store, job.id, attempt, Outcome(Status.CANCELLED))
    assert (final.status, final.cancel_requested) == (Status.CANCELLED, False)
    again = store.retry(job.id)
    assert (again.status, again.attempt, again.error, again.reason) == (
        Status.QUEUED,
        1,
        None,
        None,
    )
    # the retried job gets its retry budget back: attempt 2 fails and is retried once more
    requeued = finish(store, job.id, start(store, job.id), fail())
    assert requeued.status is Status.QUEUED
    assert finish(store, job.id, start(store, job.id), fail()).status is Status.FAILED


def test_delete(store: Store) -> None:
    job = store.enqueue(spec(), b"x")
    attempt = start(store, job.id)
    append_log(store, job.id, attempt, b"log")
    with pytest.raises(IllegalTransition, match="cancel it first"):
        store.delete(job.id)
    finish(store, job.id, attempt, OK)
    workspace = store.workspace_root / str(job.id)
    assert workspace.exists()
    store.delete(job.id)
    assert not workspace.exists()
    with pytest.raises(JobNotFound):
        store.get(job.id)
    with pytest.raises(JobNotFound):
        store.delete(job.id)
    base = store.enqueue(spec(), b"")
    dependent = store.enqueue(spec(after=[base.id]), b"")
    store.delete(base.id)
    assert store.get(dependent.id).reason is Reason.DEPENDENCY_FAILED
    assert store.enqueue(spec(), b"").id > dependent.id  # ids are never reused


# -- reads ------------------------------------------------------------------------------------


def test_the_search_finds_names_and_owners(store: Store) -> None:
    store.enqueue_many([(spec("fit", owner="work/Churn.ipynb"), b""), (spec("churn"), b"")])
    assert sorted(j.name for j in store.query(q="CHURN").jobs) == ["churn", "fit"]
    assert [j.name for j in store.query(q="work/").jobs] == ["fit"]


def test_query_filters_pages_and_counts(store: Store) -> None:
    names = ["Train model", "train_50%", "plot", "TRAIN again", "trainXfifty"]
    jobs = store.enqueue_many([(spec(n, owner=f"o{i % 2}"), b"") for i, n in enumerate(names)])
    finish(store, jobs[0].id, start(store, jobs[0].id), OK)
    page = store.query(q="train")
    assert [j.name for j in page.jobs] == ["trainXfifty", "TRAIN again", "train_50%", "Train model"]
    assert [j.name for j in store.query(q="_50%").jobs] == ["train_50%"]
    assert page.counts == {
        **dict.fromkeys([s.value for s in Status], 0),
        "queued": 3,
        "succeeded": 1,
    }
    page = store.query(owner="o0", status=["queued"])
    assert [j.name for j in page.jobs] == ["trainXfifty", "plot"]
    assert page.counts["succeeded"] == 1
    assert page.counts["queued"] == 2
    seen, cursor = [], None
    while True:
        page = store.query(limit=2, cursor=cursor)
        seen += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted((j.id for j in jobs), reverse=True)
    assert store.counts("o1") == {**dict.fromkeys([s.value for s in Status], 0), "queued": 2}
    with pytest.raises(InvalidRequest, match="limit"):
        store.query(limit=501)
    with pytest.raises(InvalidRequest, match="cursor"):
        store.query(cursor="garbage!")
    with pytest.raises(InvalidRequest, match="unknown status"):
        store.query(status=["done"])


def test_results_outputs_and_their_absence(store: Store) -> None:
    job, empty = store.enqueue_many([(spec(), b""), (spec(), b"")])
    with pytest.raises(ResultNotReady):
        store.result(job.id)
    assert store.outputs(job.id) == b"[]"
    claimed = {c.job.id: c.job.attempt for c in claim(store, "c", 2, 60)}
    finish_many(
        store,
        [
            (job.id, claimed[job.id], Outcome(Status.SUCCEEDED, result=b"R", outputs=b"[1]")),
            (empty.id, claimed[empty.id], Outcome(Status.SUCCEEDED)),
        ],
    )
    assert store.result(job.id) == b"R"
    assert store.outputs(job.id) == b"[1]"
    assert store.get(job.id).has_outputs
    assert store.result(empty.id) == b""
    assert store.get(empty.id).result_size is None
    with pytest.raises(JobNotFound):
        store.result(10**6)
    failed = store.enqueue(spec(), b"")
    finish(store, failed.id, start(store, failed.id), fail())
    with pytest.raises(ResultNotReady, match="failed"):
        store.result(failed.id)


def test_a_failed_attempt_keeps_what_it_sent_back_until_it_is_retried(store: Store) -> None:
    """A failed cell sends back the names it set before its error; a retry's attempt that
    sends nothing must not serve the earlier attempt's."""
    job = store.enqueue(spec(), b"")
    sent = dataclasses.replace(fail(), result=b"names before the error")
    finish(store, job.id, start(store, job.id), sent)
    assert store.get(job.id).status is Status.FAILED
    assert store.result(job.id) == b"names before the error"
    store.retry(job.id)
    with pytest.raises(ResultNotReady, match="queued"):
        store.result(job.id)
    finish(store, job.id, start(store, job.id), fail(Reason.WORKER_LOST))
    with pytest.raises(ResultNotReady, match="failed"):
        store.result(job.id)


def test_large_results_replace_their_files(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db", inline_limit=10)
    job = s.enqueue(spec(retries=1, retry_delay=0), b"")
    finish(s, job.id, start(s, job.id), Outcome(Status.FAILED, Reason.ERROR, outputs=b"o" * 50))
    assert (s.workspace_root / str(job.id) / "outputs.1").exists()
    finish(
        s, job.id, start(s, job.id), Outcome(Status.SUCCEEDED, result=b"r" * 50, outputs=b"p" * 50)
    )
    files = {f.name for f in (s.workspace_root / str(job.id)).iterdir()}
    assert files == {"result.2", "outputs.2"}
    assert s.result(job.id) == b"r" * 50
    assert s.outputs(job.id) == b"p" * 50
    s.close()


def test_log_is_capped_with_a_visible_marker(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db", log_limit=100)
    job = s.enqueue(spec(retries=1, retry_delay=0), b"")
    attempt = start(s, job.id)
    assert append_log(s, job.id, attempt, b"a" * 60) == 60
    finish(s, job.id, attempt, fail())
    attempt = wait_until(lambda: claim(s, "c", 1, 60))[0].job.attempt
    started(s, job.id, attempt)
    size = append_log(s, job.id, attempt, b"b" * 60)
    marker = b"\n[jupyter_jobs: log truncated at 100 bytes]\n"
    header = b"--- attempt 2 ---\n"
    expected = b"a" * 60 + (header + b"b" * 60)[:40] + marker
    assert size == len(expected)
    assert append_log(s, job.id, attempt, b"more") == size
    data, next_offset = s.read_log(job.id)
    assert data == expected
    assert next_offset == len(expected)
    assert s.get(job.id).log_size == len(expected)
    assert s.read_log(job.id, 58, 4) == (b"aa--", 62)
    assert s.read_log(job.id, next_offset) == (b"", next_offset)
    with pytest.raises(InvalidRequest):
        s.read_log(job.id, -1)
    s.close()


def test_logs_of_later_attempts_get_a_header(store: Store) -> None:
    job = store.enqueue(spec(retries=1, retry_delay=0), b"")
    append_log(store, job.id, 1, b"too early")  # not running yet: refused
    first = start(store, job.id)
    append_log_many(store, [(job.id, first, b"one\n"), (job.id, first, b"two\n")])
    finish(store, job.id, first, fail())
    second = wait_until(lambda: claim(store, "c", 1, 60))[0].job.attempt
    append_log(store, job.id, second, b"not started yet")  # claimed, not running: refused
    started(store, job.id, second)
    append_log(store, job.id, second, b"three\n")
    assert store.read_log(job.id)[0] == b"one\ntwo\n--- attempt 2 ---\nthree\n"


def test_stats(store: Store) -> None:
    store.enqueue_many([(spec(), b"x" * 10) for _ in range(3)])
    stats = store.stats()
    assert stats["queued"] == 3
    assert stats["total"] == 3
    assert stats["db_size"] > 0
    assert stats["workspace_bytes"] == 30


# -- retention --------------------------------------------------------------------------------


def test_gc_by_age_spares_unfinished_jobs(store: Store) -> None:
    done = store.enqueue(spec(), b"")
    finish(store, done.id, start(store, done.id), OK)
    running = store.enqueue(spec(), b"")
    start(store, running.id)
    queued = store.enqueue(spec(), b"")
    assert store.gc(older_than=3600) == []
    assert store.gc(older_than=0) == [done.id]
    assert {j.id for j in store.get_many([done.id, queued.id, running.id])} == {
        queued.id,
        running.id,
    }


def test_clear_finished_deletes_finished_jobs_with_their_files_in_one_change_set(
    store: Store,
) -> None:
    done = store.enqueue(spec(), b"")
    attempt = start(store, done.id)
    append_log(store, done.id, attempt, b"log")
    finish(store, done.id, attempt, OK)
    cancelled = store.enqueue(spec(hold=True), b"")
    store.request_cancel(cancelled.id)
    running = store.enqueue(spec(), b"")
    start(store, running.id)
    queued = store.enqueue(spec(), b"")
    workspace = store.workspace_root / str(done.id)
    assert workspace.exists()
    published: list[list[Change]] = []
    unsubscribe = store.subscribe(published.append)
    assert store.clear_finished() == [done.id, cancelled.id]
    unsubscribe()
    assert not workspace.exists()
    assert [[(c.what, c.job.id) for c in batch] for batch in published] == [
        [("deleted", done.id), ("deleted", cancelled.id)]
    ]
    assert [j.id for j in store.get_many([done.id, cancelled.id, running.id, queued.id])] == [
        running.id,
        queued.id,
    ]
    assert store.clear_finished() == []


def test_gc_by_size_deletes_the_oldest_finished_first(tmp_path: Path) -> None:
    s = Store(tmp_path / "jobs.db", inline_limit=10)
    jobs = s.enqueue_many([(spec(), b"") for _ in range(4)])
    for job in jobs[:3]:
        finish(s, job.id, start(s, job.id), Outcome(Status.SUCCEEDED, result=b"r" * 1000))
    s.enqueue(spec(), b"p" * 1000)  # unfinished bytes count but are never deleted
    assert s.stats()["workspace_bytes"] == 4000
    deleted = s.gc(max_bytes=2500)
    assert deleted == [jobs[0].id, jobs[1].id]
    assert not (s.workspace_root / str(jobs[0].id)).exists()
    assert s.stats()["workspace_bytes"] == 2000
    assert s.gc(max_bytes=0) == [jobs[2].id]
    assert s.stats()["workspace_bytes"] == 1000
    s.close()


# -- notifications -----------------------------------------------------------------------------


def test_subscribers_get_every_kind_of_change(store: Store) -> None:
    got: list[Change] = []
    unsubscribe = store.subscribe(got.extend)
    job = store.enqueue(spec(), b"")
    attempt = start(store, job.id)
    set_progress(store, job.id, attempt, Progress(1, 4, "a quarter"))
    store.request_cancel(job.id)
    finish(store, job.id, attempt, Outcome(Status.CANCELLED))
    store.delete(job.id)
    assert [(c.what, c.previous, c.job.status) for c in got] == [
        ("created", None, Status.QUEUED),
        ("transition", Status.QUEUED, Status.RUNNING),
        ("progress", None, Status.RUNNING),
        ("cancel_requested", None, Status.RUNNING),
        ("transition", Status.RUNNING, Status.CANCELLED),
        ("deleted", None, Status.CANCELLED),
    ]
    assert got[2].job.progress.message == "a quarter"
    assert got[3].job.cancel_requested
    unsubscribe()
    store.enqueue(spec(), b"")
    assert len(got) == 6


def test_other_processes_are_rung_before_subscribers_hear_of_a_commit(tmp_path: Path) -> None:
    """Waking another process takes longest, so it starts first: when this process's
    subscribers are called, a listener of another store on the file holds its ring already."""
    store, other = Store(tmp_path / "jobs.db"), Store(tmp_path / "jobs.db")
    listener = other.listen()
    rings_seen: list[int] = []
    store.subscribe(lambda changes: rings_seen.append(listener.drain()))
    store.enqueue(spec(), b"")
    assert rings_seen == [1]
    listener.close()
    other.close()
    store.close()


def test_a_failing_subscriber_is_logged_and_harmless(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(changes: list[Change]) -> None:
        raise RuntimeError("subscriber bug")

    got: list[Change] = []
    store.subscribe(broken)
    store.subscribe(got.extend)
    with caplog.at_level(logging.ERROR, logger="jupyter_jobs.store"):
        job = store.enqueue(spec(), b"")
    assert "subscriber bug" in caplog.text
    assert [c.job.id for c in got] == [job.id]
    assert store.get(job.id).status is Status.QUEUED


WAITER = """
import sys
from jupyter_jobs.store import Store
store = Store(sys.argv[1])
with store.listen() as listener:
    print("ready", flush=True)
    print("woken" if listener.wait(60) else "timeout", flush=True)
"""


def test_enqueue_rings_a_listener_in_another_process(store: Store, db_path: Path) -> None:
    proc = python(WAITER, str(db_path))
    assert proc.stdout.readline().strip() == "ready"
    store.enqueue(spec(), b"")
    assert communicate(proc).strip() == "woken"
    assert list(store.doorbell.socket_dir.iterdir()) == []


def test_progress_does_not_ring_but_finish_does(store: Store, db_path: Path) -> None:
    job = store.enqueue(spec(), b"")
    # Listening on another Store of the file, as another process does: a store's own
    # listeners learn its changes from its subscription, never from its doorbell.
    with Store(db_path) as other, other.listen() as listener:
        attempt = start(store, job.id)
        set_progress(store, job.id, attempt, Progress(1))
        assert listener.drain() == 0
        finish(store, job.id, attempt, OK)
        assert listener.wait(10)


def test_a_lost_job_that_was_asked_to_cancel_ends_cancelled(store: Store) -> None:
    job = store.enqueue(spec(retries=3, retry_delay=0), b"")
    start(store, job.id, "dead")
    store.request_cancel(job.id)
    store.recover(lambda consumer: False)
    final = store.get(job.id)
    assert (final.status, final.cancel_requested) == (Status.CANCELLED, False)
    assert "consumer dead" in final.error.message


KILLED_SUBMITTER = """
import os, signal, sys
from jupyter_jobs.store import Store
from jupyter_jobs.models import JobSpec
store = Store(sys.argv[1])
job = store.enqueue(JobSpec(name="durable"), b"payload")
print(job.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_accepted_job_survives_kill_9(db_path: Path) -> None:
    proc = python(KILLED_SUBMITTER, str(db_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, err
    s = Store(db_path)
    job = s.get(int(out))
    assert (job.name, job.status) == ("durable", Status.QUEUED)
    assert claim(s, "c", 1, 60)[0].payload == b"payload"
    s.close()


def test_threads_sharing_a_store_claim_each_job_once(store: Store) -> None:
    jobs = store.enqueue_many([(spec(owner=f"o{i % 3}"), b"") for i in range(400)])
    claimed: list[int] = []
    barrier = threading.Barrier(4)

    def consume(name: str) -> None:
        barrier.wait(timeout=10)
        while batch := claim(store, name, 3, 60):
            claimed.extend(c.job.id for c in batch)
            finish_many(store, [(c.job.id, c.job.attempt, OK) for c in batch])

    threads = [threading.Thread(target=consume, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == [j.id for j in jobs]
    assert store.counts()["succeeded"] == 400


def test_a_broken_doorbell_does_not_fail_a_committed_change(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    listener = store.listen()
    listener.close()
    store.doorbell.socket_dir.rmdir()
    with caplog.at_level(logging.WARNING, logger="jupyter_jobs.store"):
        job = store.enqueue(spec(), b"")
    assert store.get(job.id).status is Status.QUEUED
    assert "doorbell" in caplog.text


def test_record_writes_logs_progress_and_outcomes_in_one_commit(store: Store) -> None:
    a, b = store.enqueue_many([(spec(), b""), (spec(), b"")])
    attempts = {c.job.id: c.job.attempt for c in claim(store, "c", 2, 60)}
    for job_id, attempt in attempts.items():
        started(store, job_id, attempt)
    commits: list[list[Change]] = []
    store.subscribe(commits.append)
    jobs = store.record(
        logs=[(a.id, attempts[a.id], b"out\n"), (b.id, 99, b"stale\n")],
        progress=[(a.id, attempts[a.id], Progress(2, 2)), (b.id, attempts[b.id], Progress(1))],
        outcomes=[(a.id, attempts[a.id], OK), (b.id, 99, OK)],
    )
    assert [j.status if j else None for j in jobs] == [Status.SUCCEEDED, None]
    assert len(commits) == 1
    assert [(c.what, c.job.id) for c in commits[0]] == [
        ("progress", a.id),
        ("progress", b.id),
        ("transition", a.id),
    ]
    assert store.read_log(a.id)[0] == b"out\n"
    assert store.read_log(b.id)[0] == b""
    assert store.get(b.id).progress.done == 1
    assert store.record() == []


def test_one_commit_reports_the_job_that_ended_before_the_one_that_began(store: Store) -> None:
    a, b, c = store.enqueue_many([(spec(), b""), (spec(), b""), (spec(), b"")])
    attempts = {x.job.id: x.job.attempt for x in claim(store, "c", 3, 60)}
    started(store, a.id, attempts[a.id])
    commits: list[list[Change]] = []
    store.subscribe(commits.append)
    # One flush: b began after a ended on the same worker; c began and ended within it.
    store.record(
        starts=[(b.id, attempts[b.id], 2.0), (c.id, attempts[c.id], 1.0)],
        logs=[(b.id, attempts[b.id], b"b\n"), (c.id, attempts[c.id], b"c\n")],
        outcomes=[(a.id, attempts[a.id], OK), (c.id, attempts[c.id], OK)],
    )
    assert [(x.what, x.job.id, x.job.status) for x in commits[0]] == [
        ("transition", c.id, Status.SUCCEEDED),
        ("transition", a.id, Status.SUCCEEDED),
        ("transition", b.id, Status.RUNNING),
    ]
    assert store.get(c.id).started_at == 1.0 and store.read_log(c.id)[0] == b"c\n"
    assert store.read_log(b.id)[0] == b"b\n"


def test_one_worker_alternates_between_owners(store: Store) -> None:
    a = [j.id for j in store.enqueue_many([(spec(owner="a"), b"") for _ in range(4)])]
    b = [j.id for j in store.enqueue_many([(spec(owner="b"), b"") for _ in range(2)])]
    order = []
    while claimed := claim(store, "c", 1, 60):
        order.append(claimed[0].job.id)
        finish(store, claimed[0].job.id, claimed[0].job.attempt, OK)
    assert order == [a[0], b[0], a[1], b[1], a[2], a[3]]


def test_round_robin_remembers_owners_served_earlier_in_the_batch(store: Store) -> None:
    b_running = store.enqueue(spec(owner="b"), b"")
    start(store, b_running.id)
    urgent = store.enqueue(spec(owner="a", priority=1), b"")
    a = store.enqueue(spec(owner="a"), b"")
    b = store.enqueue(spec(owner="b"), b"")
    # both have one running job after `urgent`; a was served last, so b goes first
    assert [c.job.id for c in claim(store, "c", 3, 60)] == [urgent.id, b.id, a.id]


def test_migrations_apply_in_order_from_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs (name, kind, owner, status, created_at, queued_at) "
        "VALUES ('old', 'function', 'nb', 'queued', 1.0, 1.0)"
    )
    conn.close()
    s = Store(path)
    assert [c.job.name for c in claim(s, "c", 5, 60)] == ["old"]
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 2
    assert conn.execute("SELECT owner FROM owners").fetchall() == [("nb",)]
    conn.close()


def test_finished_since_reports_each_arrival_once_in_commit_order(store):
    start = store.finished_since(None)[1]
    a = store.enqueue(JobSpec(name="a"), b"")
    b = store.enqueue(JobSpec(name="b"), b"")
    assert store.finished_since(start) == ([], start)
    store.request_cancel(b.id)
    [claimed] = claim(store, "c", 1, 60)
    finish(store, claimed.job.id, claimed.job.attempt, Outcome(Status.SUCCEEDED))
    ids, mark = store.finished_since(start)
    assert ids == [b.id, a.id] and mark > start
    assert store.finished_since(mark) == ([], mark)
    store.retry(b.id)
    store.request_cancel(b.id)
    assert store.finished_since(mark)[0] == [b.id]


def test_record_and_claim_in_one_transaction(store):
    first = store.enqueue(JobSpec(name="first"), b"p1")
    second = store.enqueue(JobSpec(name="second"), b"p2")
    [claimed] = claim(store, "c", 1, 60)
    assert claimed.job.id == first.id
    outcome = Outcome(Status.SUCCEEDED, result=b"r")
    finished, more = store.record_and_claim(
        [(first.id, 1, b"log")], [], [(first.id, 1, outcome)], ("c", 5, 60)
    )
    assert finished[0].status is Status.SUCCEEDED
    assert [(c.job.id, c.payload) for c in more] == [(second.id, b"p2")]
    assert store.record_and_claim() == ([], [])


def test_a_spec_survives_its_json_form_unshared() -> None:
    spec = JobSpec(
        kind=Kind.CELL, name="n", owner="o", priority=3, timeout=2.5, retries=1, after=[4, 5],
        run_at=10.0, cwd="/tmp", idempotency_key="k", options={"return": ["a"], "deep": {"x": 1}},
    )  # fmt: skip
    data = spec.to_json()
    # A typed job's fields are left out of other specs (an older server refuses them).
    untyped = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("type", "parameters")}
    assert data == {**untyped, "kind": "cell"}
    assert JobSpec.from_json(json.loads(json.dumps(data))) == spec
    data["options"]["deep"]["x"] = 2
    data["after"].append(6)
    assert spec.options["deep"]["x"] == 1 and spec.after == [4, 5]


def test_an_attempt_that_never_started_goes_back_to_the_queue_uncounted(store: Store) -> None:
    kept, cancelled = store.enqueue(spec("kept"), b"p"), store.enqueue(spec("cancelled"), b"p")
    claimed = {c.job.id: c.job for c in claim(store, "c1", 2, 30.0)}
    store.request_cancel(cancelled.id)
    never = Outcome(Status.QUEUED, Reason.INTERRUPTED, JobError("NotStarted", "stopped first"))
    store.record(outcomes=[(i, claimed[i].attempt, never) for i in (kept.id, cancelled.id)])
    again, gone = store.get(kept.id), store.get(cancelled.id)
    assert again.status is Status.QUEUED and again.attempt == 0 and again.consumer is None
    assert again.started_at is None and again.error is None
    assert gone.status is Status.CANCELLED
    [reclaimed] = claim(store, "c2", 1, 30.0)
    assert reclaimed.job.id == kept.id and reclaimed.job.attempt == 1


# -- claimed is not started (issue 12) ---------------------------------------------------------


def test_a_claimed_job_stays_queued_without_started_at_until_its_code_begins(store: Store) -> None:
    jobs = store.enqueue_many([(spec(), b"") for _ in range(4)])
    claimed = claim(store, "c", 4, 60)
    assert [c.job.id for c in claimed] == [j.id for j in jobs]
    for job in store.get_many(j.id for j in jobs):
        assert (job.status, job.started_at, job.claimed) == (Status.QUEUED, None, True)
    assert store.counts()["queued"] == 4 and store.counts()["running"] == 0
    began = time.time() - 5.0  # when the executor saw it begin, not when this is written
    assert started(store, jobs[0].id, claimed[0].job.attempt, began)
    assert started(store, jobs[1].id, claimed[1].job.attempt)
    stats = store.stats()
    assert (stats["running"], stats["queued"]) == (2, 2)
    running = store.query(status=["running"]).jobs
    assert sorted(j.id for j in running) == [jobs[0].id, jobs[1].id]
    assert store.get(jobs[0].id).started_at == began
    assert [j.started_at for j in store.get_many([jobs[2].id, jobs[3].id])] == [None, None]


def test_a_claim_is_not_announced_its_start_is(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    commits: list[list[Change]] = []
    store.subscribe(commits.append)
    [claimed] = claim(store, "c", 1, 60)
    assert commits == []
    store.record(starts=[(job.id, claimed.job.attempt, time.time())])
    [[change]] = commits
    assert (change.what, change.previous, change.job.status) == (
        "transition",
        Status.QUEUED,
        Status.RUNNING,
    )


def test_a_claimed_job_is_taken_by_no_other_consumer(store: Store) -> None:
    first, second = store.enqueue_many([(spec(), b""), (spec(), b"")])
    assert [c.job.id for c in claim(store, "c1", 1, 60)] == [first.id]
    assert [c.job.id for c in claim(store, "c2", 5, 60)] == [second.id]


def test_starts_are_fenced_by_the_attempt_and_the_claim(store: Store) -> None:
    job = store.enqueue(spec(retries=1, retry_delay=3600), b"")
    attempt = start(store, job.id)
    assert not started(store, job.id, attempt)  # running already
    finish(store, job.id, attempt, fail())  # queued again for its retry, not claimed
    assert not started(store, job.id, attempt)
    assert not started(store, job.id, attempt + 1)
    assert store.get(job.id).status is Status.QUEUED


def test_recovery_counts_the_claims_of_a_lost_consumer_as_interrupted_attempts(
    store: Store,
) -> None:
    # Whether a claimed job began in the moments before its consumer died is unknown: its
    # attempt counts, so that no job runs more often than its attempts say.
    began, once, again, cancelled = store.enqueue_many(
        [
            (spec("started"), b""),
            (spec("once"), b""),
            (spec("again", retries=1, retry_delay=0), b""),
            (spec("cancelled"), b""),
        ]
    )
    claims = {c.job.id: c.job.attempt for c in claim(store, "dead", 4, 60)}
    started(store, began.id, claims[began.id])
    store.request_cancel(cancelled.id)
    changed = store.recover(lambda consumer: False)
    assert {j.id for j in changed} == {began.id, once.id, again.id, cancelled.id}
    ran, failed, retried, gone = store.get_many([began.id, once.id, again.id, cancelled.id])
    assert (ran.status, ran.reason) == (Status.FAILED, Reason.INTERRUPTED)
    assert (failed.status, failed.reason, failed.started_at) == (
        Status.FAILED,
        Reason.INTERRUPTED,
        None,
    )
    assert "about to start" in failed.error.message and "consumer dead" in failed.error.message
    assert (retried.status, retried.attempt, retried.lease_until) == (Status.QUEUED, 1, None)
    assert gone.status is Status.CANCELLED and gone.started_at is None
    assert [(c.job.id, c.job.attempt) for c in claim(store, "c2", 5, 60)] == [(again.id, 2)]


def test_recover_gives_back_uncounted_the_claims_no_worker_of_a_dead_consumer_began(store):
    """With the start log of a consumer proven gone (`start_log.py`): a claim its workers began
    counts; the others go back as if never claimed (a start reported ahead of the code too),
    a cancel asked for meanwhile wins, and the log goes once nothing is left to recover."""
    began, sent, reported, cancelled = store.enqueue_many(
        [(spec(name), b"") for name in ("began", "sent", "reported", "cancelled")]
    )
    claims = {c.job.id: c.job.attempt for c in claim(store, "dead", 4, 60)}
    assert started(store, reported.id, claims[reported.id])
    store.request_cancel(cancelled.id)
    log = by_dead_owner(
        store.workspace.start_log("dead"), (began.id, claims[began.id]), consumer="dead"
    )
    changed = store.recover(lambda consumer: False)
    assert {j.id for j in changed} == {began.id, sent.id, reported.id, cancelled.id}
    ran, back, taken_back, gone = store.get_many([began.id, sent.id, reported.id, cancelled.id])
    assert (ran.status, ran.reason, ran.attempt) == (Status.FAILED, Reason.INTERRUPTED, 1)
    for job in (back, taken_back):
        assert (job.status, job.attempt, job.consumer, job.lease_until, job.started_at) == (
            Status.QUEUED,
            0,
            None,
            None,
            None,
        )
    assert (gone.status, gone.attempt) == (Status.CANCELLED, 1)
    assert not log.folder.exists()
    assert {(c.job.id, c.job.attempt) for c in claim(store, "c2", 5, 60)} == {
        (sent.id, 1),
        (reported.id, 1),
    }


def test_a_claim_given_back_that_a_worker_wrote_down_as_begun_counts(store):
    """A stop gives back a run it believes never began while its worker begins it (see
    test_local_executor.py): the start log names it, so the attempt counts; a claim given
    back that no worker wrote down goes back uncounted."""
    began, unbegun = store.enqueue_many([(spec("began"), b""), (spec("unbegun"), b"")])
    claims = {c.job.id: c.job.attempt for c in claim(store, "c1", 2, 60)}
    log = store.start_log_of("c1")
    log.create()  # its owner lives: what the log names began all the same
    Recorder(log.take_file(), lambda: True).begin(began.id, claims[began.id])
    back = Outcome(Status.QUEUED, Reason.INTERRUPTED, JobError("NotStarted", "not started"))
    finish_many(store, [(began.id, claims[began.id], back), (unbegun.id, claims[unbegun.id], back)])
    counted, given = store.get_many([began.id, unbegun.id])
    assert (counted.status, counted.reason, counted.attempt) == (
        Status.FAILED,
        Reason.INTERRUPTED,
        1,
    )
    assert counted.error.message == "the job began as its executor stopped"
    assert (given.status, given.attempt, given.lease_until) == (Status.QUEUED, 0, None)


def test_recover_counts_the_claims_of_a_consumer_whose_start_log_owner_lives(store):
    job = store.enqueue(spec(), b"")
    claim(store, "lost", 1, 60)
    log = store.start_log_of("lost")
    log.create()  # its owner is this process, alive: its workers might begin the job yet
    store.recover(lambda consumer: False)
    final = store.get(job.id)
    assert (final.status, final.reason, final.attempt) == (Status.FAILED, Reason.INTERRUPTED, 1)
    assert log.folder.exists()


def test_a_claimed_job_is_cancelled_through_its_consumer(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    [claimed] = claim(store, "c", 1, 60)
    asked = store.request_cancel(job.id)
    assert (asked.status, asked.cancel_requested) == (Status.QUEUED, True)
    assert store.cancel_requested("c") == [(job.id, claimed.job.attempt)]
    assert store.heartbeat("c", [job.id], 60) == [job.id]
    with pytest.raises(IllegalTransition, match="about to start"):
        store.delete(job.id)
    withdrawn = finish(store, job.id, claimed.job.attempt, Outcome(Status.CANCELLED))
    assert (withdrawn.status, withdrawn.started_at) == (Status.CANCELLED, None)


def test_a_claim_that_fails_before_it_starts_counts_and_is_retried(store: Store) -> None:
    job = store.enqueue(spec(retries=1, retry_delay=0), b"")
    [claimed] = claim(store, "c", 1, 60)
    again = finish(store, job.id, claimed.job.attempt, fail(Reason.WORKER_LOST))
    assert (again.status, again.attempt, again.lease_until) == (Status.QUEUED, 1, None)
    assert again.error.message.startswith("boom") and again.worker_losses == 1
    [second] = wait_until(lambda: claim(store, "c", 1, 60))
    assert second.job.attempt == 2


def test_a_success_reported_without_a_start_started_as_it_ended(store: Store) -> None:
    job = store.enqueue(spec(), b"")
    [claimed] = claim(store, "c", 1, 60)
    done = finish(store, job.id, claimed.job.attempt, OK)
    assert done.status is Status.SUCCEEDED and done.started_at == done.finished_at


# -- users: whose jobs, and fair share between users ------------------------------------------

ALICE = JobUser("alice", "Alice Liddell")
BOB = JobUser("bob", "Bob")


def test_a_job_records_its_user_and_nobody_when_none_is_named(store: Store) -> None:
    mine = store.enqueue(spec(), b"", ALICE)
    assert (mine.user, mine.user_display_name) == ("alice", "Alice Liddell")
    assert store.get(mine.id).to_json()["user"] == "alice"
    nobodys = store.enqueue(spec(), b"")
    assert (store.get(nobodys.id).user, store.get(nobodys.id).user_display_name) == ("", "")


def test_claim_shares_between_users_first_then_between_their_notebooks(store: Store) -> None:
    a1 = [j.id for j in store.enqueue_many([(spec(owner="a1"), b"") for _ in range(3)], ALICE)]
    a2 = store.enqueue(spec(owner="a2"), b"", ALICE).id
    b1 = [j.id for j in store.enqueue_many([(spec(owner="b1"), b"") for _ in range(2)], BOB)]
    order = [c.job.id for c in claim(store, "c", 6, 60)]
    # alice and bob take turns; alice's turns go to her notebooks in turn
    assert order == [a1[0], b1[0], a2, b1[1], a1[1], a1[2]]


def test_a_user_with_many_notebooks_gets_no_more_turns_than_one_with_one(store: Store) -> None:
    alice = [store.enqueue(spec(owner=f"nb{i}"), b"", ALICE).id for i in range(3) for _ in range(2)]
    bob = [j.id for j in store.enqueue_many([(spec(owner="b"), b"") for _ in range(3)], BOB)]
    order = [c.job.id for c in claim(store, "c", 6, 60)]
    assert [("bob" if i in bob else "alice") for i in order] == ["alice", "bob"] * 3
    assert set(order) & set(alice) == {alice[0], alice[2], alice[4]}  # one of each notebook


def test_claim_counts_each_users_jobs_already_held(store: Store) -> None:
    held = [j.id for j in store.enqueue_many([(spec(owner="x"), b"") for _ in range(2)], ALICE)]
    assert [c.job.id for c in claim(store, "c", 2, 60)] == held
    later = store.enqueue(spec(owner="y"), b"", ALICE)  # a notebook of hers with none held
    bobs = store.enqueue(spec(owner="b"), b"", BOB)
    # alice holds two already: bob's job goes first, though it is newer than her new notebook's
    assert [c.job.id for c in claim(store, "c", 2, 60)] == [bobs.id, later.id]


def test_one_worker_alternates_between_users_and_remembers_whom_it_served(store: Store) -> None:
    alice = [j.id for j in store.enqueue_many([(spec(owner="a"), b"") for _ in range(3)], ALICE)]
    bob = [j.id for j in store.enqueue_many([(spec(owner="b"), b"") for _ in range(2)], BOB)]
    order = []
    while claimed := claim(store, "c", 1, 60):
        order.append(claimed[0].job.id)
        finish(store, claimed[0].job.id, claimed[0].job.attempt, OK)
    assert order == [alice[0], bob[0], alice[1], bob[1], alice[2]]
    conn = sqlite3.connect(store.path)
    assert {u for (u,) in conn.execute("SELECT user FROM users")} == {"alice", "bob"}
    conn.close()


def test_claims_and_counts_of_users_and_notebooks_seek_their_indexes(store: Store) -> None:
    from jupyter_jobs.store import picking

    conn = sqlite3.connect(store.path)
    for sql, args in (
        (picking._FIRST_HEAD, (1.0, 0)),
        (picking._NEXT_OWNER, (1.0, 0, "a", "nb")),
        (picking._NEXT_USER, (1.0, 0, "a")),
        (picking._NEXT_OF_OWNER, (1.0, 0, "a", "nb", 5)),
    ):
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "USING INDEX jobs_claim" in plan and "TEMP B-TREE" not in plan, (sql, plan)
    # the counts of a notebook, of a user, of both: seeks in the kept counts, never a scan
    for where, args in (
        ("owner = ?", ("nb",)),
        ("user = ?", ("a",)),
        ("owner = ? AND user = ?", ("nb", "a")),
    ):
        sql = f"SELECT status, SUM(n) FROM user_counts WHERE {where} GROUP BY status"
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "SEARCH user_counts" in plan, (sql, plan)
    conn.close()


def test_listing_and_counting_one_users_jobs(store: Store) -> None:
    a = store.enqueue_many(
        [(spec("fit", owner="nb1"), b""), (spec("plot", owner="nb2"), b"")], ALICE
    )
    b = store.enqueue_many([(spec("fit", owner="nb1"), b""), (spec("other"), b"")], BOB)
    finish(store, a[0].id, start(store, a[0].id), OK)
    page = store.query(user="alice")
    assert [j.id for j in page.jobs] == [a[1].id, a[0].id]
    assert (page.counts["queued"], page.counts["succeeded"]) == (1, 1)
    assert [j.id for j in store.query(user="bob", owner="nb1").jobs] == [b[0].id]
    assert store.counts("nb1", "bob")["queued"] == 1 and store.counts("nb1")["queued"] == 1
    assert [j.id for j in store.query(user="alice", status=["succeeded"]).jobs] == [a[0].id]
    for q in ("fit", "nb1", "fi"):  # by the name index, among the notebooks, and by LIKE
        assert [j.id for j in store.query(user="bob", q=q).jobs] == [b[0].id], q
    assert store.query(user="bob", q="nb1").counts["queued"] == 1
    assert store.query(user="carol").jobs == []
    assert store.stats("alice")["succeeded"] == 1 and store.stats()["queued"] == 3


def test_clear_finished_of_one_user_leaves_the_others(store: Store) -> None:
    jobs = [store.enqueue(spec(), b"", user) for user in (ALICE, BOB)]
    for job in jobs:
        store.request_cancel(job.id)
    assert store.clear_finished("alice") == [jobs[0].id]
    assert [j.id for j in store.query().jobs] == [jobs[1].id]


def test_another_users_idempotency_key_refuses_the_whole_batch(store: Store) -> None:
    first = store.enqueue(spec(idempotency_key="k"), b"", ALICE)
    assert store.enqueue(spec(idempotency_key="k"), b"", ALICE).id == first.id
    with pytest.raises(NotAllowed, match="another user's job"):
        store.enqueue_many([(spec("new"), b""), (spec(idempotency_key="k"), b"")], BOB)
    assert [j.id for j in store.query().jobs] == [first.id]  # nothing of bob's was stored


def test_the_users_migration_gives_earlier_jobs_to_nobody_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    old_schemas.schema_before(conn, "user_counts")
    conn.executemany(
        "INSERT INTO jobs (name, kind, owner, status, created_at, queued_at) "
        "VALUES ('old', 'function', ?, 'queued', 1.0, 1.0)",
        [("nb",), ("nb",), ("other",)],
    )
    conn.close()
    with Store(path) as s:
        assert {(j.user, j.user_display_name) for j in s.query().jobs} == {("", "")}
        assert s.counts("nb", "")["queued"] == 2 and s.query(user="").counts["queued"] == 3
        new = s.enqueue(spec(owner="nb"), b"", ALICE)
        # nobody's jobs are one more user in the fair share
        assert [c.job.id for c in claim(s, "c", 2, 60)] == [1, new.id]
