"""Functions stored once: the `shared_blobs` table (`schema.py`), content-addressed by sha256.

What `jupyter_jobs/shared.py` splits, this keeps: a function's dill bytes once however many jobs
call it, in the database when small (`inline_limit`), else in the workspace's `shared/` folder.
A job's payload row names its function (`blobs.shared`) and keeps only the job's arguments; a
kernel job type names its functions (`job_types.shared`). Both are foreign keys: a function
cannot go while something names it. Nothing here loads the bytes.

- Stored with, or before, the jobs that name it: `ensure` runs in the submit's transaction (a
  file is written before its row and removed if the transaction rolls back); `put` stores one
  on its own (a kernel's upload of a large function, before the batch that names it).
- Known to the users who sent its bytes (`shared_users`): a function is user code, and its
  hash alone must not let another user run it, or learn that it is stored. The server lets a
  request name a function by hash only for those users and whom the authorizer lets read their
  jobs (`server/function_handlers.py`); whoever sends the bytes proves they have them.
- Freed by the transaction that drops its last reference (`free`: jobs deleted, a type
  replaced or deleted), its file removed after the commit. A function stored on its own and
  never named is swept by gc once `ORPHAN_GRACE` has passed (`sweep`), not before: its batch
  is on its way.
- Read when a job is claimed, through `SharedBytes`: bytes named by their hash never change, so
  a consumer reads a map's function once, not once per job.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import FunctionNotFound, InvalidRequest
from ..shared import Function
from .files import JobFiles
from .schema import IDS
from .transaction import Tx

#: Seconds a function stored on its own may wait for a job to name it before gc frees it.
ORPHAN_GRACE = 3600.0

#: A function nothing names: no job's payload, no job type.
_UNNAMED = (
    "NOT EXISTS (SELECT 1 FROM blobs WHERE shared = shared_blobs.sha256) "
    "AND NOT EXISTS (SELECT 1 FROM job_types WHERE shared = shared_blobs.sha256)"
)


@dataclass(frozen=True)
class StoredFunction:
    """A stored function as the REST API describes it (openapi.yaml's `StoredFunction`)."""

    sha256: str
    size: int
    references: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "references": self.references}


def ensure(
    tx: Tx,
    files: JobFiles,
    functions: Iterable[Function],
    user: str | None = None,
    others: Collection[str] | None = (),
) -> dict[str, int]:
    """Each function's size by sha256, storing those the store does not have.

    `user` sent the bytes of those that come with them (recorded; None: a job type's, no
    user's). One named by its sha256 alone must be stored, and sent by `user` or one of
    `others` (users whose jobs the authorizer lets `user` read; None: anyone): else
    `FunctionNotFound` names every such one, as if it were not stored."""
    wanted = {f.sha256: f for f in functions}
    if not wanted:
        return {}
    sizes = dict(
        tx.conn.execute(
            f"SELECT sha256, size FROM shared_blobs WHERE sha256 IN {IDS}",
            (json.dumps(list(wanted)),),
        ).fetchall()
    )
    named = [h for h, f in wanted.items() if f.data is None]
    if named and user is not None and others is not None:
        senders = users(tx.conn, named)
        allowed = {user, *others}
        sizes = {h: n for h, n in sizes.items() if h not in named or senders[h] & allowed}
    missing = [h for h in named if h not in sizes]
    if missing:
        raise FunctionNotFound.named(missing)
    for sha256, function in wanted.items():
        if sha256 not in sizes:
            sizes[sha256] = _insert(tx, files, function)
    if user is not None:
        sent = [h for h, f in wanted.items() if f.data is not None]
        tx.conn.executemany(
            "INSERT OR IGNORE INTO shared_users (sha256, user) VALUES (?, ?)",
            [(sha256, user) for sha256 in sent],
        )
    return sizes


def _insert(tx: Tx, files: JobFiles, function: Function) -> int:
    data = bytes(function.data or b"")
    if Function.of(data).sha256 != function.sha256:
        raise InvalidRequest(
            f"function bytes named {function.sha256} have another sha256: refused",
            {"sha256": function.sha256},
        )
    path = None
    if len(data) > files.inline_limit:
        target, path = files.workspace.write_shared(function.sha256, data)
        tx.written.append(target)
    tx.conn.execute(
        "INSERT INTO shared_blobs (sha256, size, data, path, created_at) VALUES (?, ?, ?, ?, ?)",
        (function.sha256, len(data), None if path else data, path, tx.now),
    )
    return len(data)


def put(tx: Tx, files: JobFiles, function: Function, user: str) -> bool:
    """Store one function on its own (before the jobs that will name it), sent by `user`;
    False if `user` had sent it already (whether another user did is not theirs to know)."""
    known = tx.conn.execute(
        "SELECT 1 FROM shared_blobs WHERE sha256 = ?", (function.sha256,)
    ).fetchone()
    if known is None:
        _insert(tx, files, function)
    added = tx.conn.execute(
        "INSERT OR IGNORE INTO shared_users (sha256, user) VALUES (?, ?)", (function.sha256, user)
    )
    return added.rowcount == 1


def users(conn: sqlite3.Connection, sha256s: list[str]) -> dict[str, set[str]]:
    """The users who sent the bytes of each stored function among `sha256s` (a stored one no
    user sent, a job type's, maps to an empty set; one not stored is left out)."""
    found: dict[str, set[str]] = {}
    rows = conn.execute(
        f"SELECT b.sha256, u.user FROM shared_blobs b LEFT JOIN shared_users u "
        f"ON u.sha256 = b.sha256 WHERE b.sha256 IN {IDS}",
        (json.dumps(sha256s),),
    )
    for sha256, user in rows.fetchall():
        found.setdefault(sha256, set())
        if user is not None:
            found[sha256].add(user)
    return found


def named_by_jobs(conn: sqlite3.Connection, job_ids: list[int]) -> list[str]:
    """The functions the payloads of `job_ids` name."""
    rows = conn.execute(
        f"SELECT DISTINCT shared FROM blobs WHERE job_id IN {IDS} AND shared IS NOT NULL",
        (json.dumps(job_ids),),
    )
    return [r[0] for r in rows.fetchall()]


def free(tx: Tx, files: JobFiles, sha256s: Iterable[str]) -> list[str]:
    """Delete the functions among `sha256s` that nothing names any more (call it after
    dropping references); their files go after the commit. The ones deleted."""
    hashes = list(dict.fromkeys(h for h in sha256s if h))
    if not hashes:
        return []
    rows = tx.conn.execute(
        f"SELECT sha256, path FROM shared_blobs WHERE sha256 IN {IDS} AND {_UNNAMED}",
        (json.dumps(hashes),),
    ).fetchall()
    return _delete(tx, files, rows)


def sweep(tx: Tx, files: JobFiles, before: float) -> list[str]:
    """Delete the functions stored before `before` that nothing names (uploads whose jobs
    never came); the ones deleted."""
    rows = tx.conn.execute(
        f"SELECT sha256, path FROM shared_blobs WHERE created_at < ? AND {_UNNAMED}", (before,)
    ).fetchall()
    return _delete(tx, files, rows)


def _delete(tx: Tx, files: JobFiles, rows: list[tuple[str, str | None]]) -> list[str]:
    hashes = [sha256 for sha256, _ in rows]
    if hashes:
        tx.conn.execute(f"DELETE FROM shared_blobs WHERE sha256 IN {IDS}", (json.dumps(hashes),))
    tx.obsolete += [files.workspace.file(path) for _, path in rows if path]
    return hashes


def describe(conn: sqlite3.Connection, sha256: str, user: str | None = None) -> StoredFunction:
    """A stored function's size and how many jobs and job types name it (`FunctionNotFound`);
    with `user`, how many of that user's jobs do (what the REST API tells: other users' jobs
    are not theirs to count)."""
    if user is None:
        counted = (
            "(SELECT COUNT(*) FROM blobs WHERE shared = ?1) "
            "+ (SELECT COUNT(*) FROM job_types WHERE shared = ?1)"
        )
    else:
        counted = (
            "(SELECT COUNT(*) FROM blobs JOIN jobs ON jobs.id = blobs.job_id "
            "WHERE blobs.shared = ?1 AND jobs.user = ?2)"
        )
    row = conn.execute(
        f"SELECT size, {counted} FROM shared_blobs WHERE sha256 = ?1",
        (sha256,) if user is None else (sha256, user),
    ).fetchone()
    if row is None:
        raise FunctionNotFound.named([sha256])
    return StoredFunction(sha256, row[0], row[1])


class SharedBytes:
    """Stored functions' bytes by sha256, kept in memory up to `max_bytes` (least recently
    used go first; a function larger than that is read each time). Thread-safe."""

    def __init__(self, files: JobFiles, max_bytes: int = 64 * 2**20) -> None:
        self.files = files
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def read(self, conn: sqlite3.Connection, sha256: str) -> bytes:
        """A stored function's bytes (`FunctionNotFound` if it is not stored)."""
        with self._lock:
            data = self._kept.get(sha256)
            if data is not None:
                self._kept.move_to_end(sha256)
                return data
        row = conn.execute(
            "SELECT data, path FROM shared_blobs WHERE sha256 = ?", (sha256,)
        ).fetchone()
        if row is None:
            raise FunctionNotFound.named([sha256])
        data = self.files.blob_bytes(row[0], row[1])
        if len(data) <= self.max_bytes:
            with self._lock:
                if sha256 not in self._kept:
                    self._kept[sha256] = data
                    self._size += len(data)
                while self._size > self.max_bytes:
                    self._size -= len(self._kept.popitem(last=False)[1])
        return data
