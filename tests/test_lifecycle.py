"""The rules of a job's life on records alone (the REST test checks the store agrees)."""

from __future__ import annotations

import pytest

from jupyter_jobs.lifecycle import allowed_actions
from jupyter_jobs.models import Job, Kind, Status


def job(status: Status, **fields: object) -> Job:
    return Job(id=1, name="j", kind=Kind.FUNCTION, owner="", status=status, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (job(Status.PENDING), ["cancel", "delete"]),
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
