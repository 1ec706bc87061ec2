"""Drive a store the way the consumer does: every claim, start, log, progress and outcome goes
through `Store.record_and_claim` / `Store.record`, the verbs the consumer uses.

The fenced writes say whether they applied by what the record shows afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from jupyter_jobs.errors import JobNotFound
from jupyter_jobs.models import Job, Outcome, Progress, Status, now
from jupyter_jobs.start_log import StartLog
from jupyter_jobs.store import Claimed, Store


def claim(store: Store, consumer: str, limit: int, lease: float) -> list[Claimed]:
    """Claim up to `limit` queued jobs for `consumer`, as the consumer's flush does."""
    return store.record_and_claim(claim=(consumer, limit, lease))[1]


def _running(store: Store, job_id: int, attempt: int) -> Job | None:
    try:
        job = store.get(job_id)
    except JobNotFound:
        return None
    return job if job.status is Status.RUNNING and job.attempt == attempt else None


def started(store: Store, job_id: int, attempt: int, at: float | None = None) -> bool:
    """Record that a claimed attempt's code began; whether it moved `queued -> running` now."""
    try:
        before = store.get(job_id).status
    except JobNotFound:
        return False
    store.record(starts=[(job_id, attempt, now() if at is None else at)])
    return before is Status.QUEUED and _running(store, job_id, attempt) is not None


def finish(store: Store, job_id: int, attempt: int, outcome: Outcome) -> Job | None:
    """Record how an attempt ended; None when the attempt is stale."""
    return store.record(outcomes=[(job_id, attempt, outcome)])[0]


def finish_many(store: Store, items: Sequence[tuple[int, int, Outcome]]) -> list[Job | None]:
    return store.record(outcomes=items)


def append_log(store: Store, job_id: int, attempt: int, data: bytes) -> int:
    """Append to a running attempt's log; its size after, or -1 for a stale attempt."""
    store.record(logs=[(job_id, attempt, data)])
    job = _running(store, job_id, attempt)
    return -1 if job is None else job.log_size


def append_log_many(store: Store, items: Sequence[tuple[int, int, bytes]]) -> None:
    store.record(logs=items)


def set_progress(store: Store, job_id: int, attempt: int, progress: Progress) -> bool:
    """Record a running attempt's progress; False for a stale attempt."""
    store.record(progress=[(job_id, attempt, progress)])
    return _running(store, job_id, attempt) is not None


#: Makes a start log owned by this short-lived process, writes the starts it is given, exits.
_DEAD_OWNER = """
import sys
from pathlib import Path
from jupyter_jobs.start_log import Recorder, StartLog
log = StartLog(Path(sys.argv[1]), sys.argv[2])
log.create()
recorder = Recorder(log.take_file(), lambda: True)
for pair in sys.argv[3:]:
    assert recorder.begin(*map(int, pair.split(":")))
"""


def by_dead_owner(folder: Path, *starts: tuple[int, int], consumer: str = "c1") -> StartLog:
    """A start log (`start_log.py`) whose owner, the process that made it and whose workers
    began `starts` (job id, attempt), has exited: a consumer killed with -9."""
    pairs = [f"{job}:{attempt}" for job, attempt in starts]
    subprocess.run([sys.executable, "-c", _DEAD_OWNER, str(folder), consumer, *pairs], check=True)
    return StartLog(folder, consumer)
