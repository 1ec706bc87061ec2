"""Which finished jobs go: those finished long ago, then the oldest while over a byte budget;
which result channel cursors and finished log entries go; and how much of them goes per
transaction.

Unfinished jobs are never chosen: "finished" is `models.TERMINAL`. Choosing reads ids from
indexes, and deleting reads of each job only what its "deleted" change carries
(`schema.BRIEF_COLUMNS`), never whole records. Deleting goes in batches sized so that one
holds the write lock for about `Batches.target` seconds, so other writers wait that long at
most; each batch is its own transaction, so a gc stopped or killed between two leaves a
store whose counts and totals agree with its rows, and the next gc goes on from there.

A reader's cursor (`channel_readers`: the last position it acknowledged in a channel) goes once
no job it acknowledged is left in its channel, the jobs deleted by gc or by hand: positions are
never reused, so every job the channel holds or will hold lies past the cursor, and reading
from the start gives exactly what reading past it gives. Nothing is lost or delivered twice,
and a cursor lives no longer than the jobs it read (`retention_days`), whether its reader is
idle, gone, or its channel has no job left at all.
"""

from __future__ import annotations

import sqlite3

from ..models import Job
from . import schema
from . import shared as stored_once
from .schema import FINISHED

#: Finished jobs are kept this long by default: the server's `JobsApp.retention_days`, and what
#: a bare `jupyter jobs gc` collects.
DEFAULT_RETENTION_DAYS = 30.0
#: How many finished_log entries to keep; a waiter whose mark is older re-reads its jobs.
FINISHED_LOG_KEEP = 100_000


def prune_finished_log(conn: sqlite3.Connection, limit: int) -> bool:
    """Delete the `limit` oldest finished log entries beyond the newest `FINISHED_LOG_KEEP`;
    whether there may be more. (A log that grew for an hour at a thousand jobs a second holds
    millions: deleted at once, the next submit would wait for the whole copy back.)"""
    return (
        conn.execute(
            "DELETE FROM finished_log WHERE seq IN (SELECT seq FROM finished_log "
            "WHERE seq <= (SELECT max(seq) FROM finished_log) - ? ORDER BY seq LIMIT ?)",
            (FINISHED_LOG_KEEP, limit),
        ).rowcount
        == limit
    )


def finished_ids(conn: sqlite3.Connection, user: str | None = None) -> list[int]:
    """Every finished job (of `user`, when given), oldest id first."""
    if user is None:
        rows = conn.execute(f"SELECT id FROM jobs WHERE status IN ({FINISHED}) ORDER BY id")
    else:
        rows = conn.execute(
            f"SELECT id FROM jobs WHERE user = ? AND status IN ({FINISHED}) ORDER BY id", (user,)
        )
    return [r[0] for r in rows.fetchall()]


def finished_before(conn: sqlite3.Connection, at: float) -> list[int]:
    """Finished jobs that finished before `at`, oldest first."""
    rows = conn.execute(
        f"SELECT id FROM jobs WHERE status IN ({FINISHED}) AND finished_at < ? "
        "ORDER BY finished_at",
        (at,),
    )
    return [r[0] for r in rows.fetchall()]


def still_to_go(conn: sqlite3.Connection, ids: list[int], before: float | None) -> list[Job]:
    """The jobs among `ids` that are finished (before `before`, when given), in the order of
    `ids`, as brief records: a job retried since it was chosen is spared."""
    if before is None:
        brief = schema.load_brief(conn, ids, f"status IN ({FINISHED})")
    else:
        brief = schema.load_brief(
            conn, ids, f"status IN ({FINISHED}) AND finished_at < ?", (before,)
        )
    found = {job.id: job for job in brief}
    return [found[i] for i in ids if i in found]


def over_budget(conn: sqlite3.Connection, max_bytes: int) -> list[int]:
    """The oldest finished jobs to delete so blobs plus logs fit `max_bytes`: read from the kept
    total and the oldest finished jobs first, only as far as needed. A function stored once
    (`shared.py`) is freed with the last job that names it: its bytes count then."""
    (total,) = conn.execute(
        "SELECT COALESCE(SUM(value), 0) FROM totals WHERE name IN ('blob_bytes', 'log_bytes')"
    ).fetchone()
    rows = conn.execute(
        "SELECT id, log_size + (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE job_id = jobs.id), "
        "(SELECT shared FROM blobs WHERE job_id = jobs.id AND kind = 'payload') "
        f"FROM jobs WHERE finished_at IS NOT NULL AND status IN ({FINISHED}) "
        "ORDER BY finished_at, id"
    )
    extra = []
    named: dict[str, list[int]] = {}  # function -> [references left, its size]
    while total > max_bytes:
        row = rows.fetchone()
        if row is None:
            break
        extra.append(row[0])
        total -= row[1]
        if row[2] is not None:
            if row[2] not in named:
                stored = stored_once.describe(conn, row[2])
                named[row[2]] = [stored.references, stored.size]
            named[row[2]][0] -= 1
            if named[row[2]][0] == 0:
                total -= named[row[2]][1]
    return extra


def prune_channel_readers(
    conn: sqlite3.Connection, after: tuple[str, str], limit: int
) -> tuple[str, str] | None:
    """Delete the cursors, among the `limit` that follow `after` (channel, reader), that no
    job of their channel is left at or before; the last cursor looked at (None: the end)."""
    rows = conn.execute(
        "SELECT channel, reader, EXISTS (SELECT 1 FROM channel_results c "
        "WHERE c.channel = r.channel AND c.seq <= r.acked) FROM channel_readers r "
        "WHERE (channel, reader) > (?, ?) ORDER BY channel, reader LIMIT ?",
        (*after, limit),
    ).fetchall()
    conn.executemany(
        "DELETE FROM channel_readers WHERE channel = ? AND reader = ?",
        [(channel, reader) for channel, reader, read in rows if not read],
    )
    return (rows[-1][0], rows[-1][1]) if len(rows) == limit else None


class Batches:
    """Sizes of the batches of a long deletion: each as large as fits `target` seconds of the
    write lock at the rate the last one went, and at most twice the last, so that other
    writers wait about `target` at most (a batch that went slow, the machine being busy,
    makes the next one smaller at once)."""

    target = 0.010
    smallest, largest = 16, 4096

    def __init__(self, size: int = 64, largest: int | None = None) -> None:
        self.size = size
        if largest is not None:  # (items much cheaper to delete than jobs)
            self.largest = largest
        #: how many of the items to delete the batches so far covered
        self.done = 0

    def took(self, seconds: float) -> None:
        """The last batch (of `size` items) held the write lock `seconds`: size the next."""
        self.done += self.size
        fits = int(self.size * self.target / max(seconds, 1e-6))
        self.size = max(self.smallest, min(self.largest, fits, 2 * self.size))
