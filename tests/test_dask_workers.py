"""The Dask executor's workers view on a real LocalCluster: each Dask worker process with its
pid, address, heartbeat (the scheduler's) and the job of ours it runs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from distributed import Client, LocalCluster

from jupyter_jobs.errors import WorkerNotDrainable
from jupyter_jobs.executors.dask import DaskExecutor
from jupyter_jobs.models import Status
from jupyter_jobs.worker_info import WorkerStatus

import workers_util as wu

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One single-threaded Dask worker process (`workers_util.dask_cluster`)."""
    with wu.dask_cluster(1) as cluster:
        yield cluster


async def test_each_dask_worker_is_shown_with_its_pid_heartbeat_and_job(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    recorder = wu.Recorder()
    executor = DaskExecutor(recorder, 1, scheduler_address=cluster.scheduler_address)
    await asyncio.wait_for(executor.start(), 60)
    try:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            pids = await client.run(os.getpid)
        ((address, pid),) = pids.items()
        (worker,) = await executor.workers()
        assert worker.pid == pid and psutil.pid_exists(pid)
        assert worker.host == address and worker.id == address.split("://")[1]
        assert worker.executor == "dask" and worker.state is WorkerStatus.IDLE
        assert worker.started_at == pytest.approx(psutil.Process(pid).create_time(), abs=1)
        assert time.time() - worker.heartbeat_at < 30
        assert not worker.drainable and not executor.capabilities()["drain"]
        with pytest.raises(WorkerNotDrainable):
            await executor.drain(worker.id)

        gate = tmp_path / "gate"
        task = wu.function_task(wu.waits_for, str(gate))
        await executor.run(task)

        async def busy():
            while True:
                (shown,) = await executor.workers()
                if shown.job == task.job_id:
                    return shown
                await asyncio.sleep(0.05)

        shown = await asyncio.wait_for(busy(), 60)
        assert shown.state is WorkerStatus.BUSY and shown.job_name == "waits_for"
        gate.touch()
        assert (await recorder.done(task.job_id)).status is Status.SUCCEEDED
        (after,) = await executor.workers()
        assert after.state is WorkerStatus.IDLE and after.job is None and after.jobs_done == 1
    finally:
        await asyncio.wait_for(executor.shutdown(1.0), 60)
