"""The rules of a job's life, as pure functions of its record.

This module is meant to become the one home of every such rule (what an outcome leads to: retry,
backoff, poison, dependency failure, expiry), which the store then applies. For now it holds the
rule every front end needs: which actions a job allows. The widget, the sidebar and the CLI read
them from the job (`Job.actions`, the `actions` field of its JSON) instead of deciding for
themselves, and the store accepts exactly these (`tests/test_handlers.py` checks the two agree).

No I/O here, and nothing but `models`: a rule must be testable on a record alone.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .models import Status, can_move

if TYPE_CHECKING:
    from .models import Job


class Action(str, enum.Enum):
    """What a user can ask of a job (REST: `POST jobs/{id}/cancel`, `.../retry`, `DELETE`).

    There is no `release`: a job submitted with `hold=True` stays pending until it is cancelled,
    as nothing (REST, CLI, kernel API or sidebar) can release it today.
    """

    CANCEL = "cancel"
    RETRY = "retry"
    DELETE = "delete"

    def __str__(self) -> str:
        return self.value


def allowed_actions(job: Job) -> list[str]:
    """The actions the store accepts for `job` now, in the order a UI shows them.

    - cancel: while the job has not finished and no cancel is under way (a repeated cancel is
      accepted and changes nothing, so it is not offered);
    - retry: once it failed or was cancelled (`models.TRANSITIONS`); the store still refuses
      when a job it runs after has failed or been cancelled since, and says which;
    - delete: unless it runs, or is claimed by a consumer about to start it (cancel it first).
    """
    actions = []
    if not job.finished and not job.cancel_requested:
        actions.append(Action.CANCEL.value)
    if job.finished and can_move(job.status, Status.QUEUED):
        actions.append(Action.RETRY.value)
    if job.status is not Status.RUNNING and not job.claimed:
        actions.append(Action.DELETE.value)
    return actions
