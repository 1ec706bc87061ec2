"""Which attempts a consumer's workers began, written down before the jobs' code runs.

Why it exists: a consumer killed with -9 leaves claims in the store, and the store alone cannot
tell a claim whose code never began (sent ahead to a busy worker, waiting for a worker) from one
that began, or even ended, in the moments before the kill: starts reach the database in batches,
with outcomes, so that short jobs stay cheap. Counting every such claim as an interrupted attempt
is safe, but costs the jobs that never began an attempt, which a clean stop gives back.

So a worker appends "job attempt" to its own file in its consumer's folder before the job's code
runs (one `write`, no fsync: microseconds), then checks that its consumer, its parent process,
still lives, and runs the job only then. `Store.recover` reads the folder of a consumer only once
the process that started its workers is proven gone (same host, same boot), and gives back
uncounted every claim of it that the folder does not name. Under every ordering of the kill:

- a job whose code ran was written down before its worker saw its consumer alive, so before the
  consumer died, so before recovery proved the death and read the folder: it is found, counted;
- a job written down after recovery read the folder is one whose worker then finds its parent
  gone (POSIX re-parents a child as its parent dies, before anyone can see the parent dead;
  Windows is asked about the parent itself): it never runs.

Where the proof cannot be made the old rule holds, and the attempt counts: a consumer that may
live (a stalled one whose lease lapsed, one on another host), a machine restarted since (writes
not yet on disk may have been lost with the power), a folder or file that cannot be read, an
executor that keeps no log (Dask's workers are not this machine's: it never makes the folder).

Each live worker has a file of its own (`take_file`), which a later worker takes over once it is
gone, keeping what it holds: an executor has as many files as it ever ran workers at once. A
file holds the last `LIMIT` bytes of starts at least (its previous generation is `<name>.old`),
some 70,000 starts: far more than a consumer ever holds claims at once (17 per worker slot in
the local executor), so every start whose claim is still held is there.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import oslayer
from .workspace import write_private

#: Bytes of starts in one generation of a file (two generations are kept).
LIMIT = 1 << 20
#: The file naming the process whose workers write in a folder.
OWNER = "owner"
#: Two readings of the boot time differ by less than this.
_BOOT_TOLERANCE = 1.0


@dataclass
class StartLog:
    """One consumer's folder of start files (`Workspace.start_log` says where)."""

    folder: Path
    consumer: str
    _prefix: str = field(default_factory=lambda: secrets.token_hex(4), repr=False)
    _taken: set[int] = field(default_factory=set, repr=False)  # files of live workers

    def create(self) -> None:
        """Name this process (which starts the workers) as the folder's owner: what recovery
        must see gone before it trusts the folder. Before any claim reaches a worker.

        What the folder holds already stays: another consumer of this process with the same
        id may write there too (their files have other prefixes), and the starts of an earlier
        owner can only make recovery count more attempts, never fewer."""
        oslayer.make_private_dir(self.folder)
        me = os.getpid()
        owner = {
            "consumer": self.consumer,
            "host": socket.gethostname(),
            "pid": me,
            "started": oslayer.process_start_time(me),
            "boot": oslayer.boot_time(),
        }
        fresh = self.folder / f".{OWNER}.{self._prefix}.tmp"
        write_private(fresh, json.dumps(owner).encode())
        os.replace(fresh, self.folder / OWNER)

    def remove(self) -> None:
        """Remove this executor's files (a clean stop, once every claim was settled or given
        back); the folder goes with the next recovery after its owner process is gone."""
        with contextlib.suppress(OSError):
            for path in self.folder.glob(f"{self._prefix}-*"):
                path.unlink(missing_ok=True)

    def take_file(self) -> Path:
        """The file of a worker about to start: the first no live worker writes."""
        number = 0
        while number in self._taken:
            number += 1
        self._taken.add(number)
        return self.folder / f"{self._prefix}-{number}"

    def release(self, file: Path) -> None:
        """The worker of `file` is gone (its process reaped): another may write there."""
        self._taken.discard(int(file.name.rpartition("-")[2]))


class Recorder:
    """A worker's side: writes down each attempt it begins, at the end of `path`."""

    def __init__(self, path: Path, consumer_alive: Callable[[], bool]) -> None:
        self.path = path
        self._consumer_alive = consumer_alive
        self._fd: int | None = None
        self._size = 0

    def begin(self, job_id: int, attempt: int) -> bool:
        """Write the attempt down, then say whether it may run: False once the consumer is
        gone, since its recovery may have read the folder already. Raises `OSError` when the
        start cannot be written: the job must not run then either."""
        if self._fd is None or self._size >= LIMIT:
            self._next_file()
        self._size += os.write(self._fd, b"%d %d\n" % (job_id, attempt))
        return self._consumer_alive()

    def _next_file(self) -> None:
        if self._fd is not None:  # the current file becomes the old one (see `started`)
            os.close(self._fd)  # first: Windows renames no open file
            self._fd = None
            os.replace(self.path, self.path.with_name(self.path.name + ".old"))
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        self._fd = os.open(self.path, flags, 0o600)  # 0600 at most, whatever the umask
        self._size = os.fstat(self._fd).st_size  # a gone worker's starts stay: they count


def started(folder: Path) -> set[tuple[int, int]] | None:
    """(job id, attempt) of every start the owner's workers wrote down, or None when that
    cannot be trusted: no folder or owner, an owner not proven gone, a file unreadable.

    The owner is proven gone before anything else is read, and each current file is read
    before its old one: a worker that turns its file over meanwhile (its one write after its
    consumer died) cannot hide an earlier start."""
    owner = _owner(folder)
    if owner is None or not _gone(owner):
        return None
    try:
        return _read(folder)
    except OSError:
        return None


def named(folder: Path) -> set[tuple[int, int]]:
    """(job id, attempt) of every start written down in `folder` so far, whoever its owner:
    what it names began for sure (an empty set says nothing, unless the writers are gone)."""
    try:
        return _read(folder)
    except OSError:
        return set()


def _read(folder: Path) -> set[tuple[int, int]]:
    """Each current file is read before its old one: see `started`."""
    found: set[tuple[int, int]] = set()
    names = os.listdir(folder)
    files = {n.removesuffix(".old") for n in names if n != OWNER and not n.startswith(".")}
    for name in files:
        for path in (folder / name, folder / f"{name}.old"):
            with contextlib.suppress(FileNotFoundError):
                found.update(_records(path.read_bytes()))
    return found


def sweep(root: Path, holds_claims: Callable[[str], bool]) -> None:
    """Remove the folders whose owner is gone and whose consumer holds no claim any more."""
    try:
        folders = list(root.iterdir())
    except OSError:
        return
    for folder in folders:
        owner = _owner(folder)
        if owner is not None and _gone(owner) and not holds_claims(owner["consumer"]):
            shutil.rmtree(folder, ignore_errors=True)


def _owner(folder: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads((folder / OWNER).read_bytes())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def _gone(owner: dict[str, Any]) -> bool:
    """Whether the owner process is proven gone: on this host, since this boot, not alive."""
    boot, then = oslayer.boot_time(), owner.get("boot")
    return (
        owner.get("host") == socket.gethostname()
        and isinstance(then, (int, float))
        and boot is not None
        and abs(boot - then) < _BOOT_TOLERANCE
        and not oslayer.process_alive(owner["pid"], owner.get("started"))
    )


def _records(data: bytes) -> Iterator[tuple[int, int]]:
    """The well-formed lines; a last line without its newline was being written when read."""
    for line in data.split(b"\n")[:-1]:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            yield int(parts[0]), int(parts[1])
