"""Result channels (`channels.py`, `store/channels.py`): every reader gets every finished job of
a channel once, in the order the jobs finished, durably, through the store, the engine's
`JobQueue.results` (a real consumer and worker processes) and `jupyter jobs results`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_jobs import cli
from jupyter_jobs.errors import InvalidRequest, JobFailed
from jupyter_jobs.models import JobSpec, Outcome, Status
from jupyter_jobs.store import MIGRATIONS, Store, connection

import jobfuncs
import old_schemas
from store_driver import claim, finish, started
from waiting import wait_until


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def ids(jobs) -> list[int]:
    return [job.id for job in jobs]


# --- the store ----------------------------------------------------------------------------------


def test_jobs_are_delivered_in_the_order_they_finish_not_the_order_they_were_submitted(store):
    a, b, c = (store.enqueue(JobSpec(name=n, channel="ch"), b"p") for n in "abc")
    held = {item.job.id: item.job.attempt for item in claim(store, "c1", 3, lease=60)}
    for job_id in held:
        assert started(store, job_id, held[job_id])
    for job in (c, a, b):
        finish(store, job.id, held[job.id], Outcome(Status.SUCCEEDED, result=b""))
    batch = store.channel_next("ch", "r", limit=10)
    assert [d.job.id for d in batch.deliveries] == [c.id, a.id, b.id]
    seqs = [d.seq for d in batch.deliveries]
    assert seqs == sorted(seqs) and batch.acked == 0
    assert all(d.job.status is Status.SUCCEEDED for d in batch.deliveries)


def test_only_jobs_of_the_channel_are_delivered_and_unfinished_ones_wait(store):
    mine = store.enqueue(JobSpec(name="mine", channel="ch"), b"p")
    other = store.enqueue(JobSpec(name="other", channel="elsewhere"), b"p")
    plain = store.enqueue(JobSpec(name="plain"), b"p")
    waiting = store.enqueue(JobSpec(name="waiting", channel="ch"), b"p")
    for job in (mine, other, plain):
        store.request_cancel(job.id)
    batch = store.channel_next("ch", "r", limit=10)
    assert [d.job.id for d in batch.deliveries] == [mine.id]
    assert store.get(waiting.id).status is Status.QUEUED


def test_an_ack_moves_one_readers_cursor_forward_only(store):
    jobs = [store.enqueue(JobSpec(name=str(i), channel="ch"), b"p") for i in range(3)]
    for job in jobs:
        store.request_cancel(job.id)
    seqs = [d.seq for d in store.channel_next("ch", "a", limit=10).deliveries]
    assert store.channel_ack("ch", "a", seqs[1]) == seqs[1]
    assert store.channel_ack("ch", "a", seqs[0]) == seqs[1]  # never back
    assert [d.job.id for d in store.channel_next("ch", "a", limit=10).deliveries] == [jobs[2].id]
    # reader b has its own cursor; `after` reads past a position without acknowledging
    assert len(store.channel_next("ch", "b", limit=10).deliveries) == 3
    assert [d.seq for d in store.channel_next("ch", "b", after=seqs[0]).deliveries] == [seqs[1]]
    assert store.channel_next("ch", "b").acked == 0


def test_an_ack_of_a_number_the_channel_never_gave_is_refused_by_name(store):
    job = store.enqueue(JobSpec(name="x", channel="ch"), b"p")
    other = store.enqueue(JobSpec(name="y", channel="other"), b"p")
    store.request_cancel(job.id)
    store.request_cancel(other.id)
    (theirs,) = store.channel_next("other", "r").deliveries
    with pytest.raises(InvalidRequest, match="channel 'other'"):
        store.channel_ack("ch", "r", theirs.seq)
    with pytest.raises(InvalidRequest, match="never delivered"):
        store.channel_ack("ch", "r", theirs.seq + 100)
    with pytest.raises(InvalidRequest, match="reader"):
        store.channel_ack("ch", "no/slash", 1)


@pytest.mark.parametrize("name", ["", "a/b", "-lead", "x" * 201, "spa ce", "é"])
def test_a_channel_that_is_not_a_name_is_refused_at_submit(store, name):
    with pytest.raises(InvalidRequest, match="channel"):
        store.enqueue(JobSpec(name="x", channel=name), b"p")


def test_an_explicit_retry_takes_the_job_out_until_it_ends_again(store):
    job = store.enqueue(JobSpec(name="x", channel="ch"), b"p")
    (held,) = claim(store, "c1", 1, lease=60)
    assert started(store, job.id, held.job.attempt)
    finish(store, job.id, held.job.attempt, Outcome(Status.FAILED, error=None))
    (failed,) = store.channel_next("ch", "early").deliveries
    store.channel_ack("ch", "early", failed.seq)
    store.retry(job.id)
    assert store.channel_next("ch", "late").deliveries == []
    (again,) = claim(store, "c1", 1, lease=60)
    assert started(store, job.id, again.job.attempt)
    finish(store, job.id, again.job.attempt, Outcome(Status.SUCCEEDED, result=b""))
    # A reader that had not read it gets it once, as it ended; one that had taken the failure
    # gets the new end too (a retry is a new outcome).
    (late,) = store.channel_next("ch", "late", limit=10).deliveries
    (early,) = store.channel_next("ch", "early", limit=10).deliveries
    assert late.job.status is early.job.status is Status.SUCCEEDED and late.seq > failed.seq


def test_deleting_a_job_removes_it_from_its_channel(store):
    job = store.enqueue(JobSpec(name="x", channel="ch"), b"p")
    store.request_cancel(job.id)
    store.delete(job.id)
    assert store.channel_next("ch", "r").deliveries == []


def test_a_database_of_the_previous_version_gains_channels(tmp_path, monkeypatch):
    mine = old_schemas.migration_bringing("ADD COLUMN channel TEXT")
    path = tmp_path / "old.db"
    monkeypatch.setattr(connection, "MIGRATIONS", MIGRATIONS[:mine])
    old = connection.Database(path)
    with old.write() as conn:
        conn.execute(
            "INSERT INTO jobs (name, kind, status, created_at) VALUES ('old', 'function', "
            "'queued', 0)"
        )
    old.close()
    monkeypatch.setattr(connection, "MIGRATIONS", MIGRATIONS)
    with Store(path) as store:
        assert store.get(1).channel is None
        job = store.enqueue(JobSpec(name="x", channel="ch"), b"p")
        store.request_cancel(job.id)
        assert [d.job.id for d in store.channel_next("ch", "r").deliveries] == [job.id]


# --- the engine: JobQueue.results with a real consumer -------------------------------------------


def test_two_readers_each_get_every_job_once(queue):
    jobs = [queue.submit(jobfuncs.add, i, channel="sweep") for i in range(5)]
    for job in jobs:
        job.result(timeout=60)
    first = list(queue.results("sweep", reader="a", timeout=0))
    second = list(queue.results("sweep", reader="b", timeout=0))
    assert sorted(ids(first)) == sorted(ids(second)) == sorted(ids(jobs))
    assert sorted(job.result() for job in first) == [0, 1, 2, 3, 4]
    # each read to its end acknowledged all it got: nothing comes twice
    assert list(queue.results("sweep", reader="a", timeout=0)) == []
    assert list(queue.results("sweep", reader="b", timeout=0)) == []


def test_a_reader_waits_for_jobs_as_they_finish(queue):
    reader = queue.results("live", timeout=60, count=2)
    fast = queue.submit(jobfuncs.add, 1, 2, channel="live")
    slow = queue.submit(jobfuncs.sleep, 0.5, channel="live")
    got = list(reader)
    assert ids(got) == [fast.id, slow.id] and [j.result() for j in got] == [3, 0.5]


def test_a_timeout_ends_the_iteration_and_with_a_count_raises_naming_what_came(queue):
    assert list(queue.results("nothing", timeout=0.2)) == []
    queue.submit(jobfuncs.add, 1, channel="some").result(timeout=60)
    reader = queue.results("some", timeout=0.2, count=2)
    assert next(reader).result() == 1
    with pytest.raises(TimeoutError, match="got 1 of 2"):
        next(reader)


def test_a_failed_job_is_delivered_with_its_error(queue):
    job = queue.submit(jobfuncs.fail, "bad", channel="errs")
    (got,) = queue.results("errs", timeout=60, count=1)
    assert got.id == job.id
    with pytest.raises(JobFailed, match="bad"):
        got.result()


def test_a_job_retried_automatically_appears_once_when_final(queue, tmp_path):
    marks = tmp_path / "marks"
    job = queue.submit(jobfuncs.fail_until, str(marks), 3, retries=3, retry_delay=0, channel="r")
    assert job.result(timeout=60) == 3
    got = list(queue.results("r", timeout=0))
    assert ids(got) == [job.id] and got[0].record.status is Status.SUCCEEDED


def test_ack_acknowledges_the_last_job_a_reader_handled(queue):
    for i in range(2):
        queue.submit(jobfuncs.add, i, channel="c").result(timeout=60)
    for job in queue.results("c", timeout=0):
        job.ack()
        break  # asked for no next: without ack() this one would come again
    (rest,) = queue.results("c", timeout=0)
    assert rest.result() == 1
    with pytest.raises(Exception, match="not delivered"):
        queue.get(rest.id).ack()


READER = textwrap.dedent(
    """
    import sys, time
    from jupyter_jobs import JobQueue

    db, reader, ack = sys.argv[1], sys.argv[2], sys.argv[3] == "ack"
    q = JobQueue(db, create=False)
    job = next(q.results("fan-in", reader=reader, timeout=60))
    if ack:
        job.ack()
    print(job.id, flush=True)
    time.sleep(600)  # killed here, before asking for the next job
    """
)


def read_then_die(db_path: Path, reader: str, ack: bool) -> int:
    """A reader in its own process takes one job, then is killed (SIGKILL on POSIX)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(db_path), reader, "ack" if ack else "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    return int(line)


def test_a_reader_killed_before_its_ack_gets_the_job_again_and_not_after(queue, db_path):
    jobs = [queue.submit(jobfuncs.add, i, channel="fan-in") for i in range(2)]
    for job in jobs:
        job.result(timeout=60)
    order = ids(queue.results("fan-in", reader="peek", timeout=0))
    assert read_then_die(db_path, "r", ack=False) == order[0]
    assert read_then_die(db_path, "r", ack=False) == order[0]  # not acknowledged: again
    assert read_then_die(db_path, "r", ack=True) == order[0]
    assert read_then_die(db_path, "r", ack=True) == order[1]  # acknowledged: the next one


def test_a_reader_in_another_process_is_woken_by_the_doorbell(queue, db_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(db_path), "w", "ack"], stdout=subprocess.PIPE, text=True
    )
    try:
        bells = queue.store.doorbell.socket_dir
        wait_until(
            lambda: any(n.startswith(f"{proc.pid}-") for n in os.listdir(bells)),
            what="the reader waits on the doorbell",
        )
        job = queue.submit(jobfuncs.add, 2, 3, channel="fan-in")
        assert int(proc.stdout.readline()) == job.id
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()


# --- the command line ----------------------------------------------------------------------------


def run(capsysbinary, db: Path, *args: str) -> tuple[int, str]:
    code = cli.main([*args, "--db", str(db)])
    out, _ = capsysbinary.readouterr()
    return code, out.decode()


def test_the_cli_prints_each_finished_job_once_per_reader(store, db_path, capsysbinary):
    jobs = [store.enqueue(JobSpec(name=f"step {i}", channel="sweep-1"), b"p") for i in range(2)]
    for job in jobs:
        store.request_cancel(job.id)
    code, out = run(capsysbinary, db_path, "results", "sweep-1", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["job"]["id"] for line in lines] == ids(jobs)
    assert {line["reader"] for line in lines} == {"default"}
    code, out = run(capsysbinary, db_path, "results", "sweep-1")
    assert code == 0 and "no new finished job" in out
    code, out = run(capsysbinary, db_path, "results", "sweep-1", "--reader", "other")
    assert code == 0 and "step 0" in out and "step 1" in out and "cancelled" in out
    code, _ = run(capsysbinary, db_path, "results", "not/a/name")
    assert code == 2


def test_the_cli_follows_a_channel_until_interrupted(store, db_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_jobs.cli", "results", "live", "-f", "--db", str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        job = store.enqueue(JobSpec(name="arrives later", channel="live"), b"p")
        store.request_cancel(job.id)
        line = proc.stdout.readline()
        assert f"job {job.id}" in line and "arrives later" in line
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    wait_until(lambda: proc.poll() is not None, what="the CLI ended")


def test_a_job_cell_names_its_channel_with_a_flag():
    from jupyter_jobs.kernel.magics import parse_cell_options

    assert parse_cell_options("--channel sweep-1").submit == {"channel": "sweep-1"}
