"""A worker process as people see it: the record of `GET /jobs/api/workers`, `jupyter jobs
workers`, `Jobs.workers()` and the sidebar's footer.

Executors describe the processes they run jobs in (`Executor.workers()`: the local executor its
runner processes, the Dask executor the Dask workers); each consumer writes its executor's view
into the store now and then (`store/workers.py`), so any process on the database can list the
workers of every consumer, and ask one to drain a worker. The executor's own words for a
worker's life (`protocol.WorkerState`) stay its business: `WorkerStatus` is what is shown.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class WorkerStatus(str, enum.Enum):
    """What a worker is doing, as shown (`WorkerInfo.state`)."""

    STARTING = "starting"  # its process starts (no job yet)
    IDLE = "idle"  # ready for any job
    KEPT = "kept"  # idle, kept for one kernel's next %%job cell (`cell_linger`)
    BUSY = "busy"  # runs a job
    DRAINING = "draining"  # halts after its current job (drained)
    RETIRING = "retiring"  # exits (retired, or stopped)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process, as plain data.

    `id` names it to `drain` (`host:pid` for a local worker, the Dask worker's address without
    its scheme for Dask). `heartbeat_at` is when it last gave a sign of life: a frame to its
    executor (local workers answer a ping every few seconds, even while a job runs), or the
    Dask scheduler's last heartbeat from it. `one_time`: started for one `fresh_worker` job,
    it exits after it. `consumer` is the consumer whose executor runs it; `reported_at` when
    that consumer last described it (now, for a consumer asked directly).
    """

    id: str
    pid: int | None
    host: str
    executor: str
    state: WorkerStatus
    #: the id of the job it runs now (not `job_id`: no reference to follow when it is null)
    job: int | None = None
    job_name: str | None = None
    started_at: float | None = None
    heartbeat_at: float | None = None
    jobs_done: int = 0
    #: jobs sent ahead to it, to start as soon as its current job ends
    waiting: int = 0
    one_time: bool = False
    #: whether `drain` may be asked of it now (its executor drains workers, and it is not
    #: draining or exiting already): what a UI offers
    drainable: bool = False
    interpreter: str | None = None
    consumer: str | None = None
    reported_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerInfo:
        """The inverse of `to_json`; fields this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["state"] = WorkerStatus(fields["state"])
        return cls(**fields)

    def seen_by(self, consumer: str, at: float) -> WorkerInfo:
        """This record as `consumer` reports it at `at`."""
        return dataclasses.replace(self, consumer=consumer, reported_at=at)

    def same_as(self, other: WorkerInfo) -> bool:
        """Whether it says the same as `other` but for the times that move on their own
        (heartbeat, report), so that an unchanged worker is not written again."""
        moving = {"heartbeat_at": None, "reported_at": None}
        return dataclasses.replace(self, **moving) == dataclasses.replace(other, **moving)
