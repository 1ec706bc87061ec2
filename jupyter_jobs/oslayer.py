"""Everything that differs between Linux, macOS and Windows, in one place.

The rest of the package asks this module who runs it (the user's name), about processes (are
they alive, is a pid still the same process, stop a job's whole group), private folders,
filesystem types and whether unix datagram sockets exist, and how a child gets its socket to its
parent; it never reads /proc or uses a platform-only flag itself. Process facts come from psutil,
which answers on all three. When a question cannot be answered here (no permission, an unknown
platform), the answer is the one that loses nothing: a process we cannot check counts as alive,
and the leases in the store decide."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import hmac
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

#: Two readings of one process's start time differ by less than this (Linux counts in ticks of
#: 10 ms); a recycled pid starting this close to its predecessor is not worth guarding against.
_START_TOLERANCE = 0.05


def user_name() -> str:
    """The name of the user running this process (the engine's and the CLI's "me").

    `getpass.getuser()` reads the login variables, then the password database (POSIX); a
    process with neither (a container's uid without an entry) gets psutil's answer, else "".
    """
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # KeyError before Python 3.13, OSError since
        pass
    try:
        return psutil.Process().username()
    except (psutil.Error, KeyError):
        return ""


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


def is_private_dir(path: Path) -> bool:
    """Whether `path` is a folder only we can use (ours, no access for group or others).

    Windows has no such modes; there a folder under the user's own temp folder is private."""
    st = os.lstat(path)  # a symlink is refused: it could point anywhere
    if sys.platform == "win32":
        return stat.S_ISDIR(st.st_mode)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0


def short_private_dir(key: str) -> Path:
    """A private folder with a short path, the same for every process of this user with `key`.

    Unix socket paths are limited to about 100 bytes (104 on macOS, 108 on Linux); sockets whose
    natural folder is deeper live here instead. Raises `PermissionError` when someone else owns it.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"jupyter-jobs-{digest}"
    make_private_dir(path)
    if not is_private_dir(path):
        raise PermissionError(f"{path} is not a folder private to this user")
    return path


def unix_datagrams_available() -> bool:
    """Whether this platform has unix datagram sockets (Windows has only unix stream sockets)."""
    return sys.platform != "win32" and hasattr(socket, "AF_UNIX")


def unix_datagram_socket() -> socket.socket:
    """A non-blocking unix datagram socket, not inherited by children (Python's default)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def process_start_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch), to tell a recycled pid apart; None if that
    cannot be read (gone, or not ours to inspect)."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def boot_time() -> float | None:
    """When this machine started (seconds since the epoch), None if it cannot be read: a
    process recorded under another boot is gone, whatever its pid is now."""
    try:
        return psutil.boot_time()
    except (psutil.Error, OSError):
        return None


def process_alive(pid: int, started: float | None = None) -> bool:
    """False only when `pid` provably is not the process that started at `started`: no such
    process, a zombie, or another process that got the pid later. Cannot tell means alive."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        current = process.create_time()
    except psutil.NoSuchProcess:
        # psutil on Linux also says so when /proc cannot be read: ask the kernel itself.
        return _pid_exists(pid)
    except (psutil.Error, OSError):
        return True
    return started is None or abs(current - started) < _START_TOLERANCE


def _pid_exists(pid: int) -> bool:
    """Whether some process has `pid`, without /proc (signal 0 is Ctrl-C on Windows)."""
    if sys.platform == "win32":
        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


#: Seconds between two looks at the parent in `watch_parent`.
_PARENT_CHECK_INTERVAL = 0.2


def still_parent(parent: int) -> Callable[[], bool]:
    """A test of whether `parent` still lives and is still this process's parent, cheap enough
    to ask before every job. POSIX re-parents a child as its parent dies (before the parent is
    even a zombie), so there it is one system call, and once it says False it always will;
    Windows keeps a dead parent's pid, so there the parent itself is looked at, by its start
    time (a pid reused since does not pass)."""
    if os.name == "posix":
        return lambda: os.getppid() == parent
    started = process_start_time(parent)
    return lambda: os.getppid() == parent and process_alive(parent, started)


def watch_parent(parent: int, before_exit: Callable[[], None] | None = None) -> threading.Thread:
    """Exit this process soon after `parent` ends (a worker must not outlive a server killed
    with SIGKILL), calling `before_exit` first (a runner ends its job's processes there)."""
    alive = still_parent(parent)

    def watch() -> None:
        while alive():
            time.sleep(_PARENT_CHECK_INTERVAL)
        if before_exit is not None:
            with contextlib.suppress(Exception):
                before_exit()
        os._exit(1)

    thread = threading.Thread(target=watch, name="jupyter-jobs-parent-watch", daemon=True)
    thread.start()
    return thread


#: Whether the platform has process groups (`os.killpg`, POSIX). Without them (Windows) a job's
#: tree is reached only through its tracked descendants. Tests set it to False to run that path
#: on Linux.
PROCESS_GROUPS: bool = hasattr(os, "killpg")


def new_group_options() -> dict[str, Any]:
    """`subprocess.Popen` options that start the child as the leader of its own process group,
    so that `terminate_group` reaches everything it starts (its pid is the group's id)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


#: Every process seen in a leader's tree, by the leader's pid (the leader included, so that a
#: later pid with its number is never taken for it). The group is not enough: a descendant that
#: called setsid() has left it, and one whose parent died is no longer the leader's descendant
#: (unless the leader is a subreaper, `become_subreaper`); both must still be found. A
#: `psutil.Process` knows its create time: a recycled pid is never signalled (`is_running`).
_seen: dict[int, dict[int, psutil.Process]] = {}


_seen_lock = threading.Lock()  # the executor tracks from a thread, and stops from its loop


def track_tree(leader_pid: int) -> list[psutil.Process]:
    """Look at the leader's descendants now and remember them; returns every remembered
    process that still runs (zombies included). Call it repeatedly while the job runs, so that
    a descendant is known before its parent dies or the leader is killed."""
    with _seen_lock:
        leader = _seen.get(leader_pid, {}).get(leader_pid)
    found = []
    with contextlib.suppress(psutil.Error, OSError):
        leader = leader or psutil.Process(leader_pid)
        found.append(leader)
        if leader.is_running():  # not a later process that got the reaped leader's pid
            found.extend(leader.children(recursive=True))
    with _seen_lock:
        seen = _seen.setdefault(leader_pid, {})
        for process in found:
            seen.setdefault(process.pid, process)
        members = [p for p in seen.values() if p.is_running()]
        kept = {p.pid: p for p in members}
        if leader_pid in seen:  # the leader's identity, kept while its pid is ours to ask
            kept.setdefault(leader_pid, seen[leader_pid])
        _seen[leader_pid] = kept
    return members


def forget_tree(leader_pid: int) -> None:
    """Drop what `track_tree` remembered of a leader once its tree is ended and its pid reaped."""
    with _seen_lock:
        _seen.pop(leader_pid, None)


def _signal_tree(leader_pid: int, force: bool) -> None:
    """Signal the tracked tree; on POSIX only those that left the group (killpg reaches the rest,
    once: a job's SIGTERM handler hears it once)."""
    for process in track_tree(leader_pid):
        with contextlib.suppress(psutil.Error, OSError):
            if PROCESS_GROUPS and os.getpgid(process.pid) == leader_pid and not force:
                continue
            if force:
                process.kill()
            else:
                process.terminate()


def terminate_group(pgid: int) -> None:
    """Ask a job's whole process tree (its group and every descendant seen, those that started
    a session of their own included) to end: SIGTERM, or on Windows `TerminateProcess` for every
    process of the tree (it has no gentler way that every process hears). Gone already is fine."""
    track_tree(pgid)  # first: a leader that dies of the signal orphans what it started
    if PROCESS_GROUPS:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    _signal_tree(pgid, force=False)


def kill_group(pgid: int) -> None:
    """End a job's whole process tree at once (SIGKILL); gone already is fine."""
    if PROCESS_GROUPS:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    _signal_tree(pgid, force=True)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group or of the tracked tree still runs. Zombies do not count:
    their reaper (init, or a container's PID 1) may take its time, and they hold no resources
    worth waiting for."""
    members: list[psutil.Process] | None = track_tree(pgid)
    if PROCESS_GROUPS:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            return True
        else:
            group = _group_members(pgid)
            members = None if group is None else [*group, *members]
    if members is None:
        return True  # the process table cannot be read (no /proc): the grace period decides
    for process in members:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            continue  # it exited while we looked
        except (psutil.Error, OSError):
            return True
    return False


def _group_members(pgid: int) -> list[psutil.Process] | None:
    """The processes of group `pgid`, None when the process table cannot be read."""
    try:
        pids = psutil.pids()
    except (psutil.Error, OSError):
        return None
    members = []
    for pid in pids:
        with contextlib.suppress(OSError, psutil.Error):  # it exited while we looked
            if os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
    return members


#: Linux's prctl option that makes a process the reaper of its orphaned descendants.
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux): a job's grandchild whose parent
    died, or that daemonized with a double fork, stays in our tree instead of going to init, so
    `track_tree` from outside and `end_descendants` from inside still find it. False where the
    platform has no such thing (there repeated `track_tree` snapshots have to do)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_orphans() -> None:
    """Collect the exit status of children that ended (orphans a subreaper adopted are nobody
    else's to wait for), so none stays a zombie. Between jobs only: during one it would steal
    the job's own `subprocess` children's status."""
    if not hasattr(os, "waitpid") or os.name != "posix":
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_descendants() -> None:
    """SIGKILL every descendant of this process (a runner ending its job's tree before it dies)."""
    with contextlib.suppress(psutil.Error, OSError):
        for process in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error, OSError):
                process.kill()


#: How a worker gets its end of the executor's socket: inherited (`pass_fds`, POSIX), or, where
#: a child cannot inherit a socket (Windows), by connecting back to a loopback listener and
#: proving itself with a random token. Tests set it to False to run the second path on Linux.
INHERIT_SOCKETS: bool = os.name == "posix"
#: Bytes of the token a connecting-back child sends first (hex of 16 random bytes).
_TOKEN_LEN = 32


class ParentEnd:
    """The parent's side of a child's channel, from before the child starts until it is there.

    Use: `child_arg` goes on the child's command line (it passes it to `child_socket`),
    `popen_options` into `subprocess.Popen`, then `spawned(proc)`, then `accept` (blocking) or
    `await accept_async()` for the connected socket, and `close()` in every case.
    """

    child_arg: str
    popen_options: dict[str, Any]

    def spawned(self, proc: subprocess.Popen) -> None:
        """The child runs: let go of what only it needed."""

    def accept(self, timeout: float, alive: Callable[[], bool]) -> socket.socket | None:
        """The connected socket, or None when the child died (`alive` said so) or `timeout`
        seconds passed first."""
        raise NotImplementedError

    async def accept_async(self) -> socket.socket:
        """The connected socket, once the child is there (the caller bounds the wait)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what is left (idempotent)."""


class _InheritedEnd(ParentEnd):
    """A socket pair: the child inherits its end by file descriptor number."""

    def __init__(self) -> None:
        self._parent, self._child = socket.socketpair()
        fd = self._child.fileno()
        self.child_arg = f"fd:{fd}"
        self.popen_options = {"pass_fds": (fd,), "stdin": subprocess.DEVNULL}

    def spawned(self, proc: subprocess.Popen) -> None:
        self._child.close()

    def accept(self, timeout: float, alive: Callable[[], bool]) -> socket.socket | None:
        return self._take()

    async def accept_async(self) -> socket.socket:
        return self._take()

    def _take(self) -> socket.socket:
        sock, self._parent = self._parent, None
        if sock is None:
            raise RuntimeError("the channel was taken already")
        return sock

    def close(self) -> None:
        self._child.close()
        if self._parent is not None:
            self._parent.close()


class _ConnectBackEnd(ParentEnd):
    """A listener on 127.0.0.1: the child connects and sends the token it read on its stdin
    (not on its command line, which every user of the machine can read)."""

    def __init__(self) -> None:
        self._token = secrets.token_hex(_TOKEN_LEN // 2).encode()
        self._listener = socket.create_server(("127.0.0.1", 0))
        host, port = self._listener.getsockname()[:2]
        self.child_arg = f"tcp:{host}:{port}"
        self.popen_options = {"stdin": subprocess.PIPE}

    def spawned(self, proc: subprocess.Popen) -> None:
        try:
            proc.stdin.write(self._token + b"\n")
            proc.stdin.close()
        except OSError:
            pass  # it died already: its exit says why

    def accept(self, timeout: float, alive: Callable[[], bool]) -> socket.socket | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and alive():
            self._listener.settimeout(min(left, 0.1))
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                token = _recv_exactly(conn, _TOKEN_LEN)
            except OSError:
                token = b""
            if hmac.compare_digest(token, self._token):
                conn.settimeout(None)
                return conn
            conn.close()  # not our child: someone else found the port
        return None

    async def accept_async(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        self._listener.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            conn.setblocking(False)
            token = b""
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                token = await asyncio.wait_for(_recv_exactly_async(loop, conn, _TOKEN_LEN), 10)
            if hmac.compare_digest(token, self._token):
                return conn
            conn.close()

    def close(self) -> None:
        self._listener.close()


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := conn.recv(size - len(data))):
        data += chunk
    return data


async def _recv_exactly_async(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, size: int
) -> bytes:
    data = b""
    while len(data) < size and (chunk := await loop.sock_recv(conn, size - len(data))):
        data += chunk
    return data


def parent_end() -> ParentEnd:
    """The parent's side of a new child's channel, the kind this platform allows."""
    return _InheritedEnd() if INHERIT_SOCKETS else _ConnectBackEnd()


def child_socket(arg: str) -> socket.socket:
    """The child's end of its channel to the parent, from the `child_arg` it was given."""
    kind, _, where = arg.partition(":")
    if kind == "fd":
        fd = int(where)
        os.set_inheritable(fd, False)  # the job's children must not keep the parent's socket
        return socket.socket(fileno=fd)
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        token = sys.stdin.buffer.readline().strip()
        sock = socket.create_connection((host, int(port)))
        sock.sendall(token)
        return sock
    raise ValueError(f"unknown channel {arg!r}")


#: Python-level hooks around `os.fork` (`os.register_at_fork`): POSIX.
FORK_HOOKS: bool = hasattr(os, "register_at_fork")
#: Whether multiprocessing hands a spawned child fds along with its pickled `Process`
#: (`multiprocessing.reduction.DupFd`: POSIX; Windows passes handles, which `children.py` does
#: not use, so there a spawned child writes to its parent's output).
PASS_FDS_TO_SPAWNED: bool = os.name == "posix"


def can_select_pipes() -> bool:
    """Whether `selectors` can wait on a pipe (not on Windows, where it takes sockets only)."""
    return os.name == "posix"


def _read_mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount ([] where the platform cannot say)."""
    try:
        partitions = psutil.disk_partitions(all=True)
    except (psutil.Error, OSError):
        return []
    return [(p.mountpoint, p.fstype) for p in partitions if p.fstype]


def filesystem_type(path: str | Path) -> str | None:
    """The type of the filesystem holding `path` (longest mount point prefix), if known."""
    real = os.path.normcase(os.path.realpath(path))
    best: tuple[str, str] | None = None
    for point, fstype in _read_mounts():
        point = os.path.normcase(point)
        prefix = point.rstrip("/\\") + os.sep
        if (real == point or real.startswith(prefix)) and (
            best is None or len(point) >= len(best[0])
        ):
            best = (point, fstype)
    return best[1] if best else None
