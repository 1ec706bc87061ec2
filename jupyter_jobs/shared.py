"""A function job's function, stored once and loaded once per worker.

Why: `map(f, items)` used to pickle `f` once per item, and the store kept (the consumer sent,
the worker unpickled) one copy of it per job: a function closing over a megabyte of data made
a 10,000-item map ten gigabytes. Now a function job's payload has two parts, the function's dill
bytes, named by their sha256, and the call's own part (`{"args", "kwargs"}`, or a typed job's
JSON line: `arguments`). `Jobs.submit` and `map` pickle the function once (`payload.function_bytes`,
`call_bytes`).

- A function of `SHARE_FROM` bytes or more travels as a `SharedPayload` (function and arguments
  apart): the store keeps its bytes once, in a content-addressed table that each job's payload
  row references (`store/shared.py`), and the kernel sends them once per request, or not at all
  when the server has them (`kernel/functions.py`). A kernel job type's functions are stored the
  same way, and its typed jobs reference them.
- A smaller function costs less than a reference: it is packed with the arguments at once and
  stored in the job's payload as any payload is. Unless the arguments carry big arrays beside
  their pickle (`buffers.Framed`): those stay a payload of their own, so that the server
  streams them to a file and a local worker maps that file (buffers.py), which a pack would
  prevent; the function, however small, is then stored once too.
- A worker gets a *pack*: `MAGIC`, the function's sha256 and length, its bytes, then the
  arguments. A claim hands the executor the function beside the job's arguments (a
  `SharedPayload` with the function's bytes), and `protocol.job_frame` packs them; arguments
  kept in a file stay there and go as its path, the pack then holding the function alone.
  The local executor sends a worker each function's bytes once (`HeldFunctions`), and the
  worker keeps what it loaded by sha256 (`LoadedFunctions`), so a warm worker neither receives
  nor unpickles a map's function once per item. As in Dask and Ray, the jobs a worker runs then
  share that function object: its closure and globals, should a job change them.

Nothing here unpickles: the server reads a pack's header and hashes bytes, never more. A payload
from before (one pickle of `{"fn", "args", "kwargs"}`) starts with pickle's PROTO opcode, never
with `MAGIC`, and runs as it did.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .buffers import Framed, Loadable, parts
from .models import FileBytes

#: Starts a pack; a pickle starts with 0x80, a chained cell's body with `chains.MAGIC`.
MAGIC = b"jupyter-jobs-fn\x00"
_HEAD = struct.Struct("!32sQ")  # the sha256 digest, the function's length
#: Functions of this many bytes or more are stored once; smaller ones go with each job.
SHARE_FROM = 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")

T = TypeVar("T")


@dataclass(frozen=True)
class Function:
    """A function's dill bytes and their sha256 (hex); `data` None: only named, for a store or
    a server that has the bytes already."""

    sha256: str
    data: bytes | None = None

    @classmethod
    def of(cls, data: bytes) -> Function:
        return cls(hashlib.sha256(data).hexdigest(), data)


@dataclass(frozen=True)
class SharedPayload:
    """A job's payload whose function is stored once, apart from the job's own `arguments`:
    their bytes (a pickle, or a framed one with its arrays beside it, as a kernel sends it),
    or the file they are kept in (a large submit as the server spooled it, a claimed job's as
    the store keeps it)."""

    function: Function
    arguments: bytes | Framed | FileBytes


#: What a front end hands a backend per job: packed bytes (or any other payload, its arrays
#: perhaps beside it), or the parts.
Payload = bytes | Framed | SharedPayload
#: What an executor hands on per job (`executors/base.Task.payload`): bytes, the file they are
#: kept in, or a function stored once beside the job's arguments.
Task = bytes | FileBytes | SharedPayload


@dataclass(frozen=True)
class Unpacked:
    """A pack's parts (views into it, not copies: the function may be large); `arguments`
    may be what the worker read from a file instead (`replace`d in: runner.py)."""

    sha256: str
    function: memoryview
    arguments: Loadable


def payload_for(function: Function, arguments: bytes | Framed) -> Payload:
    """Shared when the function is large enough to be worth a reference (or only named), or
    when the arguments' arrays travel beside them (see the module's docstring)."""
    if function.data is None or len(function.data) >= SHARE_FROM or isinstance(arguments, Framed):
        return SharedPayload(function, arguments)
    return pack(function.sha256, function.data, arguments)


def pack(sha256: str, function: bytes | memoryview, arguments: bytes | memoryview) -> bytes:
    """One body with both parts: what a worker loads."""
    head = _HEAD.pack(bytes.fromhex(sha256), len(function))
    return b"".join((MAGIC, head, function, arguments))


def packed(payload: SharedPayload) -> bytes:
    """A shared payload as one pack, its arguments read from their file if they are in one
    (for an executor whose workers may be on other machines: Dask's)."""
    arguments = payload.arguments
    if isinstance(arguments, FileBytes):
        arguments = arguments.read()
    return pack(payload.function.sha256, payload.function.data or b"", b"".join(parts(arguments)))


def unpack(body: bytes | memoryview) -> Unpacked | None:
    """The parts of a pack; None for a payload that is not one (`ValueError` if it is cut)."""
    view = memoryview(body)
    if view[: len(MAGIC)] != MAGIC:
        return None
    start = len(MAGIC) + _HEAD.size
    if len(view) < start:
        raise ValueError(f"a function job's payload of {len(view)} bytes is cut in its header")
    digest, length = _HEAD.unpack_from(view, len(MAGIC))
    if start + length > len(view):
        raise ValueError(f"a function job's payload says {length} function bytes, has fewer")
    return Unpacked(digest.hex(), view[start : start + length], view[start + length :])


def joined(payload: Payload) -> bytes | SharedPayload:
    """A payload as a store in this process takes it: a framed pickle's parts joined, once,
    as a pickle's bytes were (what an HTTP request does on its way)."""
    if isinstance(payload, SharedPayload):
        arguments = payload.arguments
        if isinstance(arguments, Framed):
            return SharedPayload(payload.function, bytes(arguments))
        return payload
    return bytes(payload)


def size(payload: Payload) -> int:
    """The bytes a job carries: its arguments and its function (as a worker gets them)."""
    if isinstance(payload, SharedPayload):
        return len(payload.arguments) + len(payload.function.data or b"")
    return len(payload)


def parts_size(payloads: Iterable[Payload]) -> tuple[int, dict[str, int]]:
    """The payloads' own bytes (arguments, where a function is shared), and the size of each
    function they share, by sha256: what a group of jobs costs to send, each function once."""
    own = 0
    functions: dict[str, int] = {}
    for payload in payloads:
        if isinstance(payload, SharedPayload):
            own += len(payload.arguments)
            functions[payload.function.sha256] = len(payload.function.data or b"")
        else:
            own += len(payload)
    return own, functions


def functions_in(payloads: Iterable[Payload]) -> list[Function]:
    """The distinct functions the payloads share, in order of first use (with their bytes,
    when any payload carries them)."""
    found: dict[str, Function] = {}
    for payload in payloads:
        if isinstance(payload, SharedPayload):
            known = found.get(payload.function.sha256)
            if known is None or known.data is None:
                found[payload.function.sha256] = payload.function
    return list(found.values())


def is_sha256(text: str) -> bool:
    """Whether `text` names a function as this module does: 64 lowercase hex digits."""
    return _SHA256.fullmatch(text) is not None


class LoadedFunctions:
    """The functions a worker loaded, by sha256, so that each is unpickled once.

    Kept for one working directory: a job from another one imports that directory's modules
    (the runner forgets the last one's), so what was loaded before is dropped. At most
    `max_entries` functions and `max_bytes` of their pickles stay, the least recently used
    going first; a load that raises keeps nothing.
    """

    def __init__(self, max_entries: int = 16, max_bytes: int = 256 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._directory: str | None = None

    def get(self, unpacked: Unpacked, directory: str, load: Callable[[memoryview], T]) -> T:
        """The loaded function of `unpacked`: kept from an earlier job, or `load`ed now."""
        if directory != self._directory:
            self._entries.clear()
            self._bytes = 0
            self._directory = directory
        found = self._entries.get(unpacked.sha256)
        if found is not None:
            self._entries.move_to_end(unpacked.sha256)
            return found[0]
        if len(unpacked.function) == 0:
            raise ValueError(f"the function {unpacked.sha256} was not sent to this worker")
        value = load(unpacked.function)
        size = len(unpacked.function)
        if size <= self.max_bytes:
            self._entries[unpacked.sha256] = (value, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][1]
        return value


class HeldFunctions:
    """The functions one worker holds, as its executor and the worker both count them, so that
    each goes to the worker once.

    The executor passes every pack it sends the worker through `send`: a function the worker
    holds is cut out (sent with length 0). The worker passes every job body it receives through
    `receive`, which keeps a whole function's bytes and puts them back where they were cut.
    Both sides apply one rule to the same packs in the same order (the frames of one channel),
    so they agree on what the worker holds without a word about it: the last `max_entries`
    functions sent or named, at most `max_bytes` of them (a larger one always goes whole, and
    so does one under `SHARE_FROM` bytes, cheaper sent than counted).
    """

    def __init__(self, max_entries: int = 8, max_bytes: int = 256 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._held: OrderedDict[str, tuple[int, memoryview | None]] = OrderedDict()
        self._bytes = 0

    def send(self, payload: Task) -> Task:
        """The executor's side: a claimed job's payload as it goes to the worker, its function
        cut out (`Function(sha256, b"")`) if the worker holds it (`protocol.job_frame` packs
        it). Any other payload goes as it is."""
        if not isinstance(payload, SharedPayload):
            return payload
        function = payload.function
        if function.data is None or len(function.data) < SHARE_FROM:
            return payload  # small: cheaper sent than counted
        if not self._hold(function.sha256, len(function.data), None):
            return payload
        return SharedPayload(Function(function.sha256, b""), payload.arguments)

    def receive(self, body: Loadable) -> Loadable | Unpacked:
        """The worker's side: a pack's parts with its function whole again, or `body` as it
        came (not a pack, or one cut short: the runner says so)."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            return body  # a framed pickle, read into its arrays: no pack
        try:
            unpacked = unpack(body)
        except ValueError:
            return body
        if unpacked is None:
            return body
        if len(unpacked.function) == 0:
            found = self._held.get(unpacked.sha256)
            if found is None or found[1] is None:
                return body
            self._hold(unpacked.sha256, found[0], found[1])
            return Unpacked(unpacked.sha256, found[1], unpacked.arguments)
        if len(unpacked.function) >= SHARE_FROM:  # as `send` counts
            self._hold(unpacked.sha256, len(unpacked.function), unpacked.function)
        return unpacked

    def _hold(self, sha256: str, size: int, data: memoryview | None) -> bool:
        """Count a function sent (or named) now; whether it was held already."""
        if sha256 in self._held:
            self._held.move_to_end(sha256)
            return True
        if size <= self.max_bytes:
            self._held[sha256] = (size, data)
            self._bytes += size
            while len(self._held) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= self._held.popitem(last=False)[1][0]
        return False
