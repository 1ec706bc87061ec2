"""Wake other processes at once when the queue changes: a folder of unix datagram sockets.

SQLite cannot notify anyone, and polling costs either latency or CPU. So every process that
waits (a consumer, a CLI waiting for a result) binds one datagram socket in a shared folder, and
whoever commits a change sends one byte to each socket there. Datagrams never block the sender:
a full receive buffer already means "wake up", and a socket whose listener died is refused by the
kernel, so the ringer removes it. Only processes of the same user can use the folder (0700).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: sun_path holds 108 bytes with its NUL; longer paths go through /proc/self/fd (see `_address`).
_MAX_SOCKET_PATH = 100
#: A folder listing is reused only while the folder has not changed for this long (see `_names`).
_STABLE_NS = 200_000_000
_SUFFIX = ".sock"


def make_private_dir(path: Path) -> None:
    """Create `path` and its missing parents with mode 0700, whatever the umask."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)


class Doorbell:
    """The folder of sockets: `ring()` wakes every listener, `listen()` adds one."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        make_private_dir(self.directory)
        self._dirfd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._sender: socket.socket | None = None
        self._lock = threading.Lock()
        self._cache: tuple[int, list[str]] | None = None
        # Our own listeners are never rung: what this doorbell's store commits reaches them
        # through the store's in-process subscription, and a wake-up per submit would be waste.
        self._own: set[str] = set()

    def _address(self, name: str) -> str:
        """A path the kernel accepts for `name`, even when the folder's path is long."""
        full = os.path.join(self.directory, name)
        if len(os.fsencode(full)) < _MAX_SOCKET_PATH:
            return full
        return f"/proc/self/fd/{self._dirfd}/{name}"

    def _names(self) -> list[str]:
        """The socket names in the folder.

        Listing the folder on every ring would cost more than the commit it follows, so the
        listing is reused while the folder's mtime is unchanged. mtime ticks coarsely, so a
        listing is only cached once the folder has been still for a while: a later change then
        necessarily moves the mtime.
        """
        mtime = os.stat(self._dirfd).st_mtime_ns
        cache = self._cache
        if cache is not None and cache[0] == mtime:
            return cache[1]
        names = [n for n in os.listdir(self.directory) if n.endswith(_SUFFIX)]
        if time.time_ns() - mtime > _STABLE_NS:
            self._cache = (mtime, names)
        return names

    def _socket(self) -> socket.socket:
        with self._lock:
            if self._sender is None:
                self._sender = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
                )
            return self._sender

    def ring(self) -> int:
        """Wake every listener; returns how many were rung. Never blocks."""
        names = self._names()
        if not names:
            return 0
        sender = self._socket()
        rung = 0
        for name in names:
            if name in self._own:
                continue
            try:
                sender.sendto(b"!", self._address(name))
                rung += 1
            except BlockingIOError:
                rung += 1  # its buffer is full: it has a wake-up pending already
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(name)
            except OSError as exc:
                log.warning("cannot ring %s: %s", self.directory / name, exc)
        return rung

    def _forget(self, name: str) -> None:
        """Remove the socket of a listener that is gone (it died without closing)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._address(name))
        self._cache = None

    def listen(self) -> Listener:
        """A new listener with its own socket in the folder; close it when done."""
        name = f"{os.getpid()}-{secrets.token_hex(6)}{_SUFFIX}"
        sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        address = self._address(name)
        try:
            sock.bind(address)
            os.chmod(address, 0o600)
        except BaseException:
            sock.close()
            raise
        self._cache = None
        self._own.add(name)
        return Listener(self, name, sock)

    def close(self) -> None:
        """Release the sending socket and the folder handle (listeners stay valid until closed)."""
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
        if self._dirfd >= 0:
            os.close(self._dirfd)
            self._dirfd = -1


class Listener:
    """One waiting party. Use `wait(timeout)`, or `fileno()` with an event loop plus `drain()`."""

    def __init__(self, doorbell: Doorbell, name: str, sock: socket.socket) -> None:
        self._doorbell = doorbell
        self.name = name
        self.path = doorbell.directory / name
        self._sock: socket.socket | None = sock
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_loop(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call `callback()` on `loop` whenever rings came (they are drained first), until
        `close()`."""

        def readable() -> None:
            if self.drain():
                callback()

        loop.add_reader(self.fileno(), readable)
        self._loop = loop

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("listener is closed")
        return self._sock.fileno()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until rung (True) or `timeout` seconds pass (False); consumes pending rings."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not poller.poll(None if left is None else int(left * 1000)):
                return False
            rings = self.drain()
            if rings or left == 0:
                return bool(rings)

    def drain(self) -> int:
        """Consume every pending ring without blocking; returns how many there were."""
        rings = 0
        while self._sock is not None:
            try:
                self._sock.recv(64)
            except BlockingIOError:
                break
            rings += 1
        return rings

    def close(self) -> None:
        """Stop listening and remove the socket from the folder. Idempotent."""
        if self._sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._doorbell._cache = None
        self._doorbell._own.discard(self.name)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
