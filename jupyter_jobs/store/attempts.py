"""A consumer's writes about attempts: claims (leases), starts, progress, outcomes.

Every write names its attempt and is fenced by it: a stale worker (an earlier attempt, or one
whose claim was taken back) writes nothing. A claim leases the row and counts the attempt but
leaves the job queued; it is `running` only once its code starts (`start`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from .. import lifecycle
from ..errors import IllegalTransition
from ..models import JobError, Outcome, Progress, Reason, Status, can_move
from . import moves, picking, schema
from .files import JobFiles
from .schema import IDS, LEASED, QUEUED, RUNNING, error_columns
from .transaction import Tx

#: (job id, inline payload, payload file, payload size, the stored function it names) of each
#: job a claim took
Taken = tuple[int, bytes | None, str | None, int, str | None]
#: Output of an attempt: (job id, attempt, bytes) of its main stream, or (job id, attempt,
#: bytes, stream name) of a labelled one (a thread's, a child process's: `log_streams.py`).
LogItem = tuple[int, int, bytes] | tuple[int, int, bytes, str]


def claim(tx: Tx, consumer: str, limit: int, lease: float) -> list[Taken]:
    """Lease the picked jobs (`picking.pick`) to `consumer`, counting their attempts.

    Not a change anyone is told of: the jobs are as queued as before, until they start."""
    ids = picking.pick(tx.conn, limit, tx.now)
    if not ids:
        return []
    tx.conn.execute(
        "UPDATE jobs SET attempt = attempt + 1, started_at = NULL, consumer = ?, "
        "lease_until = ?, cancel_requested = 0, not_before = NULL, progress_done = NULL, "
        "progress_total = NULL, progress_message = NULL, progress_at = NULL, summary = NULL "
        f"WHERE id IN {IDS}",
        (consumer, tx.now + lease, json.dumps(ids)),
    )
    tx.snapshots.update(schema.load(tx.conn, ids))
    blobs = {
        r[0]: (r[1], r[2], r[3], r[4])
        for r in tx.conn.execute(
            "SELECT job_id, data, path, size, shared FROM blobs WHERE kind = 'payload' "
            f"AND job_id IN {IDS}",
            (json.dumps(ids),),
        ).fetchall()
    }
    return [(i, *blobs.get(i, (b"", None, 0, None))) for i in ids]


def check_table() -> None:
    """Claims and starts rely on `queued -> running` being allowed."""
    if not can_move(Status.QUEUED, Status.RUNNING):
        raise IllegalTransition("the transition table does not let queued jobs start")


def start(tx: Tx, job_id: int, attempt: int, at: float) -> bool:
    """`queued -> running` for this attempt's claim (not a retry's queued row); False when
    stale."""
    check_table()
    cursor = tx.conn.execute(
        f"UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = {QUEUED} "
        f"AND attempt = ? AND {LEASED}",
        (Status.RUNNING.value, at, job_id, attempt),
    )
    if cursor.rowcount == 1:
        tx.record("transition", job_id, Status.QUEUED)
    return cursor.rowcount == 1


def set_progress(tx: Tx, job_id: int, attempt: int, progress: Progress) -> bool:
    """Record progress of a running attempt; False (nothing written) when stale."""
    cursor = tx.conn.execute(
        "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_message = ?, "
        f"progress_at = ? WHERE id = ? AND status = {RUNNING} AND attempt = ?",
        (
            progress.done,
            progress.total,
            progress.message,
            progress.at if progress.at is not None else tx.now,
            job_id,
            attempt,
        ),
    )
    if cursor.rowcount == 1:
        tx.record("progress", job_id)
    return cursor.rowcount == 1


def report(
    tx: Tx,
    files: JobFiles,
    starts: Sequence[tuple[int, int, float]],
    logs: Sequence[LogItem],
    progress: Sequence[tuple[int, int, Progress]],
    among: Callable[[int], bool],
) -> None:
    """Starts, then logs, then progress of the jobs `among` picks (a log needs its start)."""
    for job_id, attempt, at in starts:
        if among(job_id):
            start(tx, job_id, attempt, at)
    for job_id, attempt, data, *stream in logs:
        if among(job_id):
            files.append_log(tx, job_id, attempt, bytes(data), *stream)
    for item in progress:
        if among(item[0]):
            set_progress(tx, *item)


#: Whether the workers of a consumer wrote an attempt down as begun (`start_log.py`):
#: (job id, attempt, consumer) -> bool.
Began = Callable[[int, int, str | None], bool]


def finish(
    tx: Tx,
    files: JobFiles,
    job_id: int,
    attempt: int,
    outcome: Outcome,
    poison_limit: int,
    began: Began = lambda *_: False,
) -> bool:
    """Record how an attempt ended; False (nothing written) when it is stale.

    A claim given back (outcome `queued`: its executor stopped before the run began, as far as
    it knew) whose start a worker wrote down all the same (`began`; it began as it was taken
    back) counts as an interrupted attempt instead."""
    row = tx.conn.execute(
        "SELECT status, attempt, cancel_requested, lease_until, consumer FROM jobs WHERE id = ?",
        (job_id,),
    ).fetchone()
    if row is None or row[1] != attempt or row[3] is None:  # stale, or neither held nor run
        return False
    current = Status(row[0])
    if current is Status.QUEUED and outcome.status is Status.QUEUED:
        if not began(job_id, attempt, row[4]):
            give_back(tx, job_id, attempt, current, bool(row[2]))
            return True
        error = JobError("Interrupted", "the job began as its executor stopped")
        outcome = Outcome(Status.FAILED, Reason.INTERRUPTED, error)
    if current is Status.QUEUED and outcome.status is Status.SUCCEEDED:
        # It ran, though no start was reported (the executor could not tell when): it
        # started as it ended, as far as anyone knows.
        start(tx, job_id, attempt, tx.now)
        current = Status.RUNNING
    if outcome.outputs is not None:
        files.put_blob(tx, job_id, "outputs", attempt, outcome.outputs)
        tx.update(job_id, has_outputs=1)
    done = {"finished_at": tx.now, "lease_until": None, "cancel_requested": 0}
    if outcome.summary is not None:
        tx.update(job_id, summary=json.dumps(outcome.summary))
    if outcome.status is Status.SUCCEEDED:
        if outcome.result is not None:
            files.put_blob(tx, job_id, "result", attempt, outcome.result)
        size = None if outcome.result is None else len(outcome.result)
        tx.move(
            job_id, current, Status.SUCCEEDED, reason=None, result_size=size,
            **error_columns(None), **done,
        )  # fmt: skip
    elif outcome.status is Status.CANCELLED:
        if outcome.result is not None:  # a notebook as far as it ran (its last checkpoint)
            files.put_blob(tx, job_id, "result", attempt, outcome.result)
        tx.move(
            job_id, current, Status.CANCELLED, reason=None, **error_columns(outcome.error), **done
        )
    else:
        if outcome.result is not None:  # a failed cell's names set before its error, a notebook
            files.put_blob(tx, job_id, "result", attempt, outcome.result)
        reason = outcome.reason or Reason.ERROR
        error = lifecycle.failure_error(reason, outcome.error, outcome.exit)
        moves.end_attempt(tx, job_id, reason, error, poison_limit)
    return True


def give_back(tx: Tx, job_id: int, attempt: int, current: Status, cancel: bool) -> None:
    """A claimed attempt whose code never began (its executor stopped first, or its consumer
    died before a worker began it: `start_log.py`) is given back uncounted, as if never
    claimed; a cancel asked for meanwhile wins. A start reported ahead of the code (a job
    handed to an idle worker) is taken back with it."""
    if cancel:
        tx.move(
            job_id, current, Status.CANCELLED, reason=None, finished_at=tx.now,
            lease_until=None, cancel_requested=0,
        )  # fmt: skip
        return
    back = {"attempt": attempt - 1, "consumer": None, "lease_until": None, "cancel_requested": 0}
    if current is Status.RUNNING:
        tx.move(job_id, current, Status.QUEUED, reason=None, started_at=None, **back)
        return
    tx.update(job_id, **back)
    tx.released = True
