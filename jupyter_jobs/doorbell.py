"""Wake other processes at once when the queue changes: a folder of unix datagram sockets.

SQLite cannot notify anyone, and polling costs either latency or CPU. So every process that
waits (a consumer, a CLI waiting for a result) binds one datagram socket in a shared folder, and
whoever commits a change sends one byte to each socket there. Datagrams never block the sender:
a full receive buffer already means "wake up", and a socket whose listener died is refused by the
kernel, so the ringer removes it. Only processes of the same user can use the folder (0700).

A socket's path must fit in about 100 bytes. When the folder beside the database is deeper, the
sockets live in a short private folder under the temp folder instead, named by a hash of the real
path of the database's folder, so every process of the user using that database finds it. Where
unix datagram sockets do not exist (Windows), or that short folder is not ours, listeners poll:
they wake every `POLL_INTERVAL` seconds and the waiting party looks at the store again.
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

from .oslayer import (
    make_private_dir,
    short_private_dir,
    unix_datagram_socket,
    unix_datagrams_available,
)

log = logging.getLogger(__name__)

#: macOS's sun_path holds 104 bytes with its NUL (Linux 108); deeper sockets move (see above).
_MAX_SOCKET_PATH = 100
#: Longest listener name: `{pid}-{12 hex}.sock` with a 7-digit pid (Linux's largest).
_MAX_NAME = 25
#: A folder listing is reused only while the folder has not changed for this long (see `_names`).
_STABLE_NS = 200_000_000
_SUFFIX = ".sock"
#: Seconds between wake-ups of a listener where no socket can wake it.
POLL_INTERVAL = 0.5


def _socket_dir(directory: Path) -> Path | None:
    """Where the sockets for `directory` live; None when listeners must poll instead."""
    if not unix_datagrams_available():
        return None
    real = os.path.realpath(directory)
    if len(os.fsencode(real)) + 1 + _MAX_NAME < _MAX_SOCKET_PATH:
        return Path(real)
    try:
        return short_private_dir(real)
    except PermissionError as exc:
        log.warning("doorbell falls back to polling every %ss: %s", POLL_INTERVAL, exc)
        return None


class Doorbell:
    """The folder of sockets: `ring()` wakes every listener, `listen()` adds one."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        make_private_dir(self.directory)
        #: The folder holding the sockets; None when listeners poll (see the module's doc).
        self.socket_dir = _socket_dir(self.directory)
        self._sender: socket.socket | None = None
        self._lock = threading.Lock()
        self._cache: tuple[int, list[str]] | None = None
        # Our own listeners are never rung: what this doorbell's store commits reaches them
        # through the store's in-process subscription, and a wake-up per submit would be waste.
        self._own: set[str] = set()

    def _names(self, socket_dir: Path) -> list[str]:
        """The socket names in the folder.

        Listing the folder on every ring would cost more than the commit it follows, so the
        listing is reused while the folder's mtime is unchanged. mtime ticks coarsely, so a
        listing is only cached once the folder has been still for a while: a later change then
        necessarily moves the mtime.
        """
        mtime = os.stat(socket_dir).st_mtime_ns
        cache = self._cache
        if cache is not None and cache[0] == mtime:
            return cache[1]
        names = [n for n in os.listdir(socket_dir) if n.endswith(_SUFFIX)]
        if time.time_ns() - mtime > _STABLE_NS:
            self._cache = (mtime, names)
        return names

    def _socket(self) -> socket.socket:
        with self._lock:
            if self._sender is None:
                self._sender = unix_datagram_socket()
            return self._sender

    def ring(self) -> int:
        """Wake every listener; returns how many were rung. Never blocks."""
        if self.socket_dir is None:
            return 0  # the listeners poll
        names = self._names(self.socket_dir)
        if not names:
            return 0
        sender = self._socket()
        rung = 0
        for name in names:
            if name in self._own:
                continue
            try:
                sender.sendto(b"!", os.fspath(self.socket_dir / name))
                rung += 1
            except BlockingIOError:
                rung += 1  # its buffer is full: it has a wake-up pending already
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(self.socket_dir / name)
            except OSError as exc:
                log.warning("cannot ring %s: %s", self.socket_dir / name, exc)
        return rung

    def _forget(self, path: Path) -> None:
        """Remove the socket of a listener that is gone (it died without closing)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._cache = None

    def listen(self) -> Listener:
        """A new listener with its own socket in the folder; close it when done."""
        name = f"{os.getpid()}-{secrets.token_hex(6)}{_SUFFIX}"
        if self.socket_dir is None:
            return Listener(self, name, None)
        sock = unix_datagram_socket()
        path = self.socket_dir / name
        try:
            sock.bind(os.fspath(path))
            os.chmod(path, 0o600)
        except BaseException:
            sock.close()
            raise
        self._cache = None
        self._own.add(name)
        return Listener(self, name, sock)

    def close(self) -> None:
        """Release the sending socket (listeners stay valid until closed)."""
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None


class Listener:
    """One waiting party. Use `wait(timeout)`, or `on_loop` with an event loop.

    Without a socket (`polling`), it wakes every `POLL_INTERVAL` seconds instead of when rung.
    """

    def __init__(self, doorbell: Doorbell, name: str, sock: socket.socket | None) -> None:
        self._doorbell = doorbell
        self.name = name
        self.polling = sock is None
        #: The socket's path (None when polling).
        self.path = None if doorbell.socket_dir is None else doorbell.socket_dir / name
        self._sock = sock
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.TimerHandle | None = None

    def on_loop(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call `callback()` on `loop` whenever rings came (they are drained first), until
        `close()`. When polling, every `POLL_INTERVAL` seconds instead."""
        self._loop = loop
        if self.polling:

            def tick() -> None:
                self._tick = loop.call_later(POLL_INTERVAL, tick)
                callback()

            self._tick = loop.call_later(POLL_INTERVAL, tick)
            return

        def readable() -> None:
            if self.drain():
                callback()

        loop.add_reader(self.fileno(), readable)

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("listener is closed")
        return self._sock.fileno()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until rung (True) or `timeout` seconds pass (False); consumes pending rings.

        When polling, True after a poll interval (the caller looks again), False for no wait."""
        if self.polling:
            delay = POLL_INTERVAL if timeout is None else min(max(timeout, 0.0), POLL_INTERVAL)
            time.sleep(delay)
            return delay > 0
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

    def wake(self) -> None:
        """Ring this listener alone, from its own process: for a commit the waiting thread
        learns of through the store's subscription (the doorbell never rings its own
        listeners). Never blocks; a polling listener wakes at its next poll anyway."""
        if self.path is None or self._sock is None:
            return
        try:
            self._doorbell._socket().sendto(b"!", os.fspath(self.path))
        except BlockingIOError:
            pass  # its buffer is full: a wake-up is pending already
        except OSError as exc:  # closed meanwhile: nobody waits on it any more
            log.debug("cannot wake %s: %s", self.path, exc)

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
        if self._closed:
            return
        self._closed = True
        if self._tick is not None:
            self._tick.cancel()
        if self._sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._doorbell._cache = None
        self._doorbell._own.discard(self.name)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
