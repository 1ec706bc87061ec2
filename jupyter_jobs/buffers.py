"""Big NumPy arrays travel beside a pickle, not inside it, and are never copied on the way.

Why: pickled inside, a 100 MiB array was copied into the pickle, the pickle into a request body,
and loaded into a new array: each process on the way held several copies, and copying was most of
a big cell's time. Here the pickler puts a reference in place of each big array (`array`: its
index) and keeps the array's memory aside. What travels is a *framed* pickle:

    MAGIC | header length (u32) | header (JSON: the pickle's length; each array's dtype,
    shape, order) | pickle | the arrays' bytes, one after the other

sent as parts (`Framed`: the arrays' memory as views, never joined), and received by reading each
array's bytes straight into a new array's memory (`receive`: from a socket, an HTTP response or
bytes in memory), before the pickle is loaded (`loads`), so an array is whole before anything
refers to it. Received arrays own their memory, as inline: `x.base`, `x.resize()` and views of
them (array_views.py) behave as they would. That is why this is not pickle protocol 5's own
out-of-band buffers: loaded through `pickle.loads(buffers=)`, an array is a view of the received
buffer.

Only plain `ndarray`s of at least `THRESHOLD` bytes, C or Fortran contiguous, of a dtype its
`str` describes (no Python objects, no fields) go beside; everything else is pickled as before. A
pickle with no such array is the plain pickle bytes it always was (a framed one starts with
MAGIC, never with pickle's PROTO opcode 0x80, nor with chains.py's mark).

`receive` can hash each array as it arrives (`digests`), so that the worker knows what it was
sent without hashing it again (runner.py compares what a cell changed by these digests).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import hashlib
import io
import json
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

#: Arrays of at least this many bytes travel beside the pickle.
THRESHOLD = 64 * 2**10
#: Starts a framed pickle.
MAGIC = b"\x00jupyter-jobs-framed\x00"
_HEADER_LENGTH = struct.Struct("!I")
#: Bytes read (and hashed) at a time while an array arrives.
CHUNK = 2**20
#: A framed pickle's header is small: a few numbers per array.
MAX_HEADER = 16 * 2**20

#: The arrays of the framed pickle being loaded in this context (see `loads`).
_LOADING: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "jupyter_jobs_arrays", default=None
)

Part = bytes | memoryview


class Readable(Protocol):
    """What `receive` reads from: a socket's file, an HTTP response, `Cursor`."""

    def read(self, size: int, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class FramingError(ValueError):
    """Bytes that say they are a framed pickle but are not one."""


def digest(parts: Iterable[Part]) -> bytes:
    """One hash of some bytes (the hash every digest here uses)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


@dataclass
class Framed:
    """A pickle and the memory of the arrays beside it: `parts` to send one after the other."""

    parts: list[Part]
    #: The arrays whose memory `parts` ends with, in order.
    arrays: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


@dataclass
class Received:
    """A framed pickle read: the pickle, and its arrays already filled (see `loads`)."""

    pickle: bytes
    arrays: list[Any]
    #: Each array's digest as it arrived (when `receive` was asked to hash).
    digests: dict[int, bytes] = field(default_factory=dict)
    loaded: bool = False

    def __len__(self) -> int:
        return len(self.pickle) + sum(a.nbytes for a in self.arrays)


#: What `loads` takes: the bytes of a plain or framed pickle, or a framed one as received.
Loadable = bytes | bytearray | memoryview | Received


class Collector:
    """The arrays one pickler puts beside its pickle (`reduce` is its `reducer_override`'s
    part); one per dump."""

    def __init__(self) -> None:
        self.arrays: list[Any] = []
        self._layouts: list[list[Any]] = []

    def clear(self) -> None:
        """Forget what was put aside (the pickle it was for is thrown away)."""
        self.arrays.clear()
        self._layouts.clear()

    def reduce(self, obj: Any) -> tuple[Any, ...] | None:
        """`obj` as a reference to the arrays beside, or None to pickle it as usual."""
        np = sys.modules.get("numpy")
        if np is None or type(obj) is not np.ndarray or obj.nbytes < THRESHOLD:
            return None
        order = "C" if obj.flags.c_contiguous else "F" if obj.flags.f_contiguous else None
        if order is None or not _simple(obj.dtype, np):
            return None
        self.arrays.append(obj)
        self._layouts.append([obj.dtype.str, list(obj.shape), order])
        return array, (len(self.arrays) - 1, bool(obj.flags.writeable))

    def framed(self, pickled: bytes) -> bytes | Framed:
        """What to send: the pickle alone when no array went beside it."""
        if not self.arrays:
            return pickled
        header = json.dumps({"pickle": len(pickled), "arrays": self._layouts}).encode()
        head = MAGIC + _HEADER_LENGTH.pack(len(header)) + header
        return Framed([head, pickled, *map(raw, self.arrays)], list(self.arrays))


def _simple(dtype: Any, np: Any) -> bool:
    """Whether `dtype.str` gives `dtype` back (no objects, fields or metadata)."""
    if dtype.hasobject or dtype.fields is not None or dtype.metadata:
        return False
    try:
        again = np.dtype(dtype.str)
    except TypeError:
        return False
    return again == dtype and type(again) is type(dtype)


def raw(arr: Any) -> memoryview:
    """An array's memory as bytes, in its own order, without a copy."""
    import numpy as np

    flat = arr.T if not arr.flags.c_contiguous else arr
    return memoryview(flat.reshape(-1).view(np.uint8))


def array(index: int, writeable: bool) -> Any:
    """Unpickling calls this in place of a big array: the array that was read beside."""
    arrays = _LOADING.get()
    if arrays is None or not 0 <= index < len(arrays):
        raise FramingError(
            "this pickle's arrays travel beside it: load it with jupyter_jobs.payload.loads"
        )
    found = arrays[index]
    if not writeable:
        found.flags.writeable = False
    return found


def parts(data: bytes | Framed) -> list[Part]:
    """What to send for `data`, in order."""
    return data.parts if isinstance(data, Framed) else [data]


def is_framed(head: bytes | memoryview) -> bool:
    return bytes(head[: len(MAGIC)]) == MAGIC


def receive(stream: Readable, size: int, hashed: bool = False) -> bytearray | Received:
    """Read `size` bytes from `stream`: plain bytes (a pickle, or JSON), or a framed pickle
    with its arrays read into their own memory (and hashed, with `hashed`). Exactly `size`
    bytes are read whatever they hold: `FramingError` (after reading them all) when a framed
    pickle's parts do not add up to `size`."""
    start = read_exactly(stream, min(size, len(MAGIC)))
    if size < len(MAGIC) or not is_framed(start):
        data = bytearray(size)
        data[: len(start)] = start
        _read_into(stream, memoryview(data)[len(start) :])
        return data
    counted = _Counted(stream)
    try:
        return _framed(counted, size - len(start), hashed)
    except BaseException:
        skip(stream, size - len(start) - counted.count)
        raise


def _framed(stream: _Counted, size: int, hashed: bool) -> Received:
    """A framed pickle after its MAGIC (`size` bytes)."""
    (header_length,) = _HEADER_LENGTH.unpack(read_exactly(stream, _HEADER_LENGTH.size))
    room = size - _HEADER_LENGTH.size - header_length
    if header_length > MAX_HEADER or room < 0:
        raise FramingError(f"a framed pickle's header of {header_length} bytes is too long")
    length, arrays = _layout(read_exactly(stream, header_length), room)
    received = Received(read_exactly(stream, length), [])
    for dtype, shape, order in arrays:
        arr = _empty(dtype, shape, order)
        received.arrays.append(arr)
        found = _fill(stream, raw(arr), hashed)
        if hashed:
            received.digests[id(arr)] = found
    return received


class _Counted:
    """A `Readable` that counts what was read through it."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int | None:
        got = self._stream.readinto(buffer)
        self.count += got or 0
        return got


def _layout(header: bytes, room: int) -> tuple[int, list[tuple[str, list[int], str]]]:
    """(pickle length, each array's (dtype, shape, order)), checked to fit in `room` bytes."""
    try:
        found = json.loads(header)
        length = found["pickle"]
        arrays = [(str(d), [int(n) for n in s], str(o)) for d, s, o in found["arrays"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise FramingError(f"a framed pickle's header cannot be read: {exc}") from None
    if not isinstance(length, int) or length < 0:
        raise FramingError(f"a framed pickle's header gives its pickle {length!r} bytes")
    import numpy as np

    total = length
    for dtype, shape, order in arrays:
        try:
            itemsize = np.dtype(dtype).itemsize
        except TypeError as exc:
            raise FramingError(f"a framed pickle names an unknown dtype: {exc}") from None
        if order not in ("C", "F") or any(n < 0 for n in shape):
            raise FramingError(f"a framed pickle names an array it cannot hold: {shape}, {order}")
        total += int(np.prod(shape, dtype=np.int64)) * itemsize
    if total != room:
        raise FramingError(f"a framed pickle's parts add up to {total} bytes, not {room}")
    return length, arrays


def _empty(dtype: str, shape: list[int], order: str) -> Any:
    import numpy as np

    return np.empty(shape, np.dtype(dtype), order=order)


def _fill(stream: Readable, target: memoryview, hashed: bool) -> bytes:
    """Read `len(target)` bytes into `target`, a chunk at a time; hashed, each chunk is hashed
    by another thread while the next one is read (hashlib lets go of the GIL)."""
    h = hashlib.sha256() if hashed else None
    hashing: concurrent.futures.Future[None] | None = None
    at, size = 0, len(target)
    try:
        while at < size:
            chunk = target[at : min(size, at + CHUNK)]
            at += _read_into(stream, chunk)
            if h is not None:
                if hashing is not None:
                    hashing.result()
                hashing = _hasher().submit(h.update, chunk)
    finally:
        if hashing is not None:
            hashing.result()
    return h.digest() if h is not None else b""


@functools.cache
def _hasher() -> concurrent.futures.ThreadPoolExecutor:
    """The thread that hashes what `_fill` reads (one: chunks are hashed in order)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobs-hash")


def _read_into(stream: Readable, target: memoryview) -> int:
    at = 0
    while at < len(target):
        got = stream.readinto(target[at:])
        if not got:
            raise EOFError(f"the stream ended {len(target) - at} bytes early")
        at += got
    return at


def read_exactly(stream: Readable, size: int) -> bytes:
    data = stream.read(size) if size else b""
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise EOFError(f"the stream ended {size - len(data)} bytes early")
        data += more
    return data


def skip(stream: Readable, size: int) -> None:
    """Read and drop what is left of a framed pickle that cannot be used, so the stream stays
    in step (a socket carries the next frame behind it)."""
    while size > 0:
        got = stream.read(min(size, CHUNK))
        if not got:
            return
        size -= len(got)


class Replay:
    """`Readable` that gives back bytes already read from `stream` before the rest of it (what
    a reader read to tell what comes)."""

    def __init__(self, start: bytes, stream: Readable) -> None:
        self._start = start
        self._stream = stream

    def read(self, size: int) -> bytes:
        if not self._start:
            return self._stream.read(size)
        part, self._start = self._start[:size], self._start[size:]
        return part

    def readinto(self, buffer: memoryview) -> int | None:
        if not self._start:
            return self._stream.readinto(buffer)
        size = min(len(buffer), len(self._start))
        buffer[:size] = self._start[:size]
        self._start = self._start[size:]
        return size


class Cursor:
    """`Readable` over bytes in memory, without copying them (a file for dill's `load`)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._at + size
        part = self._view[self._at : end]
        self._at += len(part)
        return bytes(part)

    def readline(self) -> bytes:
        end = bytes(self._view[self._at : self._at + CHUNK]).find(b"\n")
        return self.read(end + 1 if end >= 0 else CHUNK)

    def readinto(self, buffer: memoryview) -> int:
        part = self._view[self._at : self._at + len(buffer)]
        buffer[: len(part)] = part
        self._at += len(part)
        return len(part)


def from_memory(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview | Received:
    """`receive` over bytes already in memory: a framed pickle's arrays are copied out of
    them; plain bytes stay as they are."""
    if not is_framed(data):
        return data
    return receive(Cursor(data), len(memoryview(data).cast("B")))


def loads(data: Loadable, load: Callable[[BinaryIO], Any]) -> Any:
    """Load a plain or framed pickle with `load` (dill's `load`, from a file): a framed
    one's references get its arrays. A `Received` is loaded once as it is; loaded again, it
    gets copies of its arrays (the first load's objects own them)."""
    received = data if isinstance(data, Received) else from_memory(data)
    if not isinstance(received, Received):
        return load(_file(received))
    arrays = received.arrays
    if received.loaded:
        arrays = [a.copy() for a in arrays]
    received.loaded = True
    token = _LOADING.set(arrays)
    try:
        return load(_file(received.pickle))
    finally:
        _LOADING.reset(token)


def _file(data: bytes | bytearray | memoryview) -> Any:
    """A file over `data` that does not copy it (BytesIO shares only exact bytes)."""
    return io.BytesIO(data) if type(data) is bytes else Cursor(data)
