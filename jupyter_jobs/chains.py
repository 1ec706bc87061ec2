"""A cell job that runs `--after` other cell jobs sees the names they set, as the next cell does.

Inline, cell 2 of a pipeline reads what cell 1 assigned. As jobs, cell 2 may be submitted while
cell 1 still runs, so the kernel cannot send cell 1's names with it: the consumer does, when cell
2 starts, by handing the worker the result bytes of each cell it runs after, behind its payload
(`bundle`). The server never unpickles them; the worker reads them as they arrive (`receive`:
their big arrays straight into their own memory, see buffers.py), loads them, and puts their
names into the cell's namespace over those the kernel sent at submit, since they are newer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from . import buffers

#: Starts a bundled body; a plain payload starts with pickle's PROTO opcode (0x80), never this.
MAGIC = b"jupyter-jobs-chain\x00"
_COUNT = struct.Struct("!I")
_LENGTH = struct.Struct("!Q")


def bundle(payload: bytes, upstream: Sequence[bytes]) -> bytes:
    """`payload` followed by the upstream cells' results, in `--after` order."""
    if not upstream:
        return payload
    parts = [payload, *upstream]
    lengths = b"".join(_LENGTH.pack(len(part)) for part in parts)
    return b"".join([MAGIC, _COUNT.pack(len(parts)), lengths, *parts])


def receive(
    stream: buffers.Readable, size: int, hashed: bool = False
) -> tuple[bytearray | buffers.Received, list[bytearray | buffers.Received]]:
    """The payload and the upstream results of a body of `size` bytes, read from `stream`
    (`buffers.receive` each: hashed with `hashed`). Exactly `size` bytes are read; a bundle
    whose parts do not add up is a `FramingError`."""
    start = buffers.read_exactly(stream, min(size, len(MAGIC)))
    if start != MAGIC:
        return buffers.receive(buffers.Replay(start, stream), size, hashed), []
    left = size - len(MAGIC)
    try:
        (count,) = _COUNT.unpack(buffers.read_exactly(stream, _COUNT.size))
        left -= _COUNT.size
        if count < 1 or count * _LENGTH.size > left:
            raise buffers.FramingError(f"a chained cell's body says it has {count} parts")
        table = buffers.read_exactly(stream, count * _LENGTH.size)
        left -= len(table)
        lengths = [_LENGTH.unpack_from(table, i * _LENGTH.size)[0] for i in range(count)]
        if sum(lengths) != left:
            raise buffers.FramingError(
                f"a chained cell's body is {size} bytes, its parts say {size - left + sum(lengths)}"
            )
    except BaseException:
        buffers.skip(stream, left)
        raise
    parts = [buffers.receive(stream, length, hashed) for length in lengths]
    return parts[0], parts[1:]
