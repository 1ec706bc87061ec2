"""Reading many jobs: pages with cursors and filters, counts per status, what finished since.

Pages are newest first; a cursor is the last id shown, as text (clients pass it back as it is), so a
page stays stable while jobs are added. Each status is read through its own `(status, id)` index
range and the ranges are merged here: one `status IN (...)` query would sort every matching row
for each page.

Counts come from the tables the triggers keep (`status_counts`, `user_counts` per notebook and
user, and `type_counts` per job type, user and notebook: schema.py), never from the jobs. A
user's jobs ("mine") are paged through the user's indexes, a type's through the type's.

A search finds names through the trigram index (`jobs_fts`) and notebooks among the kept counts'
owners, checking each with the LIKE rule it always had, so results are exactly those
of `LIKE %q%` on name or notebook; counts and page come from that one read (`_search`). Queries
under three characters, and databases made where SQLite has no FTS5 trigram tokenizer, scan with
LIKE.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest
from ..models import ID_TEXT, Job, Page, Status
from . import schema
from .schema import FINISHED, FTS_TABLE, IDS, SELECT_JOBS

#: A name containing the text a `_like` pattern names.
NAME_LIKE = "name LIKE ? ESCAPE '\\'"
#: The shortest text the trigram index can find (a trigram); shorter searches scan.
MIN_INDEXED = 3

#: The largest page a listing returns.
MAX_PAGE = 500


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def decode_cursor(cursor: str) -> int:
    """The last id a cursor names; `InvalidRequest` for anything `encode_cursor` did not make."""
    if not ID_TEXT.fullmatch(cursor):
        raise InvalidRequest(f"invalid cursor {cursor[:50]!r}: the next_cursor of a page")
    return int(cursor)


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with LIKE's wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise InvalidRequest(
            f"unknown status {value!r}; one of {[s.value for s in Status]}"
        ) from None


def filters(
    owner: str | None, q: str | None, user: str | None = None, job_type: str | None = None
) -> tuple[list[str], list[Any]]:
    """SQL conditions and their parameters for an owner, a search text, a user and a job type
    (the columns of `jobs`, and of the count tables but `q`)."""
    where: list[str] = []
    params: list[Any] = []
    if owner is not None:
        where.append("owner = ?")
        params.append(owner)
    if user is not None:
        where.append("user = ?")
        params.append(user)
    if job_type is not None:
        where.append("type = ?")
        params.append(job_type)
    if q:  # the sidebar's search box: a job's name, or its notebook's path
        where.append("(name LIKE ? ESCAPE '\\' OR owner LIKE ? ESCAPE '\\')")
        params += [_like(q)] * 2
    return where, params


def _counts_table(job_type: str | None) -> str:
    """Where the counts of a filter are kept: a type's per type, the others' per user."""
    return "user_counts" if job_type is None else "type_counts"


def counts(
    conn: sqlite3.Connection,
    owner: str | None = None,
    user: str | None = None,
    job_type: str | None = None,
) -> dict[str, int]:
    """Jobs per status (every status present), of one owner, user and/or job type or of all,
    from the kept counts."""
    found = {s.value: 0 for s in Status}
    if owner is None and user is None and job_type is None:
        rows = conn.execute("SELECT status, n FROM status_counts")
    else:
        where, params = filters(owner, None, user, job_type)
        rows = conn.execute(
            f"SELECT status, SUM(n) FROM {_counts_table(job_type)} "
            f"WHERE {' AND '.join(where)} GROUP BY status",
            params,
        )
    for status, n in rows.fetchall():
        found[status] = n
    return found


def totals(conn: sqlite3.Connection) -> dict[str, int]:
    """Kept byte totals: `blob_bytes` (payloads, results, outputs) and `log_bytes`."""
    return dict(conn.execute("SELECT name, value FROM totals").fetchall())


def has_search_index(conn: sqlite3.Connection) -> bool:
    """Whether this database has the trigram index (made where SQLite could build it)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone()
    return row is not None


def _phrase(text: str) -> str:
    """`text` as one FTS5 phrase: with the trigram tokenizer, every row containing it."""
    return '"' + text.replace('"', '""') + '"'


def _search(
    conn: sqlite3.Connection,
    owner: str | None,
    user: str | None,
    q: str,
    statuses: list[Status],
    limit: int,
    before: int | None,
    job_type: str | None = None,
) -> Page:
    """A page of the jobs whose name or notebook contains `q` (LIKE's rule), of `owner`,
    `user` and `job_type` when given, with their counts per status.

    Notebooks are few: those that match are found among the kept counts' owners, and their jobs
    counted from there and paged through the owner indexes. Names go through the trigram index
    (each hit checked with LIKE); only those of other notebooks are read. Where the index cannot
    find `q`, every job is scanned with LIKE.
    """
    scoped = Scope(user, job_type)
    if len(q) < MIN_INDEXED or not has_search_index(conn):
        where, params = filters(owner, q, user, job_type)
        sql = f"SELECT id, status FROM jobs WHERE {' AND '.join(where)}"
        return _matches_page(
            conn, conn.execute(sql, params).fetchall(), [], scoped, statuses, limit, before
        )
    scope, params = filters(owner, None, user, job_type)
    owners = [
        o
        for (o,) in conn.execute(
            f"SELECT DISTINCT owner FROM {_counts_table(job_type)} "
            f"WHERE {' AND '.join(['n > 0', *scope])} AND owner LIKE ? ESCAPE '\\'",
            (*params, _like(q)),
        ).fetchall()
    ]
    sql = (
        f"SELECT id, status, owner FROM jobs WHERE id IN (SELECT rowid FROM {FTS_TABLE} "
        f"WHERE {FTS_TABLE} MATCH ?) AND {' AND '.join([*scope, NAME_LIKE])}"
    )
    named = conn.execute(sql, (_phrase(q), *params, _like(q))).fetchall()
    matched = set(owners)
    others = [(job_id, status) for job_id, status, o in named if o not in matched]
    return _matches_page(conn, others, owners, scoped, statuses, limit, before)


@dataclass(frozen=True)
class Scope:
    """The filters a search's notebooks are read within: whose jobs, of which job type."""

    user: str | None = None
    job_type: str | None = None


def _owner_ids(
    conn: sqlite3.Connection,
    owner: str,
    scope: Scope,
    statuses: list[Status],
    limit: int,
    before: int | None,
) -> list[int]:
    """The newest `limit` ids of one notebook's jobs (of the scope's user and type, of
    `statuses`, before the cursor)."""
    where, values = filters(owner, None, scope.user, scope.job_type)
    if before is not None:
        where.append("id < ?")
        values.append(before)
    ids: list[int] = []
    for status in statuses or [None]:
        extra = ([" AND status = ?"], [status.value]) if status else ([""], [])
        rows = conn.execute(
            f"SELECT id FROM jobs WHERE {' AND '.join(where)}{extra[0][0]} "
            "ORDER BY id DESC LIMIT ?",
            (*values, *extra[1], limit),
        )
        ids += [r[0] for r in rows.fetchall()]
    return ids


def _matches_page(
    conn: sqlite3.Connection,
    matches: list[tuple[int, str]],
    owners: list[str],
    scope: Scope,
    statuses: list[Status],
    limit: int,
    before: int | None,
) -> Page:
    """A page of a search's matches: `matches` (id, status) plus every job of `owners` (within
    `scope`), and their counts per status."""
    per_status = {s.value: 0 for s in Status}
    for o in owners:
        for status, n in counts(conn, o, scope.user, scope.job_type).items():
            per_status[status] += n
    for _, status in matches:
        per_status[status] += 1
    wanted = {s.value for s in statuses}
    candidates = [
        job_id
        for job_id, status in matches
        if (not wanted or status in wanted) and (before is None or job_id < before)
    ]
    for o in owners:
        candidates += _owner_ids(conn, o, scope, statuses, limit + 1, before)
    ids = sorted(candidates, reverse=True)[: limit + 1]
    found = schema.load(conn, ids[:limit])
    jobs = [found[i] for i in ids[:limit] if i in found]
    next_cursor = encode_cursor(jobs[-1].id) if len(ids) > limit else None
    return Page(jobs, next_cursor, per_status)


def page(
    conn: sqlite3.Connection,
    status: Sequence[str] | None,
    owner: str | None,
    q: str | None,
    limit: int,
    cursor: str | None,
    user: str | None = None,
    job_type: str | None = None,
) -> Page:
    """A page of jobs, newest first, plus counts per status for the same owner/user/type/q
    filter."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
    statuses = [_status(s) for s in dict.fromkeys(status or [])]
    before = decode_cursor(cursor) if cursor else None
    if q:
        return _search(conn, owner, user, q, statuses, limit, before, job_type)
    where, values = filters(owner, None, user, job_type)
    if before is not None:
        where.append("id < ?")
        values.append(before)
    ranges = [
        conn.execute(
            f"{SELECT_JOBS} WHERE {' AND '.join([*where, 'status = ?'])} ORDER BY id DESC LIMIT ?",
            (*values, s.value, limit + 1),
        ).fetchall()
        for s in statuses
    ] or [
        conn.execute(
            f"{SELECT_JOBS} WHERE {' AND '.join([*where, '1'])} ORDER BY id DESC LIMIT ?",
            (*values, limit + 1),
        ).fetchall()
    ]
    per_status = counts(conn, owner, user, job_type)
    rows = list(heapq.merge(*ranges, key=lambda r: -r[0]))[: limit + 1]
    jobs = [schema.job_from_row(r) for r in rows[:limit]]
    next_cursor = encode_cursor(jobs[-1].id) if len(rows) > limit else None
    return Page(jobs, next_cursor, per_status)


def finished_since(conn: sqlite3.Connection, mark: int | None) -> tuple[list[int] | None, int]:
    """Ids of jobs that reached a terminal status after `mark`, and the new mark (see
    `Store.finished_since`)."""
    (top,) = conn.execute("SELECT coalesce(max(seq), 0) FROM finished_log").fetchone()
    if mark is None or mark >= top:
        return ([] if mark is not None else None), top
    (low,) = conn.execute("SELECT coalesce(min(seq), 0) FROM finished_log").fetchone()
    if low > mark + 1:
        return None, top
    rows = conn.execute(
        "SELECT job_id FROM finished_log WHERE seq > ? AND seq <= ?", (mark, top)
    ).fetchall()
    return [r[0] for r in rows], top


def finished_among(conn: sqlite3.Connection, ids: list[int]) -> tuple[list[Job], list[int]]:
    """The finished jobs among `ids` (in the order asked), and the ids that do not exist; only
    the statuses of the others are read, not their whole records."""
    sql = f"SELECT id, status IN ({FINISHED}) FROM jobs WHERE id IN {IDS}"
    rows = conn.execute(sql, (json.dumps(ids),)).fetchall()
    ended = [job_id for job_id, finished in rows if finished]
    found = schema.load(conn, ended) if ended else {}
    exist = {r[0] for r in rows}
    return [found[i] for i in ids if i in found], [i for i in ids if i not in exist]
