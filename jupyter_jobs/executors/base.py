"""The executor interface: the consumer hands it tasks, it reports logs, progress and outcomes.

An executor owns processes, never the store: it knows nothing of SQL, retries or statuses beyond
the `Outcome` it reports. All methods run on the consumer's event loop and must not block it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from traitlets import Float, Integer, TraitError, validate
from traitlets.config import LoggingConfigurable

from ..errors import WorkerNotDrainable
from ..models import FileBytes, Kind, Outcome, Progress, Reason
from ..shared import SharedPayload
from ..start_log import StartLog
from ..worker_info import WorkerInfo

log = logging.getLogger(__name__)


@dataclass
class Task:
    """One attempt of one job, as the executor needs it.

    `payload` is the opaque dill bytes the client sent, or the file the store keeps them in
    (large ones: a worker on this machine reads it itself, `protocol.job_frame`), or a function
    stored once beside the job's arguments (`shared.SharedPayload`: `protocol.job_frame` packs
    them); only the runner in the worker loads it.
    """

    job_id: int
    attempt: int
    kind: Kind
    name: str
    payload: bytes | FileBytes | SharedPayload
    interpreter: str | None = None
    cwd: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Wall-clock time by which the run must be over unless its claim is renewed
    #: (`Executor.renew_lease`); None: no limit.
    lease_until: float | None = None
    #: Run in a process started for this run alone, which exits after it (the job's
    #: `fresh_worker` option): nothing an earlier job left in a worker can reach it.
    fresh_worker: bool = False


class ExecutorEvents(Protocol):
    """What an executor calls back, on the event loop, for the task it runs.

    Every call names the attempt: a report for an attempt that is no longer current is ignored by
    the store (fencing), so a late message from a killed worker cannot corrupt a newer attempt.
    """

    def on_log(self, job_id: int, attempt: int, data: bytes, stream: str = "") -> None:
        """Output of the run; `stream` names a labelled stream (a thread's, a child
        process's: `streams.py`), and is left out for the job's main stream."""

    def on_progress(self, job_id: int, attempt: int, progress: Progress) -> None: ...

    def on_started(self, job_id: int, attempt: int) -> None:
        """The run's code begins in a worker now (not when it is queued, sent ahead or waiting
        for a worker): at most once per run, and only from executors with `reports_start`.
        The job is `running` from here (until then it is queued, though claimed), with this
        moment as its `started_at`, and its timeout runs from here."""

    def on_done(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        """How the run ended: exactly once per `run`. The outcome is `queued` only for a run
        that never started, and only from `shutdown`: the claim is given back, not spent."""


class Executor(LoggingConfigurable):
    """Runs tasks somewhere and reports back through `ExecutorEvents`.

    Life: `await start()`, then `await run(task)` while `free_slots() > 0`, `await kill(...)` to
    cancel or time out, `await shutdown()` at the end. Exactly one `on_done` follows every `run`,
    whatever happens to the process (exit, crash, kill, shutdown).

    A traitlets configurable: the Jupyter server builds the class `c.JobsApp.executor_class`
    names with the app as its parent, so `c.LocalExecutor.cell_linger = 10` or
    `c.DaskExecutor.scheduler_address = ...` in a Jupyter config file configure it, and keyword
    arguments set traits too. `log_limit`, `progress_interval` and `kill_grace` are the app's
    (the store and the consumer follow them as well), handed down by it, not configured here.
    """

    name: ClassVar[str] = "base"
    #: Where an executor that starts processes on this machine writes down what its jobs run,
    #: so that the next start ends what a killed server left (`leftovers.py`); the consumer
    #: sets it (a folder of the store's workspace) before `start`. None: nowhere.
    leftovers_dir: Path | None = None
    #: Where workers on this machine may leave a large result as a file, which the store takes
    #: (`Outcome.result` as `FileBytes`); the consumer sets it (the store's incoming folder)
    #: before `start`. None: results come back as bytes.
    result_dir: Path | None = None
    #: Where this executor's workers write down each attempt before its code begins
    #: (`start_log.py`), so that the claims of a consumer killed with -9 that no worker began
    #: go back to the queue uncounted; the consumer sets it before `start` and removes its
    #: files after its last write. An executor that can keep that promise `create`s it at
    #: start and gives its runners files (`take_file`); one that cannot leaves it alone, and
    #: such claims count as interrupted attempts.
    start_log: StartLog | None = None
    #: Whether `on_started` tells when a run's code really begins. Executors that cannot tell
    #: leave it False, and the consumer counts a run as started once `run()` has taken it.
    reports_start: ClassVar[bool] = False

    max_workers = Integer(
        None,
        allow_none=True,
        help="How many jobs run at once (None: the executor's own default). "
        "`c.JobsApp.max_workers` sets it too.",
    ).tag(config=True)

    log_limit = Integer(
        10 * 1024 * 1024,
        allow_none=True,
        help="Bytes of log each job may write, capped in the worker (None: no cap).",
    )

    progress_interval = Float(1.0, help="The fastest a job's progress is reported (seconds).")

    kill_grace = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when the executor stops a job on its own "
        "(a kill or shutdown brings its own grace).",
    )

    def __init__(
        self, events: ExecutorEvents, max_workers: int | None = None, **traits: Any
    ) -> None:
        if max_workers is not None:
            traits["max_workers"] = max_workers
        super().__init__(**traits)
        self.events = events

    @validate("max_workers")
    def _check_max_workers(self, proposal: dict[str, Any]) -> int | None:
        if proposal["value"] is not None and proposal["value"] < 1:
            raise TraitError("max_workers must be at least 1")
        return proposal["value"]

    async def start(self) -> None:
        """Get ready to run (start warm workers, connect to a cluster)."""
        raise NotImplementedError

    def free_slots(self) -> int:
        """How many more tasks `run` accepts right now."""
        raise NotImplementedError

    async def run(self, task: Task) -> None:
        """Start the task; return once it is dispatched (not when it finishes)."""
        raise NotImplementedError

    async def kill(self, job_id: int, reason: Reason | None, grace: float) -> None:
        """End the task's whole process tree: SIGTERM, `grace` seconds, then SIGKILL.

        `reason=None` means a cancel (outcome `cancelled`); `Reason.TIMEOUT` or
        `Reason.INTERRUPTED` make the outcome `failed` with that reason. Returns once the process
        is gone and `on_done` has been called. Unknown or finished job: no-op.
        """
        raise NotImplementedError

    async def shutdown(self, grace: float) -> None:
        """Stop every task and release workers. A started task ends `failed`, reason
        `interrupted`; one that never started (an executor with `reports_start` can tell) ends
        `queued`, reason `interrupted`, error `NotStarted`, so that its job is queued again
        without counting the attempt."""
        raise NotImplementedError

    def renew_lease(self, until: float) -> None:
        """Every claim this executor runs under was renewed: its runs may go on until `until`
        (wall-clock seconds; the lease minus a margin). An executor that can stops a run whose
        claim was not renewed in time, from outside the consumer's loop, so that a stalled
        consumer's attempt never overlaps the attempt that takes over its lapsed claim."""

    def _notify(self, method: str, task: Task, *value: Any) -> None:
        """Call `events.<method>` for `task`'s attempt. A callback that raises is logged, not
        raised: it must not leave the executor's own bookkeeping half done."""
        try:
            getattr(self.events, method)(task.job_id, task.attempt, *value)
        except Exception:
            log.exception("%s for job %s raised", method, task.job_id)

    def running(self) -> list[tuple[int, int]]:
        """(job_id, attempt) of every task this executor currently runs."""
        return []

    async def workers(self) -> list[WorkerInfo]:
        """The processes this executor runs jobs in, as shown (`GET /jobs/api/workers`);
        an executor that cannot tell shows none."""
        return []

    async def drain(self, worker_id: str) -> WorkerInfo:
        """Let the worker `worker_id` finish the job it runs (if any), then stop it; returns it
        as it is now (`draining`, or `retiring` when it had nothing to finish). Jobs waiting
        in it go back to the others. `WorkerNotFound` for an unknown id; an executor that
        cannot drain (capability `drain` false) raises `WorkerNotDrainable`."""
        raise WorkerNotDrainable(f"the {self.name} executor does not drain workers")

    def capabilities(self) -> dict[str, Any]:
        """What this executor supports, for `GET /jobs/api/capabilities` and the UI."""
        return {
            "executor": self.name,
            "drain": False,
            "fresh_worker": True,
            "cancel": True,
            "timeout": True,
            "progress": True,
            "logs": True,
            "outputs": True,
            "interpreter": True,
            "cwd": True,
        }
