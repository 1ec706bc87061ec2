"""Every error jupyter_jobs raises on purpose, each with the HTTP status it maps to.

Handlers turn these into JSON responses in jupyter_server's error shape, `{"message", "reason"}`
plus `type` and `detail` (`JobsError.to_json`), in one place (by `http_status`); the CLI into a
message and a non-zero exit; the kernel client back into the same types, so a caller catches
one type whatever path the job took.
"""

from __future__ import annotations

import concurrent.futures
from http.client import responses
from typing import Any

from .models import Status


class JobsError(Exception):
    """Base of every jupyter_jobs error."""

    http_status = 500

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        """The error body of the REST API (and of `jupyter jobs --json`).

        jupyter_server's shape (`message`, and `reason`: the HTTP reason phrase), so that
        JupyterLab's `ServerConnection.ResponseError` reads it as it reads the server's own
        errors; plus `type` (the class, which the kernel client raises again) and `detail`.
        """
        return error_body(self.message, self.http_status, type(self).__name__, self.detail)


def error_body(message: str, status: int, type_: str, detail: Any = None) -> dict[str, Any]:
    """An error response's JSON, for errors that are not `JobsError`s too (tornado's, bugs)."""
    reason = responses.get(status, "Unknown Error")
    return {"message": message, "reason": reason, "type": type_, "detail": detail}


class InvalidRequest(JobsError):
    """Bad input: a malformed body, an unknown option, a value out of range."""

    http_status = 400


class PayloadError(InvalidRequest):
    """The job's code or variables cannot be serialized; the message names the culprit."""


class JobNotFound(JobsError):
    """No job with that id (it never existed, or it was deleted)."""

    http_status = 404

    def __init__(self, job_id: int | str) -> None:
        super().__init__(f"no job with id {job_id}", {"id": job_id})
        self.job_id = job_id


class ScheduleNotFound(JobsError):
    """No schedule with that id (it never existed, or it was deleted)."""

    http_status = 404

    def __init__(self, schedule_id: int | str) -> None:
        super().__init__(f"no schedule with id {schedule_id}", {"id": schedule_id})
        self.schedule_id = schedule_id


class JobTypeNotFound(JobsError):
    """No job type of that name: none is installed (entry points) or registered from a kernel."""

    http_status = 404

    @classmethod
    def named(cls, name: str, known: list[str] | None = None) -> JobTypeNotFound:
        """The refusal of `name`; `known` lists the types there are, to name them."""
        text = f"no job type named {name!r}"
        if known is not None:
            text += f" (job types: {', '.join(known) or 'none'})"
        return cls(text, {"type": name})


class FunctionNotFound(JobsError):
    """A submit names a function (by sha256) the store does not have: never sent, or freed
    since (`store/shared.py`); the client sends its bytes again."""

    http_status = 404

    @classmethod
    def named(cls, sha256s: list[str]) -> FunctionNotFound:
        """The refusal of the functions `sha256s`, every one named."""
        names = ", ".join(sha256s)
        return cls(f"no stored function with sha256 {names}: send its bytes", {"sha256": sha256s})


class JobTypeConflict(JobsError):
    """The job type cannot be changed that way: an installed type's name is not a kernel's to
    take, nor to delete (uninstall its package)."""

    http_status = 409


class WorkerNotFound(JobsError):
    """No worker with that id (it exited, or belongs to no consumer of this database)."""

    http_status = 404

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"no worker with id {worker_id[:200]!r}", {"id": worker_id[:200]})
        self.worker_id = worker_id


class WorkerNotDrainable(JobsError):
    """The worker cannot be drained: its executor does not drain workers (Dask's), or it is
    exiting already."""

    http_status = 409


class NotebookNotFound(JobsError):
    """No notebook there: a notebook submit's path names none, or a notebook job has not
    produced its executed notebook (yet)."""

    http_status = 404


class StreamNotFound(JobsError):
    """A job's log has no stream of that name (yet): `detail` lists the streams it has."""

    http_status = 404


class IllegalTransition(JobsError):
    """The move is not in the transition table (models.TRANSITIONS), e.g. cancel a finished job."""

    http_status = 409

    @classmethod
    def move(cls, job_id: int, current: Status, target: Status) -> IllegalTransition:
        """The refusal of `current -> target`, worded for people: "job 1 has already
        succeeded; it cannot be cancelled"."""
        return cls(
            f"job {job_id} {status_phrase(current)}; it cannot {_TARGET_PHRASES[target]}",
            {"id": job_id, "status": current.value, "target": target.value},
        )


_STATUS_PHRASES = {
    Status.PENDING: "is pending",
    Status.QUEUED: "is queued",
    Status.RUNNING: "is running",
    Status.SUCCEEDED: "has already succeeded",
    Status.FAILED: "has already failed",
    Status.CANCELLED: "has already been cancelled",
}
_TARGET_PHRASES = {
    Status.PENDING: "go back to pending",
    Status.QUEUED: "be queued",
    Status.RUNNING: "start",
    Status.SUCCEEDED: "succeed",
    Status.FAILED: "fail",
    Status.CANCELLED: "be cancelled",
}


def status_phrase(status: Status) -> str:
    """Where a job is, as the rest of a sentence that starts "job 1 ...": "is running"."""
    return _STATUS_PHRASES[status]


class NotAllowed(JobsError):
    """The user may not do this to another user's job or schedule: the server's authorizer
    refused (`server/access.py`)."""

    http_status = 403


class PayloadTooLarge(JobsError):
    """The payload is over the server's configured limit."""

    http_status = 413


class ResultNotReady(JobsError):
    """The job has no result yet (still running), or none at all (it failed or was cancelled)."""

    http_status = 409


class JobFailed(JobsError):
    """Raised by `Job.result()` when the job failed: carries the remote type, message, traceback.

    It is raised in the caller's process from the stored error description, so it can be raised
    even when the original exception class does not exist or cannot be unpickled there.
    """

    def __init__(
        self, job_id: int, reason: str, type_: str, message: str, traceback: str = ""
    ) -> None:
        text = f"job {job_id} failed ({reason}): {type_}: {message}"
        super().__init__(text, {"reason": reason, "type": type_, "traceback": traceback})
        self.job_id = job_id
        self.reason = reason
        self.type = type_
        self.remote_message = message
        self.remote_traceback = traceback

    def __str__(self) -> str:
        if self.remote_traceback:
            return f"{self.message}\n\nRemote traceback:\n{self.remote_traceback}"
        return self.message


class JobCancelled(JobsError, concurrent.futures.CancelledError):
    """Raised by `Job.result()` when the job was cancelled.

    A `concurrent.futures.CancelledError` too (as dask's), so code written for futures catches
    it as it catches any cancelled future's.
    """

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled", {"id": job_id})
        self.job_id = job_id


class ServerUnavailable(JobsError):
    """The kernel client found no Jupyter server to talk to; the message says how to start one."""

    http_status = 503


class ServerUnreachable(ServerUnavailable):
    """No answer at all (refused, reset, timed out): a restarting server looks like this, so a
    submit sends the request again for a while (with the same idempotency keys)."""


class ShuttingDown(ServerUnavailable):
    """The server is stopping: the request was not served. Send it again to the next server."""

    http_status = 503


class StorageError(JobsError):
    """The database cannot be used as configured (e.g. WAL on a network filesystem)."""


class DatabaseNotFound(StorageError):
    """No job database at the path given, and the caller did not ask to create one (a typo in
    `--db` must not quietly start an empty database)."""


class WorkspaceConflict(StorageError):
    """The database's job files folder belongs to another database, or holds files of unknown
    origin: it is refused, never read (workspace.py)."""
