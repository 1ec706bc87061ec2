"""Which finished jobs go: those finished long ago, then the oldest while over a byte budget.

Unfinished jobs are never chosen: "finished" is `models.TERMINAL`.
"""

from __future__ import annotations

import sqlite3

from ..models import TERMINAL, Status
from .schema import FINISHED

#: Finished jobs are kept this long by default: the server's `JobsApp.retention_days`, and what
#: a bare `jupyter jobs gc` collects.
DEFAULT_RETENTION_DAYS = 30.0
#: How many finished_log entries to keep; a waiter whose mark is older re-reads its jobs.
FINISHED_LOG_KEEP = 100_000


def prune_finished_log(conn: sqlite3.Connection) -> None:
    conn.execute(
        "DELETE FROM finished_log WHERE seq <= (SELECT max(seq) FROM finished_log) - ?",
        (FINISHED_LOG_KEEP,),
    )


def finished_ids(conn: sqlite3.Connection) -> list[int]:
    """Every finished job, oldest id first."""
    rows = conn.execute(f"SELECT id FROM jobs WHERE status IN ({FINISHED}) ORDER BY id")
    return [r[0] for r in rows.fetchall()]


def finished_before(conn: sqlite3.Connection, at: float) -> list[int]:
    """Finished jobs that finished before `at`, oldest first."""
    rows = conn.execute(
        f"SELECT id FROM jobs WHERE status IN ({FINISHED}) AND finished_at < ? "
        "ORDER BY finished_at",
        (at,),
    )
    return [r[0] for r in rows.fetchall()]


def over_budget(conn: sqlite3.Connection, doomed: set[int], max_bytes: int) -> list[int]:
    """The oldest finished jobs (beyond `doomed`) to delete so blobs plus logs fit `max_bytes`."""
    sizes = conn.execute(
        "SELECT j.id, j.status, j.log_size + COALESCE(SUM(b.size), 0) FROM jobs j "
        "LEFT JOIN blobs b ON b.job_id = j.id GROUP BY j.id "
        "ORDER BY j.finished_at IS NULL, j.finished_at, j.id"
    ).fetchall()
    total = sum(size for job_id, _, size in sizes if job_id not in doomed)
    extra = []
    for job_id, status, size in sizes:
        if total <= max_bytes:
            break
        if job_id in doomed or Status(status) not in TERMINAL:
            continue
        extra.append(job_id)
        total -= size
    return extra
