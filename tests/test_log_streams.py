"""A log's labelled streams in the store (`store/log_streams.py`), through the consumer's verb
(`Store.record`), the engine (`Job.logs(stream=)`, a real worker) and `jupyter jobs logs`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_jobs import cli
from jupyter_jobs.errors import StreamNotFound
from jupyter_jobs.models import JobSpec, Outcome, Status
from jupyter_jobs.store import Store

import jobfuncs
from store_driver import append_log, claim, finish, started


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def running(store):
    """A job whose attempt runs: (job id, attempt)."""
    job = store.enqueue(JobSpec(name="x"), b"p")
    (held,) = claim(store, "c1", 1, lease=60)
    assert started(store, job.id, held.job.attempt)
    return job.id, held.job.attempt


def whole(store: Store, job_id: int, stream: str | None = None) -> bytes:
    return store.read_log_streams(job_id, 0, 2**20, stream)[1].data


def test_a_log_with_only_its_main_stream_is_one_stream_and_has_no_runs(store, running):
    job_id, attempt = running
    append_log(store, job_id, attempt, b"one\n")
    job, found = store.read_log_streams(job_id)
    assert (found.data, found.parts, found.streams) == (
        b"one\n",
        [("main", b"one\n")],
        [("main", 4)],
    )
    assert job.log_size == 4
    rows = store._db.conn().execute("SELECT count(*) FROM log_runs").fetchone()[0]
    assert rows == 0


def test_streams_are_kept_apart_and_the_whole_log_keeps_the_order_of_writing(store, running):
    job_id, attempt = running
    store.record(
        logs=[
            (job_id, attempt, b"main 1\n"),
            (job_id, attempt, b"a 1\n", "thread a"),
            (job_id, attempt, b"b 1\n", "pid 42"),
            (job_id, attempt, b"a 2\n", "thread a"),
            (job_id, attempt, b"main 2\n"),
        ]
    )
    store.record(logs=[(job_id, attempt, b"a 3\n", "thread a")])  # the run goes on
    assert whole(store, job_id) == b"main 1\na 1\nb 1\na 2\nmain 2\na 3\n"
    assert whole(store, job_id, "main") == b"main 1\nmain 2\n"
    assert whole(store, job_id, "thread a") == b"a 1\na 2\na 3\n"
    assert whole(store, job_id, "pid 42") == b"b 1\n"
    _, found = store.read_log_streams(job_id)
    assert found.streams == [("main", 14), ("thread a", 12), ("pid 42", 4)]
    assert found.parts == [
        ("main", b"main 1\n"),
        ("thread a", b"a 1\n"),
        ("pid 42", b"b 1\n"),
        ("thread a", b"a 2\n"),
        ("main", b"main 2\n"),
        ("thread a", b"a 3\n"),
    ]


def test_a_stream_is_read_from_its_own_offsets_in_chunks(store, running):
    job_id, attempt = running
    for k in range(5):
        main, labelled = f"m{k}\n".encode(), f"t{k}\n".encode()
        store.record(logs=[(job_id, attempt, main), (job_id, attempt, labelled, "t")])
    chunks, offset = [], 0
    while True:
        found = store.read_log_streams(job_id, offset, 5, "t")[1]
        if not found.data:
            break
        chunks.append(found.data)
        offset = found.next_offset
    assert chunks == [b"t0\nt1", b"\nt2\nt", b"3\nt4\n"] and offset == 15
    # a chunk of the whole log that starts and ends inside runs is cut at their edges
    found = store.read_log_streams(job_id, 1, 6)[1]
    assert found.parts == [("main", b"0\n"), ("t", b"t0\n"), ("main", b"m")]


def test_markers_belong_to_the_main_stream(store, running):
    job_id, attempt = running
    store.log_limit = 10
    store.record(logs=[(job_id, attempt, b"x" * 20, "noisy")])
    assert whole(store, job_id, "noisy") == b"x" * 10
    assert b"log truncated" in whole(store, job_id, "main")


def test_an_unknown_stream_is_refused_naming_those_there_are(store, running):
    job_id, attempt = running
    store.record(logs=[(job_id, attempt, b"a\n", "thread a")])
    with pytest.raises(StreamNotFound, match="'thread a'") as refused:
        store.read_log_streams(job_id, stream="pid 1")
    assert refused.value.detail["streams"] == ["main", "thread a"]


def test_deleting_a_job_deletes_its_runs(store, running):
    job_id, attempt = running
    store.record(logs=[(job_id, attempt, b"a\n", "thread a")])
    finish(store, job_id, attempt, Outcome(Status.SUCCEEDED, result=b""))
    store.delete(job_id)
    conn = store._db.conn()
    assert conn.execute("SELECT count(*) FROM log_runs").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM log_streams").fetchone()[0] == 0


def test_a_jobs_threads_are_read_one_by_one_through_the_engine(queue):
    job = queue.submit(jobfuncs.threads_print, 2)
    job.result(timeout=60)
    assert job.logs(stream="thread printer-0") == "printer-0 says hi\n"
    assert job.logs(stream="thread printer-1") == "printer-1 says hi\n"
    assert job.logs(stream="main") == "started 2\n"
    assert sorted(job.logs().splitlines()) == [
        "printer-0 says hi",
        "printer-1 says hi",
        "started 2",
    ]


def test_the_cli_prints_one_stream(store, running, db_path, capsysbinary):
    job_id, attempt = running
    store.record(logs=[(job_id, attempt, b"main\n"), (job_id, attempt, b"mine\n", "pid 7")])
    assert cli.main(["logs", str(job_id), "--stream", "pid 7", "--db", str(db_path)]) == 0
    assert capsysbinary.readouterr().out == b"mine\n"
    assert cli.main(["logs", str(job_id), "--stream", "main", "--json", "--db", str(db_path)]) == 0
    assert json.loads(capsysbinary.readouterr().out)["data"] == "main\n"
    assert cli.main(["logs", str(job_id), "--stream", "nope", "--db", str(db_path)]) == 2
    assert b"'pid 7'" in capsysbinary.readouterr().err


def test_outside_a_job_a_stream_block_prints_as_usual(capsys):
    import jupyter_jobs

    with jupyter_jobs.stream("fold-3"):
        print("plain")
    assert capsys.readouterr().out == "plain\n"
    for bad in ("", "two\nlines", "x" * 201, 3):
        with pytest.raises(ValueError, match="label"):
            jupyter_jobs.stream(bad)
