"""A cell job that runs `--after` other cell jobs sees the names they set, as the next cell does.

Inline, cell 2 of a pipeline reads what cell 1 assigned. As jobs, cell 2 may be submitted while
cell 1 still runs, so the kernel cannot send cell 1's names with it: the consumer does, when cell
2 starts, by handing the worker the result bytes of each cell it runs after, behind its payload
(`bundle`). The server never unpickles them; the worker does (`unbundle`), and puts their names
into the cell's namespace over those the kernel sent at submit, since they are newer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

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


def unbundle(body: bytes) -> tuple[memoryview, list[memoryview]]:
    """The payload and the upstream results of a body (views, not copies: they may be big)."""
    view = memoryview(body)
    if view[: len(MAGIC)] != MAGIC:
        return view, []
    at = len(MAGIC)
    (count,) = _COUNT.unpack_from(view, at)
    at += _COUNT.size
    lengths = [_LENGTH.unpack_from(view, at + i * _LENGTH.size)[0] for i in range(count)]
    at += count * _LENGTH.size
    parts = []
    for length in lengths:
        parts.append(view[at : at + length])
        at += length
    if at != len(view):
        raise ValueError(f"a chained cell's body is {len(view)} bytes, its parts say {at}")
    return parts[0], parts[1:]
