"""Frames between the local executor (server side) and a worker's runner.

One socket pair per worker carries length-prefixed frames: a fixed prefix (header length, body
length), a JSON header whose "t" names the frame type, then an optional binary body. JSON keeps
the server side free of pickle; the body carries opaque bytes (payload, log text, result).

Frame types (`FrameType`): "ready" (worker up), "job" (executor -> worker, body = payload, header
from `job_header`), "log" (body = raw output bytes), "progress", "done" (body = result bytes then
outputs bytes, lengths in the header; `done_fields` reads it), "exit" (the worker retires, or the
executor asks it to), "checkpoint" (body = what the job's result would be, should it be stopped
before its "done": a notebook job's notebook as far as it ran; each replaces the one before).

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
import socket
import struct
import threading
from enum import Enum
from typing import Any

PREFIX = struct.Struct("!IQ")
MAX_HEADER = 1 << 20
#: Frames up to this size are copied together and sent in one system call.
JOIN_LIMIT = 1 << 16

Frame = tuple[dict[str, Any], bytes]


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
) -> dict[str, Any]:
    """The header of a "job" frame (its body is the payload): all a runner needs to run it."""
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
    }


def done_fields(header: dict[str, Any], body: bytes) -> dict[str, Any]:
    """What a "done" frame says, as plain data: status, reason, error (a dict or None), the
    result and notebook outputs (opaque bytes, or None when the job has none), and a typed
    job's summary (JSON, or None)."""
    result_len = header.get("result_len", 0)
    outputs_len = header.get("outputs_len", 0)
    return {
        "status": header["status"],
        "reason": header.get("reason"),
        "error": header.get("error"),
        "result": body[:result_len] if header.get("has_result") else None,
        "outputs": body[result_len : result_len + outputs_len]
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

    def recv(self) -> Frame | None:
        """The next frame, or None when the executor closed its end (it exited or died)."""
        prefix = self._file.read(PREFIX.size)
        if not prefix:
            return None
        if len(prefix) < PREFIX.size:
            raise ProtocolError("connection closed inside a frame")
        head_len, body_len = _parse_prefix(prefix)
        head = self._file.read(head_len)
        body = self._file.read(body_len) if body_len else b""
        if len(head) < head_len or len(body) < body_len:
            raise ProtocolError("connection closed inside a frame")
        return _parse_header(head), body


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
        body = await reader.readexactly(body_len) if body_len else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    return _parse_header(head), body
