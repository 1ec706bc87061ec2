"""What both executors need to know about a job's process: how it ended, how to stop it.

The local executor runs workers on this machine and the Dask executor runs the same runner on a
Dask worker; both stop a job through its process group (see `oslayer`) and describe its end
the same way.
"""

from __future__ import annotations

import signal

from ..models import JobError, Outcome, Reason, Status
from ..oslayer import group_alive, signal_group

__all__ = [
    "describe_exit",
    "failed_outcome",
    "group_alive",
    "kill_outcome",
    "last_words",
    "not_started_outcome",
    "signal_group",
]


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


def failed_outcome(
    reason: Reason, type_: str, message: str, exit_text: str | None = None
) -> Outcome:
    """A failed outcome made by the executor itself (the job's code never said anything)."""
    return Outcome(Status.FAILED, reason, JobError(type_, message), exit=exit_text)


_KILL_ERRORS = {
    Reason.TIMEOUT: ("TimeoutError", "the job ran past its timeout and was stopped"),
    Reason.INTERRUPTED: ("Interrupted", "the job was stopped because its executor shut down"),
}


def kill_outcome(reason: Reason | None, exit_text: str | None) -> Outcome:
    """What a kill ends in: `cancelled` for a cancel (no reason), else failed with the reason."""
    if reason is None:
        return Outcome(Status.CANCELLED, exit=exit_text)
    type_, message = _KILL_ERRORS.get(reason, ("Killed", f"the job was stopped ({reason})"))
    return failed_outcome(reason, type_, message, exit_text)


def not_started_outcome() -> Outcome:
    """The outcome of a run the executor never started when it stopped: the claim goes back."""
    error = JobError("NotStarted", "the executor stopped before the job started")
    return Outcome(Status.QUEUED, Reason.INTERRUPTED, error)
