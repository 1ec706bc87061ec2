"""Frames between the local executor (server side) and a worker's runner.

One socket pair per worker carries length-prefixed frames: a fixed prefix (header length, body
length), a JSON header whose "t" names the frame type, then an optional binary body. JSON keeps
the server side free of pickle; the body carries opaque bytes (payload, log text, result).

Frame types (`FrameType`): "ready" (worker up), "job" (executor -> worker, body = payload, header
from `job_header`), "log" (body = raw output bytes), "progress", "done" (body = result bytes then
outputs bytes, lengths in the header; `done_fields` reads it), "exit" (the worker retires, or the
executor asks it to), "checkpoint" (body = what the job's result would be, should it be stopped
before its "done": a notebook job's notebook as far as it ran; each replaces the one before).

Big variables do not go through the executor's memory (buffers.py): a payload the store keeps in
a file goes as its path ("payload_file", `job_frame`), and a worker given a "result_dir" (the
store's incoming folder) leaves a large result there as a file it names in its "done" frame
("result_file"), which the store takes. Both are on this machine: the local executor's workers.
A job whose function is stored once goes as a pack (`shared.py`): the function (cut out when
the worker holds it) and the job's arguments, or the function alone when the arguments are in
a file ("payload_file" then names the arguments).

A short job may be sent to a worker that is still busy ("job" with "queued": true), so that the
worker starts it the moment the current one ends. The worker then says "start" when it does.
"skip" (executor -> worker) takes such a job back; the worker answers "skipped" at once if it
had not started it yet (a thread of its own reads the executor's frames, even during a job).

"ping" (executor -> worker) is answered "pong" at once, from the worker's reading thread: the
worker's heartbeat, even while a job runs.

"lease" (executor -> worker, header "until": wall-clock seconds) renews the claim its jobs run
under; a job header carries the same "lease_until". A worker whose running job passes that time
unrenewed ends the job's process tree and exits, so that a stalled consumer's attempt never runs
alongside the attempt that takes over its lapsed claim.

The worker side is blocking (a thread may send logs while the main thread runs the job, hence the
lock); the executor side reads with asyncio streams so that many workers share one event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

from .models import FileBytes
from .shared import SharedPayload, Task, pack

PREFIX = struct.Struct("!IQ")
MAX_HEADER = 1 << 20
#: Frames up to this size are copied together and sent in one system call.
JOIN_LIMIT = 1 << 16
#: Larger bodies are read by the executor in pieces of this size into one buffer.
READ_CHUNK = 1 << 20

Frame = tuple[dict[str, Any], Any]
#: Reads a frame's body of the given size from the stream (`Channel.recv`).
BodyReader = Callable[[dict[str, Any], Any, int], Any]
_RESULT_FILE = re.compile(r"[0-9a-f]{32}\.result")


class FrameType(str, Enum):
    """The "t" of a frame's header (the module docstring says who sends which)."""

    READY = "ready"
    JOB = "job"
    LOG = "log"
    PROGRESS = "progress"
    DONE = "done"
    EXIT = "exit"
    START = "start"
    SKIP = "skip"
    SKIPPED = "skipped"
    LEASE = "lease"
    CHECKPOINT = "checkpoint"
    PING = "ping"
    PONG = "pong"


class WorkerState(str, Enum):
    """Where a worker process is in its life, as its executor sees it through the frames.

    starting (until "ready") -> idle <-> busy -> retiring ("exit" sent or received, or being
    stopped) -> dead (its process exited).
    """

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"
    DEAD = "dead"


def job_header(
    *,
    job_id: int,
    attempt: int,
    kind: str,
    name: str,
    cwd: str | None,
    options: dict[str, Any],
    log_limit: int | None,
    progress_interval: float,
    lease_until: float | None = None,
    result_dir: str | None = None,
) -> dict[str, Any]:
    """The header of a "job" frame (its body is the payload): all a runner needs to run it.
    `result_dir`: where the runner may leave a large result as a file (see the module)."""
    return {
        "t": FrameType.JOB.value,
        "job_id": job_id,
        "attempt": attempt,
        "kind": kind,
        "name": name,
        "cwd": cwd,
        "options": options,
        "progress_interval": progress_interval,
        "log_limit": log_limit,
        "lease_until": lease_until,
        "result_dir": result_dir,
    }


def job_frame(header: dict[str, Any], payload: Task) -> Frame:
    """A "job" frame; a payload kept in a file goes as its path, for the worker to read. A
    function stored once goes packed with the job's arguments (`shared.pack`), or alone when
    they are in a file."""
    if not isinstance(payload, SharedPayload):
        return _by_path(header, payload)
    header, arguments = _by_path(header, payload.arguments)
    function = payload.function
    return header, pack(function.sha256, function.data or b"", arguments)


def _by_path(header: dict[str, Any], payload: Any) -> Frame:
    if isinstance(payload, FileBytes):
        return {**header, "payload_file": payload.path, "payload_len": payload.size}, b""
    return header, payload


def result_file_name() -> str:
    """A new name for a result a runner leaves in its "result_dir"."""
    return f"{secrets.token_hex(16)}.result"


def done_fields(
    header: dict[str, Any], body: bytes | bytearray, result_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """What a "done" frame says, as plain data: status, reason, error (a dict or None), the
    result and notebook outputs (opaque bytes, or None when the job has none), and a typed
    job's summary (JSON, or None). A large body (a bytearray from `read_frame`) is cut into
    views of it, not copies. A result left in `result_dir` (the job header's) is that file,
    named by a `result_file_name` only."""
    result_len = header.get("result_len", 0)
    outputs_len = header.get("outputs_len", 0)
    data = memoryview(body) if isinstance(body, bytearray) else body
    left = header.get("result_file")
    result: Any = None
    if left is not None:
        if result_dir is None or not isinstance(left, str) or not _RESULT_FILE.fullmatch(left):
            raise ProtocolError(f"a done frame names a result file it cannot: {left!r}")
        result = FileBytes(os.path.join(result_dir, left), result_len)
        result_len = 0  # not in the body
    elif header.get("has_result"):
        result = data[:result_len]
    return {
        "status": header["status"],
        "reason": header.get("reason"),
        "error": header.get("error"),
        "result": result,
        "outputs": data[result_len : result_len + outputs_len]
        if header.get("has_outputs")
        else None,
        "summary": header.get("summary"),
    }


class ProtocolError(Exception):
    """The other side sent something that is not a frame: the connection cannot be trusted."""


def encode_head(header: dict[str, Any], body_len: int = 0) -> bytes:
    """A frame's prefix and header; the body follows it on the wire."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(len(head), body_len) + head


def _parse_prefix(prefix: bytes) -> tuple[int, int]:
    head_len, body_len = PREFIX.unpack(prefix)
    if head_len > MAX_HEADER:
        raise ProtocolError(f"frame header of {head_len} bytes is over the {MAX_HEADER} limit")
    return head_len, body_len


def _parse_header(head: bytes) -> dict[str, Any]:
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ProtocolError("frame header has no type")
    return header


class Channel:
    """The worker's blocking end of the socket: `send` from any thread, `recv` from one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._lock = threading.Lock()

    def send(self, header: dict[str, Any], *body: bytes) -> None:
        """One frame; the body may come in parts.

        A small frame goes in one system call, so the executor wakes once for it; large parts
        are sent as they are rather than copied together.
        """
        size = sum(len(part) for part in body)
        head = encode_head(header, size)
        with self._lock:
            if size <= JOIN_LIMIT:
                self._sock.sendall(b"".join((head, *body)))
                return
            self._sock.sendall(head)
            for part in body:
                if part:
                    self._sock.sendall(part)

    def send_frames(self, frames: list[Frame]) -> None:
        """Several (small) frames in one system call: the executor wakes once for all."""
        data = b"".join(encode_head(header, len(body)) + body for header, body in frames)
        with self._lock:
            self._sock.sendall(data)

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def recv(self, read_body: BodyReader | None = None) -> Frame | None:
        """The next frame, or None when the other side closed its end (it exited or died).

        `read_body(header, file, size)` reads a body as it arrives (the runner reads a job's
        arrays straight into their memory, buffers.py); it must read exactly `size` bytes,
        and raise EOFError if the stream ends first. By default the body is its bytes."""
        prefix = self._file.read(PREFIX.size)
        if not prefix:
            return None
        if len(prefix) < PREFIX.size:
            raise ProtocolError("connection closed inside a frame")
        head_len, body_len = _parse_prefix(prefix)
        head = self._file.read(head_len)
        if len(head) < head_len:
            raise ProtocolError("connection closed inside a frame")
        header = _parse_header(head)
        if read_body is not None and body_len:
            try:
                return header, read_body(header, self._file, body_len)
            except EOFError:
                raise ProtocolError("connection closed inside a frame") from None
        body = self._file.read(body_len) if body_len else b""
        if len(body) < body_len:
            raise ProtocolError("connection closed inside a frame")
        return header, body


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame from a worker, or None at a clean end of stream."""
    try:
        prefix = await reader.readexactly(PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("connection closed inside a frame") from None
        return None
    head_len, body_len = _parse_prefix(prefix)
    try:
        head = await reader.readexactly(head_len)
        if body_len > READ_CHUNK:
            body: bytes | bytearray = await _read_large(reader, body_len)
        else:
            body = await reader.readexactly(body_len) if body_len else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    return _parse_header(head), body


async def _read_large(reader: asyncio.StreamReader, size: int) -> bytearray:
    """A large body in one buffer, filled a piece at a time: `readexactly` would gather it all
    in the stream's own buffer first and copy it out, twice the memory (a 100 MiB result)."""
    body = bytearray(size)
    view = memoryview(body)
    at = 0
    while at < size:
        chunk = await reader.read(min(READ_CHUNK, size - at))
        if not chunk:
            raise ProtocolError("connection closed inside a frame")
        view[at : at + len(chunk)] = chunk
        at += len(chunk)
    return body
