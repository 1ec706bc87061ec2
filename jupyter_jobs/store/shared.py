"""Functions stored once: the `shared_blobs` table (`schema.py`), content-addressed by sha256.

What `jupyter_jobs/shared.py` splits, this keeps: a function's dill bytes once however many jobs
call it, in the database when small (`inline_limit`), else in the workspace's `shared/` folder.
A job's payload row names its function (`blobs.shared`) and keeps only the job's arguments; a
kernel job type names its functions (`job_types.shared`). Both are foreign keys: a function
cannot go while something names it. Nothing here loads the bytes.

- Stored with, or before, the jobs that name it: `ensure` runs in the submit's transaction (a
  file is written before its row and removed if the transaction rolls back); `put` stores one
  on its own (a kernel's upload of a large function, before the batch that names it).
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
from collections.abc import Iterable
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


def ensure(tx: Tx, files: JobFiles, functions: Iterable[Function]) -> dict[str, int]:
    """Each function's size by sha256, storing those the store does not have; one sent by
    name only must be stored already (`FunctionNotFound` names every one that is not)."""
    wanted = {f.sha256: f for f in functions}
    if not wanted:
        return {}
    sizes = dict(
        tx.conn.execute(
            f"SELECT sha256, size FROM shared_blobs WHERE sha256 IN {IDS}",
            (json.dumps(list(wanted)),),
        ).fetchall()
    )
    missing = [h for h, f in wanted.items() if h not in sizes and f.data is None]
    if missing:
        raise FunctionNotFound.named(missing)
    for sha256, function in wanted.items():
        if sha256 not in sizes:
            sizes[sha256] = _insert(tx, files, function)
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


def put(tx: Tx, files: JobFiles, function: Function) -> bool:
    """Store one function on its own (before the jobs that will name it); False if it was
    stored already."""
    known = tx.conn.execute(
        "SELECT 1 FROM shared_blobs WHERE sha256 = ?", (function.sha256,)
    ).fetchone()
    if known is None:
        _insert(tx, files, function)
    return known is None


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


def describe(conn: sqlite3.Connection, sha256: str) -> StoredFunction:
    """A stored function's size and how many jobs and job types name it (`FunctionNotFound`)."""
    row = conn.execute(
        "SELECT size, (SELECT COUNT(*) FROM blobs WHERE shared = ?1) "
        "+ (SELECT COUNT(*) FROM job_types WHERE shared = ?1) "
        "FROM shared_blobs WHERE sha256 = ?1",
        (sha256,),
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
