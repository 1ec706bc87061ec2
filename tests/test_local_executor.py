"""LocalExecutor with real worker processes: warm pool, lost workers, kill, timeout, shutdown.

Every kill test checks the processes themselves (through /proc), not only the reported outcome:
no process of a cancelled job may be left, grandchildren and SIGTERM-deaf jobs included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dill
import psutil
import pytest

from jupyter_jobs import oslayer, start_log
from jupyter_jobs.executors.base import Task
from jupyter_jobs.executors.local import LocalExecutor
from jupyter_jobs.executors.processes import describe_exit
from jupyter_jobs.models import Reason, Status
from jupyter_jobs.protocol import WorkerState
from jupyter_jobs.start_log import StartLog

import workers_util as wu
from waiting import wait_until


@pytest.fixture
def recorder() -> wu.Recorder:
    return wu.Recorder()


@pytest.fixture
async def executor(recorder):
    async with wu.running_executor(recorder) as executor:
        yield executor


def worker_pids(executor: LocalExecutor) -> set[int]:
    return {w.pid for w in executor.pool.view()}


async def start_hanging(executor, recorder, tmp_path: Path, ignore_term: bool):
    pid_file = tmp_path / "pids"
    task = wu.function_task(wu.spawns_and_hangs, str(pid_file), ignore_term)
    await executor.run(task)
    await wu.wait_for(pid_file.exists)
    pids = wu.read_pids(pid_file)
    assert len(pids) == 4 and all(wu.alive(pid) for pid in pids)
    return task, pids


async def start_one_hanging(executor: LocalExecutor, flag: Path) -> Task:
    """Run a job that hangs once it has begun; returns when it has (its pid is in `flag`)."""
    task = wu.function_task(wu.hangs_after_start, str(flag))
    await executor.run(task)
    await wu.wait_for(flag.exists)
    return task


def test_describe_exit():
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(3) == "exit code 3"


async def test_warm_spare_is_ready_before_the_first_job(executor, recorder):
    await wu.wait_for(lambda: any(w.state is WorkerState.IDLE for w in executor.pool.view()))
    spare = next(w.pid for w in executor.pool.view() if w.state is WorkerState.IDLE)
    task = wu.function_task(wu.whoami)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert dill.loads(outcome.result)["pid"] == spare
    # A new spare is started in the background for the next job.
    await wu.wait_for(lambda: any(w.spare and w.pid != spare for w in executor.pool.view()))


async def test_slots_and_running(executor, recorder, tmp_path):
    assert executor.free_slots() == 2
    assert executor.capabilities()["max_workers"] == 2
    flags = [tmp_path / "a", tmp_path / "b"]
    tasks = [wu.function_task(wu.hangs_after_start, str(flag)) for flag in flags]
    for task in tasks:
        await executor.run(task)
    assert executor.free_slots() == 0
    assert sorted(executor.running()) == sorted((t.job_id, 1) for t in tasks)
    # Beyond the workers and the most it may ever hold back, a task is refused.
    executor.prefetch_limit = 0
    with pytest.raises(RuntimeError, match="no free worker slot"):
        await executor.run(wu.function_task(wu.add, 1))
    for flag in flags:
        await wu.wait_for(flag.exists)
    for task in tasks:
        await executor.kill(task.job_id, None, 1.0)
    assert executor.free_slots() == 2 and executor.running() == []


async def test_worker_killed_mid_job_is_reported_lost_and_replaced(executor, recorder, tmp_path):
    flag = tmp_path / "started"
    task = await start_one_hanging(executor, flag)
    os.kill(int(flag.read_text()), signal.SIGKILL)
    outcome = await recorder.done(task.job_id, timeout=10)
    assert outcome.status is Status.FAILED
    assert outcome.reason is Reason.WORKER_LOST
    assert outcome.exit == "killed by signal 9 (SIGKILL)"
    assert "killed by signal 9 (SIGKILL)" in outcome.error.message
    again = wu.function_task(wu.add, 2, 3)
    await executor.run(again)
    assert dill.loads((await recorder.done(again.job_id)).result) == 5
    assert len(recorder.outcomes[task.job_id]) == 1


async def test_worker_exit_code_is_reported(executor, recorder):
    task = wu.function_task(wu.exits, 3)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.reason is Reason.WORKER_LOST
    assert outcome.exit == "exit code 3"


async def test_a_crash_in_c_code_is_reported_with_the_python_stack(executor, recorder):
    task = wu.function_task(wu.segfaults)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.reason is Reason.WORKER_LOST
    assert outcome.exit == "killed by signal 11 (SIGSEGV)"
    assert "Fatal Python error: Segmentation fault" in outcome.error.message
    assert "in segfaults" in outcome.error.traceback  # faulthandler's stack: the job function


@pytest.mark.parametrize("ignore_term", [False, True], ids=["children", "sigterm-deaf"])
async def test_cancel_ends_the_whole_process_tree(executor, recorder, tmp_path, ignore_term):
    task, pids = await start_hanging(executor, recorder, tmp_path, ignore_term)
    other = wu.function_task(wu.hangs_after_start, str(tmp_path / "other"))
    await executor.run(other)
    await wu.wait_for((tmp_path / "other").exists)

    await asyncio.wait_for(executor.kill(task.job_id, None, 0.5), 15)
    outcome = recorder.outcomes[task.job_id][0]  # on_done happened before kill returned
    assert outcome.status is Status.CANCELLED
    assert outcome.exit is not None
    if ignore_term:
        assert outcome.exit == "killed by signal 9 (SIGKILL)"
    # Processes killed by a signal vanish at once (zombies awaiting their reaper count as gone).
    await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=5)
    # No other job was touched.
    assert other.job_id not in recorder.outcomes
    assert wu.alive(int((tmp_path / "other").read_text()))
    await executor.kill(other.job_id, None, 0.5)
    assert len(recorder.outcomes[task.job_id]) == 1


async def test_a_reused_worker_is_repaired_after_a_job_that_broke_it(executor, recorder):
    vandal = wu.function_task(wu.vandal)
    await executor.run(vandal)
    pid = dill.loads((await recorder.done(vandal.job_id)).result)
    task = wu.function_task(wu.prints, "still here")
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert dill.loads(outcome.result) == pid  # the same worker ...
    assert recorder.log_text(task.job_id) == "still here\nstill here from a child\n"
    flag_task = wu.function_task(wu.sleeps, 1000)
    await executor.run(flag_task)
    await wu.wait_for(lambda: executor.pool.view_of(flag_task.job_id) is not None)
    worker = executor.pool.view_of(flag_task.job_id)
    assert worker.pid == pid
    # ... which SIGTERM ends again at once (a grace of 20 s would time the test out).
    await asyncio.wait_for(executor.kill(flag_task.job_id, None, 20.0), 10)
    assert recorder.outcomes[flag_task.job_id][0].exit == "killed by signal 15 (SIGTERM)"


async def test_timeout_kill_fails_with_reason_timeout(executor, recorder, tmp_path):
    task, pids = await start_hanging(executor, recorder, tmp_path, ignore_term=False)
    await asyncio.wait_for(executor.kill(task.job_id, Reason.TIMEOUT, 1.0), 15)
    outcome = recorder.outcomes[task.job_id][0]
    assert outcome.status is Status.FAILED and outcome.reason is Reason.TIMEOUT
    assert outcome.error.type == "TimeoutError"
    await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=5)


async def test_exactly_one_on_done_whatever_the_order(executor, recorder, tmp_path):
    done = wu.function_task(wu.add, 1)
    await executor.run(done)
    await recorder.done(done.job_id)
    await executor.kill(done.job_id, None, 1.0)  # finished: a no-op
    await executor.kill(12345678, None, 1.0)  # unknown: a no-op

    flag = tmp_path / "flag"
    task = await start_one_hanging(executor, flag)
    await asyncio.wait_for(
        asyncio.gather(
            executor.kill(task.job_id, None, 1.0), executor.kill(task.job_id, Reason.TIMEOUT, 1.0)
        ),
        15,
    )
    assert [len(recorder.outcomes[t.job_id]) for t in (done, task)] == [1, 1]
    assert recorder.outcomes[task.job_id][0].status is Status.CANCELLED


async def test_a_stopped_notebook_ends_on_sigterm_with_what_ran_as_its_result(executor, recorder):
    # nbclient makes SIGTERM shut the kernel down and carry on: the worker would live until the
    # SIGKILL, a minute on, and say "done" with an unmarked notebook meanwhile.
    outcome = await wu.stop_in_second_cell(executor, recorder, Reason.TIMEOUT, 60.0)
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.TIMEOUT)
    assert outcome.exit == "killed by signal 15 (SIGTERM)"
    wu.assert_stopped_in_second_cell(outcome.result)


async def test_cancel_before_a_worker_is_ready(recorder, tmp_path):
    async with wu.running_executor(recorder, warm_workers=False) as executor:
        task = wu.function_task(wu.add, 1)
        await executor.run(task)  # no warm worker: it waits for a fresh one
        await executor.kill(task.job_id, None, 1.0)
        assert recorder.outcomes[task.job_id][0].status is Status.CANCELLED
        # The worker started for it serves the next job.
        again = wu.function_task(wu.add, 2)
        await executor.run(again)
        assert dill.loads((await recorder.done(again.job_id)).result) == 2
        assert len(recorder.outcomes[task.job_id]) == 1


async def test_missing_interpreter_fails_the_job_clearly(executor, recorder, tmp_path):
    task = wu.function_task(wu.add, 1)
    task.interpreter = str(tmp_path / "no-python")
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.FAILED
    assert "no-python" in outcome.error.message
    assert outcome.error.type == "WorkerStartError"


async def test_interpreter_that_cannot_run_the_worker_reports_why(executor, recorder, tmp_path):
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'fake: no dill here' >&2\nexit 5\n")
    fake.chmod(0o755)
    task = wu.function_task(wu.add, 1)
    task.interpreter = str(fake)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.FAILED and outcome.reason is Reason.WORKER_LOST
    assert "exit code 5" in outcome.error.message
    assert outcome.error.message.endswith(": fake: no dill here")
    # No restart loop for a broken interpreter.
    await asyncio.sleep(0.5)
    assert not any(w.interpreter == str(fake) for w in executor.pool.view())


async def test_large_payload_and_result_round_trip(executor, recorder):
    blob = os.urandom(20 * 1024 * 1024)
    task = wu.function_task(wu.add, blob, b"!")
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert dill.loads(outcome.result) == blob + b"!"


async def test_shutdown_interrupts_running_jobs_and_leaves_no_process(recorder, tmp_path):
    async with wu.running_executor(recorder) as executor:
        task, pids = await start_hanging(executor, recorder, tmp_path, ignore_term=True)
        await wu.wait_for(lambda: any(w.spare for w in executor.pool.view()))
        workers = worker_pids(executor)
        await asyncio.wait_for(executor.shutdown(0.5), 30)
        assert executor.free_slots() == 0
    outcome = recorder.outcomes[task.job_id][0]
    assert outcome.status is Status.FAILED and outcome.reason is Reason.INTERRUPTED
    await wu.wait_for(lambda: not any(wu.alive(pid) for pid in [*pids, *workers]), timeout=5)


SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from jupyter_jobs.executors.local import LocalExecutor

    class Events:
        def on_log(self, *a): pass
        def on_progress(self, *a): pass
        def on_done(self, *a): pass

    async def main():
        executor = LocalExecutor(Events(), 2)
        await executor.start()
        while not any(w.state == "idle" for w in executor.pool.view()):
            await asyncio.sleep(0.01)
        print(" ".join(str(w.pid) for w in executor.pool.view()), flush=True)
        await asyncio.sleep(1000)

    asyncio.run(main())
    """
)


async def test_workers_die_with_a_server_killed_by_sigkill(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 60)
        pids = [int(p) for p in line.split()]
        assert pids and all(wu.alive(pid) for pid in pids)
        server.kill()
        server.wait(timeout=10)
        await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=10)
    finally:
        server.kill()
        server.wait()


async def test_short_jobs_are_prefetched_and_a_backlogged_one_cancels_cleanly(
    executor, recorder, tmp_path
):
    # Long jobs (no run time known yet): exactly max_workers slots, nothing held back.
    assert executor.free_slots() == 2
    await teach_short(executor, recorder, limit=1)
    assert executor.free_slots() == 4  # two more, held until a worker frees up
    flags = [tmp_path / "a", tmp_path / "b"]
    hanging = [wu.function_task(wu.hangs_after_start, str(f)) for f in flags]
    for task in hanging:
        await executor.run(task)
    waiting = wu.function_task(wu.add, 41, 1)
    cancelled = wu.function_task(wu.add, 0)
    await executor.run(waiting)
    await executor.run(cancelled)
    assert executor.free_slots() == 0
    for flag in flags:
        await wu.wait_for(flag.exists)
    pids = worker_pids(executor)
    await executor.kill(cancelled.job_id, None, grace=1.0)
    assert (await recorder.done(cancelled.job_id)).status is Status.CANCELLED
    assert worker_pids(executor) >= {p for p in pids if wu.alive(p)}  # no worker was touched
    await executor.kill(hanging[0].job_id, None, grace=1.0)
    outcome = await recorder.done(waiting.job_id)  # the freed worker took the backlog
    assert outcome.status is Status.SUCCEEDED and dill.loads(outcome.result) == 42
    await executor.kill(hanging[1].job_id, None, grace=1.0)


def lose_skips(executor: LocalExecutor, pid: int) -> None:
    """Drop the "skip" frames sent to worker `pid`, as if it took each job before reading its
    skip (a fault injected into the pool's worker itself)."""
    worker = next(w for w in executor.pool if w.pid == pid)
    send = worker.send_frames
    worker.send_frames = lambda frames: send([f for f in frames if f[0]["t"] != "skip"])


def frames_seen(executor: LocalExecutor) -> list[tuple[int, str]]:
    """(worker pid, frame type) of each frame the executor handles from now on."""
    seen: list[tuple[int, str]] = []
    handle = executor._on_frame

    def spy(worker, header, body) -> None:
        seen.append((worker.pid, header["t"]))
        handle(worker, header, body)

    executor._on_frame = spy
    return seen


def waits_in_a_cell(gate: Path):
    """A cell job (never sent ahead: it waits in the backlog) that ends once `gate` exists."""
    return wu.cell_task(f"wu.waits_for({str(gate)!r})", {"wu": wu})


async def teach_short(executor, recorder, limit: int) -> None:
    """Prefetch on whatever the load: the executor believes that jobs are short."""
    executor.prefetch_seconds, executor.prefetch_limit = 1e6, limit
    for _ in range(6):
        task = wu.function_task(wu.add, 1)
        await executor.run(task)
        await recorder.done(task.job_id)


async def test_short_jobs_sent_ahead_each_run_once(executor, recorder):
    await teach_short(executor, recorder, limit=4)
    tasks = [wu.function_task(wu.whoami) for _ in range(60)]
    most_ahead = 0
    for task in tasks:
        await wu.wait_for(lambda: executor.free_slots() > 0)
        await executor.run(task)
        most_ahead = max(most_ahead, executor.pool.sent_ahead())
    assert most_ahead > 0  # some went to a busy worker ahead of time
    for task in tasks:
        outcome = await recorder.done(task.job_id)
        assert outcome.status is Status.SUCCEEDED
        assert dill.loads(outcome.result)["job"] == (task.job_id, 1)
        assert len(recorder.outcomes[task.job_id]) == 1
        assert recorder.started[task.job_id] == [1]


async def test_a_lost_worker_hands_back_the_jobs_sent_ahead_to_it(recorder, tmp_path):
    async with wu.running_executor(recorder, max_workers=1) as executor:
        await teach_short(executor, recorder, limit=4)
        flag = tmp_path / "started"
        hanging = await start_one_hanging(executor, flag)
        quick = [wu.function_task(wu.add, i, 1) for i in range(4)]
        for task in quick:
            await executor.run(task)
        worker = executor.pool.view_of(hanging.job_id)
        assert len(worker.ahead) >= 2
        os.kill(worker.pid, signal.SIGKILL)
        assert (await recorder.done(hanging.job_id)).reason is Reason.WORKER_LOST
        for i, task in enumerate(quick):  # never started: run by the next worker, not lost
            outcome = await recorder.done(task.job_id)
            assert outcome.status is Status.SUCCEEDED and dill.loads(outcome.result) == i + 1


async def test_a_job_taken_back_too_late_is_stopped_when_it_starts(recorder, tmp_path):
    async with wu.running_executor(recorder, max_workers=1) as executor:
        await teach_short(executor, recorder, limit=4)
        gate = tmp_path / "gate"
        first = wu.function_task(wu.waits_for, str(gate))
        late = wu.function_task(wu.hangs_after_start, str(tmp_path / "started"))
        await executor.run(first)
        await executor.run(late)
        worker = executor.pool.view_of(first.job_id)
        assert worker.running == first.job_id and worker.ahead == (late.job_id,)
        # The "skip" is lost on the way, as if the worker had started `late` before reading it.
        lose_skips(executor, worker.pid)
        await executor.kill(late.job_id, None, grace=1.0)
        assert (await recorder.done(late.job_id)).status is Status.CANCELLED
        gate.touch()
        assert dill.loads((await recorder.done(first.job_id)).result) == "opened"
        await wu.wait_for(lambda: not wu.alive(worker.pid))  # stopped as it started `late`
        assert len(recorder.outcomes[late.job_id]) == 1
        after = wu.function_task(wu.add, 2, 3)
        await executor.run(after)
        assert dill.loads((await recorder.done(after.job_id)).result) == 5


async def test_killing_a_job_being_taken_back_leaves_its_worker_alone(executor, recorder, tmp_path):
    await teach_short(executor, recorder, limit=4)
    flags = [tmp_path / "a", tmp_path / "b"]
    hanging = [wu.function_task(wu.hangs_after_start, str(f)) for f in flags]
    for task in hanging:
        await executor.run(task)
    for flag in flags:
        await wu.wait_for(flag.exists)
    quick = wu.function_task(wu.add, 1, 1)
    await executor.run(quick)
    donor = executor.pool.view_of(quick.job_id)
    assert quick.job_id in donor.ahead
    kept = next(t for t in hanging if t.job_id == donor.running)
    # Its answer to "skip" is lost on the way, so `quick` stays asked back, unanswered.
    lose_skips(executor, donor.pid)
    freed = next(t for t in hanging if t is not kept)
    await executor.kill(freed.job_id, None, grace=1.0)  # a slot frees: an idle worker asks
    await wu.wait_for(lambda: quick.job_id in executor.pool.view_of(quick.job_id).asked_back)
    await executor.kill(quick.job_id, None, grace=1.0)
    assert (await recorder.done(quick.job_id)).status is Status.CANCELLED
    assert wu.alive(donor.pid) and executor.pool.view_of(kept.job_id).pid == donor.pid
    assert kept.job_id not in recorder.outcomes
    await executor.kill(kept.job_id, None, grace=1.0)


async def test_prefetch_holds_at_most_about_a_tenth_of_a_second_per_worker(executor):
    assert executor.free_slots() == 2  # nothing known about run times: nothing held back
    executor.recent_run_time = 0.2  # long jobs: never held back
    assert executor.free_slots() == 2
    executor.recent_run_time = 0.01  # 10 ms jobs: ten behind each worker
    assert executor.free_slots() == 2 + 2 * 10
    executor.recent_run_time = 1e-5  # tiny jobs: the cap
    assert executor.free_slots() == 2 + 2 * executor.prefetch_limit


async def test_a_job_sent_ahead_is_reported_started_when_it_begins(recorder, tmp_path):
    async with wu.running_executor(recorder, max_workers=1) as executor:
        assert executor.reports_start
        await teach_short(executor, recorder, limit=4)
        gate = tmp_path / "gate"
        first = wu.function_task(wu.waits_for, str(gate))
        second = wu.function_task(wu.add, 1)
        await executor.run(first)
        await executor.run(second)
        worker = executor.pool.view_of(first.job_id)
        assert worker.ahead == (second.job_id,)
        assert recorder.started[first.job_id] == [1]
        assert second.job_id not in recorder.started  # in its worker, but not begun
        gate.touch()
        await recorder.done(second.job_id)
        ours = [event for event in recorder.history if event[1] in (first.job_id, second.job_id)]
        assert ours == [
            ("started", first.job_id),
            ("done", first.job_id),
            ("started", second.job_id),
            ("done", second.job_id),
        ]


@pytest.mark.parametrize("ending", ["handles-sigterm", "ends-as-the-kill-comes"])
async def test_a_job_that_begins_behind_a_killed_one_runs_again_elsewhere(
    recorder, tmp_path, ending
):
    """B, sent ahead behind A, begins in A's worker while A is killed: A ends cleanly on SIGTERM,
    or had just ended ("done" A and "start" B on the wire) when the kill came. The worker dies
    all the same; B, not at fault, runs again in another worker instead of ending worker_lost."""
    async with wu.running_executor(recorder, max_workers=1) as executor:
        await teach_short(executor, recorder, limit=4)
        flag, marks, gate = tmp_path / "a", tmp_path / "b", tmp_path / "gate"
        if ending == "handles-sigterm":
            a = wu.function_task(wu.graceful_until_term, str(flag))
        else:
            a = wu.function_task(wu.waits_for, str(flag))
        b = wu.function_task(wu.records_start, str(marks), str(gate))
        await executor.run(a)
        await executor.run(b)
        worker = executor.pool.view_of(a.job_id)
        assert worker.ahead == (b.job_id,)
        if ending == "handles-sigterm":
            await wu.wait_for(flag.exists)
        else:
            flag.touch()
            wu.hold_loop_until(marks.exists)  # A ended and B began, unknown to the executor
        await asyncio.wait_for(executor.kill(a.job_id, None, grace=1.0), 15)
        assert recorder.outcomes[a.job_id][0].status is Status.CANCELLED
        gate.touch()
        assert (await recorder.done(b.job_id)).status is Status.SUCCEEDED
        first, again = wu.read_pids(marks)  # B began in the killed worker, then in another
        assert first == worker.pid and again != worker.pid
        assert len(recorder.outcomes[b.job_id]) == 1 and recorder.started[b.job_id] == [1]


async def test_a_job_behind_one_taken_back_too_late_runs_again_elsewhere(recorder, tmp_path):
    """C, taken back from a busy worker, had started anyway, so that worker is stopped; D, sent
    ahead behind C, began there first. D runs again in another worker, not worker_lost."""
    async with wu.running_executor(recorder, max_workers=1) as executor:
        await teach_short(executor, recorder, limit=4)
        release, marks, gate = tmp_path / "release", tmp_path / "d", tmp_path / "gate"
        a = wu.function_task(wu.waits_for, str(release))
        c = wu.function_task(wu.add, 1)
        d = wu.function_task(wu.records_start, str(marks), str(gate))
        for task in (a, c, d):
            await executor.run(task)
        worker = executor.pool.view_of(a.job_id)
        assert worker.ahead == (c.job_id, d.job_id)
        lose_skips(executor, worker.pid)
        await executor.kill(c.job_id, None, grace=1.0)
        release.touch()
        wu.hold_loop_until(marks.exists)  # A and C ended and D began, unknown to the executor
        await wu.wait_for(lambda: not wu.alive(worker.pid), timeout=10)
        gate.touch()
        assert (await recorder.done(d.job_id, timeout=20)).status is Status.SUCCEEDED
        first, again = wu.read_pids(marks)
        assert first == worker.pid and again != worker.pid
        assert len(recorder.outcomes[d.job_id]) == 1 and recorder.started[d.job_id] == [1]


async def test_the_backlog_moves_once_a_worker_is_stopped(recorder, tmp_path):
    """X, a cell job, cannot be sent ahead: it waits for a free worker. The worker stopped for C
    (taken back too late) frees one, although no run ends and none is handed back."""
    async with wu.running_executor(recorder, max_workers=1) as executor:
        await teach_short(executor, recorder, limit=4)
        release = tmp_path / "release"
        a = wu.function_task(wu.waits_for, str(release))
        c = wu.function_task(wu.add, 1)
        x = wu.cell_task("41 + 1")
        for task in (a, c, x):
            await executor.run(task)
        worker = executor.pool.view_of(a.job_id)
        assert worker.ahead == (c.job_id,) and executor.waiting()[0] == x.job_id
        lose_skips(executor, worker.pid)
        await executor.kill(c.job_id, None, grace=1.0)
        release.touch()
        assert (await recorder.done(a.job_id)).status is Status.SUCCEEDED
        assert (await recorder.done(x.job_id, timeout=15)).status is Status.SUCCEEDED


async def test_a_worker_being_killed_is_handed_no_job(recorder, tmp_path):
    """B, sent ahead behind A, runs to its end in A's worker while A is killed. That worker must
    stay doomed when a slot frees: X, from the backlog, would die with it."""
    async with wu.running_executor(recorder, max_workers=2, warm_workers=False) as executor:
        await teach_short(executor, recorder, limit=4)
        flag, marks = tmp_path / "a", tmp_path / "b"
        gate, other_gate = tmp_path / "gate", tmp_path / "other"
        a = wu.function_task(wu.graceful_until_term, str(flag))
        other = waits_in_a_cell(other_gate)  # the other slot; nothing is sent ahead to it
        b = wu.function_task(wu.records_start, str(marks))
        x = waits_in_a_cell(gate)
        for task in (a, other):
            await executor.run(task)
        await wu.wait_for(flag.exists)
        for task in (b, x):
            await executor.run(task)
        worker = executor.pool.view_of(a.job_id)
        assert worker.ahead == (b.job_id,) and executor.waiting()[0] == x.job_id
        seen = frames_seen(executor)
        kill = asyncio.create_task(executor.kill(a.job_id, None, grace=2.0))
        await wu.wait_for(lambda: seen.count((worker.pid, "done")) == 2)  # A's, then B's
        other_gate.touch()
        assert (await recorder.done(other.job_id)).status is Status.SUCCEEDED  # a slot frees
        await asyncio.wait_for(kill, 15)
        gate.touch()
        for task in (x, b):
            assert (await recorder.done(task.job_id, timeout=20)).status is Status.SUCCEEDED
        first, again = wu.read_pids(marks)  # B ran to its end in the killed worker, then again
        assert first == worker.pid and again != worker.pid


async def test_a_worker_stopped_for_a_job_taken_back_too_late_is_handed_no_job(recorder, tmp_path):
    """C, taken back, had started anyway, so its worker is stopped; D behind it begins and ends
    there before the stop. Neither may make the worker look free: X, from the backlog, would
    die with it."""
    async with wu.running_executor(recorder, max_workers=1, warm_workers=False) as executor:
        await teach_short(executor, recorder, limit=4)
        release, marks, gate = tmp_path / "release", tmp_path / "d", tmp_path / "gate"
        a = wu.function_task(wu.waits_for, str(release))
        c = wu.function_task(wu.add, 1)
        d = wu.function_task(wu.records_start, str(marks))
        x = waits_in_a_cell(gate)
        for task in (a, c, d, x):
            await executor.run(task)
        worker = executor.pool.view_of(a.job_id)
        assert worker.ahead == (c.job_id, d.job_id) and executor.waiting()[0] == x.job_id
        lose_skips(executor, worker.pid)
        await executor.kill(c.job_id, None, grace=1.0)
        release.touch()
        wu.hold_loop_until(marks.exists)  # A, C and D ran, unknown to the executor
        await wu.wait_for(lambda: not wu.alive(worker.pid), timeout=10)
        gate.touch()
        for task in (x, d):
            assert (await recorder.done(task.job_id, timeout=20)).status is Status.SUCCEEDED
        assert wu.read_pids(marks)[0] == worker.pid and len(wu.read_pids(marks)) == 2


async def test_shutdown_gives_back_the_jobs_that_never_started(recorder, tmp_path):
    async with wu.running_executor(recorder, max_workers=1) as executor:
        await teach_short(executor, recorder, limit=4)
        flag = tmp_path / "started"
        running = await start_one_hanging(executor, flag)
        ahead = [wu.function_task(wu.add, i) for i in range(2)]
        waiting = wu.cell_task("42")
        for task in (*ahead, waiting):
            await executor.run(task)
        worker = executor.pool.view_of(running.job_id)
        assert worker.ahead == tuple(t.job_id for t in ahead)
        assert executor.waiting()[0] == waiting.job_id
        await asyncio.wait_for(executor.shutdown(1.0), 30)
    outcome = recorder.outcomes[running.job_id][0]
    assert outcome.status is Status.FAILED and outcome.reason is Reason.INTERRUPTED
    for task in (*ahead, waiting):
        [outcome] = recorder.outcomes[task.job_id]
        assert outcome.status is Status.QUEUED and outcome.reason is Reason.INTERRUPTED
        assert outcome.error.type == "NotStarted"
        assert task.job_id not in recorder.started
    assert not wu.alive(worker.pid)


# -- a worker stays with a kernel for its next cell ---------------------------------------------

PID_CELL = "import os\npid = os.getpid()\nleft = sorted(n for n in dir() if n.startswith('mine'))\n"


async def cell_pid(executor, recorder, kernel: str, code: str = "") -> tuple[int, list[str]]:
    task = wu.cell_task(code + PID_CELL, {}, kernel=kernel)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    values = dill.loads(outcome.result)["values"]
    return values["pid"], values["left"]


async def test_a_kernels_next_cell_runs_in_the_worker_of_its_last_in_a_fresh_namespace(recorder):
    async with wu.running_executor(recorder, 2) as executor:
        first, _ = await cell_pid(executor, recorder, "K1", "import json\nmine = 1\n")
        again, left = await cell_pid(executor, recorder, "K1")
        assert again == first and left == []  # the process, not the names
        other, _ = await cell_pid(executor, recorder, "K2")
        assert other != first
        function = wu.function_task(wu.whoami)
        await executor.run(function)
        ran_in = dill.loads((await recorder.done(function.job_id)).result)["pid"]
        assert ran_in not in (first, other)  # a kept worker takes no function job


async def test_a_kept_worker_gives_way_to_other_jobs(recorder, tmp_path):
    async with wu.running_executor(recorder, 1) as executor:
        kept, _ = await cell_pid(executor, recorder, "K1")
        await wu.wait_for(
            lambda: any(w.spare and w.state is WorkerState.IDLE for w in executor.pool.view())
        )
        # The one slot and the spare: a function job takes the spare at once, and the kept
        # worker retires so that a new spare can start.
        flag = tmp_path / "started"
        task = await start_one_hanging(executor, flag)
        await wu.wait_for(lambda: not wu.alive(kept), timeout=30)
        await executor.kill(task.job_id, None, 0.5)


async def test_a_kept_worker_retires_after_its_linger_and_a_killed_cells_is_not_kept(
    recorder, tmp_path
):
    async with wu.running_executor(recorder, 2, cell_linger=2.0) as executor:
        kept, _ = await cell_pid(executor, recorder, "K1")
        await wu.wait_for(lambda: not wu.alive(kept), timeout=30)
        again, _ = await cell_pid(executor, recorder, "K1")
        assert again != kept
        pid_file = tmp_path / "pid"
        code = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        task = wu.cell_task(code + "time.sleep(60)", {}, kernel="K1")
        await executor.run(task)
        await wu.wait_for(lambda: pid_file.exists() and pid_file.read_text())
        await asyncio.wait_for(executor.kill(task.job_id, None, 0.5), 15)
        assert int(pid_file.read_text()) == again  # it ran in the kept worker ...
        await wu.wait_for(lambda: not wu.alive(again), timeout=10)  # ... which the kill ended
        assert all(w.kernel is None for w in executor.pool.view())


# -- where sockets cannot be inherited and there are no process groups (Windows) ----------------


@pytest.fixture
def like_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paths Windows takes, on Linux: each worker connects back to a loopback listener with
    a token (no `pass_fds`), and a job's tree is stopped through psutil (no `os.killpg`)."""
    monkeypatch.setattr(oslayer, "INHERIT_SOCKETS", False)
    monkeypatch.setattr(oslayer, "PROCESS_GROUPS", False)


async def test_jobs_run_fail_and_stop_without_inherited_sockets_or_groups(
    like_windows, recorder, tmp_path
):
    async with wu.running_executor(recorder) as executor:
        ok, fails = wu.function_task(wu.add, 2, 3), wu.function_task(wu.outer_fails, "bad")
        for task in (ok, fails):
            await executor.run(task)
        assert dill.loads((await recorder.done(ok.job_id)).result) == 5
        failed = await recorder.done(fails.job_id)
        assert failed.status is Status.FAILED and failed.error.message == "bad"
        for worker in executor.pool.view():
            assert any(
                arg.startswith("tcp:127.0.0.1:") for arg in psutil.Process(worker.pid).cmdline()
            )

        # A cancel reaches the whole tree, SIGTERM-deaf children included.
        task, pids = await start_hanging(executor, recorder, tmp_path, ignore_term=True)
        await asyncio.wait_for(executor.kill(task.job_id, None, 1.0), 15)
        assert recorder.outcomes[task.job_id][0].status is Status.CANCELLED
        await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=10)

        # A worker killed under its job is reported lost, and the next job runs in a new one.
        flag = tmp_path / "flag"
        hanging = await start_one_hanging(executor, flag)
        os.kill(executor.pool.view_of(hanging.job_id).pid, signal.SIGKILL)
        lost = await recorder.done(hanging.job_id)
        assert lost.status is Status.FAILED and lost.reason is Reason.WORKER_LOST
        again = wu.function_task(wu.add, 1, 1)
        await executor.run(again)
        assert dill.loads((await recorder.done(again.job_id)).result) == 2


# -- the start log: what a consumer killed with -9 began --------------------------------------


async def test_each_attempt_is_written_down_before_its_code_runs(recorder, tmp_path):
    """The start log (`start_log.py`): a job's code finds its attempt written down already; a
    worker that died leaves its file, with its starts, to the next one."""
    log = StartLog(tmp_path / "starts", "c1")
    executor = LocalExecutor(recorder, 1, warm_workers=False)
    executor.start_log = log
    await executor.start()
    try:
        first = wu.function_task(wu.start_log_files, str(log.folder))
        await executor.run(first)
        files = dill.loads((await recorder.done(first.job_id)).result)
        assert list(files.values()) == [[f"{first.job_id} 1"]]
        lost = wu.function_task(wu.exits, 3)
        await executor.run(lost)
        assert (await recorder.done(lost.job_id)).reason is Reason.WORKER_LOST
        again = wu.function_task(wu.start_log_files, str(log.folder))
        again.attempt = 2
        await executor.run(again)
        again_files = dill.loads((await recorder.done(again.job_id)).result)
        lines = [f"{first.job_id} 1", f"{lost.job_id} 1", f"{again.job_id} 2"]
        assert again_files == {next(iter(files)): lines}  # the same file, taken over
    finally:
        await asyncio.wait_for(executor.shutdown(1.0), 30)
    # Kept: the consumer's last write reads them, then removes them (`Consumer.stop`).
    assert start_log.named(log.folder) == {(first.job_id, 1), (lost.job_id, 1), (again.job_id, 2)}


async def test_a_run_a_stop_gives_back_as_its_worker_begins_it_is_written_down(recorder, tmp_path):
    """The race of a clean stop with a run sent ahead: the stop gives the run back as never
    begun while its worker begins it (its "start" still on the way). Its start is written
    down all the same, which makes the store count the attempt (see test_store.py)."""
    log = StartLog(tmp_path / "starts", "c1")
    executor = LocalExecutor(recorder, 1, warm_workers=False)
    executor.start_log = log
    await executor.start()
    try:
        await teach_short(executor, recorder, limit=4)
        gate, began = tmp_path / "gate", tmp_path / "began"
        first = wu.function_task(wu.waits_for, str(gate))
        late = wu.function_task(wu.records_start, str(began), str(tmp_path / "never"))
        await executor.run(first)
        await executor.run(late)
        assert executor.pool.view_of(first.job_id).ahead == (late.job_id,)
        gate.touch()
        # The loop is held here: the worker's "done" and "start" stay unread as it begins.
        wait_until(began.exists, timeout=30)
    finally:
        await asyncio.wait_for(executor.shutdown(1.0), 30)
    given_back = recorder.outcomes[late.job_id][0]
    assert (given_back.status, given_back.error.type) == (Status.QUEUED, "NotStarted")
    assert (late.job_id, late.attempt) in start_log.named(log.folder)


# -- nothing escapes a job: descendants that left its process group ------------------------------


async def start_escaping(executor, tmp_path: Path, ignore_term: bool, lease_until=None):
    """Run `escapes`; returns the task and its pids (the job's process, a child in a session
    of its own, a daemon whose parent is gone), once all run."""
    pid_file = tmp_path / "pids"
    task = wu.function_task(wu.escapes, str(pid_file), ignore_term)
    task.lease_until = lease_until
    await executor.run(task)
    await wu.wait_for(pid_file.exists, timeout=30)
    pids = wu.read_pids(pid_file)
    assert len(pids) == 3 and all(wu.alive(pid) for pid in pids)
    assert all(os.getsid(pid) != os.getsid(pids[0]) for pid in pids[1:])  # they left its session
    return task, pids


def tracked(worker_pid: int) -> set[int]:
    """The pids the executor has seen in a worker's tree so far."""
    return set(oslayer._seen.get(worker_pid, {}))


@pytest.mark.parametrize("ignore_term", [False, True], ids=["children", "sigterm-deaf"])
@pytest.mark.parametrize("how", ["cancel", "timeout", "worker-lost"])
async def test_no_descendant_outlives_its_job_even_in_a_session_of_its_own(
    executor, recorder, tmp_path, ignore_term, how
):
    task, pids = await start_escaping(executor, tmp_path, ignore_term)
    worker = executor.pool.view_of(task.job_id).pid
    if how == "worker-lost":
        # The daemon's parent is gone: on Linux the runner adopted it (a subreaper), and the
        # executor saw it in the worker's tree before the worker died.
        await wu.wait_for(lambda: set(pids) <= tracked(worker), timeout=10)
        os.kill(worker, signal.SIGKILL)
        outcome = await recorder.done(task.job_id)
        assert outcome.reason is Reason.WORKER_LOST
    else:
        reason = Reason.TIMEOUT if how == "timeout" else None
        await asyncio.wait_for(executor.kill(task.job_id, reason, 0.5), 15)
        outcome = recorder.outcomes[task.job_id][0]
        assert outcome.status is (Status.FAILED if reason else Status.CANCELLED)
    await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=10)


#: A stand-in for a server: runs `escapes` in a LocalExecutor, then waits to be killed.
ESCAPING_SERVER = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import workers_util as wu

async def main():
    async with wu.running_executor(wu.Recorder()) as executor:
        await executor.run(wu.function_task(wu.escapes, sys.argv[2], True))
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_server_killed_with_sigkill_takes_its_jobs_processes_along(tmp_path):
    pid_file = tmp_path / "pids"
    tests = str(Path(__file__).parent)
    server = subprocess.Popen([sys.executable, "-c", ESCAPING_SERVER, tests, str(pid_file)])
    try:
        wait_until(pid_file.exists, timeout=60)
        pids = wu.read_pids(pid_file)  # the runner (the job runs in it), what escaped its group
        server.kill()
        server.wait(30)
        wait_until(lambda: not any(wu.alive(pid) for pid in pids), timeout=15)
    finally:
        server.kill()
        server.wait(30)
        for pid in wu.read_pids(pid_file):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- a worker never outlives its claim ----------------------------------------------------------


async def test_a_run_whose_claim_is_not_renewed_ends_itself_before_the_lease(
    executor, recorder, tmp_path
):
    """The executor's loop is not needed: the worker stops its job (its whole tree) when the
    time it was given passes without a renewal, as under a stalled consumer."""
    until = time.time() + 3.0
    task, pids = await start_escaping(executor, tmp_path, ignore_term=True, lease_until=until)
    outcome = await recorder.done(task.job_id, timeout=30)
    ended = time.time()
    assert outcome.reason is Reason.WORKER_LOST and outcome.exit == "exit code 4"
    assert "not renewed" in outcome.error.message
    assert until <= ended
    assert not any(wu.alive(pid) for pid in pids)


async def test_a_renewed_claim_keeps_its_run_going(executor, recorder, tmp_path):
    flag = tmp_path / "flag"
    task = wu.function_task(wu.hangs_after_start, str(flag))
    task.lease_until = time.time() + 1.0
    await executor.run(task)
    await wu.wait_for(flag.exists)
    end = time.time() + 3.0
    while time.time() < end:  # three times past the first deadline, renewed all along
        executor.renew_lease(time.time() + 1.0)
        await asyncio.sleep(0.2)
    assert task.job_id not in recorder.outcomes
    await executor.kill(task.job_id, None, 0.5)
    assert recorder.outcomes[task.job_id][0].status is Status.CANCELLED


async def test_executors_leave_no_folder_per_run_in_the_temp_dir(recorder, tmp_path, monkeypatch):
    """Every executor of an installation imports it through one shared folder, so a killed
    server, which cleans nothing up, leaves no `jupyter_jobs-XXXX` folder behind per run."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    async with wu.running_executor(recorder) as first, wu.running_executor(recorder) as second:
        for executor in (first, second):
            task = wu.function_task(wu.add, 1, 2)
            await executor.run(task)
            assert dill.loads((await recorder.done(task.job_id)).result) == 3
        [folder] = tmp_path.iterdir()
        assert (folder / "jupyter_jobs").resolve() == Path(oslayer.__file__).parent
        assert folder.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("how", ["cancel", "worker-lost"])
async def test_without_groups_no_descendant_outlives_its_job(like_windows, recorder, tmp_path, how):
    """Where there are no process groups, the tracked tree alone reaches everything."""
    async with wu.running_executor(recorder) as executor:
        task, pids = await start_escaping(executor, tmp_path, ignore_term=True)
        worker = executor.pool.view_of(task.job_id).pid
        if how == "cancel":
            await asyncio.wait_for(executor.kill(task.job_id, None, 0.5), 15)
        else:
            await wu.wait_for(lambda: set(pids) <= tracked(worker), timeout=10)
            os.kill(worker, signal.SIGKILL)
            assert (await recorder.done(task.job_id)).reason is Reason.WORKER_LOST
        await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=10)


#: A server whose executor writes down its jobs' processes in argv[3] (as the consumer has it).
RECORDING_SERVER = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import workers_util as wu
from jupyter_jobs.executors.local import LocalExecutor

async def main():
    executor = LocalExecutor(wu.Recorder(), 1)
    executor.leftovers_dir = Path(sys.argv[3])
    await executor.start()
    await executor.run(wu.function_task(wu.escapes, sys.argv[2], True))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def recorded_pids(folder: Path) -> set[int]:
    found = set()
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            found |= {pid for pid, _ in json.loads(path.read_text())}
    return found


async def test_the_next_start_ends_what_a_server_killed_with_its_workers_left(recorder, tmp_path):
    pid_file, folder = tmp_path / "pids", tmp_path / "processes"
    tests = str(Path(__file__).parent)
    server = subprocess.Popen(
        [sys.executable, "-c", RECORDING_SERVER, tests, str(pid_file), str(folder)]
    )
    try:
        await wu.wait_for(pid_file.exists, timeout=60)
        pids = wu.read_pids(pid_file)  # the runner (the job runs in it), what escaped its group
        await wu.wait_for(lambda: set(pids) <= recorded_pids(folder), timeout=30)
        # The worker dies with its server, before either can end its job's processes.
        os.kill(server.pid, signal.SIGSTOP)
        os.kill(pids[0], signal.SIGKILL)
        server.kill()
        server.wait(30)
        await wu.wait_for(lambda: not wu.alive(pids[0]), timeout=10)
        escaped = pids[1:]
        assert all(wu.alive(pid) for pid in escaped)  # what nobody could end until now
        executor = LocalExecutor(recorder, 1)
        executor.leftovers_dir = folder
        await executor.start()
        try:
            await wu.wait_for(lambda: not any(wu.alive(pid) for pid in escaped), timeout=10)
            assert [p.name for p in folder.glob("*.json")] == []  # its own comes with jobs
        finally:
            await executor.shutdown(1.0)
    finally:
        server.kill()
        server.wait(30)
        for pid in wu.read_pids(pid_file):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
