"""A log's labelled streams: which bytes of a job's log each thread or child process wrote.

The log stays one file of bytes in the order they were written (every reader of it, and every
log written before streams existed, reads it as before: the "all" view). Beside it, once a job
writes to a labelled stream (`streams.py`), its log is cut into runs, each of one stream:
`log_runs` (where a run begins in the file, its length, its stream, and where it begins in its
stream) and `log_streams` (each stream's number, name and size; number 0 is the main stream).
A log that never had a labelled stream has no rows: it is all main, and costs nothing more.

So reading one stream from its own offset is an index seek to the runs that hold it, and the
all view can say which stream each part of a chunk belongs to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidRequest, StreamNotFound
from ..streams import MAIN
from .transaction import Tx


@dataclass
class LogSlice:
    """Bytes of a log (of one stream, or of all), the offset to ask for next (in that
    stream), the parts by stream (an all read), and every stream with its size."""

    data: bytes
    next_offset: int
    parts: list[tuple[str, bytes]]
    streams: list[tuple[str, int]]


def record(tx: Tx, job_id: int, at: int, pieces: list[tuple[str, bytes]]) -> None:
    """Note the streams of `pieces` (stream name, "" for the main one; bytes), written in order
    at `at` of the log file. Nothing to note while a log has only its main stream."""
    runs: bool | None = None
    for name, data in pieces:
        stream = name or MAIN
        if runs is None:
            runs = _has_runs(tx.conn, job_id)
        if not runs and stream != MAIN:
            _new_stream(tx.conn, job_id, MAIN, 0)
            if at > 0:  # the log so far was all main: its first run
                _add_run(tx.conn, job_id, 0, at, 0, 0)
            runs = True
        if runs and data:
            _append(tx.conn, job_id, at, stream, len(data))
        at += len(data)


def _has_runs(conn: sqlite3.Connection, job_id: int) -> bool:
    found = conn.execute("SELECT 1 FROM log_streams WHERE job_id = ?", (job_id,)).fetchone()
    return found is not None


def _new_stream(conn: sqlite3.Connection, job_id: int, name: str, number: int) -> None:
    conn.execute(
        "INSERT INTO log_streams (job_id, no, name, size) VALUES (?, ?, ?, 0)",
        (job_id, number, name),
    )


def _add_run(
    conn: sqlite3.Connection, job_id: int, at: int, length: int, number: int, stream_at: int
) -> None:
    conn.execute(
        "INSERT INTO log_runs (job_id, offset, length, stream, stream_offset) "
        "VALUES (?, ?, ?, ?, ?)",
        (job_id, at, length, number, stream_at),
    )
    conn.execute(
        "UPDATE log_streams SET size = size + ? WHERE job_id = ? AND no = ?",
        (length, job_id, number),
    )


def _append(conn: sqlite3.Connection, job_id: int, at: int, name: str, length: int) -> None:
    """`length` bytes of stream `name` at `at`: the last run grows, or a new one begins."""
    found = conn.execute(
        "SELECT no, size FROM log_streams WHERE job_id = ? AND name = ?", (job_id, name)
    ).fetchone()
    if found is None:
        (number,) = conn.execute(
            "SELECT max(no) + 1 FROM log_streams WHERE job_id = ?", (job_id,)
        ).fetchone()
        _new_stream(conn, job_id, name, number)
        found = (number, 0)
    number, size = found
    last = conn.execute(
        "SELECT offset, length, stream FROM log_runs WHERE job_id = ? ORDER BY offset DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    if last is not None and last[2] == number and last[0] + last[1] == at:
        conn.execute(
            "UPDATE log_runs SET length = length + ? WHERE job_id = ? AND offset = ?",
            (length, job_id, last[0]),
        )
        conn.execute(
            "UPDATE log_streams SET size = size + ? WHERE job_id = ? AND no = ?",
            (length, job_id, number),
        )
        return
    _add_run(conn, job_id, at, length, number, size)


def streams(conn: sqlite3.Connection, job_id: int, log_size: int) -> list[tuple[str, int]]:
    """(name, size) of each stream of the log, the main one first."""
    rows = conn.execute(
        "SELECT name, size FROM log_streams WHERE job_id = ? ORDER BY no", (job_id,)
    ).fetchall()
    return [(name, size) for name, size in rows] or [(MAIN, log_size)]


def read(
    conn: sqlite3.Connection,
    read_file: Callable[[int, int], bytes],
    job_id: int,
    log_size: int,
    offset: int,
    limit: int,
    stream: str | None,
) -> LogSlice:
    """`limit` bytes from `offset` of the whole log (`stream` None) or of one stream (offsets
    in that stream's own bytes); `read_file(offset, limit)` reads the log file.
    `StreamNotFound` for a stream the log does not have (yet)."""
    if offset < 0 or limit < 0:
        raise InvalidRequest("offset and limit must be zero or more")
    known = streams(conn, job_id, log_size)
    plain = len(known) == 1  # all main: the file is the stream
    if stream is not None and stream not in {name for name, _ in known}:
        names = ", ".join(repr(name) for name, _ in known)
        raise StreamNotFound(
            f"job {job_id}'s log has no stream {stream[:100]!r}; it has {names}",
            {"id": job_id, "streams": [name for name, _ in known]},
        )
    if stream is None or plain:
        data = read_file(offset, limit)
        parts = [(MAIN, data)] if plain else _parts(conn, job_id, offset, data)
        return LogSlice(data, offset + len(data), parts if data else [], known)
    number = conn.execute(
        "SELECT no FROM log_streams WHERE job_id = ? AND name = ?", (job_id, stream)
    ).fetchone()[0]
    # From the run holding `offset` on: index seeks (job_id, stream, stream_offset).
    (first,) = conn.execute(
        "SELECT coalesce(max(stream_offset), 0) FROM log_runs WHERE job_id = ? AND stream = ? "
        "AND stream_offset <= ?",
        (job_id, number, offset),
    ).fetchone()
    rows = conn.execute(
        "SELECT offset, length, stream_offset FROM log_runs WHERE job_id = ? AND stream = ? "
        "AND stream_offset >= ? ORDER BY stream_offset",
        (job_id, number, first),
    )
    chunks: list[bytes] = []
    got = 0
    for at, length, stream_at in rows:
        if got >= limit:
            break
        if stream_at + length <= offset:
            continue  # the run before `offset` ends exactly there
        skip = max(0, offset - stream_at)
        want = min(length - skip, limit - got)
        chunk = read_file(at + skip, want)
        chunks.append(chunk)
        got += len(chunk)
        if len(chunk) < want:
            break
    data = b"".join(chunks)
    return LogSlice(data, offset + len(data), [(stream, data)] if data else [], known)


def _parts(
    conn: sqlite3.Connection, job_id: int, offset: int, data: bytes
) -> list[tuple[str, bytes]]:
    """`data`, read at `offset` of the file, cut by stream."""
    end = offset + len(data)
    # The runs from the one holding `offset` to `end`: index seeks on (job_id, offset).
    rows = conn.execute(
        "SELECT r.offset, r.length, s.name FROM log_runs r JOIN log_streams s "
        "ON s.job_id = r.job_id AND s.no = r.stream WHERE r.job_id = ?1 AND r.offset >= "
        "coalesce((SELECT max(offset) FROM log_runs WHERE job_id = ?1 AND offset <= ?2), 0) "
        "AND r.offset < ?3 ORDER BY r.offset",
        (job_id, offset, end),
    ).fetchall()
    parts: list[tuple[str, bytes]] = []
    position = offset
    for at, length, name in rows:
        if at + length <= position:
            continue  # the run before `offset` ends exactly there
        start, stop = max(at, position), min(at + length, end)
        if start > position:  # bytes no run covers (written by a rolled-back transaction)
            parts.append((MAIN, data[position - offset : start - offset]))
        parts.append((name, data[start - offset : stop - offset]))
        position = stop
    if position < end:
        parts.append((MAIN, data[position - offset :]))
    return parts
