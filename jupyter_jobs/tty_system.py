"""`!cmd` in a cell job as in a kernel: on a terminal of its own, 80 columns wide.

In a kernel, IPython runs `!ls` through pexpect on a pseudo-terminal, so `ls` prints columns and
tools that check for a terminal (colours, progress bars) behave as on one. pexpect also starts
the command in a session of its own, beyond the reach of the cancel that ends a job's process
group; so the worker opens the pseudo-terminal itself and keeps the command in its group. Where
there are no pseudo-terminals (Windows), IPython's kernels use pipes, and so does the worker.
"""

from __future__ import annotations

import codecs
import os
import select
import subprocess
import sys
from typing import Any

AVAILABLE = hasattr(os, "openpty")
_SIZE = (24, 80)  # rows, columns: pexpect's, which the kernel's `!cmd` gets


def system(shell: Any, cmd: str) -> None:
    """Run `!cmd` for `shell` (as `InteractiveShell.system_piped` does in a kernel): output as
    the command's terminal shows it, its exit status in `_exit_code`."""
    if cmd.rstrip().endswith("&"):
        raise OSError("Background processes not supported.")  # the kernel's own words
    shell.user_ns["_exit_code"] = _run(shell.var_expand(cmd, depth=1))


def _run(cmd: str) -> int:
    import fcntl
    import struct
    import termios

    leader, follower = os.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *_SIZE, 0, 0))
        attrs = termios.tcgetattr(follower)
        attrs[1] &= ~termios.ONLCR  # "\n" as the command wrote it, not the terminal's "\r\n"
        termios.tcsetattr(follower, termios.TCSANOW, attrs)
        shell = os.environ.get("SHELL") or "/bin/sh"
        proc = subprocess.Popen(
            cmd, shell=True, executable=shell, stdin=follower, stdout=follower, stderr=follower
        )
    except BaseException:
        os.close(leader)
        raise
    finally:
        os.close(follower)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            # Until the command exited and its terminal has nothing more to read (a command
            # that left a child holding the terminal does not hold the cell).
            ready = select.select([leader], [], [], 0.05)[0]
            chunk = _read(leader) if ready else b""
            if chunk:
                sys.stdout.write(decoder.decode(chunk))
                sys.stdout.flush()
            elif ready or proc.poll() is not None:
                break
    finally:
        os.close(leader)
    sys.stdout.write(decoder.decode(b"", final=True))
    return proc.wait()  # negative: the signal that ended it, as IPython's


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: every writer closed the terminal (Linux); macOS reads b"" instead
        return b""
