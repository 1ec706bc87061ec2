"""How a job reads as text, the same in the CLI, `%jobs` and the widget."""

from __future__ import annotations

from jupyter_jobs import wording
from jupyter_jobs.models import Job, Kind, Progress, Reason, Status


def record(**fields) -> Job:
    base = {"id": 7, "name": "train", "kind": Kind.CELL, "owner": "nb", "status": Status.RUNNING}
    return Job(**{**base, **fields})


def test_status_words_say_why():
    assert wording.status_word(record(status=Status.FAILED, reason=Reason.TIMEOUT)) == (
        "failed (timeout)"
    )
    assert wording.status_word(record(cancel_requested=True)) == "running (cancelling)"
    assert wording.status_word(record(attempt=2)) == "running, attempt 2"


def test_elapsed_and_eta_come_from_progress():
    r = record(started_at=100.0, progress=Progress(done=25, total=100))
    assert wording.elapsed(r, now=110.0) == 10.0
    assert wording.eta(r, now=110.0) == 30.0  # a quarter took 10 s: three quarters left
    assert wording.timing(r, now=110.0) == "#7 · 10 s elapsed · ETA 30 s"
    done = record(status=Status.SUCCEEDED, started_at=100.0, finished_at=104.0)
    assert wording.eta(done, now=200.0) is None
    assert wording.timing(done, now=200.0) == "#7 · took 4.0 s"
    queued = record(status=Status.QUEUED, created_at=100.0)
    assert wording.timing(queued, now=102.0) == "#7 · submitted 2.0 s ago"


def test_durations_read_like_a_person_would_say_them():
    assert wording.duration(0.42) == "0.4 s"
    assert wording.duration(42) == "42 s"
    assert wording.duration(185) == "3 min 05 s"
    assert wording.duration(7380) == "2 h 03 min"


def test_progress_text():
    assert wording.progress_text(record(progress=Progress(3, 10, "loading"))) == "3/10 · loading"
    assert wording.progress_text(record(progress=Progress(3))) == "3"
    assert wording.progress_text(record()) == ""
