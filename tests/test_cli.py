"""`jupyter jobs ...` on a real store file: tables and --json, errors and exit codes, logs -f."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from jupyter_jobs import cli
from jupyter_jobs.models import JobSpec, Outcome, Status
from jupyter_jobs.store import Store


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
    [claimed] = store.claim("c", 1, 30.0)
    store.start(job.id, claimed.job.attempt)
    store.append_log(job.id, claimed.job.attempt, b"start\n")
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
            self.append_log(job_id, claimed.job.attempt, tail)
            self.finish(job_id, claimed.job.attempt, Outcome(Status.SUCCEEDED, result=b"r"))
            record = real_get(self, job_id)
        return record

    monkeypatch.setattr(Store, "read_log", read_log)
    monkeypatch.setattr(Store, "get", get)
    code = cli.main(["logs", "-f", str(job.id), "--db", str(db_path)])
    out, _ = capsysbinary.readouterr()
    assert code == 0 and out == b"start\n" + tail
