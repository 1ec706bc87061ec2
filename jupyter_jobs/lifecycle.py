"""The rules of a job's life, as pure functions of its record.

Every rule that decides where a job goes lives here once: what an attempt's outcome leads to
(retry with exponential backoff, poison after lost workers, failure), what a pending job becomes
when the jobs it runs after end (or when it is released), what a job is when stored, expiry, and
which actions a job allows. Each rule returns a decision (`Move`, or `None` for "stays"), and
the store applies it (`store/facade.py`): the store decides which rows to look at, this module
what happens to them. The widget, the sidebar and the CLI read `allowed_actions` from the job
(`Job.actions`, the `actions` field of its JSON) instead of deciding for themselves, and the
store accepts exactly these (`tests/test_handlers.py` checks the two agree).

No I/O here, and nothing but `models`: a rule must be testable on a record alone
(`tests/test_lifecycle.py`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .models import JobError, Reason, Status, can_move

if TYPE_CHECKING:
    from .models import Job

#: Failure reasons that the automatic retry rule retries (a payload or dependency failure would
#: fail the same way again; an expired job must not start late).
RETRYABLE = frozenset({Reason.ERROR, Reason.TIMEOUT, Reason.WORKER_LOST, Reason.INTERRUPTED})
#: A job that lost its worker this many times is not retried: it probably kills what runs it.
POISON_LIMIT = 3
#: Backoff doubles per attempt; past this exponent it stops growing (and floats stay finite).
MAX_BACKOFF_EXPONENT = 30
#: Statuses of a job that make the jobs running after it fail.
BROKEN = frozenset({Status.FAILED, Status.CANCELLED})


class Action(str, enum.Enum):
    """What a user can ask of a job (REST: `POST jobs/{id}/cancel`, `.../retry`, `.../release`,
    `DELETE`).

    `release` lets a job submitted with `hold=True` (`Job.held`) run: it is queued once the jobs
    it runs after have succeeded and its `run_at` has come, keeping its place (priority, then
    submit order) among the queued jobs.
    """

    CANCEL = "cancel"
    RETRY = "retry"
    RELEASE = "release"
    DELETE = "delete"

    def __str__(self) -> str:
        return self.value


def allowed_actions(job: Job) -> list[str]:
    """The actions the store accepts for `job` now, in the order a UI shows them.

    - cancel: while the job has not finished and no cancel is under way (a repeated cancel is
      accepted and changes nothing, so it is not offered);
    - retry: once it failed or was cancelled (`models.TRANSITIONS`); the store still refuses
      when a job it runs after has failed or been cancelled since, and says which;
    - release: while it is pending and held;
    - delete: unless it runs, or is claimed by a consumer about to start it (cancel it first).
    """
    actions = []
    if not job.finished and not job.cancel_requested:
        actions.append(Action.CANCEL.value)
    if retryable(job):
        actions.append(Action.RETRY.value)
    if releasable(job):
        actions.append(Action.RELEASE.value)
    if deletable(job):
        actions.append(Action.DELETE.value)
    return actions


def retryable(job: Job) -> bool:
    """Whether `job` can be retried: it failed or was cancelled (`models.TRANSITIONS`)."""
    return job.finished and can_move(job.status, Status.QUEUED)


def deletable(job: Job) -> bool:
    """Whether `job` can be deleted: it neither runs nor is claimed to start (cancel first)."""
    return job.status is not Status.RUNNING and not job.claimed


def releasable(job: Job) -> bool:
    """Whether `job` can be released: pending, and held (submitted with `hold=True`)."""
    return job.status is Status.PENDING and job.held


@dataclass(frozen=True)
class Move:
    """A decision: the job goes to `target`.

    `reason` and `error` are what it carries there (cleared when None); `not_before` is when a
    retried attempt may start (backoff); `worker_losses` is the new count of lost workers.
    """

    target: Status
    reason: Reason | None = None
    error: JobError | None = None
    not_before: float | None = None
    worker_losses: int | None = None


@dataclass(frozen=True)
class RetryState:
    """What the retry rule reads of a job whose attempt just ended."""

    attempt: int
    #: the attempt number at the last explicit retry: attempts count from there
    retry_base: int
    retries: int
    retry_delay: float
    worker_losses: int
    cancel_requested: bool


#: The decisions without details, made once (storing a job is on the hot path).
_QUEUE = Move(Status.QUEUED)
_WAIT = Move(Status.PENDING)


def failure_error(reason: Reason, error: JobError | None, exit: str | None = None) -> JobError:
    """The error a failed attempt carries: the worker's, or one naming the reason; a lost
    worker's says how it ended (`exit`: "killed by signal 9")."""
    if error is None:
        lost = reason is Reason.WORKER_LOST
        error = JobError(
            "WorkerLost" if lost else reason.value.title(),
            "the worker process died" if lost else f"failed ({reason})",
        )
    if reason is Reason.WORKER_LOST and exit and exit not in error.message:
        error = JobError(error.type, f"{error.message} ({exit})", error.traceback)
    return error


def after_failure(
    job: RetryState, reason: Reason, error: JobError, at: float, poison_limit: int = POISON_LIMIT
) -> Move:
    """What an attempt that ended with `reason` leads to: the retry rule, in its one place.

    A job someone asked to cancel ends cancelled, whatever its last attempt did. Otherwise it is
    queued again, not before `retry_delay * 2**(n-1)` seconds for its n-th retry, while it has
    retries left (counted from its last explicit retry, so a retried job gets them again) and
    the reason is one a new attempt may cure (`RETRYABLE`); a job that lost its worker
    `poison_limit` times is never retried. Else it fails with `reason`.
    """
    if job.cancel_requested:
        return Move(Status.CANCELLED, error=error)
    losses = job.worker_losses + (reason is Reason.WORKER_LOST)
    used = job.attempt - job.retry_base
    poisoned = reason is Reason.WORKER_LOST and losses >= poison_limit
    if poisoned:
        error = JobError(
            error.type,
            f"{error.message}; not retried: it lost its worker {losses} times "
            f"(poison limit {poison_limit})",
            error.traceback,
        )
    if reason in RETRYABLE and used <= job.retries and not poisoned:
        backoff = job.retry_delay * 2 ** min(max(used - 1, 0), MAX_BACKOFF_EXPONENT)
        return Move(Status.QUEUED, error=error, not_before=at + backoff, worker_losses=losses)
    return Move(Status.FAILED, reason, error, worker_losses=losses)


def dependency_error(after_id: int, what: str = "failed or was cancelled") -> JobError:
    """The error of a job that will not run because job `after_id` did not succeed."""
    return JobError("DependencyFailed", f"job {after_id}, which this job runs after, {what}")


def _broken(deps: Sequence[tuple[int, Status]]) -> tuple[int, Status] | None:
    """The first of `deps` (id, status) that failed or was cancelled."""
    return next(((i, status) for i, status in deps if status in BROKEN), None)


def _may_run(
    deps: Sequence[tuple[int, Status]], held: bool, run_at: float | None, at: float
) -> bool:
    done = all(status is Status.SUCCEEDED for _, status in deps)
    return done and not held and (run_at is None or run_at <= at)


def when_stored(
    deps: Sequence[tuple[int, Status]], held: bool, run_at: float | None, at: float
) -> Move:
    """The status a job is stored in: failed when a job it runs after failed or was cancelled
    already, queued when it may run now, else pending (`deps` are (id, status) in its order)."""
    broken = _broken(deps)
    if broken is not None:
        return Move(Status.FAILED, Reason.DEPENDENCY_FAILED, dependency_error(broken[0]))
    return _QUEUE if _may_run(deps, held, run_at, at) else _WAIT


def settle(
    deps: Sequence[tuple[int, Status]], held: bool, run_at: float | None, at: float
) -> Move | None:
    """What a pending job becomes now: failed when a job it runs after failed or was
    cancelled, queued once they all succeeded (unless it is held or its `run_at` is to come),
    else it stays pending (None)."""
    broken = _broken(deps)
    if broken is not None:
        after_id, status = broken
        error = dependency_error(after_id, f"ended {status}")
        return Move(Status.FAILED, Reason.DEPENDENCY_FAILED, error)
    return _QUEUE if _may_run(deps, held, run_at, at) else None


def after_deleted(after_id: int) -> Move:
    """What a pending job becomes when a job it runs after is deleted before it finished."""
    return Move(Status.FAILED, Reason.DEPENDENCY_FAILED, dependency_error(after_id, "was deleted"))


def expiry() -> Move:
    """What a job becomes that has not started by its `expires_at` (the store picks the jobs:
    pending or queued, not started since the last explicit retry)."""
    return Move(
        Status.FAILED, Reason.EXPIRED, JobError("Expired", "not started before its expires_at")
    )


def retry_refusal(deps: Sequence[tuple[int, Status]]) -> int | None:
    """The job an explicit retry waits for in vain (one it runs after failed or was cancelled:
    retry that one first), or None when the retry may go ahead."""
    broken = _broken(deps)
    return None if broken is None else broken[0]


def after_retry(
    deps: Sequence[tuple[int, Status]], expires_at: float | None, at: float
) -> tuple[Status, float | None]:
    """Where an explicitly retried job goes, and its `expires_at`: queued, or pending while a
    job it runs after has not succeeded; an `expires_at` already past is dropped, so that the
    retry does not expire at once."""
    waiting = any(status is not Status.SUCCEEDED for _, status in deps)
    if expires_at is not None and expires_at <= at:
        expires_at = None
    return (Status.PENDING if waiting else Status.QUEUED), expires_at
