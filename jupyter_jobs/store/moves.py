"""The store's side of a job's life: read what a rule needs, apply the `lifecycle` decision.

`lifecycle.py` decides (pure functions on plain values); this module reads those values from the
rows inside a write transaction and writes the decided move, always through `Tx.move`.
"""

from __future__ import annotations

import json

from .. import lifecycle
from ..models import JobError, Reason, Status
from . import schema
from .schema import IDS, PENDING, error_columns
from .transaction import Tx


def settle_pending(tx: Tx, job_id: int) -> bool:
    """Queue or fail one pending job according to its deps (`lifecycle.settle`); True if it
    failed."""
    deps = schema.dependencies(tx.conn, job_id)
    hold, run_at = tx.conn.execute(
        "SELECT hold, run_at FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    move = lifecycle.settle(deps, bool(hold), run_at, tx.now)
    if move is None:
        return False
    if move.target is Status.QUEUED:
        tx.move(job_id, Status.PENDING, Status.QUEUED, queued_at=tx.now)
        return False
    fail(tx, job_id, Status.PENDING, move)
    return True


def fail(tx: Tx, job_id: int, current: Status, move: lifecycle.Move) -> None:
    """Apply a decision that ends the job failed (`move.reason`, `move.error`)."""
    tx.move(
        job_id, current, Status.FAILED, reason=move.reason.value if move.reason else None,
        finished_at=tx.now, **error_columns(move.error),
    )  # fmt: skip


def resolve_dependents(tx: Tx, finished: list[int]) -> None:
    """Pending jobs waiting on jobs that just finished: queue them, or fail them in turn."""
    work = list(dict.fromkeys(finished))
    tx.finished = []
    while work:
        rows = tx.conn.execute(
            f"SELECT DISTINCT d.job_id FROM deps d JOIN jobs j ON j.id = d.job_id "
            f"WHERE d.after_id IN {IDS} AND j.status = {PENDING}",
            (json.dumps(work),),
        ).fetchall()
        work = [job_id for (job_id,) in rows if settle_pending(tx, job_id)]
        tx.finished = []


def pending_dependents(tx: Tx, ids: list[int]) -> list[tuple[int, int]]:
    """(pending job, the job among `ids` it runs after)."""
    rows = tx.conn.execute(
        f"SELECT d.job_id, d.after_id FROM deps d JOIN jobs j ON j.id = d.job_id "
        f"WHERE d.after_id IN {IDS} AND j.status = {PENDING}",
        (json.dumps(ids),),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def end_attempt(tx: Tx, job_id: int, reason: Reason, error: JobError, poison_limit: int) -> None:
    """Apply `lifecycle.after_failure` to a running or claimed job whose attempt failed.

    A claim that failed before its code started is requeued without a status change (it was
    queued all along): others may take it once its backoff ends.
    """
    status, attempt, retries, base, delay, losses, cancel = tx.conn.execute(
        "SELECT status, attempt, retries, retry_base, retry_delay, worker_losses, "
        "cancel_requested FROM jobs WHERE id = ?",
        (job_id,),
    ).fetchone()
    current = Status(status)
    state = lifecycle.RetryState(attempt, base, retries, delay, losses, bool(cancel))
    move = lifecycle.after_failure(state, reason, error, tx.now, poison_limit)
    if move.target is Status.CANCELLED:
        tx.move(
            job_id, current, Status.CANCELLED, reason=None, finished_at=tx.now,
            lease_until=None, cancel_requested=0, **error_columns(move.error),
        )  # fmt: skip
        return
    columns = {"worker_losses": move.worker_losses, "lease_until": None}
    columns.update(error_columns(move.error))
    if move.target is Status.QUEUED:
        again = {"queued_at": tx.now, "not_before": move.not_before, "started_at": None}
        if current is Status.QUEUED:
            tx.update(job_id, **again, **columns)
            tx.released = True
        else:
            tx.move(job_id, current, Status.QUEUED, reason=None, **again, **columns)
        return
    tx.move(
        job_id, current, Status.FAILED, reason=move.reason.value if move.reason else None,
        finished_at=tx.now, **columns,
    )  # fmt: skip
