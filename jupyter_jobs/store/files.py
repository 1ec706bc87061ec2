"""A job's bytes: payloads, results and outputs (blobs), and its log.

Blobs up to `inline_limit` bytes live in the database; larger ones, and logs, in files of the
database's own workspace folder (`workspace.py`, which refuses another database's files). A row
that points to a file is written after the file, and a file written by a transaction that rolls
back is removed (`Tx.written`), so a committed row never points to a missing file and small jobs
need no folder at all.

Big variables never pass through the server's memory whole. A large payload arrives as a
`Spool`: written to a private file of the workspace's incoming folder as the request body comes
in; a large result is a file a local worker left there. Either is a `FileBytes` the store takes
into its job's folder with a move (`Tx.adopted`: moved back if the transaction rolls back). A
large payload goes to a local worker as its path (`blob_ref`), and a large result is read back
from its file a piece at a time (`open_blob`).
"""

from __future__ import annotations

import io
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidRequest
from ..models import FileBytes, Status
from ..workspace import Workspace, write_all
from . import log_streams
from .transaction import Tx


class Spool:
    """A payload written to a private file as it arrives; `Store.enqueue` takes the file for
    the job (a move, no copy). Its calls block (a thread's work), one at a time: `discard`
    waits for a write under way, so a closed descriptor is never written to."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError("the spooled payload was closed")
            write_all(self._fd, data)
            self.size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def stored(self) -> FileBytes:
        """The file, closed, as the store takes it."""
        self.close()
        return FileBytes(str(self.path), self.size)

    def discard(self) -> None:
        """Remove the file, unless a job took it."""
        self.close()
        self.path.unlink(missing_ok=True)


class JobFiles:
    """Blobs and logs of one database's jobs."""

    def __init__(self, workspace: Workspace, inline_limit: int, log_limit: int) -> None:
        self.workspace = workspace
        self.inline_limit = inline_limit
        self.log_limit = log_limit

    def spool(self) -> Spool:
        """A new `Spool` in the workspace."""
        return Spool(*self.workspace.spool())

    def incoming(self) -> Path:
        """Where files a job will take arrive (see `Workspace.incoming`)."""
        return self.workspace.incoming()

    def small(self, data: bytes | memoryview | FileBytes) -> bytes | memoryview | FileBytes:
        """An incoming file small enough for the database as its bytes (the file goes)."""
        if not isinstance(data, FileBytes) or len(data) > self.inline_limit:
            return data
        small = data.read()
        Path(data.path).unlink(missing_ok=True)
        return small

    def put_blob(
        self,
        tx: Tx,
        job_id: int,
        kind: str,
        attempt: int,
        data: bytes | memoryview | FileBytes,
        shared: str | None = None,
    ) -> None:
        """Store bytes inline or, when large, in a workspace file written before its row (an
        incoming file, moved there); `shared`: the stored function a payload's arguments go
        with (`store/shared.py`)."""
        old = tx.conn.execute(
            "SELECT path FROM blobs WHERE job_id = ? AND kind = ?", (job_id, kind)
        ).fetchone()
        data = self.small(data)
        path = None
        if len(data) > self.inline_limit:
            name = kind if kind == "payload" else f"{kind}.{attempt}"
            if isinstance(data, FileBytes):
                target, path = self.workspace.adopt(job_id, name, Path(data.path))
                tx.adopted.append((target, Path(data.path)))
            else:
                target, path = self.workspace.write(job_id, name, data)
                tx.written.append(target)
        tx.conn.execute(
            "INSERT INTO blobs (job_id, kind, attempt, size, data, path, shared) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, kind) DO UPDATE SET "
            "attempt = excluded.attempt, size = excluded.size, data = excluded.data, "
            "path = excluded.path, shared = excluded.shared",
            (job_id, kind, attempt, len(data), None if path else data, path, shared),
        )
        if old and old[0] and old[0] != path:
            tx.obsolete.append(self.workspace.file(old[0]))

    def get_blob(self, conn: sqlite3.Connection, job_id: int, kind: str) -> bytes | None:
        """A blob's bytes, or None when the job has none of this kind."""
        row = conn.execute(
            "SELECT data, path FROM blobs WHERE job_id = ? AND kind = ?", (job_id, kind)
        ).fetchone()
        if row is None:
            return None
        return self.blob_bytes(row[0], row[1])

    def blob_bytes(self, data: bytes | None, path: str | None) -> bytes:
        """The bytes of a blob row: inline `data`, or the workspace file at `path`."""
        if path is None:
            return bytes(data or b"")
        return self.workspace.read(path)

    def blob_ref(self, data: bytes | None, path: str | None, size: int) -> bytes | FileBytes:
        """A blob row's bytes, or its file when it has one (read by whoever needs the bytes:
        a local worker reads a large payload itself)."""
        if path is None:
            return bytes(data or b"")
        return FileBytes(str(self.workspace.file(path)), size)

    def open_blob(self, data: bytes | None, path: str | None) -> tuple[BinaryIO, int]:
        """A blob row's bytes as an open file and its size, to be read a piece at a time."""
        if path is None:
            return io.BytesIO(data or b""), len(data or b"")
        return self.workspace.open_file(path)

    def append_log(self, tx: Tx, job_id: int, attempt: int, data: bytes, stream: str = "") -> int:
        """Append to a running attempt's log, capped at `log_limit` with a visible marker; the
        new log size, or -1 for a stale attempt (nothing written). `stream`: the labelled
        stream the bytes belong to ("" the main one; `log_streams.py`); markers are main."""
        row = tx.conn.execute(
            "SELECT status, attempt, log_size, log_attempt, log_truncated FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if row is None or row[0] != Status.RUNNING.value or row[1] != attempt:
            return -1
        size, log_attempt, truncated = row[2], row[3], row[4]
        if truncated or not data:
            return size
        pieces = [(stream, data)]
        if attempt > 1 and log_attempt != attempt:
            pieces.insert(0, ("", f"--- attempt {attempt} ---\n".encode()))
        room = max(0, self.log_limit - size)
        if sum(len(piece) for _, piece in pieces) > room:
            kept = []
            for name, piece in pieces:
                kept.append((name, piece[:room]))
                room -= len(kept[-1][1])
            marker = f"\n[jupyter_jobs: log truncated at {self.log_limit} bytes]\n"
            pieces = [*kept, ("", marker.encode())]
            truncated = 1
        written = b"".join(piece for _, piece in pieces)
        size = self.workspace.append_log(job_id, written)
        log_streams.record(tx, job_id, size - len(written), pieces)
        tx.update(job_id, log_size=size, log_attempt=attempt, log_truncated=truncated)
        return size

    def read_log(self, job_id: int, offset: int, limit: int) -> tuple[bytes, int]:
        """Log bytes from `offset` (at most `limit`), and the offset to ask for next."""
        if offset < 0 or limit < 0:
            raise InvalidRequest("offset and limit must be zero or more")
        with self.log_reader(job_id) as read:
            data = read(offset, limit)
        return data, offset + len(data)

    @contextmanager
    def log_reader(self, job_id: int) -> Iterator[Callable[[int, int], bytes]]:
        """`read(offset, limit)` of one job's log file, through one open file (one stream of
        a log is many short reads: `log_streams.py`); b"" where there is nothing (yet)."""
        with ExitStack() as stack:
            try:
                f = stack.enter_context(open(self.workspace.log_file(job_id), "rb"))
            except FileNotFoundError:
                yield lambda offset, limit: b""
                return

            def read(offset: int, limit: int) -> bytes:
                # Past the end there is nothing yet (a seek that far can fail: EINVAL).
                if offset >= os.fstat(f.fileno()).st_size:
                    return b""
                f.seek(offset)
                return f.read(limit)

            yield read
