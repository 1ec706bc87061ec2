"""Workers and queue introspection through a real `jupyter server`: `GET /jobs/api/workers`,
a drain over REST (of the server's own worker, and of a headless consumer's on the same
database), `fresh_worker` submits, `GET /jobs/api/queue/next` and `/stats`, and the same
through the kernel API (this test process plays the kernel, as in test_kernel_api.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from consumers import assert_no_errors, start_consumer, stop

from jupyter_jobs.errors import InvalidRequest
from jupyter_jobs.kernel import api

import jobfuncs
from servers import RunningServer, ServerFactory, poll

CONFIG = {
    "JobsApp": {"max_workers": 2, "progress_interval": 0.2, "kill_grace": 2.0},
    "LocalExecutor": {"min_workers": 2},
}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def server(jupyter_server_factory: ServerFactory) -> RunningServer:
    return jupyter_server_factory(config=CONFIG)


@pytest.fixture
def kernel(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """The kernel API pointed at `server` (what a kernel the server launched inherits)."""
    monkeypatch.setenv("JUPYTER_JOBS_URL", server.url)
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", "/notebooks/workers.ipynb")
    api.reset_connection()
    yield server
    api.reset_connection()


def workers(server: RunningServer) -> dict[str, Any]:
    response = server.api("GET", "jobs/api/workers")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_servers_workers_are_listed_and_one_is_drained_over_rest(
    server: RunningServer, tmp_path: Path
) -> None:
    listed = poll(lambda: len(workers(server)["workers"]) >= 2, 60, "two warm workers")
    body = workers(server)
    assert body["consumer"].split(":")[1] == str(server.process.pid)
    for worker in body["workers"]:
        assert psutil.Process(worker["pid"]).ppid() == server.process.pid
        assert worker["consumer"] == body["consumer"] and worker["executor"] == "local"
    assert listed
    gate = tmp_path / "gate"
    job = server.submit(jobfuncs.wait_for_file, str(gate))
    busy = poll(
        lambda: [w for w in workers(server)["workers"] if w["job"] == job["id"]],
        60,
        "a worker runs the job",
    )[0]
    assert busy["state"] == "busy" and busy["drainable"]
    response = server.api("POST", f"jobs/api/workers/{busy['id']}/drain")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "draining" and not response.json()["drainable"]
    assert not gone(busy["pid"])
    gate.touch()
    assert server.result(job["id"]) is None
    poll(lambda: gone(busy["pid"]), 30, "the drained worker exits")
    # min_workers: two workers stand again, the drained one not among them.
    poll(
        lambda: (
            len([w for w in workers(server)["workers"] if w["state"] == "idle"]) >= 2
            and busy["id"] not in {w["id"] for w in workers(server)["workers"]}
        ),
        60,
        "two idle workers again",
    )
    missing = server.api("POST", "jobs/api/workers/nohost:1/drain")
    assert missing.status_code == 404 and missing.json()["type"] == "WorkerNotFound"


def test_a_fresh_worker_job_runs_in_a_process_of_its_own(server: RunningServer) -> None:
    warm = {w["pid"] for w in poll(lambda: workers(server)["workers"], 60, "workers")}
    ran_in = {server.result(server.submit(os.getpid)["id"]) for _ in range(3)}
    seen = warm | ran_in
    job = server.submit(os.getpid, fresh_worker=True)
    assert job["fresh_worker"] is True
    pid = server.result(job["id"])
    assert pid not in seen
    poll(lambda: gone(pid), 30, "the one-time worker exits")
    assert all(not gone(p) for p in warm - {pid})


def test_a_headless_consumers_workers_are_listed_and_drained_through_the_server(
    server: RunningServer,
) -> None:
    proc = start_consumer(server.home.db_path, workers=1)
    try:

        def theirs() -> list[dict[str, Any]]:
            return [w for w in workers(server)["workers"] if w["consumer"] != own]

        own = workers(server)["consumer"]
        others = poll(theirs, 60, "the headless consumer's worker")
        assert others[0]["consumer"].split(":")[1] == str(proc.pid)
        worker = others[0]
        assert psutil.Process(worker["pid"]).ppid() == proc.pid
        response = server.api("POST", f"jobs/api/workers/{worker['id']}/drain")
        assert response.status_code == 200, response.text
        assert response.json()["state"] in ("draining", "retiring")
        poll(lambda: gone(worker["pid"]), 30, "the headless consumer drains its worker")
    finally:
        stderr = stop(proc)
    assert_no_errors(stderr)


def test_queue_next_stats_and_the_kernel_api(kernel: RunningServer, tmp_path: Path) -> None:
    server = kernel
    empty = server.api("GET", "jobs/api/queue/next")
    assert empty.status_code == 200 and empty.json() == {"job": None}
    assert api.peek() is None and api.is_empty()
    # Both workers busy, so what is queued stays queued.
    gate = tmp_path / "gate"
    blockers = [server.submit(jobfuncs.wait_for_file, str(gate)) for _ in range(2)]
    for blocker in blockers:
        server.wait_status(blocker["id"], "running")
    held = server.submit(jobfuncs.add, 1, 1, hold=True)
    low = server.submit(jobfuncs.add, 1, 2, owner="a.ipynb")
    high = server.submit(jobfuncs.add, 1, 3, owner="b.ipynb", priority=5)
    peeked = server.api("GET", "jobs/api/queue/next").json()["job"]
    assert peeked["id"] == high["id"] and peeked["status"] == "queued"
    stats = server.api("GET", "jobs/api/stats").json()
    assert stats["queued"] == 2 and stats["pending"] == 1 and stats["running"] == 2
    # The kernel API says the same.
    assert api.peek().id == high["id"]
    assert not api.is_empty() and api.stats()["queued"] == 2
    assert api.stats(type="add")["queued"] == 0  # `?type=`: no typed job of that type
    with pytest.raises(InvalidRequest, match="type: job type name 'a b' is not valid"):
        api.stats(type="a b")
    shown = api.workers()
    assert {w.job for w in shown} >= {b["id"] for b in blockers}
    gate.touch()
    for job in (low, high):
        server.wait_status(job["id"], "succeeded")
    poll(api.is_empty, 30, "the queue empties")
    assert server.api("GET", "jobs/api/queue/next").json() == {"job": None}
    server.api("POST", f"jobs/api/jobs/{held['id']}/release")
    server.wait_status(held["id"], "succeeded")
    idle = next(w for w in api.workers() if w.state == "idle")
    drained = api.drain_worker(idle.id)
    assert drained.id == idle.id and drained.state in ("retiring", "draining")
    poll(lambda: gone(idle.pid), 30, "the worker drained from the kernel exits")
