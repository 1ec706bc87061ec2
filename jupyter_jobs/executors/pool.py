"""The local executor's worker processes and what it knows of each: one small interface.

`WorkerPool` holds the workers and answers the questions the executor's dispatch asks (an idle
worker for this interpreter and kernel, a spare, those alive, how many runs wait in workers
ahead of time); `view()` describes each worker as plain data (`WorkerView`, a `WorkerState`),
which is also what tests read, and `infos()` as people see it (`worker_info.WorkerInfo`). A worker
being drained, or started for one `fresh_worker` job, takes no other job: for the pool it is
neither live, idle nor spare. The send-ahead protocol moves runs between a worker's `run`,
`ahead` and `reclaimed`; the pool only ever reads them.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..protocol import WorkerState
from ..shared import HeldFunctions
from ..worker_info import WorkerInfo, WorkerStatus

if TYPE_CHECKING:
    from .local import Run

__all__ = ["Worker", "WorkerPool", "WorkerState", "WorkerView"]


@dataclass(eq=False)
class Worker:
    """One runner process and what the executor knows about it."""

    interpreter: str
    proc: subprocess.Popen
    ready: asyncio.Future
    exited: asyncio.Future
    state: WorkerState = WorkerState.STARTING
    kernel: str | None = None  # idle, kept for this kernel's next cell (see `cell_linger`)
    kept_since: float = 0.0  # loop time it was kept since
    doomed: bool = False  # being stopped: whatever it starts from now on is taken back
    reserved: bool = False  # a waiting run takes it once it is ready
    run: Run | None = None  # the run it is executing
    ahead: deque[Run] = field(default_factory=deque)  # sent ahead, not started yet, in order
    withdrawn: dict[int, float] = field(default_factory=dict)  # killed: job id -> kill grace
    reclaimed: dict[int, Run] = field(default_factory=dict)  # asked back, for an idle worker
    stopper: asyncio.Task | None = None  # stops it when a withdrawn run started anyway
    writer: asyncio.StreamWriter | None = None
    stderr_tail: bytes = b""
    exit_text: str | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    supervisor: asyncio.Task | None = None
    start_log: Path | None = None  # the file it writes the starts of its runs to
    started_at: float = field(default_factory=time.time)  # wall clock, as shown
    heard_at: float | None = None  # wall-clock time of its last frame (a pong at least)
    jobs_done: int = 0
    draining: bool = False  # halts once its current job is over (`LocalExecutor.drain`)
    one_time: bool = False  # started for one `fresh_worker` run; exits after it
    #: The functions it holds: each is sent to it once (`shared.HeldFunctions`).
    functions: HeldFunctions = field(default_factory=HeldFunctions)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def spare(self) -> bool:
        """Free for any job: starting or idle, promised to no run and kept for no kernel."""
        return (
            self.state in (WorkerState.STARTING, WorkerState.IDLE)
            and not self.reserved
            and self.kernel is None
            and self.takes_jobs
        )

    @property
    def takes_jobs(self) -> bool:
        """False for a worker that takes no job beyond its own: drained, or one-time."""
        return not (self.draining or self.one_time)

    @property
    def has_queue(self) -> bool:
        """Whether it will start (or may start) another run once its current one ends."""
        return bool(self.ahead or self.withdrawn or self.reclaimed)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        self.send_frames([(header, body)])

    def send_frames(self, frames: list[protocol.Frame]) -> None:
        """One write, so one system call and one wake-up of the worker, for all `frames`; a
        large body is written as it is, not copied behind its head."""
        assert self.writer is not None
        small: list[bytes] = []
        for header, body in frames:
            small.append(protocol.encode_head(header, len(body)))
            if len(body) <= protocol.JOIN_LIMIT:
                small.append(body)
                continue
            self.writer.write(b"".join(small))
            self.writer.write(body)
            small = []
        if small:
            self.writer.write(b"".join(small))


@dataclass(frozen=True)
class WorkerView:
    """A worker as plain data: what it is doing, and which jobs wait in it."""

    pid: int
    interpreter: str
    state: WorkerState
    spare: bool
    kernel: str | None  # the kernel it is kept for, if any
    running: int | None  # the job id it runs
    ahead: tuple[int, ...]  # job ids sent ahead to it, in the order it starts them
    asked_back: tuple[int, ...]  # job ids asked back ("skip" sent, no answer yet)
    draining: bool
    one_time: bool
    jobs_done: int


class WorkerPool:
    """The workers of one local executor, in the order they were started."""

    def __init__(self) -> None:
        self._workers: list[Worker] = []

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self._workers))

    def add(self, worker: Worker) -> None:
        self._workers.append(worker)

    def remove(self, worker: Worker) -> None:
        self._workers.remove(worker)

    def live(self) -> list[Worker]:
        """Workers that are or will be able to take a job (not retiring, not dead)."""
        usable = (WorkerState.STARTING, WorkerState.IDLE, WorkerState.BUSY)
        return [w for w in self._workers if w.state in usable and w.takes_jobs]

    def idle(self, interpreter: str, kernel: str | None = None) -> Worker | None:
        """An idle worker of `interpreter`: the one kept for `kernel` (a cell's), else one kept
        for nobody."""
        idle = [
            w
            for w in self._workers
            if w.interpreter == interpreter
            and w.state is WorkerState.IDLE
            and not w.reserved
            and w.takes_jobs
        ]
        kept = next((w for w in idle if kernel is not None and w.kernel == kernel), None)
        return kept or next((w for w in idle if w.kernel is None), None)

    def spare(self, interpreter: str) -> Worker | None:
        return next((w for w in self._workers if w.interpreter == interpreter and w.spare), None)

    def kept(self) -> list[Worker]:
        """Idle workers kept for a kernel's next cell."""
        return [w for w in self._workers if w.state is WorkerState.IDLE and w.kernel is not None]

    def sent_ahead(self) -> int:
        """Runs sent ahead to busy workers, not started yet."""
        return sum(len(w.ahead) for w in self._workers)

    def between_jobs(self) -> int:
        """Workers between two runs with more to start (they count as taken)."""
        return sum(1 for w in self._workers if w.run is None and w.has_queue)

    def view(self) -> list[WorkerView]:
        return [_view(w) for w in self._workers]

    def infos(self, host: str, executor: str) -> list[WorkerInfo]:
        """Each worker as shown (`GET /jobs/api/workers`); `host` is this machine's name."""
        return [_info(w, host, executor) for w in self._workers if w.state is not WorkerState.DEAD]

    def find(self, worker_id: str, host: str) -> Worker | None:
        """The worker whose `WorkerInfo.id` is `worker_id` (not dead), or None."""
        for worker in self._workers:
            if worker.state is not WorkerState.DEAD and worker_id == _worker_id(worker, host):
                return worker
        return None

    def view_of(self, job_id: int) -> WorkerView | None:
        """The worker that runs `job_id`, or holds it ahead or asked back; None if none does."""
        for worker in self._workers:
            view = _view(worker)
            if job_id == view.running or job_id in view.ahead or job_id in view.asked_back:
                return view
        return None


def _view(worker: Worker) -> WorkerView:
    return WorkerView(
        pid=worker.pid,
        interpreter=worker.interpreter,
        state=worker.state,
        spare=worker.spare,
        kernel=worker.kernel,
        running=worker.run.task.job_id if worker.run is not None else None,
        ahead=tuple(run.task.job_id for run in worker.ahead),
        asked_back=tuple(worker.reclaimed),
        draining=worker.draining,
        one_time=worker.one_time,
        jobs_done=worker.jobs_done,
    )


def _worker_id(worker: Worker, host: str) -> str:
    return f"{host}:{worker.pid}"


#: What a worker that is not drained shows, by its state in the executor.
_SHOWN = {
    WorkerState.STARTING: WorkerStatus.STARTING,
    WorkerState.IDLE: WorkerStatus.IDLE,
    WorkerState.BUSY: WorkerStatus.BUSY,
    WorkerState.RETIRING: WorkerStatus.RETIRING,
}


def _info(worker: Worker, host: str, executor: str) -> WorkerInfo:
    state = _SHOWN[worker.state]
    if worker.draining and state is not WorkerStatus.RETIRING:
        state = WorkerStatus.DRAINING
    elif state is WorkerStatus.IDLE and worker.kernel is not None:
        state = WorkerStatus.KEPT
    run = worker.run
    return WorkerInfo(
        id=_worker_id(worker, host),
        pid=worker.pid,
        host=host,
        executor=executor,
        state=state,
        job=run.task.job_id if run is not None else None,
        job_name=run.task.name if run is not None else None,
        started_at=worker.started_at,
        heartbeat_at=worker.heard_at,
        jobs_done=worker.jobs_done,
        waiting=len(worker.ahead),
        one_time=worker.one_time,
        drainable=state not in (WorkerStatus.DRAINING, WorkerStatus.RETIRING),
        interpreter=worker.interpreter,
    )
