"""The vocabulary of a job's life: statuses, reasons, the transition table and the records.

Every other module asks this one whether a move is allowed; no status is ever a bare string
literal elsewhere. The records are plain dataclasses that turn into JSON (`to_json`) for the
REST API, the CLI and the events, so the three never disagree on field names.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import time
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Where a job is in its life (DESIGN.md, Statuses)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """True for the three terminal statuses: nothing runs any more."""
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
ACTIVE = frozenset({Status.PENDING, Status.QUEUED, Status.RUNNING})


class Reason(str, enum.Enum):
    """Why a job failed; `None` on a job that did not fail."""

    ERROR = "error"  # the job's code raised
    TIMEOUT = "timeout"  # ran longer than its timeout and was killed
    EXPIRED = "expired"  # not started before expires_at
    WORKER_LOST = "worker_lost"  # its worker process died under it
    INTERRUPTED = "interrupted"  # the server or consumer stopped (or died) while it ran
    DEPENDENCY_FAILED = "dependency_failed"  # a job named in `after` failed or was cancelled
    PAYLOAD = "payload"  # the payload could not be loaded in the worker

    def __str__(self) -> str:
        return self.value


#: The allowed moves. `running -> queued` is the automatic retry; `failed/cancelled -> queued` is
#: an explicit retry. Anything else is refused by the store with `IllegalTransition`.
#:
#: A queued job can be *claimed*: leased to a consumer (`consumer`, `lease_until`, its `attempt`
#: counted) that handed it to an executor, where it may wait behind another job or for a worker.
#: A claim is not a move: the job stays queued, without `started_at`, until its code begins in a
#: worker; that is `queued -> running`. A claim that never started is given back uncounted when
#: its consumer stops; one whose consumer was lost counts as an interrupted attempt (it may have
#: begun unrecorded). A claimed job's cancel or failure to start moves it from `queued`.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.QUEUED, Status.FAILED, Status.CANCELLED}),
    Status.QUEUED: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED, Status.PENDING}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
}


def can_move(current: Status, target: Status) -> bool:
    """Whether `current -> target` is in the transition table."""
    return target in TRANSITIONS[current]


class Kind(str, enum.Enum):
    """What a payload holds: a function call, a notebook cell plus the variables it reads, a
    whole notebook with its parameters (JSON, `notebooks.py`), or a registered job type's
    name and JSON parameters (`job_types.py`)."""

    FUNCTION = "function"
    CELL = "cell"
    NOTEBOOK = "notebook"
    TYPED = "typed"

    def __str__(self) -> str:
        return self.value


def now() -> float:
    """Wall-clock seconds since the epoch: every timestamp in the store uses this."""
    return time.time()


#: SQLite integers are signed 64-bit: ids, priorities and counts beyond cannot be stored.
MAX_INT = 2**63 - 1
#: A job id written as text (URLs, id lists, page cursors): decimal, no leading zero, at most
#: 18 digits. Ids are SQLite rowids, far below 10**18 in any real store.
ID_TEXT = re.compile(r"[1-9][0-9]{0,17}")
#: The longest timeout or retry delay: ten years (any longer is a mistake, or "never").
MAX_DURATION = 10 * 365.25 * 86400
#: The latest run_at / expires_at: the last second of year 9999, the last date Python can show.
MAX_EPOCH = 253402300799.0


@dataclass
class JobSpec:
    """What a client asks for when it submits. The payload bytes travel beside it, opaque.

    `options` carries kind-specific settings the server never interprets beyond JSON (for cells:
    which names to send back). `interpreter` and `cwd` say where the worker runs the job.
    A typed job (kind "typed") names its job type in `type` and carries its JSON `parameters`
    (checked against the type's schema by `type_registry.py`, which builds its payload).
    """

    kind: Kind = Kind.FUNCTION
    name: str = ""
    owner: str = ""
    priority: int = 0
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    after: list[int] = field(default_factory=list)
    run_at: float | None = None
    expires_at: float | None = None
    hold: bool = False
    fresh_worker: bool = False
    interpreter: str | None = None
    cwd: str | None = None
    idempotency_key: str | None = None
    #: the result channel it is delivered to once finished (`store/channels.py`), or None
    channel: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    type: str | None = None
    parameters: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Built by hand, as `Job.to_json` is: a kernel pays this on every submit. The fields
        of a typed job are left out of other jobs' specs (what openapi.yaml's JobSpec says)."""
        data = dict(self.__dict__)
        data["after"] = list(self.after)
        data["options"] = copy.deepcopy(self.options)
        data["kind"] = self.kind.value
        if self.type is None and self.parameters is None:
            del data["type"], data["parameters"]
        else:
            data["parameters"] = copy.deepcopy(self.parameters)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        """Build a spec from untrusted JSON; raises `InvalidRequest` naming the bad field."""
        from .errors import InvalidRequest

        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"unknown field(s) in job spec: {', '.join(unknown)}")
        spec = cls(**data)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Check types and ranges, so that bad input is a 400 that names the field.

        The submit options are checked against their one declaration (`options.OPTIONS`, the
        bounds openapi.yaml states too); the fields a client fills in itself are checked here.
        """
        from .errors import InvalidRequest
        from .options import check

        try:
            self.kind = Kind(self.kind)
        except ValueError:
            raise InvalidRequest(f"kind must be one of {[k.value for k in Kind]}") from None
        for name, value, kind in (("owner", self.owner, str), ("options", self.options, dict)):
            if not isinstance(value, kind):
                raise InvalidRequest(f"{name} must be {kind.__name__}, got {value!r}")
        self._check_typed()
        check(self)
        if not self.name:
            self.name = "job"

    def _check_typed(self) -> None:
        """A typed job, and only one, names its type; its parameters are a JSON object."""
        from .errors import InvalidRequest

        if self.kind is not Kind.TYPED:
            if self.type is not None or self.parameters is not None:
                raise InvalidRequest('type and parameters are for jobs of kind "typed"')
            return
        if not isinstance(self.type, str) or not self.type:
            raise InvalidRequest("a typed job needs the name of its job type (type)")
        if self.parameters is None:
            self.parameters = {}
        if not isinstance(self.parameters, dict):
            raise InvalidRequest(f"parameters must be an object, got {self.parameters!r}"[:200])


@dataclass(frozen=True)
class JobUser:
    """Who a job (or a schedule) belongs to: the user jupyter_server authenticated for the
    request that submitted it, or the OS user running `JobQueue` or `jupyter jobs`.

    Never what a client says about itself: a spec has no such field; the server takes it from
    the request's authentication (`server/access.py`). Jobs stored before users were recorded
    have the empty username: they belong to nobody.
    """

    username: str = ""
    display_name: str = ""

    @classmethod
    def of_process(cls) -> JobUser:
        """The OS user running this process (the engine's and the CLI's "me")."""
        from .oslayer import user_name

        name = user_name()
        return cls(name, name)


#: The user of jobs stored without one (before users were recorded, or by a caller that names
#: none): they belong to nobody.
NOBODY = JobUser()


@dataclass
class Progress:
    """What job code last reported through `jupyter_jobs.progress(done, total, message)`."""

    done: float
    total: float | None = None
    message: str | None = None
    at: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass
class JobError:
    """A failure as text: the server never holds exception objects, only their description."""

    type: str
    message: str
    traceback: str = ""


@dataclass
class Job:
    """One job as stored: the record the store returns and the API serializes."""

    id: int
    name: str
    kind: Kind
    owner: str
    status: Status
    reason: Reason | None = None
    priority: int = 0
    attempt: int = 0
    retries: int = 0
    retry_delay: float = 1.0
    worker_losses: int = 0
    timeout: float | None = None
    after: list[int] = field(default_factory=list)
    run_at: float | None = None
    expires_at: float | None = None
    not_before: float | None = None
    created_at: float = 0.0
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    #: submitted with `hold=True` and not released yet: it stays pending until released
    held: bool = False
    progress: Progress | None = None
    error: JobError | None = None
    interpreter: str | None = None
    cwd: str | None = None
    idempotency_key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    consumer: str | None = None
    lease_until: float | None = None
    payload_size: int = 0
    result_size: int | None = None
    log_size: int = 0
    has_outputs: bool = False
    #: the schedule that created this run, and the time it stood for (None for other jobs)
    schedule_id: int | None = None
    scheduled_time: float | None = None
    #: a typed job's job type and parameters, and what its type's `summarize` made of its
    #: outcome (JSON, computed in the worker); None for other jobs
    type: str | None = None
    parameters: dict[str, Any] | None = None
    summary: Any = None
    #: the result channel the job is delivered to once finished (None: none)
    channel: str | None = None
    #: who the job belongs to (`JobUser`): the username, and how to show it ("" for nobody)
    user: str = ""
    user_display_name: str = ""
    #: runs in a worker process started for it alone, which exits after it
    fresh_worker: bool = False

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def claimed(self) -> bool:
        """Queued, but handed to a consumer's executor and about to start (see `TRANSITIONS`).

        Only running and claimed jobs hold a lease: it is what tells them from a plain queued
        job, one waiting for a retry included."""
        return self.status is Status.QUEUED and self.lease_until is not None

    @property
    def actions(self) -> list[str]:
        """What a user may ask of the job now (`lifecycle.allowed_actions`): every front end
        offers these, and only these."""
        from .lifecycle import allowed_actions

        return allowed_actions(self)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape used by REST responses, events and `jupyter jobs --json`.

        Built by hand: `dataclasses.asdict` deep-copies every field (~45 µs a job), and every
        REST reply and poll pays this once per job.
        """
        data = dict(self.__dict__)
        data["after"] = list(self.after)
        data["options"] = copy.deepcopy(self.options)
        if self.parameters is not None or self.summary is not None:
            data["parameters"] = copy.deepcopy(self.parameters)
            data["summary"] = copy.deepcopy(self.summary)
        data["progress"] = dataclasses.asdict(self.progress) if self.progress else None
        data["error"] = dataclasses.asdict(self.error) if self.error else None
        data["kind"] = self.kind.value
        data["status"] = self.status.value
        data["reason"] = self.reason.value if self.reason else None
        data["actions"] = self.actions
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """The inverse of `to_json` (for clients of the REST API). Fields this version does not
        know are ignored, so an older kernel keeps working with a newer server."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["kind"] = Kind(fields["kind"])
        fields["status"] = Status(fields["status"])
        fields["reason"] = Reason(fields["reason"]) if fields.get("reason") else None
        if fields.get("progress"):
            fields["progress"] = Progress(**fields["progress"])
        if fields.get("error"):
            fields["error"] = JobError(**fields["error"])
        return cls(**fields)


@dataclass
class Page:
    """One page of a listing: the jobs, the cursor for the next page, counts per status."""

    jobs: list[Job]
    next_cursor: str | None
    counts: dict[str, int]


@dataclass(frozen=True)
class FileBytes:
    """Bytes that live in a file, handed over by its path rather than read into memory.

    A large payload the store keeps in a file goes to a worker on this machine as its path (the
    worker reads it); a large result a worker left in the store's incoming folder, or a large
    submit the server wrote there as it arrived, is taken by the store with a move. So the
    server never holds a big variable's bytes whole (see buffers.py)."""

    path: str
    size: int

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        with open(self.path, "rb") as file:
            return file.read()


@dataclass
class Outcome:
    """How one attempt ended, as the executor reports it to the consumer and the store records it.

    `result` and `outputs` are opaque bytes produced in the worker (dill bytes, nbformat JSON):
    the server stores and serves them and never unpickles them. A large result may be a file
    the worker left (`FileBytes`), which the store takes. `exit` describes how a lost worker
    ended ("killed by signal 9", "exit code 3") so that `worker_lost` errors say why. `summary`
    is a typed job's summary (JSON, made by its type's `summarize` in the worker).
    """

    status: Status
    reason: Reason | None = None
    error: JobError | None = None
    result: bytes | memoryview | FileBytes | None = None
    outputs: bytes | None = None
    exit: str | None = None
    summary: Any = None


@dataclass
class Change:
    """One committed change, handed to store subscribers (consumer, event emitter, waiters).

    `what` is "created", "transition", "progress", "cancel_requested", "released" (a held job
    may run; it is also a "transition" when it is queued at once) or "deleted"; `previous` is
    the status before a transition.
    """

    what: str
    job: Job
    previous: Status | None = None
