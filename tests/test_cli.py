"""`jupyter jobs ...` on a real store file: tables and --json, errors and exit codes, logs -f."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_jobs import cli, oslayer
from jupyter_jobs.models import JobSpec, JobUser, Outcome, Status
from jupyter_jobs.store import Store

from store_driver import append_log, claim, finish, started
from waiting import wait_until


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def run(capsysbinary: pytest.CaptureFixture[bytes], db: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--db", str(db)])
    out, err = capsysbinary.readouterr()
    return code, out.decode(), err.decode()


def test_list_and_show_as_tables_and_json(store, db_path, capsysbinary):
    job = store.enqueue(JobSpec(name="train model"), b"p")
    code, out, _ = run(capsysbinary, db_path, "list")
    assert code == 0 and "train model" in out and "queued" in out
    code, out, _ = run(capsysbinary, db_path, "show", str(job.id), "--json")
    assert code == 0 and json.loads(out)["name"] == "train model"


def test_list_mine_is_the_os_users_and_user_names_anyone(store, db_path, capsysbinary):
    me = oslayer.user_name()
    assert me, "the test needs an OS user name"
    mine = store.enqueue(JobSpec(name="mine"), b"", JobUser(me, me))
    theirs = store.enqueue(JobSpec(name="theirs"), b"", JobUser("x-other", "Other Person"))
    code, out, _ = run(capsysbinary, db_path, "list", "--mine", "--json")
    assert code == 0 and [j["id"] for j in json.loads(out)["jobs"]] == [mine.id]
    code, out, _ = run(capsysbinary, db_path, "list", "--user", "x-other")
    assert code == 0 and "theirs" in out and "mine" not in out and "x-other" in out
    assert "USER" in out.splitlines()[0]
    code, out, _ = run(capsysbinary, db_path, "show", str(theirs.id))
    assert "user      Other Person (x-other)\n" in out
    code, _, err = run(capsysbinary, db_path, "list", "--mine", "--user", "x-other")
    assert code == 2 and "not allowed with argument" in err


def test_show_and_cancel_use_the_widgets_words_and_the_jobs_actions(store, db_path, capsysbinary):
    job = store.enqueue(JobSpec(name="train"), b"p")
    (claimed,) = claim(store, "c1", 1, lease=60)
    assert started(store, job.id, claimed.job.attempt)
    code, out, _ = run(capsysbinary, db_path, "show", str(job.id))
    assert code == 0 and "actions   cancel\n" in out
    code, out, _ = run(capsysbinary, db_path, "cancel", str(job.id))
    assert (code, out) == (0, f"job {job.id}: running (cancelling)\n")
    code, out, _ = run(capsysbinary, db_path, "show", str(job.id))
    assert "status    running (cancelling)\n" in out and "actions   -\n" in out


def test_an_unknown_job_is_exit_2_with_a_message(db_path, capsysbinary):
    Store(db_path).close()
    code, _, err = run(capsysbinary, db_path, "show", "999")
    assert code == 2 and "999" in err and "Traceback" not in err


def test_an_illegal_action_is_exit_1_with_a_message(store, db_path, capsysbinary):
    job = store.enqueue(JobSpec(name="j"), b"p")
    code, _, err = run(capsysbinary, db_path, "retry", str(job.id))
    assert code == 1 and "queued" in err and "Traceback" not in err


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path, capsysbinary):
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    other.chmod(0o644)
    code, _, err = run(capsysbinary, other, "list")
    assert code == 1 and "not a job database" in err
    assert stat.S_IMODE(other.stat().st_mode) == 0o644 and other.read_text() == "my notes\n"
    assert not (tmp_path / "jobs").exists()


def test_logs_follow_prints_what_was_written_as_the_job_ended(
    store, db_path, capsysbinary, monkeypatch
):
    job = store.enqueue(JobSpec(name="j"), b"p")
    [claimed] = claim(store, "c", 1, 30.0)
    started(store, job.id, claimed.job.attempt)
    append_log(store, job.id, claimed.job.attempt, b"start\n")
    tail = b"y" * (3 * 2**20)  # more than one read's worth
    real_read, real_get, last_read = Store.read_log, Store.get, [None]

    def read_log(self, job_id, offset=0, limit=2**20):
        data, next_offset = real_read(self, job_id, offset, limit)
        last_read[0] = data
        return data, next_offset

    def get(self, job_id):
        record = real_get(self, job_id)
        if not record.finished and last_read[0] == b"":
            # Between the follower's empty read and its look at the status, the job writes
            # its last lines and ends.
            attempt = claimed.job.attempt
            ended = Outcome(Status.SUCCEEDED, result=b"r")
            self.record(logs=[(job_id, attempt, tail)], outcomes=[(job_id, attempt, ended)])
            record = real_get(self, job_id)
        return record

    monkeypatch.setattr(Store, "read_log", read_log)
    monkeypatch.setattr(Store, "get", get)
    code = cli.main(["logs", "-f", str(job.id), "--db", str(db_path)])
    out, _ = capsysbinary.readouterr()
    assert code == 0 and out == b"start\n" + tail


def finished_job(store: Store, log: bytes = b"") -> int:
    job = store.enqueue(JobSpec(name="j"), b"p")
    [claimed] = claim(store, "c", 1, 30.0)
    started(store, job.id, claimed.job.attempt)
    if log:
        append_log(store, job.id, claimed.job.attempt, log)
    finish(store, job.id, claimed.job.attempt, Outcome(Status.SUCCEEDED, result=b"r"))
    return job.id


def test_logs_follow_never_prints_another_databases_log(tmp_path, capsysbinary):
    with Store(tmp_path / "old.db") as old:
        assert finished_job(old, b"old database's log\n") == 1
    with Store(tmp_path / "new.db") as new:
        assert finished_job(new) == 1
    code, out, err = run(capsysbinary, tmp_path / "new.db", "logs", "1", "-f")
    assert (code, out, err) == (0, "", "")
    code, out, _ = run(capsysbinary, tmp_path / "old.db", "logs", "1", "-f")
    assert (code, out) == (0, "old database's log\n")


@pytest.mark.parametrize(
    "command", [["list"], ["show", "1"], ["logs", "1"], ["cancel", "1"], ["retry", "1"],
                ["rm", "1"], ["gc"]],
)  # fmt: skip
def test_a_missing_database_is_refused_not_created(tmp_path, capsysbinary, command):
    typo = tmp_path / "typo" / "jbos.db"
    code, out, err = run(capsysbinary, typo, *command)
    assert code == 1 and out == ""
    assert f"no job database at {typo}" in err and "--db" in err and "Traceback" not in err
    assert not typo.parent.exists()


def test_the_consumer_creates_a_missing_database(tmp_path):
    db, stderr = tmp_path / "new" / "jobs.db", tmp_path / "consumer.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_jobs.cli", "consumer", "--db", str(db), "--json",
             "--max-workers", "1"],
            stderr=err,
        )  # fmt: skip
    try:
        wait_until(lambda: "\n" in stderr.read_text() or proc.poll() is not None, timeout=60)
        started = json.loads(stderr.read_text().splitlines()[0])
        assert started["database"] == str(db) and started["max_workers"] == 1
        assert db.exists() and (tmp_path / "new" / "jobs.db.files" / "workspace-id").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, stderr.read_text()


def test_errors_under_json_are_json_on_stderr(tmp_path, db_path, store, capsysbinary):
    code, out, err = run(capsysbinary, db_path, "show", "999", "--json")
    assert (code, out) == (2, "")
    assert json.loads(err) == {"message": "no job with id 999", "reason": "Not Found",
                               "type": "JobNotFound", "detail": {"id": 999}}  # fmt: skip
    code, out, err = run(capsysbinary, db_path, "show", "x", "--json")
    assert (code, out) == (2, "")
    assert json.loads(err)["type"] == "InvalidRequest" and "job id" in json.loads(err)["message"]
    code, out, err = run(capsysbinary, tmp_path / "missing.db", "list", "--json")
    assert (code, out, json.loads(err)["type"]) == (1, "", "DatabaseNotFound")
    code, _, err = run(capsysbinary, db_path, "show", "x")  # without --json: argparse's form
    assert code == 2 and err.startswith("usage:") and "job id must be an integer" in err


def test_logs_as_json(store, db_path, capsysbinary):
    job_id = finished_job(store, "héllo\n".encode())
    code, out, _ = run(capsysbinary, db_path, "logs", str(job_id), "--json")
    assert code == 0
    assert json.loads(out) == {"id": job_id, "data": "héllo\n", "offset": 0, "next_offset": 7}
    code, out, _ = run(capsysbinary, db_path, "logs", str(job_id), "-f", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "".join(line["data"] for line in lines) == "héllo\n"
    assert lines[-1]["next_offset"] == 7


def test_bare_gc_applies_the_server_retention_and_says_what_it_removed(
    store, db_path, capsysbinary
):
    old, recent = finished_job(store), finished_job(store)
    running = store.enqueue(JobSpec(name="running"), b"p")
    claim(store, "c", 1, 30.0)
    with sqlite3.connect(db_path) as conn:  # finished 31 days ago; the running one started then
        conn.execute(
            "UPDATE jobs SET finished_at = ?, started_at = ? WHERE id IN (?, ?)",
            (time.time() - 31 * 86400, time.time() - 31 * 86400, old, running.id),
        )
    code, out, _ = run(capsysbinary, db_path, "gc")
    assert code == 0 and out == f"deleted 1 finished job(s) (finished over 30 days ago): {old}\n"
    assert [j.id for j in store.query().jobs] == [running.id, recent]
    code, out, _ = run(capsysbinary, db_path, "gc", "--json")
    assert json.loads(out) == {"deleted": [], "older_than_days": 30.0, "max_mb": None}
    code, out, _ = run(capsysbinary, db_path, "gc")
    assert out == "nothing to delete: no finished job matched (finished over 30 days ago)\n"
    code, out, _ = run(capsysbinary, db_path, "gc", "--max-mb", "0")
    assert out == f"deleted 1 finished job(s) (the oldest beyond 0 MB in all): {recent}\n"
    assert [j.id for j in store.query().jobs] == [running.id]


def test_a_refused_action_is_worded_naturally(store, db_path, capsysbinary):
    job_id = finished_job(store)
    code, _, err = run(capsysbinary, db_path, "cancel", str(job_id))
    assert code == 1
    said = f"job {job_id} has already succeeded; it cannot be cancelled"
    assert err == f"jupyter jobs: error: {said}\n"
    code, _, err = run(capsysbinary, db_path, "retry", str(job_id))
    assert f"job {job_id} has already succeeded; only failed or cancelled" in err


def test_release_lets_held_jobs_run_and_reports_one_that_is_not_held(store, db_path, capsysbinary):
    a, b = (store.enqueue(JobSpec(name=n, hold=True), b"p") for n in ("a", "b"))
    queued = store.enqueue(JobSpec(name="q"), b"p")
    code, out, _ = run(capsysbinary, db_path, "show", str(a.id))
    assert "actions   cancel, release, delete\n" in out
    code, out, err = run(capsysbinary, db_path, "release", str(a.id), str(queued.id), str(b.id))
    assert code == 1 and out == f"job {a.id}: queued\njob {b.id}: queued\n"
    assert f"job {queued.id} is not held: it is queued" in err
    assert [j.held for j in store.get_many([a.id, b.id])] == [False, False]
    code, _, err = run(capsysbinary, db_path, "release", "999", "--json")
    assert code == 2 and json.loads(err)["type"] == "JobNotFound"
