"""Each consumer's workers, as its executor last described them, and the drains asked of them.

Why in the store: a `jupyter jobs consumer` or a `JobQueue.start_consumer()` runs its workers
in a process nobody can ask over HTTP; the database is what every process on it shares. So
each consumer writes its workers here (`Consumer` does, when they change and at least every
heartbeat interval) and removes them when it stops; the CLI, `JobQueue.workers()` and the
server list them from here, and a drain asked from any of them is a flag the worker's consumer
reads on its next round. A row is the worker's `WorkerInfo` JSON: the shape belongs to
`worker_info.py`, not to SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ..worker_info import WorkerInfo
from .transaction import Tx

#: A consumer that has not written its workers for this long is gone (or stalled) whatever
#: its process looks like from here (another host): its rows are no longer listed, and the
#: next write of any consumer deletes them.
STALE_AFTER = 120.0


def write(tx: Tx, consumer: str, infos: Sequence[WorkerInfo]) -> None:
    """Replace `consumer`'s rows by `infos` (a drain asked of a worker still there stays
    asked), and drop the rows of consumers silent for `STALE_AFTER` seconds."""
    ids = json.dumps([info.id for info in infos])
    tx.conn.execute(
        "DELETE FROM workers WHERE (consumer = ? AND id NOT IN (SELECT value FROM json_each(?))) "
        "OR reported_at < ?",
        (consumer, ids, tx.now - STALE_AFTER),
    )
    tx.conn.executemany(
        "INSERT INTO workers (consumer, id, info, reported_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (consumer, id) DO UPDATE SET info = excluded.info, "
        "reported_at = excluded.reported_at",
        [(consumer, info.id, json.dumps(info.to_json()), tx.now) for info in infos],
    )


def drains(conn: sqlite3.Connection, consumer: str) -> list[str]:
    """The ids of `consumer`'s workers someone asked to drain."""
    rows = conn.execute(
        "SELECT id FROM workers WHERE consumer = ? AND drain_requested = 1", (consumer,)
    )
    return [row[0] for row in rows.fetchall()]


def forget_drains(tx: Tx, consumer: str, ids: Sequence[str]) -> None:
    """The drains of `ids` were handed to their executor: not asked again."""
    tx.conn.executemany(
        "UPDATE workers SET drain_requested = 0 WHERE consumer = ? AND id = ?",
        [(consumer, worker_id) for worker_id in ids],
    )


def listing(conn: sqlite3.Connection, at: float) -> list[tuple[str, WorkerInfo, bool]]:
    """(consumer, worker as last reported, drain asked) of every consumer heard from lately,
    by consumer then worker id."""
    rows = conn.execute(
        "SELECT consumer, info, reported_at, drain_requested FROM workers "
        "WHERE reported_at >= ? ORDER BY consumer, id",
        (at - STALE_AFTER,),
    )
    return [
        (consumer, WorkerInfo.from_json(json.loads(info)).seen_by(consumer, reported), bool(asked))
        for consumer, info, reported, asked in rows.fetchall()
    ]


def ask_drain(tx: Tx, worker_id: str, consumers: Sequence[str]) -> int:
    """Flag the worker `worker_id` of any of `consumers` for a drain; how many rows were."""
    cursor = tx.conn.executemany(
        "UPDATE workers SET drain_requested = 1 WHERE consumer = ? AND id = ?",
        [(consumer, worker_id) for consumer in consumers],
    )
    return cursor.rowcount


def forget(tx: Tx, consumer: str) -> None:
    """A consumer that stops runs no worker any more."""
    tx.conn.execute("DELETE FROM workers WHERE consumer = ?", (consumer,))
