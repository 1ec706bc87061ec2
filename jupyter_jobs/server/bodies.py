"""A submit's body, read as it arrives: a large payload goes to a file, never whole into memory.

`POST /jobs/api/jobs` takes payloads of up to `max_payload_size` bytes (256 MiB by default). As
tornado reads a request, it would hold the whole body, then split it into parts (copies), before
the handler ran. So `JobsListHandler` streams its body (`tornado.web.stream_request_body`), and
`SubmitBody` parses a multipart body as it comes (`MultipartReader`): the `payload` part goes to
a `Spool`, a file in the store's workspace, a megabyte at a time from a thread, and the job takes
that file when it is stored (a move). The spec part and JSON bodies are small: kept in memory,
then parsed by `parsing.py` as before. Bad input is a 400 that names the problem (a payload past
the limit a 413), raised once the body has arrived, since a request cannot be answered sooner.
"""

from __future__ import annotations

import asyncio
import email.message
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..errors import InvalidRequest, JobsError, PayloadTooLarge
from ..store.files import Spool
from . import parsing

Run = Callable[..., Awaitable[Any]]

#: The multipart part streamed to a file; every other part is kept in memory.
STREAMED = "payload"
#: Bytes of the streamed part gathered before one write to its file (in a thread).
FLUSH = 2**20
#: The most bytes a part kept in memory may have (a spec is a few hundred).
FIELD_LIMIT = 2**20
#: The most bytes of one part's headers.
HEADERS_LIMIT = 16 * 2**10

_PREAMBLE, _DELIMITED, _HEADERS, _CONTENT, _EPILOGUE = range(5)


class MultipartReader:
    """multipart/form-data (RFC 7578) parsed as it arrives, fed piece by piece.

    Parts named `streamed` come out through `take()` as they arrive; the others are kept
    (`parts`: each part's name and bytes, None for a streamed one, in order).
    """

    def __init__(self, boundary: str, streamed: str = STREAMED) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # The first delimiter has no line break before it: one in front makes it like the rest.
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._streamed = streamed
        self.parts: list[tuple[str, bytearray | None]] = []
        self._out = bytearray()
        self.ended = False

    @property
    def pending(self) -> int:
        """Bytes of the streamed part not taken yet."""
        return len(self._out)

    def take(self) -> bytearray:
        """The streamed part's bytes that arrived since the last `take`."""
        out, self._out = self._out, bytearray()
        return out

    def feed(self, data: bytes) -> None:
        """More of the body; `InvalidRequest` when it is not multipart as it says."""
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Parse what the buffer allows; whether to look again."""
        buffer = self._buffer
        if self._state in (_PREAMBLE, _CONTENT):
            found = buffer.find(self._delimiter)
            keep = len(self._delimiter) - 1  # a delimiter may be split between two pieces
            end = found if found >= 0 else max(0, len(buffer) - keep)
            if self._state == _CONTENT:
                with memoryview(buffer) as view, view[:end] as piece:
                    self._content(piece)
            del buffer[: end + (len(self._delimiter) if found >= 0 else 0)]
            if found < 0:
                return False
            self._state = _DELIMITED
            return True
        if self._state == _DELIMITED:
            stripped = buffer.lstrip(b" \t")  # transport padding
            if len(stripped) < 2:
                return False
            del buffer[: len(buffer) - len(stripped)]
            if stripped.startswith(b"--"):
                self._state, self.ended = _EPILOGUE, True
            elif stripped.startswith(b"\r\n"):
                del buffer[:2]
                self._state = _HEADERS
            else:
                raise InvalidRequest("multipart body: a boundary is not followed by a line break")
            return True
        if self._state == _HEADERS:
            end = 0 if buffer.startswith(b"\r\n") else buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > HEADERS_LIMIT:
                    raise InvalidRequest(f"multipart body: a part's headers pass {HEADERS_LIMIT}")
                return False
            name = _part_name(bytes(buffer[:end]))
            del buffer[: end + (2 if end == 0 else 4)]
            self.parts.append((name, None if name == self._streamed else bytearray()))
            self._state = _CONTENT
            return True
        buffer.clear()  # the epilogue means nothing
        return False

    def _content(self, data: memoryview) -> None:
        part = self.parts[-1][1]
        if part is None:
            self._out += data
            return
        if len(part) + len(data) > FIELD_LIMIT:
            raise InvalidRequest(
                f"multipart part {self.parts[-1][0]!r} is larger than {FIELD_LIMIT} bytes"
            )
        part += data


def _part_name(headers: bytes) -> str:
    """The `name` of a part's `Content-Disposition: form-data; name="..."`."""
    message = email.message.Message()
    for line in headers.decode("latin-1").split("\r\n"):
        key, colon, value = line.partition(":")
        if colon:
            message[key.strip()] = value.strip()
    name = message.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("multipart body: a part has no Content-Disposition name")
    return name


def _boundary(content_type: str) -> str:
    message = email.message.Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 70:
        raise InvalidRequest("multipart body without a valid boundary in its Content-Type")
    return boundary


class SubmitBody:
    """The body of one `POST /jobs/api/jobs`, fed as it arrives (`feed`), then turned into the
    `parse` that `service.submit` calls (`finish`); the handler `discard`s it in the end. `run`
    calls a function in the server's thread pool."""

    def __init__(self, content_type: str, limit: int, spool: Callable[[], Spool], run: Run) -> None:
        self.limit = limit
        self.error: JobsError | None = None
        self._make_spool = spool
        self._run = run
        self._spool: Spool | None = None
        self._chunks: list[bytes] = []
        self._reader: MultipartReader | None = None
        if content_type.startswith("multipart/form-data"):
            try:
                self._reader = MultipartReader(_boundary(content_type))
            except JobsError as exc:
                self.error = exc

    async def feed(self, chunk: bytes) -> None:
        """One piece of the body. A problem is kept for `finish` (the rest is read and
        dropped): tornado could not answer an error raised here."""
        if self.error is not None:
            return
        if self._reader is None:
            self._chunks.append(chunk)
            return
        try:
            self._reader.feed(chunk)
            if self._reader.pending >= FLUSH:
                await self._flush()
        except JobsError as exc:
            self.error = exc
            await asyncio.to_thread(self.discard)

    async def _flush(self) -> None:
        assert self._reader is not None
        data = self._reader.take()
        if not data:
            return
        if self._spool is None:
            self._spool = await self._run(self._make_spool)
        if self._spool.size + len(data) > self.limit:
            raise PayloadTooLarge(
                f"payload is larger than the server's limit of {self.limit} bytes",
                {"max_payload_size": self.limit},
            )
        await self._run(self._spool.write, data)

    async def finish(self) -> Callable[[], Any]:
        """The whole body has arrived: what parses it (in a thread), or the error it had."""
        if self.error is None and self._reader is not None:
            try:
                await self._flush()
            except JobsError as exc:
                self.error = exc
        if self.error is not None:
            raise self.error
        if self._reader is None:
            return partial(parsing.submit_json, b"".join(self._chunks), self.limit)
        if not self._reader.ended:
            raise InvalidRequest("multipart body ends before its closing boundary")
        stored = await self._run(self._spool.stored) if self._spool is not None else b""
        parts: dict[str, list[Any]] = {}
        for name, content in self._reader.parts:
            parts.setdefault(name, []).append(stored if content is None else bytes(content))
        return partial(parsing.submit_multipart, parts, self.limit)

    def discard(self) -> None:
        """Remove the spooled payload unless a job took it (blocking: call it in a thread)."""
        if self._spool is not None:
            self._spool.discard()
