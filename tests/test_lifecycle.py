"""The rules of a job's life on plain records (the store tests and the REST test check that the
store applies them, and accepts exactly the actions offered)."""

from __future__ import annotations

import pytest

from jupyter_jobs import lifecycle
from jupyter_jobs.lifecycle import Move, RetryState, allowed_actions
from jupyter_jobs.models import Job, JobError, Kind, Reason, Status


def job(status: Status, **fields: object) -> Job:
    return Job(id=1, name="j", kind=Kind.FUNCTION, owner="", status=status, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (job(Status.PENDING), ["cancel", "delete"]),
        (job(Status.PENDING, held=True), ["cancel", "release", "delete"]),
        (job(Status.FAILED, held=True), ["retry", "delete"]),  # held, but no longer pending
        (job(Status.QUEUED), ["cancel", "delete"]),
        (job(Status.QUEUED, lease_until=1.0), ["cancel"]),  # claimed: about to start
        (job(Status.QUEUED, lease_until=1.0, cancel_requested=True), []),
        (job(Status.RUNNING), ["cancel"]),
        (job(Status.RUNNING, cancel_requested=True), []),
        (job(Status.SUCCEEDED), ["delete"]),
        (job(Status.FAILED), ["retry", "delete"]),
        (job(Status.CANCELLED), ["retry", "delete"]),
    ],
)
def test_allowed_actions_follow_status_claim_and_cancel_request(
    record: Job, expected: list[str]
) -> None:
    assert allowed_actions(record) == expected
    assert record.to_json()["actions"] == expected


def test_a_record_read_back_from_json_offers_the_same_actions() -> None:
    record = job(Status.FAILED)
    assert Job.from_json(record.to_json()).actions == ["retry", "delete"]


# -- what an attempt's failure leads to ----------------------------------------------------------

BOOM = JobError("ValueError", "boom", "tb")


def tries(attempt: int = 1, retries: int = 0, **fields: object) -> RetryState:
    values = {"retry_base": 0, "retry_delay": 2.0, "worker_losses": 0, "cancel_requested": False}
    values.update(fields)
    return RetryState(attempt=attempt, retries=retries, **values)  # type: ignore[arg-type]


def test_a_failure_is_retried_with_a_backoff_that_doubles_per_attempt() -> None:
    delays = [
        lifecycle.after_failure(tries(n, retries=3), Reason.ERROR, BOOM, at=100.0).not_before
        for n in (1, 2, 3)
    ]
    assert delays == [102.0, 104.0, 108.0]
    assert lifecycle.after_failure(tries(1, retries=3), Reason.ERROR, BOOM, 100.0).target is (
        Status.QUEUED
    )


def test_a_job_out_of_retries_fails_with_its_reason() -> None:
    move = lifecycle.after_failure(tries(4, retries=3), Reason.TIMEOUT, BOOM, at=0.0)
    assert move == Move(Status.FAILED, Reason.TIMEOUT, BOOM, worker_losses=0)


def test_attempts_count_from_the_last_explicit_retry() -> None:
    move = lifecycle.after_failure(tries(5, retries=1, retry_base=4), Reason.ERROR, BOOM, 0.0)
    assert move.target is Status.QUEUED


@pytest.mark.parametrize("reason", [Reason.PAYLOAD, Reason.EXPIRED, Reason.DEPENDENCY_FAILED])
def test_a_failure_a_new_attempt_cannot_cure_is_not_retried(reason: Reason) -> None:
    move = lifecycle.after_failure(tries(1, retries=5), reason, BOOM, at=0.0)
    assert (move.target, move.reason) == (Status.FAILED, reason)


def test_a_job_that_lost_its_worker_three_times_is_poison() -> None:
    state = tries(3, retries=10, worker_losses=2)
    move = lifecycle.after_failure(state, Reason.WORKER_LOST, BOOM, at=0.0)
    assert (move.target, move.reason, move.worker_losses) == (
        Status.FAILED,
        Reason.WORKER_LOST,
        3,
    )
    assert "not retried: it lost its worker 3 times (poison limit 3)" in move.error.message
    again = lifecycle.after_failure(
        tries(2, retries=10, worker_losses=1), Reason.WORKER_LOST, BOOM, 0
    )
    assert (again.target, again.worker_losses) == (Status.QUEUED, 2)


def test_a_job_asked_to_cancel_ends_cancelled_whatever_its_attempt_did() -> None:
    state = tries(1, retries=5, cancel_requested=True)
    assert lifecycle.after_failure(state, Reason.ERROR, BOOM, 0.0) == Move(
        Status.CANCELLED, error=BOOM
    )


def test_a_lost_workers_error_says_how_it_ended() -> None:
    error = lifecycle.failure_error(Reason.WORKER_LOST, None, "killed by signal 9")
    assert (error.type, error.message) == (
        "WorkerLost",
        "the worker process died (killed by signal 9)",
    )
    assert lifecycle.failure_error(Reason.TIMEOUT, None).type == "Timeout"
    assert lifecycle.failure_error(Reason.ERROR, BOOM) is BOOM


# -- pending jobs and their dependencies ---------------------------------------------------------


def test_a_job_is_stored_failed_queued_or_pending() -> None:
    failed = lifecycle.when_stored([(1, Status.SUCCEEDED), (2, Status.CANCELLED)], False, None, 0)
    assert (failed.target, failed.reason) == (Status.FAILED, Reason.DEPENDENCY_FAILED)
    assert "job 2, which this job runs after" in failed.error.message
    assert lifecycle.when_stored([(1, Status.SUCCEEDED)], False, None, 0).target is Status.QUEUED
    assert lifecycle.when_stored([(1, Status.RUNNING)], False, None, 0).target is Status.PENDING
    assert lifecycle.when_stored([], True, None, 0).target is Status.PENDING
    assert lifecycle.when_stored([], False, 10.0, 5.0).target is Status.PENDING


def test_a_pending_job_is_queued_once_its_deps_succeeded_unless_held_or_early() -> None:
    done = [(1, Status.SUCCEEDED), (2, Status.SUCCEEDED)]
    assert lifecycle.settle(done, held=False, run_at=None, at=0) == Move(Status.QUEUED)
    assert lifecycle.settle(done, held=True, run_at=None, at=0) is None
    assert lifecycle.settle(done, held=False, run_at=10.0, at=5.0) is None
    assert lifecycle.settle(done, held=False, run_at=10.0, at=10.0) == Move(Status.QUEUED)
    assert lifecycle.settle([(1, Status.RUNNING)], held=False, run_at=None, at=0) is None


def test_a_pending_job_fails_when_a_job_it_runs_after_fails_even_while_held() -> None:
    move = lifecycle.settle([(1, Status.SUCCEEDED), (7, Status.FAILED)], True, None, 0)
    assert (move.target, move.reason) == (Status.FAILED, Reason.DEPENDENCY_FAILED)
    assert move.error.message == "job 7, which this job runs after, ended failed"
    deleted = lifecycle.after_deleted(7)
    assert deleted.error.message == "job 7, which this job runs after, was deleted"


def test_an_explicit_retry_waits_for_unfinished_deps_and_refuses_broken_ones() -> None:
    assert lifecycle.retry_refusal([(1, Status.SUCCEEDED), (2, Status.FAILED)]) == 2
    assert lifecycle.retry_refusal([(1, Status.RUNNING)]) is None
    assert lifecycle.after_retry([(1, Status.RUNNING)], None, 0) == (Status.PENDING, None)
    # an expires_at already past is dropped, a later one kept
    assert lifecycle.after_retry([], 5.0, 10.0) == (Status.QUEUED, None)
    assert lifecycle.after_retry([], 50.0, 10.0) == (Status.QUEUED, 50.0)


def test_expiry_fails_the_job_with_reason_expired() -> None:
    move = lifecycle.expiry()
    assert (move.target, move.reason, move.error.type) == (Status.FAILED, Reason.EXPIRED, "Expired")
