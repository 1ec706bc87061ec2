"""Workers you can see, on real worker processes: the local executor's `workers()` view, its
heartbeat, `min_workers`, draining a worker, and `fresh_worker` (a one-time worker). Processes
are checked through psutil, not only through what the executor says."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import dill
import psutil
import pytest
from traitlets import TraitError

from jupyter_jobs.errors import WorkerNotFound
from jupyter_jobs.executors.local import PING_INTERVAL, LocalExecutor
from jupyter_jobs.models import Outcome, Status
from jupyter_jobs.worker_info import WorkerInfo, WorkerStatus

import workers_util as wu


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def workers_where(executor: LocalExecutor, check, timeout: float = 30.0):
    """The executor's workers once `check(workers)` holds."""

    async def look():
        while True:
            found = await executor.workers()
            if check(found):
                return found
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(look(), timeout)


def of(workers: list[WorkerInfo], pid: int) -> WorkerInfo | None:
    return next((w for w in workers if w.pid == pid), None)


async def test_workers_shows_each_process_with_its_job_and_heartbeat(tmp_path: Path) -> None:
    recorder = wu.Recorder()
    async with wu.running_executor(recorder, max_workers=2) as executor:
        idle = await workers_where(executor, lambda ws: any(w.state == "idle" for w in ws))
        worker = next(w for w in idle if w.state is WorkerStatus.IDLE)
        assert alive(worker.pid)
        assert worker.host == socket.gethostname() and worker.id == f"{worker.host}:{worker.pid}"
        assert worker.executor == "local" and worker.drainable and worker.jobs_done == 0
        assert worker.started_at <= time.time() and worker.heartbeat_at is not None
        gate = tmp_path / "gate"
        task = wu.function_task(wu.waits_for, str(gate))
        await executor.run(task)
        busy = await workers_where(executor, lambda ws: any(w.job == task.job_id for w in ws))
        running = next(w for w in busy if w.job == task.job_id)
        assert running.state is WorkerStatus.BUSY and running.job_name == "waits_for"
        # A busy worker answers pings too: its heartbeat moves on while its job runs.
        beat = running.heartbeat_at
        later = await workers_where(
            executor, lambda ws: of(ws, running.pid).heartbeat_at > beat, 3 * PING_INTERVAL + 5
        )
        assert of(later, running.pid).state is WorkerStatus.BUSY
        gate.touch()
        assert (await recorder.done(task.job_id)).status is Status.SUCCEEDED
        done = await workers_where(executor, lambda ws: of(ws, running.pid).jobs_done == 1)
        assert of(done, running.pid).state is WorkerStatus.IDLE
        assert of(done, running.pid).job is None


async def test_min_workers_are_started_and_kept_after_jobs(tmp_path: Path) -> None:
    recorder = wu.Recorder()
    async with wu.running_executor(
        recorder, max_workers=3, min_workers=3, warm_workers=False, cell_linger=0
    ) as executor:
        first = await workers_where(executor, lambda ws: len(ws) == 3)
        assert all(alive(w.pid) for w in first)
        # Jobs that end their worker: a cell (no linger: it retires), a fresh-worker job, and
        # a drained worker. The pool comes back to three live processes each time.
        cell = wu.cell_task("x = 1", kernel="k1")
        fresh = wu.function_task(wu.add, 1, 2)
        fresh.fresh_worker = True
        plain = [wu.function_task(wu.add, i, 1) for i in range(4)]
        for task in (cell, fresh, *plain):
            await executor.run(task)
        for task in (cell, fresh, *plain):
            assert (await recorder.done(task.job_id)).status is Status.SUCCEEDED
        idle = await workers_where(executor, lambda ws: any(w.state == "idle" for w in ws))
        victim = next(w for w in idle if w.state is WorkerStatus.IDLE)
        await executor.drain(victim.id)

        def standing(ws: list[WorkerInfo]) -> set[int]:
            ready = (WorkerStatus.IDLE, WorkerStatus.STARTING)
            return {w.pid for w in ws if w.state in ready and alive(w.pid)}

        after = standing(await workers_where(executor, lambda ws: len(standing(ws)) >= 3))
        assert victim.pid not in after
        await asyncio.wait_for(_gone(victim.pid), 30)
        # The cell's worker retired, and the drained one: replaced, not counted.
        assert len({w.pid for w in first} - after) >= 2


async def _gone(pid: int) -> None:
    while alive(pid):
        await asyncio.sleep(0.02)


def test_min_workers_above_max_workers_is_refused() -> None:
    with pytest.raises(TraitError, match="min_workers"):
        LocalExecutor(wu.Recorder(), 2, min_workers=3)


async def test_min_workers_of_a_broken_interpreter_are_not_restarted_in_a_loop(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\necho started >> {starts}\nexit 5\n")
    fake.chmod(0o755)
    recorder = wu.Recorder()
    async with wu.running_executor(
        recorder, max_workers=2, min_workers=2, interpreter=str(fake)
    ) as executor:
        await wu.wait_for(lambda: starts.exists() and not executor.pool.view())
        await asyncio.sleep(0.5)  # time for a loop to show
        assert len(starts.read_text().split()) == 2 and not executor.pool.view()


async def test_a_drained_worker_finishes_its_job_then_exits(tmp_path: Path) -> None:
    recorder = wu.Recorder()
    async with wu.running_executor(recorder, max_workers=1) as executor:
        gate = tmp_path / "gate"
        task = wu.function_task(wu.waits_for, str(gate))
        await executor.run(task)
        busy = await workers_where(executor, lambda ws: any(w.job == task.job_id for w in ws))
        worker = next(w for w in busy if w.job == task.job_id)
        drained = await executor.drain(worker.id)
        assert drained.state is WorkerStatus.DRAINING and not drained.drainable
        assert drained.job == task.job_id
        # Its job goes on, the worker with it, and no other job goes to it meanwhile.
        later = wu.function_task(wu.whoami)
        await executor.run(later)
        assert alive(worker.pid) and later.job_id not in recorder.outcomes
        assert of(await executor.workers(), worker.pid).state is WorkerStatus.DRAINING
        gate.touch()
        assert (await recorder.done(task.job_id)).status is Status.SUCCEEDED
        await asyncio.wait_for(_gone(worker.pid), 30)
        outcome = await recorder.done(later.job_id)
        assert outcome.status is Status.SUCCEEDED
        assert pid_of(outcome) != worker.pid
        # The process exits before the pool reaps it: the listing drops it soon after.
        await workers_where(executor, lambda ws: of(ws, worker.pid) is None)


def pid_of(outcome: Outcome) -> int:
    """The pid `wu.whoami` returned."""
    return dill.loads(outcome.result)["pid"]


async def test_a_drained_idle_worker_exits_at_once_and_a_spare_replaces_it() -> None:
    recorder = wu.Recorder()
    async with wu.running_executor(recorder, max_workers=2) as executor:
        ws = await workers_where(executor, lambda ws: any(w.state == "idle" for w in ws))
        idle = next(w for w in ws if w.state is WorkerStatus.IDLE)
        drained = await executor.drain(idle.id)
        assert drained.state is WorkerStatus.RETIRING
        await asyncio.wait_for(_gone(idle.pid), 30)
        spare = await workers_where(executor, lambda ws: any(w.state == "idle" for w in ws))
        assert idle.pid not in {w.pid for w in spare}
        with pytest.raises(WorkerNotFound):
            await executor.drain(idle.id)


async def test_jobs_sent_ahead_to_a_drained_worker_run_elsewhere(tmp_path: Path) -> None:
    recorder = wu.Recorder()
    async with wu.running_executor(recorder, max_workers=1) as executor:
        executor.recent_run_time = 0.001  # short jobs: some are sent ahead to the busy worker
        gate = tmp_path / "gate"
        first = wu.function_task(wu.waits_for, str(gate))
        await executor.run(first)
        ws = await workers_where(executor, lambda ws: any(w.job == first.job_id for w in ws))
        worker = next(w for w in ws if w.job == first.job_id)
        ahead = [wu.function_task(wu.whoami) for _ in range(3)]
        for task in ahead:
            await executor.run(task)
        waiting = await workers_where(executor, lambda ws: of(ws, worker.pid).waiting > 0)
        assert of(waiting, worker.pid).waiting > 0
        await executor.drain(worker.id)

        def given_back() -> bool:  # its "skipped" came: a "start" could still win till then
            return all(
                (view := executor.pool.view_of(t.job_id)) is None or view.pid != worker.pid
                for t in ahead
            )

        await wu.wait_for(given_back)
        gate.touch()
        for task in ahead:
            outcome = await recorder.done(task.job_id)
            assert outcome.status is Status.SUCCEEDED
            assert pid_of(outcome) != worker.pid
        assert (await recorder.done(first.job_id)).status is Status.SUCCEEDED
        await asyncio.wait_for(_gone(worker.pid), 30)


async def test_a_fresh_worker_job_runs_in_a_new_process_that_is_gone_after() -> None:
    recorder = wu.Recorder()
    async with wu.running_executor(recorder, max_workers=2) as executor:
        seen: set[int] = set()
        for _ in range(3):  # warm workers that ran jobs before
            task = wu.function_task(wu.whoami)
            await executor.run(task)
            seen.add(pid_of(await recorder.done(task.job_id)))
        seen |= {w.pid for w in await executor.workers()}
        assert seen and all(alive(pid) for pid in seen)
        fresh = wu.function_task(wu.sleeps, 1.0)
        fresh.fresh_worker = True
        await executor.run(fresh)
        ws = await workers_where(executor, lambda ws: any(w.job == fresh.job_id for w in ws))
        one_time = next(w for w in ws if w.job == fresh.job_id)
        assert one_time.one_time and one_time.pid not in seen and alive(one_time.pid)
        assert (await recorder.done(fresh.job_id)).status is Status.SUCCEEDED
        await asyncio.wait_for(_gone(one_time.pid), 30)
        await workers_where(executor, lambda ws: of(ws, one_time.pid) is None)
        # The warm workers are untouched, and a fresh worker is never one of them.
        assert all(alive(pid) for pid in seen)
        again = wu.function_task(wu.whoami)
        again.fresh_worker = True
        await executor.run(again)
        pid = pid_of(await recorder.done(again.job_id))
        assert pid not in seen | {one_time.pid} and pid != os.getpid()
        await asyncio.wait_for(_gone(pid), 30)
