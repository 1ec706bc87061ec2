"""Big NumPy arrays travel beside a pickle, not inside it, and are never copied on the way.

Why: pickled inside, a 100 MiB array was copied into the pickle, the pickle into a request body,
and loaded into a new array: each process on the way held several copies, and copying was most of
a big cell's time. Here the pickler puts a reference in place of each big array (`array`: its
index) and keeps the array's memory aside. What travels is a *framed* pickle:

    MAGIC | header length (u32) | header (JSON: the pickle's length; each array's dtype,
    shape, order) | pickle | each array's bytes, from a multiple of ALIGN bytes

sent as parts (`Framed`: the arrays' memory as views, never joined), and received by reading each
array's bytes straight into a new array's memory (`receive`: from a socket, an HTTP response or
bytes in memory), before the pickle is loaded (`loads`), so an array is whole before anything
refers to it. Received arrays own their memory, as inline: `x.base`, `x.resize()` and views of
them (array_views.py) behave as they would. That is why this is not pickle protocol 5's own
out-of-band buffers: loaded through `pickle.loads(buffers=)`, an array is a view of the received
buffer, and a view of it would not be a view of the array. A framed pickle in a file on this
machine (a worker's large payload) is mapped instead (`map_file`): its arrays are copy-on-write
views of the file, aligned, and cost nothing until written.

Only plain `ndarray`s of at least `THRESHOLD` bytes, C or Fortran contiguous, of a dtype its
`str` describes (no Python objects, no fields) go beside; everything else is pickled as before. A
pickle with no such array is the plain pickle bytes it always was (a framed one starts with
MAGIC, never with pickle's PROTO opcode 0x80, nor with chains.py's mark).

Each array received says what it was (`Received.origins`, for changes.py): its hash, taken as
it arrived (`receive` with `hashed`), or the file region it was mapped from, which still holds
it whatever the array became: so the worker knows what a cell was sent without copying it, and
without hashing what it mapped.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import hashlib
import io
import json
import mmap
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
#: Each array's bytes start this many bytes apart from the frame's first (padded with zeros),
#: so that an array mapped from a file is aligned for any dtype.
ALIGN = 64

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


class Origin(Protocol):
    """What an array was when it arrived, to tell later whether it still is."""

    def matches(self, arr: Any) -> bool: ...


@dataclass(frozen=True)
class Digest:
    """An array's bytes as they were, by their hash."""

    value: bytes

    def matches(self, arr: Any) -> bool:
        return digest([raw(arr)]) == self.value


@dataclass(frozen=True)
class FileRegion:
    """An array's bytes as they were: still in the file it was mapped from (copy on write)."""

    path: str
    offset: int
    size: int

    def matches(self, arr: Any) -> bool:
        """Compared a chunk at a time with the file (its pages are in memory already)."""
        import numpy as np

        now = raw(arr)
        if len(now) != self.size:
            return False
        chunk = bytearray(min(CHUNK, self.size))
        with open(self.path, "rb", buffering=0) as file:
            file.seek(self.offset)
            for at in range(0, self.size, CHUNK):
                part = memoryview(chunk)[: min(CHUNK, self.size - at)]
                _read_into(file, part)
                if not np.array_equal(np.frombuffer(part, np.uint8), now[at : at + len(part)]):
                    return False
        return True


@dataclass
class Received:
    """A framed pickle read: the pickle, and its arrays already filled (see `loads`)."""

    pickle: bytes
    arrays: list[Any]
    #: What each array was as it arrived, by array id (hashed, or mapped from a file).
    origins: dict[int, Origin] = field(default_factory=dict)
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
        parts: list[Part] = [head, pickled]
        at = len(head) + len(pickled)
        for arr in self.arrays:
            if pad := -at % ALIGN:
                parts.append(bytes(pad))
            parts.append(raw(arr))
            at += pad + arr.nbytes
        return Framed(parts, list(self.arrays))


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
        return _read_framed(counted, size, hashed)
    except BaseException:
        skip(stream, size - len(start) - counted.count)
        raise


def _read_framed(stream: _Counted, size: int, hashed: bool) -> Received:
    """A framed pickle of `size` bytes, after its MAGIC."""
    layout = _read_layout(stream, size)
    received = Received(read_exactly(stream, layout.pickle), [])
    for dtype, shape, order, offset in layout.arrays:
        skip(stream, offset - len(MAGIC) - stream.count)  # the padding before it
        arr = _empty(dtype, shape, order)
        received.arrays.append(arr)
        found = _fill(stream, raw(arr), hashed)
        if hashed:
            received.origins[id(arr)] = Digest(found)
    return received


def map_file(path: str, size: int) -> bytearray | Received:
    """The `size` bytes of the file at `path` as `receive` would read them, but a framed
    pickle's arrays are copy-on-write views of the file: nothing is copied or allocated until
    a cell writes to them, and each one's origin is its region of the file."""
    with open(path, "rb", buffering=0) as file:
        start = read_exactly(file, min(size, len(MAGIC)))
        if size < len(MAGIC) or not is_framed(start):
            return receive(Replay(start, file), size)
        counted = _Counted(file)
        layout = _read_layout(counted, size)
        pickled = read_exactly(counted, layout.pickle)
        mapped = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY)
    received = Received(pickled, [])
    import numpy as np

    for dtype, shape, order, offset in layout.arrays:
        arr = np.ndarray(shape, np.dtype(dtype), buffer=mapped, offset=offset, order=order)
        received.arrays.append(arr)
        received.origins[id(arr)] = FileRegion(path, offset, arr.nbytes)
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


@dataclass
class _Layout:
    """What a framed pickle's header says: its pickle's length, and each array's dtype, shape,
    order and offset from the frame's first byte."""

    pickle: int
    arrays: list[tuple[str, list[int], str, int]]


def _read_layout(stream: _Counted, size: int) -> _Layout:
    """Read a framed pickle's header (after its MAGIC) and check that its parts, padding
    included, add up to the `size` of the whole."""
    (header_length,) = _HEADER_LENGTH.unpack(read_exactly(stream, _HEADER_LENGTH.size))
    at = len(MAGIC) + _HEADER_LENGTH.size + header_length
    if header_length > MAX_HEADER or at > size:
        raise FramingError(f"a framed pickle's header of {header_length} bytes is too long")
    try:
        found = json.loads(read_exactly(stream, header_length))
        length = found["pickle"]
        arrays = [(str(d), [int(n) for n in s], str(o)) for d, s, o in found["arrays"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise FramingError(f"a framed pickle's header cannot be read: {exc}") from None
    if not isinstance(length, int) or length < 0:
        raise FramingError(f"a framed pickle's header gives its pickle {length!r} bytes")
    import numpy as np

    layout, at = _Layout(length, []), at + length
    for dtype, shape, order in arrays:
        try:
            itemsize = np.dtype(dtype).itemsize
        except TypeError as exc:
            raise FramingError(f"a framed pickle names an unknown dtype: {exc}") from None
        if order not in ("C", "F") or any(n < 0 for n in shape):
            raise FramingError(f"a framed pickle names an array it cannot hold: {shape}, {order}")
        at += -at % ALIGN
        layout.arrays.append((dtype, shape, order, at))
        at += int(np.prod(shape, dtype=np.int64)) * itemsize
    if at != size:
        raise FramingError(f"a framed pickle's parts add up to {at} bytes, not {size}")
    return layout


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
