"""Submit bodies read as they arrive (server/bodies.py): multipart parsed piece by piece, the
payload written to a file of the store's workspace, never held whole."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_jobs.errors import InvalidRequest, PayloadTooLarge
from jupyter_jobs.models import FileBytes
from jupyter_jobs.server.bodies import FLUSH, MultipartReader, SubmitBody
from jupyter_jobs.store import Store

BOUNDARY = "xYz-boundary"


def body(*parts: tuple[str, bytes], preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    chunks = [preamble]
    for name, data in parts:
        chunks.append(
            f'--{BOUNDARY}  \r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode() + epilogue


def read(data: bytes, piece: int) -> tuple[MultipartReader, bytes]:
    reader = MultipartReader(BOUNDARY)
    streamed = bytearray()
    for at in range(0, len(data), piece):
        reader.feed(data[at : at + piece])
        streamed += reader.take()
    return reader, bytes(streamed)


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 16, 17, 64, 10_000])
def test_a_body_in_pieces_of_any_size_reads_as_the_whole(piece):
    # content that looks like a boundary, but without the line break before it, is content
    tricky = f"a\r\n-{BOUNDARY}\n--{BOUNDARY}x".encode() * 3 + bytes(range(256))
    data = body(
        ("spec", b'{"name": "x"}'),
        ("payload", tricky),
        preamble=b"ignored preamble\r\n",
        epilogue=b"ignored epilogue",
    )
    reader, streamed = read(data, piece)
    assert reader.ended
    assert [(name, None if part is None else bytes(part)) for name, part in reader.parts] == [
        ("spec", b'{"name": "x"}'),
        ("payload", None),  # streamed, not kept
    ]
    assert streamed == tricky


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n".encode(), "no Content-Dis"),
        (f"--{BOUNDARY}\r\n".encode() + b"X-Long: " + b"h" * 20_000, "headers pass"),
        (f"--{BOUNDARY}garbage\r\n".encode(), "not followed by a line break"),
        (body(("spec", b"s" * (2**20 + 1))), "larger than"),
    ],
)
def test_a_body_that_is_not_multipart_as_it_says_is_refused(data, message):
    with pytest.raises(InvalidRequest, match=message):
        read(data, 4096)


def submit(store: Store, content_type: str, data: bytes, limit: int) -> SubmitBody:
    async def run(fn: Any, *args: Any) -> Any:  # the server's thread pool
        return await asyncio.to_thread(fn, *args)

    async def feed() -> Any:
        submitted = SubmitBody(content_type, limit, store.spool, run)
        for at in range(0, len(data), 65536):  # the pieces tornado hands over
            await submitted.feed(data[at : at + 65536])
        try:
            return (await submitted.finish())(), submitted
        except Exception as exc:
            await asyncio.to_thread(submitted.discard)
            return exc, submitted

    return asyncio.run(feed())


def test_a_multipart_payload_goes_to_a_file_a_megabyte_at_a_time(tmp_path: Path):
    store = Store(tmp_path / "jobs.db")
    payload = bytes(range(256)) * (3 * FLUSH // 256 + 1)
    data = body(("spec", json.dumps({"name": "big"}).encode()), ("payload", payload))
    (spec, stored), _ = submit(store, f"multipart/form-data; boundary={BOUNDARY}", data, 2**30)
    assert spec.name == "big" and isinstance(stored, FileBytes)
    assert Path(stored.path).parent == store.incoming() and stored.read() == payload
    job = store.enqueue(spec, stored)  # the job takes the file: a move
    assert (store.workspace_root / str(job.id) / "payload").read_bytes() == payload
    assert list(store.incoming().iterdir()) == []
    store.close()


def test_a_payload_past_the_limit_is_refused_and_its_file_removed(tmp_path: Path):
    store = Store(tmp_path / "jobs.db")
    data = body(("spec", b"{}"), ("payload", b"x" * (2 * FLUSH + 1)))
    error, _ = submit(store, f"multipart/form-data; boundary={BOUNDARY}", data, 2 * FLUSH)
    assert isinstance(error, PayloadTooLarge)
    assert error.detail == {"max_payload_size": 2 * FLUSH}
    assert list(store.incoming().iterdir()) == []
    error, _ = submit(store, "multipart/form-data", data, 2**30)
    assert isinstance(error, InvalidRequest) and "boundary" in error.message
    cut = data[: len(data) // 2]
    error, _ = submit(store, f"multipart/form-data; boundary={BOUNDARY}", cut, 2**30)
    assert isinstance(error, InvalidRequest) and "ends before its closing boundary" in str(error)
    assert list(store.incoming().iterdir()) == []
    store.close()


def test_a_json_body_is_parsed_as_before(tmp_path: Path):
    store = Store(tmp_path / "jobs.db")
    data = json.dumps({"spec": {"name": "small"}, "payload": "eA=="}).encode()
    (spec, payload), _ = submit(store, "application/json", data, 100)
    assert (spec.name, payload) == ("small", b"x")
    store.close()
