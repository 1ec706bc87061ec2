"""Which queued jobs a claim takes: priority, then fair share between owners, then FIFO.

Within a priority, the owner with the fewest jobs held by consumers (counting the batch being
claimed) goes first, so one notebook's thousand jobs do not starve another's one; owners with as
many held are served in turn (the one claimed from longest ago first), so one worker still
alternates between notebooks instead of draining the oldest. The order is found with index seeks
per owner, never a scan of the whole queue.
"""

from __future__ import annotations

import heapq
import json
import sqlite3

from .schema import IDS, LEASED, QUEUED

_ELIGIBLE = "(not_before IS NULL OR not_before <= ?1) AND (expires_at IS NULL OR expires_at > ?1)"
# Queued jobs not claimed yet. (Claimed ones are the oldest few of their owners: a seek steps
# over at most the executors' slots.)
_CLAIMABLE = f"status = {QUEUED} AND lease_until IS NULL"
_TOP_PRIORITY = (
    f"SELECT priority FROM jobs WHERE {_CLAIMABLE} AND priority < ?2 ORDER BY priority DESC LIMIT 1"
)
_FIRST_OWNER = (
    f"SELECT owner, id FROM jobs WHERE {_CLAIMABLE} AND priority = ?2 AND {_ELIGIBLE} "
    "ORDER BY owner, id LIMIT 1"
)
_NEXT_OWNER = (
    f"SELECT owner, id FROM jobs WHERE {_CLAIMABLE} AND priority = ?2 AND owner > ?3 "
    f"AND {_ELIGIBLE} ORDER BY owner, id LIMIT 1"
)
_NEXT_OF_OWNER = (
    f"SELECT id FROM jobs WHERE {_CLAIMABLE} AND priority = ?2 AND owner = ?3 "
    f"AND id > ?4 AND {_ELIGIBLE} ORDER BY id LIMIT 1"
)


def pick(conn: sqlite3.Connection, limit: int, at: float, *, note: bool = True) -> list[int]:
    """Ids of up to `limit` jobs to claim at time `at`, in claim order; notes the owners served
    (inside the claim's write transaction). `note=False` only looks: `Store.peek` asks the same
    rule which job a claim would take, and changes nothing."""
    # (Without INDEXED BY, SQLite would rather walk the owner index of every job.)
    running = dict(
        conn.execute(
            f"SELECT owner, COUNT(*) FROM jobs INDEXED BY jobs_leased WHERE {LEASED} GROUP BY owner"
        ).fetchall()
    )
    picked: list[int] = []
    served: dict[str, int] = {}
    bound: float = float("inf")
    while len(picked) < limit:
        top = conn.execute(_TOP_PRIORITY, (at, bound)).fetchone()
        if top is None:
            break
        priority = bound = top[0]
        first: dict[str, int] = {}
        row = conn.execute(_FIRST_OWNER, (at, priority)).fetchone()
        while row is not None:
            first[row[0]] = row[1]
            row = conn.execute(_NEXT_OWNER, (at, priority, row[0])).fetchone()
        last_claim = dict(
            conn.execute(
                f"SELECT owner, last_claim FROM owners WHERE owner IN {IDS}",
                (json.dumps(list(first)),),
            ).fetchall()
        )
        # (running, last served, order served in this batch, head id, owner)
        heads = [
            (
                running.get(o, 0),
                at if o in served else last_claim.get(o, 0.0),
                served.get(o, 0),
                i,
                o,
            )
            for o, i in first.items()
        ]
        heapq.heapify(heads)
        while heads and len(picked) < limit:
            count, _, _, job_id, owner = heapq.heappop(heads)
            picked.append(job_id)
            running[owner] = count + 1
            served[owner] = len(picked)
            if len(picked) == limit:
                break
            following = conn.execute(_NEXT_OF_OWNER, (at, priority, owner, job_id)).fetchone()
            if following is not None:
                heapq.heappush(heads, (count + 1, at, len(picked), following[0], owner))
    if not note:
        return picked
    conn.executemany(
        "INSERT INTO owners (owner, last_claim) VALUES (?, ?) "
        "ON CONFLICT(owner) DO UPDATE SET last_claim = excluded.last_claim",
        [(owner, at) for owner in served],
    )
    return picked
