"""Everything that differs between Linux, macOS and Windows, in one place.

The rest of the package asks this module about processes (are they alive, is a pid still the same
process, stop a job's whole group), private folders, filesystem types and whether unix datagram
sockets exist, and never reads /proc or uses a platform-only flag itself. Process facts come from
psutil, which answers on all three. When a question cannot be answered here (no permission, an
unknown platform), the answer is the one that loses nothing: a process we cannot check counts as
alive, and the leases in the store decide.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

#: Two readings of one process's start time differ by less than this (Linux counts in ticks of
#: 10 ms); a recycled pid starting this close to its predecessor is not worth guarding against.
_START_TOLERANCE = 0.05


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
_PARENT_CHECK_INTERVAL = 1.0


def watch_parent(parent: int) -> threading.Thread:
    """Exit this process soon after `parent` ends (where the kernel cannot do it, as Linux's
    PR_SET_PDEATHSIG does): a worker must not outlive a server killed with SIGKILL."""
    started = process_start_time(parent)

    def watch() -> None:
        while os.getppid() == parent and process_alive(parent, started):
            time.sleep(_PARENT_CHECK_INTERVAL)
        os._exit(1)

    thread = threading.Thread(target=watch, name="jupyter-jobs-parent-watch", daemon=True)
    thread.start()
    return thread


def new_group_options() -> dict[str, Any]:
    """`subprocess.Popen` options that start the child as the leader of its own process group,
    so that `signal_group` reaches everything it starts (its pid is the group's id)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _group(pgid: int) -> list[psutil.Process]:
    """The processes of group `pgid`; on Windows (no groups) the leader and its descendants."""
    if hasattr(os, "getpgid"):
        members = []
        for pid in psutil.pids():
            with contextlib.suppress(OSError, psutil.Error):  # it exited while we looked
                if os.getpgid(pid) == pgid:
                    members.append(psutil.Process(pid))
        return members
    try:
        leader = psutil.Process(pgid)
        return [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return []


def signal_group(pgid: int, sig: int) -> None:
    """Signal a job's whole process group (grandchildren included); gone already is fine.

    On Windows, where any signal but a console event ends a process at once (SIGTERM included),
    every process of the tree is terminated instead."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        return
    for process in _group(pgid):
        with contextlib.suppress(psutil.Error):
            process.terminate()


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: their reaper (init,
    or a container's PID 1) may take its time, and they hold no resources worth waiting for."""
    if hasattr(os, "killpg"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    try:
        members = _group(pgid)
    except OSError:
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
