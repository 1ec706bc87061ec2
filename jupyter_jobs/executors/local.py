"""Worker processes on this machine, kept warm so that a job starts without waiting for Python.

Each worker is `python -m jupyter_jobs.runner` in its own process group (so a kill reaches the
job's whole process tree), connected by a socket (see `processes.spawn_runner`). The executor
never unpickles: it moves opaque bytes between the consumer and the runner. Its workers live in a
`WorkerPool` (pool.py); what a run is waiting for and where it went is this module's business:
the backlog, the jobs sent ahead to busy workers and taken back by idle ones.

Process exit is watched directly (a pidfd on Linux, a waiting thread elsewhere), so a worker that
dies under a job is reported at once as `worker_lost` with its signal or exit code, and a fresh
worker takes its place.

Nothing a job starts outlives its worker: a busy worker's process tree is looked at every
`TRACK_INTERVAL` seconds (`oslayer.track_tree`; on Linux the runner adopts orphans, so the tree
holds even what daemonized), and when a worker exits, for whatever reason, its group and every
process seen in its tree are killed before its pid is reaped (so it cannot have been reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Integer, TraitError, Unicode, default

from .. import oslayer, protocol
from ..errors import WorkerNotFound
from ..models import Kind, Outcome, Progress, Reason, Status, now
from ..oslayer import ParentEnd, kill_group
from ..protocol import FrameType, WorkerState
from ..worker_info import WorkerInfo
from . import leftovers
from .base import Executor, ExecutorEvents, Task
from .pool import Worker, WorkerPool
from .processes import (
    TRACK_INTERVAL,
    describe_exit,
    done_outcome,
    failed_outcome,
    kill_outcome,
    last_words,
    not_started_outcome,
    spawn_runner,
    stop_group_async,
    wait_leader,
)

log = logging.getLogger(__name__)
#: The kinds of job a busy worker may be sent ahead of time: calls, not cells or notebooks.
_SENT_AHEAD = frozenset({Kind.FUNCTION, Kind.TYPED})

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_STDERR_TAIL = 16384
#: Seconds between two pings of every worker: its pong is its heartbeat (`WorkerInfo`).
PING_INTERVAL = 2.0
_PINGED = (WorkerState.IDLE, WorkerState.BUSY)


class WorkerStartError(Exception):
    """A worker could not be started or died before it was ready; `output` is what it wrote."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(eq=False)
class Run:
    """One task from `run` until its single `on_done`."""

    task: Task
    worker: Worker | None = None  # the worker it was sent to
    waiting_on: Worker | None = None  # the starting worker reserved for it
    dispatcher: asyncio.Task | None = None
    started_at: float | None = None  # loop time its code began in a worker; None: never began
    killing: bool = False
    reported: bool = False
    #: The worker's last "checkpoint": the result of this run should it end before "done".
    checkpoint: bytes | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class LocalExecutor(Executor):
    """Runs each task in a warm worker process of the task's interpreter.

    The kill grace comes with each `kill()` and `shutdown()` call, as the Executor interface has
    it. The workers live in `pool` (a `WorkerPool`: each worker's state, what runs or waits in it).
    """

    name = "local"
    reports_start = True  # a run sent ahead starts when its worker says "start"

    interpreter = Unicode(
        help="The Python that runs jobs which name none (default: the server's own)."
    ).tag(config=True)

    warm_workers = Bool(
        True, help="Keep a spare worker started, so that the next job need not wait for one."
    ).tag(config=True)

    min_workers = Integer(
        0,
        min=0,
        help="""Worker processes (of the default interpreter) kept started at all times, busy
        or idle: started with the executor, and replaced when one exits (a retired cell worker,
        a drained one), so that this many jobs start at once without waiting for Python. At
        most max_workers.""",
    ).tag(config=True)

    start_timeout = Float(60.0, help="Seconds a worker may take to start.").tag(config=True)

    cell_linger = Float(
        60.0,
        min=0.0,
        help="""Seconds a worker that ran a notebook's %%job cell waits for that kernel's next
        cell (the cell's `kernel` option), which then starts at once in a process that has the
        kernel's imports, as the next cell does in a kernel. A waiting worker takes nothing else
        and gives way (it retires) when its room is wanted for a spare; 0 retires it at once.""",
    ).tag(config=True)

    #: How much work (seconds, by the moving average of recent jobs' run time) each worker may
    #: have waiting behind its current job. For very short jobs the cost of fetching the next one
    #: dominates, so a few are claimed ahead and the store is written in batches; a job held back
    #: waits about this long at most, which misleads no one. Jobs longer than this are never held
    #: back, so their status and priority order stay exact.
    prefetch_seconds = 0.1
    #: At most this many jobs held back per worker, however short they are.
    prefetch_limit = 16
    #: Of the jobs held back, at most this many per worker are sent to it ahead of time, so that
    #: it starts the next one the moment the current one ends instead of waiting for this
    #: process to answer its "done". They go in batches, once half of them started (one write,
    #: one wake-up). An idle worker takes back those waiting behind a long job.
    send_ahead = 4

    @default("interpreter")
    def _default_interpreter(self) -> str:
        return sys.executable

    def __init__(
        self, events: ExecutorEvents, max_workers: int | None = None, **traits: Any
    ) -> None:
        super().__init__(events, max_workers, **traits)
        if self.max_workers is None:
            self.max_workers = os.cpu_count() or 1
        if self.min_workers > self.max_workers:
            raise TraitError(
                f"LocalExecutor.min_workers ({self.min_workers}) is more than max_workers "
                f"({self.max_workers})"
            )
        self.pool = WorkerPool()
        self.host = socket.gethostname()
        self._pinger: asyncio.Task | None = None
        #: Moving average of recent successful jobs' run time (seconds); None until one ran.
        self.recent_run_time: float | None = None
        self._env: dict[str, str] = {}
        self._lease_until: float | None = None  # the last renewal of this consumer's claims
        self._tracker: asyncio.Task | None = None
        self._record: Path | None = None  # where the processes seen are written down
        self._recorded: frozenset[tuple[int, int]] = frozenset()
        self._runs: dict[int, Run] = {}
        self._backlog: deque[Run] = deque()  # accepted, waiting for a worker of the pool
        self._warm: list[str] = [self.interpreter]  # interpreters that keep a spare worker
        self._started = False
        self._closing = False

    # -- the Executor interface -----------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.leftovers_dir is not None:
            await asyncio.to_thread(leftovers.end_left_over, self.leftovers_dir)
            self._record = leftovers.own_file(self.leftovers_dir)
        if self.start_log is not None:
            try:
                await asyncio.to_thread(self.start_log.create)
            except OSError as exc:
                log.warning("no start log (%s): a kill -9 will count claims as attempts", exc)
                self.start_log = None
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, _importable()])}
        self._tracker = asyncio.create_task(self._track_trees())
        self._pinger = asyncio.create_task(self._ping())
        self._ensure_spares()

    def free_slots(self) -> int:
        if self._closing or not self._started:
            return 0
        return max(0, self.max_workers + self._prefetch() - len(self._runs))

    def _prefetch(self) -> int:
        if self.recent_run_time is None:
            return 0
        per_worker = self.prefetch_seconds / max(self.recent_run_time, 1e-6)
        return self.max_workers * min(self.prefetch_limit, int(per_worker))

    def _active(self) -> int:
        """Workers taken: by a run, by runs sent ahead to it, or reserved for a waiting run."""
        pool = self.pool
        return len(self._runs) - len(self._backlog) - pool.sent_ahead() + pool.between_jobs()

    def running(self) -> list[tuple[int, int]]:
        return [(run.task.job_id, run.task.attempt) for run in self._runs.values()]

    def waiting(self) -> list[int]:
        """Job ids taken by `run` that are in no worker yet, in the order they will go to one."""
        return [run.task.job_id for run in self._backlog]

    def capabilities(self) -> dict[str, Any]:
        return {
            **super().capabilities(),
            "max_workers": self.max_workers,
            "min_workers": self.min_workers,
            "drain": True,
        }

    async def workers(self) -> list[WorkerInfo]:
        return self.pool.infos(self.host, self.name)

    async def drain(self, worker_id: str) -> WorkerInfo:
        """Its current job (or the one it starts for) ends as usual, then it exits; jobs sent
        ahead to it are asked back for the others. An idle worker exits at once. A spare
        takes its place (`min_workers`, `warm_workers`)."""
        worker = self.pool.find(worker_id, self.host)
        if worker is None:
            raise WorkerNotFound(worker_id)
        if not worker.draining and worker.state is not WorkerState.RETIRING:
            worker.draining = True
            for run in list(worker.ahead):  # it starts none of them: the backlog takes them
                worker.ahead.remove(run)
                worker.reclaimed[run.task.job_id] = run
                worker.send({"t": FrameType.SKIP.value, "job_id": run.task.job_id})
            if worker.state is WorkerState.IDLE and not worker.reserved:
                self._retire(worker)
            self._ensure_spares()
        return next(i for i in self.pool.infos(self.host, self.name) if i.id == worker_id)

    async def _ping(self) -> None:
        """Ping every worker now and then: its pong (any frame) is its heartbeat. The runner
        answers from a thread of its own, so a busy worker answers too, unless its job holds
        the interpreter (a long call into C that keeps the GIL): then its heartbeat ages."""
        while True:
            await asyncio.sleep(PING_INTERVAL)
            for worker in self.pool:
                if worker.writer is not None and worker.state in _PINGED:
                    worker.send({"t": FrameType.PING.value})

    def renew_lease(self, until: float) -> None:
        """Tell every worker with a run (current or sent ahead) that it may go on until
        `until`; a worker whose run passes its time unrenewed ends it itself (runner.py)."""
        self._lease_until = until
        for worker in self.pool:
            if worker.writer is not None and (worker.run is not None or worker.ahead):
                worker.send({"t": FrameType.LEASE.value, "until": until})

    async def _track_trees(self) -> None:
        """Remember what busy workers' jobs started, before a worker's death can orphan it."""
        while True:
            await asyncio.sleep(TRACK_INTERVAL)
            busy = [w.pid for w in self.pool if w.run is not None and w.state is WorkerState.BUSY]
            if busy:
                await asyncio.to_thread(self._track, busy)

    def _track(self, pids: list[int]) -> None:
        """Track the trees of `pids` (a thread), and write them down when they changed."""
        seen = [process for pid in pids for process in oslayer.track_tree(pid)]
        now_seen = frozenset((p.pid, id(p)) for p in seen)
        if self._record is not None and now_seen != self._recorded:
            try:
                leftovers.record(self._record, seen)
                self._recorded = now_seen
            except OSError as exc:
                log.warning("cannot write down the processes of jobs: %s", exc)

    async def run(self, task: Task) -> None:
        if not self._started or self._closing:
            raise RuntimeError("the local executor is not running")
        if task.job_id in self._runs:
            raise RuntimeError(f"job {task.job_id} is already running in this executor")
        # free_slots() may have shrunk since the consumer asked (the prefetch depth follows recent
        # run times): what it claimed then is still taken, and waits in the backlog.
        if self._closing or len(self._runs) >= self.max_workers * (1 + self.prefetch_limit):
            raise RuntimeError("no free worker slot: check free_slots() before run()")
        run = Run(task)
        self._runs[task.job_id] = run
        interpreter = task.interpreter or self.interpreter
        if interpreter not in self._warm:
            self._warm.append(interpreter)
        worker = self._idle_for(run, interpreter)
        if self._active() > self.max_workers:  # counting this run: every worker is taken
            self._backlog.append(run)
            self._send_ahead()
        elif worker is not None:
            await self._dispatch(run, worker)
        else:
            self._wait_for_worker(run, interpreter)
        self._ensure_spares()

    async def kill(self, job_id: int, reason: Reason | None, grace: float) -> None:
        """End a run. At shutdown, a run that never started ends `queued` instead, so that
        its job returns to the queue rather than failing without having run."""
        run = self._runs.get(job_id)
        if run is None or run.reported:
            return
        if run.killing:
            await run.finished.wait()
            return
        run.killing = True
        give_back = self._closing and run.started_at is None
        exit_text = None
        if run in self._backlog:  # never reached a worker: nothing to stop
            self._backlog.remove(run)
        elif run.worker is not None and (
            run in run.worker.ahead or run.task.job_id in run.worker.reclaimed
        ):
            self._withdraw(run, run.worker, grace)
        elif run.worker is None and run.dispatcher is not None:
            run.dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.dispatcher
            waiting_on = run.waiting_on
            waiting_on.reserved = False  # it becomes a spare once ready
            if not waiting_on.takes_jobs and waiting_on.state is WorkerState.IDLE:
                self._retire(waiting_on)  # started for this run alone
        if run.worker is not None:
            exit_text = await self._terminate(run.worker, grace)
        if give_back:
            self._finish(run, not_started_outcome())
        else:
            self._finish(run, kill_outcome(reason, exit_text, run.checkpoint))

    def _withdraw(self, run: Run, worker: Worker, grace: float) -> None:
        """Take back a run sent ahead, for good. It ends now; the worker drops it when it reads
        "skip". Should it have started it already, its "start" frame tells, and the worker is
        stopped then."""
        job_id = run.task.job_id
        if worker.reclaimed.pop(job_id, None) is None:  # else "skip" is on its way already
            worker.ahead.remove(run)
            worker.send({"t": FrameType.SKIP.value, "job_id": job_id})
        worker.withdrawn[job_id] = grace
        run.worker = None

    async def shutdown(self, grace: float) -> None:
        self._closing = True
        await asyncio.gather(*(self.kill(j, Reason.INTERRUPTED, grace) for j in list(self._runs)))
        workers = [w for w in self.pool if w.state is not WorkerState.DEAD]
        await asyncio.gather(*(self._terminate(w, grace) for w in workers))
        for task in (self._tracker, self._pinger):
            if task is not None:
                task.cancel()
        self._tracker = self._pinger = None
        if self._record is not None:
            self._record.unlink(missing_ok=True)

    # -- dispatch -------------------------------------------------------------------------

    async def _dispatch(self, run: Run, worker: Worker) -> None:
        self._send_job(run, worker)
        # A worker dying right now fails the drain; its exit reports the run as worker_lost.
        with contextlib.suppress(ConnectionError):
            await worker.writer.drain()

    def _send_job(self, run: Run, worker: Worker) -> None:
        worker.state, worker.run, run.worker = WorkerState.BUSY, run, worker
        worker.kernel = None  # busy; kept again once done, if it is a cell's
        payload = worker.functions.send(run.task.payload)  # each function once per worker
        worker.send(*protocol.job_frame(self._job_header(run.task), payload))
        self._report_start(run)

    def _report_start(self, run: Run) -> None:
        """The run's code begins now (sent to an idle worker, or its "start" came): its one
        on_started. A run that starts in a doomed worker never gets here (see `_on_ahead`)."""
        run.started_at = asyncio.get_running_loop().time()
        self._notify("on_started", run.task)

    def _reclaim(self) -> None:
        """With nothing left in the backlog, an idle worker takes a run sent ahead to a busy
        one, which may be stuck on a long job: the busy worker is asked for it back."""
        if self._backlog or self._closing:
            return
        for worker in self.pool:
            if self._active() >= self.max_workers:
                return  # an idle spare beyond the slots takes nothing
            if (
                worker.state is not WorkerState.IDLE
                or worker.reserved
                or worker.kernel is not None
                or not worker.takes_jobs
            ):
                continue
            donors = [
                w
                for w in self.pool
                if w.ahead and not w.doomed and w.interpreter == worker.interpreter
            ]
            if not donors:
                continue
            donor = max(donors, key=lambda w: len(w.ahead))
            run = donor.ahead.pop()  # the one it would start last
            donor.reclaimed[run.task.job_id] = run
            donor.send({"t": FrameType.SKIP.value, "job_id": run.task.job_id})

    def _takes_ahead(self, worker: Worker, interpreter: str, batches: dict) -> bool:
        current = worker.run
        if current is not None and Kind(current.task.kind) is Kind.CELL:
            return False  # its worker then waits for the kernel's next cell, or retires
        room = self.send_ahead - len(worker.ahead)
        return (
            worker.state is WorkerState.BUSY
            and worker.takes_jobs
            and worker.interpreter == interpreter
            and room > 0
            and (worker in batches or room >= (self.send_ahead + 1) // 2)
        )

    def _job_header(self, task: Task) -> dict[str, Any]:
        lease_until = task.lease_until
        if lease_until is not None and self._lease_until is not None:
            # A renewal since the claim covers it too (a heartbeat renews all our claims).
            lease_until = max(lease_until, self._lease_until)
        return protocol.job_header(
            job_id=task.job_id,
            attempt=task.attempt,
            kind=Kind(task.kind).value,
            name=task.name,
            cwd=task.cwd,
            options=task.options,
            log_limit=self.log_limit,
            progress_interval=self.progress_interval,
            lease_until=lease_until,
            result_dir=None if self.result_dir is None else str(self.result_dir),
        )

    def _take_backlog(self) -> None:
        """Hand waiting runs to the workers that came free, then send some ahead."""
        while self._backlog and self._active() < self.max_workers:
            run = self._backlog.popleft()
            interpreter = run.task.interpreter or self.interpreter
            worker = self._idle_for(run, interpreter)
            if worker is not None:
                self._send_job(run, worker)
            else:
                self._wait_for_worker(run, interpreter)
        self._send_ahead()
        self._reclaim()

    def _send_ahead(self) -> None:
        """Send short function and typed jobs from the backlog to busy workers (see
        `send_ahead`); a typed job is a function call too, by name.

        Only while jobs are short (prefetching is on), and never behind a cell job (its worker
        is the kernel's) or to a doomed worker (it is "retiring", not "busy").
        """
        if self._closing or not self._prefetch():
            return
        batches: dict[Worker, list[protocol.Frame]] = {}
        while self._backlog:
            run = self._backlog[0]
            if Kind(run.task.kind) not in _SENT_AHEAD or run.task.fresh_worker:
                break
            interpreter = run.task.interpreter or self.interpreter
            workers = [w for w in self.pool if self._takes_ahead(w, interpreter, batches)]
            if not workers:
                break
            worker = min(workers, key=lambda w: len(w.ahead))
            self._backlog.popleft()
            worker.ahead.append(run)
            run.worker = worker
            header = {**self._job_header(run.task), "queued": True}
            payload = worker.functions.send(run.task.payload)  # each function once per worker
            frame = protocol.job_frame(header, payload)
            batches.setdefault(worker, []).append(frame)
        for worker, frames in batches.items():
            worker.send_frames(frames)

    def _idle_for(self, run: Run, interpreter: str) -> Worker | None:
        """An idle worker that may take `run` now (never one for a `fresh_worker` run)."""
        if run.task.fresh_worker:
            return None
        return self.pool.idle(interpreter, _kernel_of(run.task))

    def _wait_for_worker(self, run: Run, interpreter: str) -> None:
        """Reserve a starting spare of the interpreter (or start a worker) and run when ready.
        A `fresh_worker` run gets a worker started for it alone (`one_time`)."""
        fresh = run.task.fresh_worker
        worker = None if fresh else self.pool.spare(interpreter)
        if worker is None:
            try:
                worker = self._start_worker(interpreter)
            except OSError as exc:
                self._forget(interpreter)
                message = f"cannot start a worker with interpreter {interpreter!r}: {exc}"
                self._finish(run, failed_outcome(Reason.ERROR, "WorkerStartError", message))
                return
            worker.one_time = fresh
        worker.reserved = True
        run.waiting_on = worker
        run.dispatcher = asyncio.create_task(self._dispatch_when_ready(run, worker))

    async def _dispatch_when_ready(self, run: Run, worker: Worker) -> None:
        try:
            await asyncio.shield(worker.ready)
        except WorkerStartError as exc:
            outcome = failed_outcome(Reason.WORKER_LOST, "WorkerStartError", str(exc))
            outcome.error.traceback = exc.output
            self._finish(run, outcome)
            return
        finally:
            worker.reserved = False
        if worker.state is not WorkerState.IDLE:  # it died between saying ready and getting the job
            message = f"the worker process (pid {worker.pid}) died: {worker.exit_text}"
            self._finish(run, failed_outcome(Reason.WORKER_LOST, "WorkerLost", message))
            return
        await self._dispatch(run, worker)

    def _finish(self, run: Run, outcome: Outcome) -> None:
        """The single on_done of a run."""
        if run.reported:
            return
        run.reported = True
        self._runs.pop(run.task.job_id, None)
        if run.worker is not None and run.worker.run is run:
            run.worker.run = None
        if run.started_at is not None and outcome.status is Status.SUCCEEDED:
            took = asyncio.get_running_loop().time() - run.started_at
            recent = self.recent_run_time
            self.recent_run_time = took if recent is None else 0.8 * recent + 0.2 * took
        run.finished.set()
        self._notify("on_done", run.task, outcome)
        if not self._closing:
            self._take_backlog()

    # -- workers --------------------------------------------------------------------------

    def _cap(self) -> int:
        # One spare per warm interpreter on top of the slots: workers coming back from
        # function jobs are kept, so a stream of jobs never starts or stops a process.
        return self.max_workers + len(self._warm)

    def _ensure_spares(self) -> None:
        """Keep `min_workers` workers of the default interpreter started, and one spare (idle
        or starting) worker per warm interpreter."""
        if self._closing:
            return
        standing = sum(1 for w in self.pool.live() if w.interpreter == self.interpreter)
        # (An interpreter whose workers die before they are ready is forgotten: no restart loop.)
        wanted = self.min_workers if self.interpreter in self._warm else 0
        for _ in range(wanted - standing):
            try:
                self._start_worker(self.interpreter)
            except OSError as exc:
                log.error("cannot start a worker with interpreter %r: %s", self.interpreter, exc)
                self._forget(self.interpreter)
                break
        if not self.warm_workers:
            return
        for interpreter in list(self._warm):
            live = self.pool.live()
            if any(w.spare and w.interpreter == interpreter for w in live):
                continue
            if len(live) >= self._cap() and not self._release_kept():
                return
            try:
                self._start_worker(interpreter)
            except OSError as exc:
                log.error("cannot start a worker with interpreter %r: %s", interpreter, exc)
                self._forget(interpreter)

    def _forget(self, interpreter: str) -> None:
        """No more spares for an interpreter that cannot start workers (no restart loops)."""
        if interpreter in self._warm:
            self._warm.remove(interpreter)

    def _trim_idle(self) -> None:
        """Retire idle workers beyond the cap: those kept for a kernel first (the longest
        kept first), then those of non-default interpreters."""
        excess = len(self.pool.live()) - self._cap()
        idle = [w for w in self.pool if w.state is WorkerState.IDLE and not w.reserved]
        idle.sort(key=lambda w: (w.kernel is None, w.kept_since, w.interpreter == self.interpreter))
        for worker in idle[: max(0, excess)]:
            self._retire(worker)

    def _retire(self, worker: Worker) -> None:
        worker.state, worker.kernel = WorkerState.RETIRING, None
        worker.send({"t": FrameType.EXIT.value})

    def _keep(self, worker: Worker, kernel: str) -> None:
        """After a cell: the worker waits for its kernel's next cell, `cell_linger` at most."""
        loop = asyncio.get_running_loop()
        worker.state, worker.kernel, worker.kept_since = WorkerState.IDLE, kernel, loop.time()
        loop.call_later(self.cell_linger, self._linger_ended, worker, worker.kept_since)

    def _linger_ended(self, worker: Worker, since: float) -> None:
        kept = worker.state is WorkerState.IDLE and worker.kernel is not None
        if kept and worker.kept_since == since:
            self._retire(worker)
            self._ensure_spares()

    def _release_kept(self) -> bool:
        """Make room: retire the worker kept longest for a kernel (False if none is)."""
        kept = self.pool.kept()
        if not kept:
            return False
        self._retire(min(kept, key=lambda w: w.kept_since))
        return True

    def _start_worker(self, interpreter: str) -> Worker:
        starts = self.start_log.take_file() if self.start_log is not None else None
        try:
            proc, end = spawn_runner(
                interpreter, stderr=subprocess.PIPE, env=self._env, start_log=starts
            )
        except OSError:
            self._release_start_log(starts)
            raise
        loop = asyncio.get_running_loop()
        worker = Worker(interpreter, proc, loop.create_future(), _exit_future(proc, loop))
        worker.start_log = starts
        # Nobody may be waiting when a spare fails to start; the exit is logged instead.
        worker.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.pool.add(worker)
        worker.supervisor = asyncio.create_task(self._supervise(worker, end))
        return worker

    async def _supervise(self, worker: Worker, end: ParentEnd) -> None:
        """Read the worker's frames and stderr until it exits, then settle its run."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.start_timeout, self._start_timed_out, worker)
        readers = [asyncio.create_task(self._read_stderr(worker))]
        try:
            sock = await self._connection(worker, end)
        finally:
            end.close()
        if sock is not None:
            reader, worker.writer = await asyncio.open_connection(sock=sock, limit=2**20)
            readers.append(asyncio.create_task(self._read_frames(worker, reader)))
        returncode = await worker.exited
        timer.cancel()
        # Frames written just before the exit are still in flight: take them first. A child
        # the job forked may hold the socket open, hence the bound.
        _, pending = await asyncio.wait(readers, timeout=1.0)
        for task in pending:
            task.cancel()
        if worker.writer is not None:
            worker.writer.close()
        worker.state = WorkerState.DEAD
        worker.exit_text = describe_exit(returncode)
        self._release_start_log(worker.start_log)  # it is reaped: it writes no more
        self.pool.remove(worker)
        self._on_exit(worker, worker.exit_text)
        worker.gone.set()

    def _release_start_log(self, file: Path | None) -> None:
        if file is not None and self.start_log is not None:
            self.start_log.release(file)

    async def _connection(self, worker: Worker, end: ParentEnd) -> socket.socket | None:
        """The worker's socket once it is there; None if it exited first (or a start timeout
        stopped it)."""
        accepting = asyncio.ensure_future(end.accept_async())
        await asyncio.wait({accepting, worker.exited}, return_when=asyncio.FIRST_COMPLETED)
        if not accepting.done():
            accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accepting
            return None
        try:
            return accepting.result()
        except OSError as exc:
            log.error("worker %d: its channel could not be set up: %s", worker.pid, exc)
            kill_group(worker.pid)
            return None

    def _on_exit(self, worker: Worker, exit_text: str) -> None:
        output = worker.stderr_tail.decode(errors="replace").strip()
        words = last_words(output)
        said = f": {words}" if words else ""
        if not worker.ready.done():
            message = f"the worker ({worker.interpreter}) ended before it was ready: {exit_text}"
            worker.ready.set_exception(WorkerStartError(message + said, output))
            if not self._closing:
                # A worker that cannot start would only crash again: no automatic restarts
                # for this interpreter until a task asks for it.
                self._forget(worker.interpreter)
                log.error("%s%s", message, said)
        self._take_back(worker)
        run = worker.run
        if run is not None and not run.reported and not run.killing:
            message = f"the worker process (pid {worker.pid}) died: {exit_text}{said}"
            outcome = failed_outcome(Reason.WORKER_LOST, "WorkerLost", message, exit_text)
            outcome.error.traceback = output
            outcome.result = run.checkpoint
            self._finish(run, outcome)
        if not self._closing:  # its slot, or the runs taken back, may let the backlog move
            self._take_backlog()
        self._ensure_spares()

    def _take_back(self, worker: Worker) -> None:
        """The runs sent ahead to a worker that is gone never started (or began only after it
        was doomed, and were cut short through no fault of theirs): they go back to the front
        of the backlog."""
        back = [*worker.reclaimed.values(), *worker.ahead]
        worker.ahead.clear()
        worker.withdrawn.clear()
        worker.reclaimed.clear()
        for run in back:
            run.worker = None
        self._backlog.extendleft(reversed(back))

    def _start_timed_out(self, worker: Worker) -> None:
        if not worker.ready.done():
            worker.ready.set_exception(
                WorkerStartError(
                    f"the worker ({worker.interpreter}) did not start within "
                    f"{self.start_timeout:g} s"
                )
            )
            kill_group(worker.pid)

    async def _read_frames(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        try:
            while (frame := await protocol.read_frame(reader)) is not None:
                self._on_frame(worker, *frame)
        except ConnectionError:
            return  # the worker died; its exit is handled by _supervise
        except Exception as exc:
            if isinstance(exc, protocol.ProtocolError) and worker.doomed:
                return  # stopped in the middle of a frame (a large checkpoint, say)
            # A worker that speaks nonsense cannot be trusted with its job: end it.
            log.exception("worker %d sent a bad frame; killing it", worker.pid)
            kill_group(worker.pid)

    async def _read_stderr(self, worker: Worker) -> None:
        """The runner's own diagnostics (import errors, crashes): logged and kept for errors.

        A thread reads the pipe: not every event loop can watch one (Windows' cannot)."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue()

        def read() -> None:
            with worker.proc.stderr as stream, contextlib.suppress(RuntimeError):  # loop closed
                while chunk := stream.read1(65536):
                    loop.call_soon_threadsafe(chunks.put_nowait, chunk)
                loop.call_soon_threadsafe(chunks.put_nowait, b"")

        threading.Thread(target=read, name=f"stderr-{worker.pid}", daemon=True).start()
        while chunk := await chunks.get():
            worker.stderr_tail = (worker.stderr_tail + chunk)[-_STDERR_TAIL:]
            log.warning("worker %d: %s", worker.pid, chunk.decode(errors="replace").rstrip())

    def _on_frame(self, worker: Worker, header: dict[str, Any], body: bytes) -> None:
        kind = header["t"]
        worker.heard_at = time.time()
        if kind == FrameType.PONG:
            return
        if kind == FrameType.READY:
            if worker.state is WorkerState.STARTING:
                worker.state = WorkerState.IDLE
            if not worker.ready.done():
                worker.ready.set_result(None)
            if not worker.takes_jobs and not worker.reserved:  # drained, or its run is gone
                self._retire(worker)
            self._reclaim()
            return
        if kind == FrameType.EXIT:
            worker.state = WorkerState.RETIRING
            return
        if kind == FrameType.START or kind == FrameType.SKIPPED:
            self._on_ahead(worker, kind, header.get("job_id"))
            return
        run = worker.run
        if run is None or run.reported:
            return
        if kind == FrameType.LOG:
            # A labelled stream (a thread's, a child process's: `streams.py`) names itself.
            self._notify("on_log", run.task, body, *([header["s"]] if "s" in header else []))
        elif kind == FrameType.PROGRESS:
            progress = Progress(header["done"], header.get("total"), header.get("message"), now())
            self._notify("on_progress", run.task, progress)
        elif kind == FrameType.CHECKPOINT:
            run.checkpoint = body
        elif kind == FrameType.DONE:
            worker.run = None
            worker.jobs_done += 1
            kernel = _kernel_of(run.task)
            if worker.doomed:
                worker.state = WorkerState.RETIRING
            elif not worker.takes_jobs:  # drained or one-time: it exits once nothing is left
                worker.state = WorkerState.BUSY
                self._settle(worker)
            elif Kind(run.task.kind) is Kind.CELL:
                if kernel and self.cell_linger > 0 and not self._closing:
                    self._keep(worker, kernel)
                else:
                    self._retire(worker)
            else:
                worker.state = WorkerState.BUSY if worker.has_queue else WorkerState.IDLE
            if not run.killing:  # a kill decides the outcome once it has begun
                fields = protocol.done_fields(header, body, self.result_dir)
                self._finish(run, done_outcome(fields))
                self._trim_idle()
                self._ensure_spares()
        else:
            raise protocol.ProtocolError(f"unexpected {kind!r} frame from a worker")

    def _on_ahead(self, worker: Worker, kind: str, job_id: Any) -> None:
        """A run sent ahead started, or one asked back was given back or started anyway."""
        if worker.doomed:
            # What it starts now is cut short: it stays in `ahead` (or `reclaimed`), unstarted
            # for us, and goes back to the backlog when the worker is gone (`_take_back`).
            return
        if job_id in worker.withdrawn:
            grace = worker.withdrawn.pop(job_id)
            if kind == FrameType.START:  # it read "skip" too late: stop it like any running job
                self._doom(worker)
                worker.stopper = asyncio.create_task(self._terminate(worker, grace))
                self._take_backlog()  # its slot is free: nothing of ours runs there any more
            else:
                self._settle(worker)
                self._take_backlog()
            return
        if job_id in worker.reclaimed:
            run = worker.reclaimed.pop(job_id)
            if kind == FrameType.START:  # too late to move it: it runs here
                self._begin(worker, run)
            else:
                run.worker = None
                self._backlog.appendleft(run)
                self._settle(worker)
                self._take_backlog()
            return
        run = worker.ahead[0] if worker.ahead else None
        if kind != FrameType.START or run is None or run.task.job_id != job_id:
            raise protocol.ProtocolError(f"{kind!r} of job {job_id!r}, which it was not sent")
        worker.ahead.popleft()
        self._begin(worker, run)

    def _begin(self, worker: Worker, run: Run) -> None:
        worker.run = run
        self._report_start(run)
        self._send_ahead()

    def _settle(self, worker: Worker) -> None:
        """A worker between jobs with nothing more to start is idle; a drained or one-time
        one exits."""
        if worker.state is WorkerState.BUSY and worker.run is None and not worker.has_queue:
            if worker.takes_jobs:
                worker.state = WorkerState.IDLE
            else:
                self._retire(worker)

    def _doom(self, worker: Worker) -> None:
        """From the decision to stop a worker on, it takes no job and starts nothing for us."""
        worker.doomed = True
        if worker.state is not WorkerState.DEAD:
            worker.state = WorkerState.RETIRING

    async def _terminate(self, worker: Worker, grace: float) -> str:
        """SIGTERM to the worker's process group, up to `grace` seconds, then SIGKILL.

        The worker is doomed before the first await, so no frame read meanwhile can hand it work.
        """
        self._doom(worker)
        await stop_group_async(worker.pid, grace)
        returncode = await asyncio.shield(worker.exited)
        await worker.gone.wait()
        return describe_exit(returncode)


def _importable() -> str:
    """A folder from which workers import this very jupyter_jobs, and nothing else: any
    interpreter runs the code the server runs. It holds only a link to the package, in a private
    folder named after the package's path, shared by every executor of this installation and
    kept (so a killed server leaves no folder per run behind). Where links cannot be made
    (Windows without the right to), the package's own parent."""
    try:
        folder = oslayer.short_private_dir(f"package:{_PACKAGE_DIR}")
        link = folder / "jupyter_jobs"
        with contextlib.suppress(OSError):
            if os.readlink(link) == str(_PACKAGE_DIR):
                return str(folder)
        fresh = folder / f".jupyter_jobs-{os.getpid()}-{time.monotonic_ns()}"
        os.symlink(_PACKAGE_DIR, fresh)
        os.replace(fresh, link)  # atomic: a worker starting now sees the old link or the new
        return str(folder)
    except OSError:
        return str(_PACKAGE_DIR.parent)


def _kernel_of(task: Task) -> str | None:
    """The kernel a cell job came from (the `kernel` option its magic sets), else None."""
    kernel = task.options.get("kernel") if Kind(task.kind) is Kind.CELL else None
    return kernel if isinstance(kernel, str) and kernel else None


def _exit_future(proc: subprocess.Popen, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """A future for the process's return code, set the moment it exits (and reaped)."""
    future = loop.create_future()

    def reap() -> None:
        # The leader is a zombie still, so its pid (the group's id) is not reused yet: end what
        # its jobs left running, in its group or elsewhere in its tree, then reap it.
        kill_group(proc.pid)
        oslayer.forget_tree(proc.pid)
        if not future.done():
            future.set_result(proc.wait())

    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: one waiting thread per worker

        def wait() -> None:
            wait_leader(proc)
            loop.call_soon_threadsafe(reap)

        threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()
        return future

    def exited() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        reap()

    loop.add_reader(pidfd, exited)
    return future
