"""A stopping server answers every request with a 503 in the API's error shape, never a 500, and
its log says what the stop does to the jobs; the startup log gives max_workers as a number."""

from __future__ import annotations

import os
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import requests

import jobfuncs
from servers import RunningServer, ServerFactory, poll

#: The job that ignores SIGTERM holds the stop for kill_grace seconds: time to send requests.
SLOW_STOP = {"JobsApp": {"max_workers": 2, "kill_grace": 6.0}}


def answers_until_exit(server: RunningServer, job_id: int) -> list[requests.Response]:
    """`GET /status` on the kept-alive connection, again and again, until the server is gone.

    jupyter_server stops listening when the stop begins, so only an open connection still
    brings requests (as a browser's or a kernel's does).
    """
    answers: list[requests.Response] = []

    def gone() -> bool:
        try:
            answers.append(server.api("GET", "jobs/api/status", params={"ids": job_id}, timeout=10))
        except requests.ConnectionError:
            return True
        return server.process.poll() is not None

    poll(gone, 60, "the server stopped answering", interval=0.1)
    return answers


def long_poll(server: RunningServer, job_id: int) -> Future[requests.Response]:
    """`GET /result?wait=` for `job_id` in a thread, on a connection opened before it."""
    session = requests.Session()
    session.headers.update(server.session.headers)
    url = f"{server.url}jobs/api/jobs/{job_id}/result"
    assert session.get(url, timeout=10).status_code == 202
    pool = ThreadPoolExecutor(1)
    future = pool.submit(session.get, url, params={"wait": 120}, timeout=180)
    pool.shutdown(wait=False)
    return future


def test_requests_during_a_slow_stop_get_503_and_the_log_says_what_happens_to_the_jobs(
    jupyter_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = jupyter_server_factory(config=SLOW_STOP)
    pidfile = tmp_path / "pid"
    stubborn = server.submit(jobfuncs.ignore_sigterm_and_sleep, str(pidfile), 3600)
    retried = server.submit(jobfuncs.sleep, 3600, retries=1, retry_delay=0)
    for job in (stubborn, retried):
        server.wait_status(job["id"], "running")
    poll(pidfile.exists, 60, "the stubborn job ignores SIGTERM")
    queued = server.submit(jobfuncs.noop)
    assert server.job(queued["id"])["status"] == "queued"
    waiting = long_poll(server, queued["id"])
    # jupyter_server shuts kernels down after the extensions: requests keep coming meanwhile.
    kernel = server.api("POST", "api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text

    server.process.send_signal(signal.SIGTERM)
    answers = answers_until_exit(server, stubborn["id"])
    server.stop()

    # A long poll for a job that stays queued is answered at once, not dropped at the end.
    assert waiting.result(timeout=30).status_code == 503
    codes = [a.status_code for a in answers]
    assert 500 not in codes, [a.text for a in answers if a.status_code == 500]
    refused = [a for a in answers if a.status_code == 503]
    assert refused, f"no 503 while stopping: {codes}"
    assert set(codes[codes.index(503) :]) == {503}, codes  # once stopping, always 503
    body = refused[0].json()
    assert body["type"] == "ShuttingDown"
    assert "shutting down" in body["message"]
    assert set(body) == {"message", "reason", "type", "detail"}

    log = server.log_text()
    assert (
        "Stopping jupyter_jobs: 2 jobs running here will be interrupted (those with retries "
        "left, or not yet begun in a worker, are requeued); 1 job queued and 0 pending stay "
        "for the next start" in log
    ), log[-4000:]
    assert "jupyter_jobs stopped: of 2 jobs running, 1 failed (interrupted), 1 requeued" in log


def test_the_startup_log_gives_max_workers_as_a_number(
    jupyter_server_factory: ServerFactory,
) -> None:
    server = jupyter_server_factory(config={"JobsApp": {"kill_grace": 2.0}})
    assert f"max_workers {os.cpu_count()} (the number of CPUs)" in server.log_text()
    assert "executor's default" not in server.log_text()


def test_with_dask_the_startup_log_says_max_workers_follows_the_cluster(
    jupyter_server_factory: ServerFactory,
) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        dashboard_address=":0",
    ) as cluster:
        server = jupyter_server_factory(
            config={
                "JobsApp": {
                    "executor": "dask",
                    "dask_scheduler_address": cluster.scheduler_address,
                    "kill_grace": 2.0,
                }
            }
        )
        try:
            assert "max_workers 2 for now (follows the Dask cluster's threads)" in (
                server.log_text()
            )
        finally:
            server.close()  # while its cluster still runs
