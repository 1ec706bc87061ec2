"""A job's child processes write to pipes of their own, so their output is labelled by pid.

A child inherits the worker's fds 1 and 2, one pipe for everybody; what it writes there cannot be
told from the job's own output. So, while a job runs, the worker hands each child it starts two
pipes of its own as fds 1 and 2, read by the same drain thread (`runner.Capture`) under the
child's label (`streams.label_for_child`: the `stream()` label in force, else `pid <pid>`):

- `subprocess.Popen` (so `run`, `call`, `check_output`, asyncio's subprocesses): a stdout or
  stderr left to be inherited gets a pipe; the label is known from the new pid.
- `os.fork` (multiprocessing's "fork" start method): at-fork hooks make the pipes before the
  fork; the child writes its label as the first line of each, since only it knows its pid.
- multiprocessing's "spawn" and "forkserver" start methods (POSIX): the pipes' write ends travel
  with the pickled `Process` as multiprocessing passes its own fds (`reduction.DupFd`); the
  child puts them in place, and writes its label, as it unpickles them, before any of its code.

What is not covered writes to the job's main stream, as before: `os.system`, `os.spawn*` and
`os.posix_spawn` children, multiprocessing on Windows, and a grandchild writes under its
parent's label. The pipes are the same kind of file as before (a pipe), so a child behaves as it
did. Only the worker process does this, and only while a job runs (`active`).
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing.process
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from . import oslayer, streams

#: (read fds by stream name ("stdout"/"stderr"), label or None: the child writes it first).
Register = Callable[[dict[int, str], "str | None"], None]


class ChildPipes:
    """Installs the three hooks above in this (the worker's) process."""

    def __init__(self, register: Register, active: Callable[[], bool]) -> None:
        self._register = register
        self._active = active
        self._pid = os.getpid()
        self._forking = threading.local()

    def wanted(self) -> bool:
        """In the worker itself (not a child forked from it) while a job runs."""
        return os.getpid() == self._pid and self._active()

    def install(self) -> None:
        self._wrap_popen()
        if oslayer.FORK_HOOKS:
            os.register_at_fork(
                before=self._before_fork,
                after_in_parent=self._after_fork_parent,
                after_in_child=self._after_fork_child,
            )
        if oslayer.PASS_FDS_TO_SPAWNED:
            self._wrap_process_start()

    # --- subprocess --------------------------------------------------------------------------

    def _wrap_popen(self) -> None:
        original = subprocess.Popen.__init__
        signature = inspect.signature(original)
        pipes = self

        @functools.wraps(original)
        def __init__(popen: subprocess.Popen, *args: Any, **kwargs: Any) -> None:
            if not pipes.wanted():
                return original(popen, *args, **kwargs)
            bound = signature.bind(popen, *args, **kwargs)
            given = bound.arguments
            free = [name for name in ("stdout", "stderr") if given.get(name) is None]
            if not free:
                return original(popen, *args, **kwargs)
            ends = {name: os.pipe() for name in free}
            for name, (_, write_end) in ends.items():
                given[name] = write_end
            try:
                original(*bound.args, **bound.kwargs)
            except BaseException:
                for read_end, _ in ends.values():
                    os.close(read_end)
                raise
            finally:
                for _, write_end in ends.values():
                    os.close(write_end)
            label = streams.label_for_child(popen.pid)
            pipes._register({read_end: name for name, (read_end, _) in ends.items()}, label)

        subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]

    # --- os.fork -----------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._forking.ends = (os.pipe(), os.pipe()) if self.wanted() else None

    def _after_fork_parent(self) -> None:
        ends = getattr(self._forking, "ends", None)
        self._forking.ends = None
        if ends is None:
            return
        (out_read, out_write), (err_read, err_write) = ends
        os.close(out_write)
        os.close(err_write)
        self._register({out_read: "stdout", err_read: "stderr"}, None)

    def _after_fork_child(self) -> None:
        ends = getattr(self._forking, "ends", None)
        self._forking.ends = None
        if ends is None:
            return
        (out_read, out_write), (err_read, err_write) = ends
        os.close(out_read)
        os.close(err_read)
        take_over(out_write, err_write, None)

    # --- multiprocessing, spawn and forkserver -------------------------------------------------

    def _wrap_process_start(self) -> None:
        original = multiprocessing.process.BaseProcess.start
        pipes = self

        @functools.wraps(original)
        def start(process: multiprocessing.process.BaseProcess) -> None:
            if not pipes.wanted() or _start_method(process) == "fork":
                return original(process)  # a fork: the at-fork hooks above see to it
            (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
            process._jupyter_jobs_ends = _Ends(out_write, err_write, streams.explicit_label())
            try:
                original(process)
            except BaseException:
                os.close(out_read)
                os.close(err_read)
                raise
            finally:
                del process._jupyter_jobs_ends
                os.close(out_write)
                os.close(err_write)
            pipes._register({out_read: "stdout", err_read: "stderr"}, None)

        multiprocessing.process.BaseProcess.start = start  # type: ignore[method-assign]


def _start_method(process: multiprocessing.process.BaseProcess) -> str:
    """How `process` will be started: its context's method, else the default one."""
    method = getattr(process, "_start_method", None)
    return method or multiprocessing.get_start_method()


class _Ends:
    """The write ends of a spawned child's pipes, pickled with its `Process` as fds it
    inherits (`reduction.DupFd`); unpickled in the child, they become its fds 1 and 2."""

    def __init__(self, out_fd: int, err_fd: int, label: str | None) -> None:
        self.out_fd, self.err_fd, self.label = out_fd, err_fd, label

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing.reduction import DupFd

        return (_attach, (DupFd(self.out_fd), DupFd(self.err_fd), self.label))


def _attach(out: Any, err: Any, label: str | None) -> None:
    """In a spawned child, as its `Process` is unpickled: take its pipes as fds 1 and 2."""
    take_over(out.detach(), err.detach(), label)


def take_over(out_fd: int, err_fd: int, label: str | None) -> None:
    """In a new child: make `out_fd`/`err_fd` its fds 1 and 2, and write its label first on
    each (the worker reads it as the pipes' label)."""
    first = f"{label or streams.label_for_child()}\n".encode()
    for fd, target in ((out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
        os.write(target, first)
