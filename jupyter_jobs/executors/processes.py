"""A job's runner process, once for both executors: start it, stop it, say how it ended.

The local executor keeps runners warm on this machine; the Dask executor starts one per attempt
on a Dask worker. Both start it here (`spawn_runner`: its own process group, its channel handed
over the way the platform allows, see `oslayer.parent_end`), look at its tree every
`TRACK_INTERVAL` while it runs a job, stop it here (`stop_group`, `stop_group_async`: SIGTERM
to the whole group and every descendant seen, the grace, then SIGKILL), and turn its "done"
frame or its death into an `Outcome` here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .. import oslayer
from ..models import JobError, Outcome, Reason, Status

#: Seconds between two looks at a stopping group (after SIGTERM, before SIGKILL).
_GROUP_POLL = 0.02
#: Seconds between two looks at a busy runner's process tree (`oslayer.track_tree`), so that
#: what its job starts is known before the runner's death can orphan it out of sight.
TRACK_INTERVAL = 0.5


def spawn_runner(
    interpreter: str = sys.executable,
    *,
    stderr: int | IO[Any] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    start_log: Path | None = None,
) -> tuple[subprocess.Popen, oslayer.ParentEnd]:
    """Start `python -m jupyter_jobs.runner` as the leader of a new process group, writing
    down the attempts it begins at the end of the file `start_log` (`start_log.py`) if given.

    Returns the process and the parent's end of its channel: `accept` it (or `accept_async`)
    for the socket the frames travel on, and `close` it in any case.
    """
    end = oslayer.parent_end()
    args = [interpreter, "-m", "jupyter_jobs.runner", end.child_arg, str(os.getpid())]
    if start_log is not None:
        args.append(str(start_log))
    try:
        proc = subprocess.Popen(
            args,
            **end.popen_options,
            **oslayer.new_group_options(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=cwd,
        )
    except OSError:
        end.close()
        raise
    end.spawned(proc)
    return proc, end


def _stop_steps(pid: int, grace: float) -> Iterator[float]:
    """The rule of a stop, driven by `stop_group` or `stop_group_async`: SIGTERM to the group led
    by `pid`, pauses (the yielded seconds) while any of it lives, up to `grace`, then SIGKILL.
    The leader may be gone while children that ignore SIGTERM live on, hence the whole group."""
    deadline = time.monotonic() + grace
    oslayer.terminate_group(pid)
    while time.monotonic() < deadline and oslayer.group_alive(pid):
        yield _GROUP_POLL
    oslayer.kill_group(pid)


def stop_group(pid: int, grace: float) -> None:
    """Stop a runner's whole group, blocking (on a Dask worker's thread)."""
    for pause in _stop_steps(pid, grace):
        time.sleep(pause)


async def stop_group_async(pid: int, grace: float) -> None:
    """Stop a runner's whole group without blocking the event loop (the local executor)."""
    for pause in _stop_steps(pid, grace):
        await asyncio.sleep(pause)


def wait_leader(proc: subprocess.Popen) -> None:
    """Wait for the group's leader to exit. Where the platform allows (POSIX `waitid` with
    WNOWAIT) it stays a zombie, unreaped, so that its pid (the group's id) cannot be reused
    before the caller has ended what the job left in its group; `proc.wait()` reaps it then."""
    if hasattr(os, "waitid"):
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    else:
        proc.wait()


def describe_exit(returncode: int) -> str:
    """'killed by signal 9 (SIGKILL)' or 'exit code 3': how a worker process ended."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


def last_words(output: str) -> str:
    """The most telling line a dying worker wrote: a fatal error, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal Python error")]
    return (fatal or lines or [""])[-1]


def done_outcome(fields: dict[str, Any], exit_text: str | None = None) -> Outcome:
    """The Outcome of a run whose runner said "done" (`protocol.done_fields`, plain data)."""
    error = fields.get("error")
    return Outcome(
        status=Status(fields["status"]),
        reason=Reason(fields["reason"]) if fields.get("reason") else None,
        error=JobError(error["type"], error["message"], error.get("traceback", ""))
        if error
        else None,
        result=fields.get("result"),
        outputs=fields.get("outputs"),
        exit=exit_text,
        summary=fields.get("summary"),
    )


def failed_outcome(
    reason: Reason, type_: str, message: str, exit_text: str | None = None
) -> Outcome:
    """A failed outcome made by the executor itself (the job's code never said anything)."""
    return Outcome(Status.FAILED, reason, JobError(type_, message), exit=exit_text)


_KILL_ERRORS = {
    Reason.TIMEOUT: ("TimeoutError", "the job ran past its timeout and was stopped"),
    Reason.INTERRUPTED: ("Interrupted", "the job was stopped because its executor shut down"),
}


def kill_outcome(
    reason: Reason | None, exit_text: str | None, checkpoint: bytes | None = None
) -> Outcome:
    """What a kill ends in: `cancelled` for a cancel (no reason), else failed with the reason;
    the run's last checkpoint (protocol.py), if it sent one, is its result."""
    if reason is None:
        return Outcome(Status.CANCELLED, exit=exit_text, result=checkpoint)
    type_, message = _KILL_ERRORS.get(reason, ("Killed", f"the job was stopped ({reason})"))
    outcome = failed_outcome(reason, type_, message, exit_text)
    outcome.result = checkpoint
    return outcome


def not_started_outcome() -> Outcome:
    """The outcome of a run the executor never started when it stopped: the claim goes back."""
    error = JobError("NotStarted", "the executor stopped before the job started")
    return Outcome(Status.QUEUED, Reason.INTERRUPTED, error)
