"""DaskExecutor on a real LocalCluster (worker processes): results, logs, kills, lost workers.

One cluster serves the module; each test connects its own executor (its own client, topic and
keys), as separate servers sharing a cluster would. Kill tests check the job's processes through
/proc, not only the reported outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import dask
import dill
import psutil
import pytest
from distributed import Client, LocalCluster
from traitlets.config import Config

from jupyter_jobs import JobQueue, job_types, payload
from jupyter_jobs.consumer import Consumer
from jupyter_jobs.executors.base import Task
from jupyter_jobs.executors.dask import DaskExecutor
from jupyter_jobs.executors.dask_task import run_on_worker
from jupyter_jobs.models import Kind, Reason, Status
from jupyter_jobs.server.app import JobsApp, resolve_executor
from jupyter_jobs.store import Store

import jobfuncs
import workers_util as wu

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two single-threaded Dask worker processes (`workers_util.dask_cluster`)."""
    with wu.dask_cluster(2) as cluster:
        yield cluster


@pytest.fixture
def recorder() -> wu.Recorder:
    return wu.Recorder()


@contextlib.asynccontextmanager
async def connected(
    recorder: wu.Recorder, address: str | None, max_workers: int | None = 2, **options
):
    options = {"progress_interval": 0.2, "kill_grace": 1.0, **options}
    executor = DaskExecutor(recorder, max_workers, scheduler_address=address, **options)
    await asyncio.wait_for(executor.start(), 60)
    try:
        yield executor
    finally:
        await asyncio.wait_for(executor.shutdown(1.0), 60)


@pytest.fixture
async def executor(cluster, recorder):
    async with connected(recorder, cluster.scheduler_address) as executor:
        yield executor


async def start_hanging(executor, recorder, tmp_path: Path, ignore_term: bool = False):
    """A job with a child and a grandchild, all alive (pids read from the job's pid file)."""
    pid_file = tmp_path / "pids"
    task = wu.function_task(wu.spawns_and_hangs, str(pid_file), ignore_term)
    await executor.run(task)
    await wu.wait_for(pid_file.exists, timeout=60)
    pids = wu.read_pids(pid_file)
    assert len(pids) == 4 and all(wu.alive(pid) for pid in pids)
    return task, pids


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


# -- results ------------------------------------------------------------------------------------


async def test_function_job_returns_its_result_bytes(executor, recorder, cluster):
    task = wu.function_task(wu.whoami)
    await executor.run(task)
    assert executor.free_slots() == 1
    assert executor.running() == [(task.job_id, 1)]
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.SUCCEEDED and outcome.error is None
    assert isinstance(outcome.result, bytes)
    me = dill.loads(outcome.result)
    assert me["job"] == (task.job_id, 1)
    assert executor.free_slots() == 2 and executor.running() == []
    assert len(recorder.outcomes[task.job_id]) == 1
    # Its own process, started by a Dask worker process.
    parent = wu.function_task(os.getppid)
    await executor.run(parent)
    parent_pid = dill.loads((await recorder.done(parent.job_id)).result)
    async with Client(cluster.scheduler_address, asynchronous=True) as client:
        worker_pids = set((await client.run(os.getpid)).values())
    assert me["pid"] not in worker_pids and parent_pid in worker_pids


async def test_failure_carries_the_job_traceback(executor, recorder):
    task = wu.function_task(wu.outer_fails, "bad input")
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.FAILED and outcome.reason is Reason.ERROR
    assert outcome.error.type == "ValueError" and outcome.error.message == "bad input"
    assert "inner_fails" in outcome.error.traceback
    assert "run_on_worker" not in outcome.error.traceback


async def test_cell_job_returns_values_and_outputs(executor, recorder):
    task = wu.cell_task("x = 40 + 2\nprint('hi')\nx")
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    assert dill.loads(outcome.result)["values"] == {"x": 42}
    outputs = json.loads(outcome.outputs)
    assert [o["output_type"] for o in outputs] == ["stream", "execute_result"]
    assert outputs[1]["data"]["text/plain"] == "42"


async def test_typed_job_returns_its_json_result_and_summary(executor, recorder):
    functions = payload.dumps({"run": jobfuncs.add, "summarize": vars})
    data = job_types.encode_payload(
        job_types.TypedPayload("adder", {"a": 40, "b": 2}, None, functions)
    )
    task = Task(wu.next_id(), 1, Kind.TYPED, "adder", data)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    assert outcome.result == b"42"  # JSON, the server may serve it as it is
    assert outcome.summary == {
        "id": task.job_id,
        "attempt": 1,
        "type": "adder",
        "parameters": {"a": 40, "b": 2},
        "result": 42,
    }


async def test_large_payload_travels_by_scatter(executor, recorder):
    data = os.urandom(3 * 1024 * 1024)
    task = wu.function_task(len, data)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert dill.loads(outcome.result) == len(data)


# -- logs and progress --------------------------------------------------------------------------


async def test_logs_and_progress_arrive_before_the_outcome(executor, recorder):
    prints = wu.function_task(wu.prints, "hello")
    steps = wu.function_task(jobfuncs.progress_steps, 5, 0.05)
    await executor.run(prints)
    await executor.run(steps)
    await recorder.done(prints.job_id)
    # Everything the job wrote is there when on_done comes: no waiting here.
    assert "hello\n" in recorder.log_text(prints.job_id)
    assert "hello from a child" in recorder.log_text(prints.job_id)
    await recorder.done(steps.job_id)
    last = recorder.progress[steps.job_id][-1]
    assert (last.done, last.total, last.message) == (5, 5, "step 5")
    assert recorder.attempts[prints.job_id] == {1}


async def test_labelled_streams_keep_their_labels_through_dask(executor, recorder):
    task = wu.function_task(wu.labelled_threads)
    await executor.run(task)
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    texts = recorder.stream_texts(task.job_id)
    assert texts["thread worker-a"] == "a line 0\na line 1\na line 2\n"
    assert texts["phase-2"] == "inside phase 2\n"
    assert texts[""] == "main before\nmain after\n"


async def test_a_log_flood_is_capped_and_complete_before_the_outcome(cluster, recorder):
    async with connected(recorder, cluster.scheduler_address, log_limit=1024 * 1024) as executor:
        task = wu.function_task(wu.floods, 3)
        await executor.run(task)
        outcome = await recorder.done(task.job_id)
        assert dill.loads(outcome.result) == 3
        data = b"".join(recorder.logs[task.job_id])
        marker = b"[jupyter_jobs: output over 1048576 bytes was dropped]"
        assert data[: 1024 * 1024] == (b"x" * 1023 + b"\n") * 1024
        assert marker in data[1024 * 1024 :]
        # Batched: far fewer events than the 3072 lines printed.
        assert len(recorder.logs[task.job_id]) < 200


async def test_missing_directory_and_other_python_are_noted_in_the_log(
    executor, recorder, tmp_path
):
    here = wu.function_task(wu.whoami)
    here.cwd = str(tmp_path)
    elsewhere = wu.function_task(wu.whoami)
    elsewhere.cwd = "/no/such/dir"
    elsewhere.interpreter = "/opt/some/other/python"
    for task in (here, elsewhere):
        await executor.run(task)
    assert dill.loads((await recorder.done(here.job_id)).result)["cwd"] == str(tmp_path)
    moved = await recorder.done(elsewhere.job_id)
    assert moved.status is Status.SUCCEEDED
    assert dill.loads(moved.result)["cwd"] != "/no/such/dir"
    text = recorder.log_text(elsewhere.job_id)
    assert "directory /no/such/dir does not exist on Dask worker" in text
    assert "running with the Dask worker's Python" in text
    assert recorder.log_text(here.job_id) == ""


# -- kills --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ignore_term", [False, True], ids=["children", "sigterm-deaf"])
async def test_cancel_ends_the_whole_process_tree(executor, recorder, tmp_path, ignore_term):
    task, pids = await start_hanging(executor, recorder, tmp_path, ignore_term)
    await asyncio.wait_for(executor.kill(task.job_id, None, 1.0), 30)
    outcome = recorder.outcomes[task.job_id][0]
    assert outcome.status is Status.CANCELLED and outcome.reason is None
    expected = "killed by signal 9 (SIGKILL)" if ignore_term else "killed by signal 15 (SIGTERM)"
    assert outcome.exit == expected
    assert not any(wu.alive(pid) for pid in pids)
    # Exactly one on_done: a second kill, and the task's own end, add nothing.
    await executor.kill(task.job_id, None, 1.0)
    await asyncio.sleep(0.5)
    assert len(recorder.outcomes[task.job_id]) == 1
    assert executor.free_slots() == 2


async def test_timeout_kill_fails_the_job_with_reason_timeout(executor, recorder, tmp_path):
    task, pids = await start_hanging(executor, recorder, tmp_path)
    await asyncio.wait_for(executor.kill(task.job_id, Reason.TIMEOUT, 1.0), 30)
    outcome = recorder.outcomes[task.job_id][0]
    assert outcome.status is Status.FAILED and outcome.reason is Reason.TIMEOUT
    assert outcome.error.type == "TimeoutError"
    assert not any(wu.alive(pid) for pid in pids)


async def test_a_stopped_notebook_job_keeps_what_ran_as_its_result(executor, recorder):
    """The runner's last checkpoint comes back with the task, as from the local executor."""
    outcome = await wu.stop_in_second_cell(executor, recorder, None, 1.0)
    assert outcome.status is Status.CANCELLED
    wu.assert_stopped_in_second_cell(outcome.result)


async def test_kill_of_a_job_still_queued_in_dask(cluster, recorder, tmp_path):
    # Three slots on two Dask threads: the third job waits in Dask's queue.
    async with connected(recorder, cluster.scheduler_address, max_workers=3) as executor:
        flags = [tmp_path / f"flag{i}" for i in range(3)]
        tasks = [wu.function_task(wu.hangs_after_start, str(flag)) for flag in flags]
        for task in tasks:
            await executor.run(task)
        await wu.wait_for(lambda: flags[0].exists() and flags[1].exists(), timeout=60)
        await asyncio.wait_for(executor.kill(tasks[2].job_id, None, 1.0), 10)
        assert recorder.outcomes[tasks[2].job_id][0].status is Status.CANCELLED
        for task in tasks[:2]:
            await asyncio.wait_for(executor.kill(task.job_id, None, 1.0), 30)
        assert not flags[2].exists()  # never started
        assert all(len(recorder.outcomes[t.job_id]) == 1 for t in tasks)


async def test_a_job_waiting_in_dask_s_queue_has_not_started_and_is_given_back(
    cluster, recorder, tmp_path
):
    # Three slots on two Dask threads: the third job waits in Dask's queue, and is not running.
    async with connected(recorder, cluster.scheduler_address, max_workers=3) as executor:
        flags = [tmp_path / f"flag{i}" for i in range(3)]
        tasks = [wu.function_task(wu.hangs_after_start, str(flag)) for flag in flags]
        for task in tasks:
            await executor.run(task)
        await wu.wait_for(lambda: flags[0].exists() and flags[1].exists(), timeout=60)
        first, second, waiting = (t.job_id for t in tasks)
        await wu.wait_for(lambda: first in recorder.started and second in recorder.started)
        assert waiting not in recorder.started
        await asyncio.wait_for(executor.shutdown(1.0), 30)
    assert recorder.started == {first: [tasks[0].attempt], second: [tasks[1].attempt]}
    assert [recorder.outcomes[j][0].reason for j in (first, second)] == [Reason.INTERRUPTED] * 2
    given_back = recorder.outcomes[waiting][0]
    assert (given_back.status, given_back.error.type) == (Status.QUEUED, "NotStarted")
    assert not flags[2].exists()


async def test_shutdown_interrupts_running_jobs(cluster, recorder, tmp_path):
    async with connected(recorder, cluster.scheduler_address) as executor:
        task, pids = await start_hanging(executor, recorder, tmp_path)
        await asyncio.wait_for(executor.shutdown(1.0), 30)
        outcome = recorder.outcomes[task.job_id][0]
        assert outcome.status is Status.FAILED and outcome.reason is Reason.INTERRUPTED
        assert not any(wu.alive(pid) for pid in pids)
        assert executor.free_slots() == 0


async def test_a_released_task_stops_its_job(cluster, tmp_path):
    """The server died or disconnected: its keys are released and the workers end its jobs."""
    pid_file = tmp_path / "pids"
    task = wu.function_task(wu.spawns_and_hangs, str(pid_file), False)
    job = {
        "key": f"orphan-{task.job_id}",
        "job_id": task.job_id,
        "attempt": 1,
        "kind": "function",
        "name": "orphan",
        "cwd": None,
        "interpreter": None,
        "options": {},
        "log_limit": None,
        "progress_interval": 1.0,
        "grace": 1.0,
    }
    async with Client(cluster.scheduler_address, asynchronous=True) as client:
        future = client.submit(run_on_worker, job, task.payload, "orphans", key=job["key"])
        await wu.wait_for(pid_file.exists, timeout=60)
        pids = wu.read_pids(pid_file)
        assert all(wu.alive(pid) for pid in pids)
        del future
    await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=30)


async def test_a_dead_dask_worker_is_reported_lost_once(executor, recorder, cluster, tmp_path):
    pid_file = tmp_path / "pids"
    task = wu.function_task(wu.spawns_and_hangs, str(pid_file), False)
    await executor.run(task)
    await wu.wait_for(pid_file.exists, timeout=60)
    runner = wu.read_pids(pid_file)[0]
    dask_worker = parent_of(runner)
    os.kill(dask_worker, signal.SIGKILL)
    outcome = await recorder.done(task.job_id, timeout=60)
    assert outcome.status is Status.FAILED and outcome.reason is Reason.WORKER_LOST
    # Dask re-ran the task on the other worker, which refused to run the attempt twice.
    message = outcome.error.message
    assert message.startswith("the Dask worker tcp://") and f"(pid {dask_worker})" in message
    assert "re-ran the task" in message
    await wu.wait_for(lambda: not wu.alive(runner), timeout=10)  # it died with its worker
    await asyncio.sleep(1.0)
    assert len(recorder.outcomes[task.job_id]) == 1
    # The nanny brings the worker back; the cluster keeps serving.
    again = wu.function_task(wu.add, 2, 3)
    await executor.run(again)
    assert dill.loads((await recorder.done(again.job_id, timeout=60)).result) == 5


def living(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running (a zombie is gone: it only waits for its reaper)."""
    found = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


@pytest.mark.parametrize("ignore_term", [False, True], ids=["children", "sigterm-deaf"])
@pytest.mark.parametrize("how", ["cancel", "timeout", "worker-lost", "runner-killed"])
async def test_no_descendant_outlives_its_dask_job_even_in_a_session_of_its_own(
    executor, recorder, tmp_path, ignore_term, how
):
    """A child in a session of its own and a daemon (its parent gone) end with the job, however
    it ends: stopped, its Dask worker lost (the runner ends them), or the runner itself killed
    with -9 (its orphans are no one's descendants then: the task saw them, 0.5 s at a time)."""
    pid_file = tmp_path / "pids"
    task = wu.function_task(wu.escapes, str(pid_file), ignore_term, 2.0)
    await executor.run(task)
    await wu.wait_for(pid_file.exists, timeout=60)
    runner = psutil.Process(wu.read_pids(pid_file)[0])  # the job runs in it
    tree = [runner, *runner.children(recursive=True)]
    assert set(wu.read_pids(pid_file)) <= {p.pid for p in living(tree)}
    assert len({os.getsid(p.pid) for p in tree}) >= 3  # they left the job's session
    if how in ("worker-lost", "runner-killed"):
        os.kill(parent_of(runner.pid) if how == "worker-lost" else runner.pid, signal.SIGKILL)
        assert (await recorder.done(task.job_id, timeout=60)).reason is Reason.WORKER_LOST
    else:
        reason = Reason.TIMEOUT if how == "timeout" else None
        await asyncio.wait_for(executor.kill(task.job_id, reason, 1.0), 30)
    await wu.wait_for(lambda: not living(tree), timeout=15)


async def test_a_kill_the_worker_cannot_confirm_is_reported_and_still_happens(
    cluster, recorder, tmp_path
):
    """A frozen Dask worker: the kill is reported after its bound; the job ends on resume."""
    async with connected(recorder, cluster.scheduler_address, stop_timeout=1.0) as executor:
        task, pids = await start_hanging(executor, recorder, tmp_path)
        dask_worker = parent_of(pids[0])
        os.kill(dask_worker, signal.SIGSTOP)
        try:
            await asyncio.wait_for(executor.kill(task.job_id, None, 1.0), 30)
            outcome = recorder.outcomes[task.job_id][0]
            assert outcome.status is Status.CANCELLED
            assert outcome.exit.startswith("not confirmed: no answer from the Dask worker")
            assert all(wu.alive(pid) for pid in pids)  # frozen with its worker's attention
        finally:
            os.kill(dask_worker, signal.SIGCONT)
        # The released key reaches the worker, which ends the job's processes.
        await wu.wait_for(lambda: not any(wu.alive(pid) for pid in pids), timeout=30)
        assert len(recorder.outcomes[task.job_id]) == 1


async def test_the_executor_client_refuses_pickled_data(executor):
    """Only plain data comes back from the cluster: the server process never unpickles."""
    import fractions

    future = executor._client.submit(fractions.Fraction, 1, 3, pure=False)
    with pytest.raises(TypeError, match="Could not serialize object of type Fraction"):
        await asyncio.wait_for(future, 30)


# -- set-up -------------------------------------------------------------------------------------


def test_the_server_app_finds_and_configures_it():
    assert resolve_executor("dask") is DaskExecutor
    config = Config(
        {
            "JobsApp": {"executor_class": "dask", "kill_grace": 2.5, "log_limit": 4096},
            "DaskExecutor": {"scheduler_address": "tcp://10.0.0.5:8786", "stop_timeout": 7.0},
        }
    )
    executor = JobsApp(config=config).make_executor(wu.Recorder())
    assert type(executor) is DaskExecutor
    assert executor.scheduler_address == "tcp://10.0.0.5:8786" and executor.stop_timeout == 7.0
    assert executor.kill_grace == 2.5 and executor.log_limit == 4096


def test_the_deprecated_app_settings_still_choose_and_configure_it():
    config = Config({"JobsApp": {"executor": "dask", "dask_scheduler_address": "tcp://h:1"}})
    with pytest.warns(DeprecationWarning) as warned:
        app = JobsApp(config=config)
    assert {str(w.message).split(": use ")[1] for w in warned} == {
        "JobsApp.executor_class",
        "DaskExecutor.scheduler_address",
    }
    executor = app.make_executor(wu.Recorder())
    assert type(executor) is DaskExecutor and executor.scheduler_address == "tcp://h:1"


async def test_capabilities_are_honest(executor, cluster):
    caps = executor.capabilities()
    assert caps["executor"] == "dask"
    assert caps["interpreter"] is False and caps["cwd"] is False
    assert caps["cancel"] and caps["timeout"] and caps["logs"] and caps["progress"]
    assert caps["max_workers"] == 2
    assert caps["scheduler"] == cluster.scheduler_address


async def test_unreachable_scheduler_is_a_clear_error(recorder):
    executor = DaskExecutor(recorder, 1, scheduler_address="tcp://127.0.0.1:9")
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ConnectionError, match=r"Dask scheduler at 'tcp://127.0.0.1:9'"),
    ):
        await asyncio.wait_for(executor.start(), 30)
    assert executor.free_slots() == 0


async def test_without_an_address_it_runs_its_own_cluster(recorder):
    async with connected(recorder, None, max_workers=None) as executor:
        cluster = executor._cluster
        assert cluster is not None and executor.max_workers >= 1
        task = wu.function_task(wu.add, 1, 2)
        await executor.run(task)
        assert dill.loads((await recorder.done(task.job_id)).result) == 3
    assert executor._cluster is None and cluster.status.name == "closed"


# -- end to end ---------------------------------------------------------------------------------


async def test_consumer_and_store_run_jobs_on_dask(cluster, db_path):
    address = cluster.scheduler_address
    store = Store(db_path)
    consumer = Consumer(
        store,
        lambda events: DaskExecutor(events, 2, scheduler_address=address),
        kill_grace=1.0,
        progress_interval=0.2,
    )
    await consumer.start()
    queue = JobQueue(db_path)
    try:
        added = queue.submit(jobfuncs.add, 2, 3)
        chatty = queue.submit(jobfuncs.print_lines, 3)
        assert await asyncio.to_thread(added.result, 60) == 5
        assert await asyncio.to_thread(chatty.result, 60) == 3
        assert "line 2" in chatty.logs()

        slow = queue.submit(jobfuncs.sleep, 60, timeout=1.0)
        doomed = queue.submit(jobfuncs.chatty_then_sleep, 60)
        await wu.wait_for(lambda: "started" in doomed.logs(), timeout=60)
        queue.cancel(doomed.id)
        for job in (slow, doomed):
            await asyncio.to_thread(job.wait, 60)
        timed_out = slow.refresh()
        assert (timed_out.status, timed_out.reason) == (Status.FAILED, Reason.TIMEOUT)
        assert doomed.status is Status.CANCELLED
        record = store.get(added.id)
        assert record.kind is Kind.FUNCTION and record.attempt == 1
    finally:
        queue.close()
        await consumer.stop()
        store.close()


async def test_functions_stored_once_reach_dask_workers_packed(cluster, db_path):
    import numpy as np

    address = cluster.scheduler_address
    store = Store(db_path)
    consumer = Consumer(store, lambda events: DaskExecutor(events, 2, scheduler_address=address))
    await consumer.start()
    queue = JobQueue(db_path)
    data = os.urandom(3000)

    def size_plus(x: int) -> int:  # sent by value, and large enough to be stored once
        return len(data) + x

    try:
        big = np.arange(2**17, dtype=np.int64)  # 1 MiB: the job's file, beside its function
        in_file = queue.submit(jobfuncs.memory_of, big)
        mapped = queue.map(size_plus, range(3))
        # The Dask executor reads the arguments in (its workers may be elsewhere): no mapping.
        assert await asyncio.to_thread(in_file.result, 60) == ("NoneType", True, int(big.sum()))
        assert [await asyncio.to_thread(j.result, 60) for j in mapped] == [3000, 3001, 3002]
        with sqlite3.connect(db_path) as conn:
            named = conn.execute(
                "SELECT shared IS NOT NULL, path IS NOT NULL FROM blobs "
                "WHERE kind = 'payload' AND job_id IN (?, ?)",
                (in_file.id, mapped[0].id),
            ).fetchall()
        assert named == [(1, 1), (1, 0)]  # both name their function; the big call is a file
    finally:
        queue.close()
        await consumer.stop()
        store.close()


async def test_by_default_it_follows_the_cluster_as_it_scales(recorder):
    config = dask.config.set({"distributed.client.scheduler-info-interval": "100ms"})
    with config:
        cluster = await LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, asynchronous=True,
            dashboard_address=":0",
        )  # fmt: skip
        try:
            async with connected(recorder, cluster.scheduler_address, max_workers=None) as ex:
                assert ex.free_slots() == 1
                cluster.scale(3)
                await wu.wait_for(lambda: ex.free_slots() == 3, timeout=60)
                assert ex.capabilities()["max_workers"] == 3
                cluster.scale(1)
                await wu.wait_for(lambda: ex.free_slots() == 1, timeout=60)
        finally:
            await cluster.close()
