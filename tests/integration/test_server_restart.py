"""The server dies or stops with jobs queued and running; on the same database, the next server
runs the queued ones and resolves the running ones. Nothing stays `running`."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from jupyter_jobs.store import Store

import jobfuncs
from servers import JupyterHome, RunningServer, ServerFactory, poll

CONFIG = {"JobsApp": {"max_workers": 2, "kill_grace": 2.0, "lease": 6.0}}


def runs(marks: Path) -> list[tuple[int, ...]]:
    """(job id, attempt) of every run so far, as the jobs appended them to `marks`."""
    if not marks.exists():
        return []
    return [tuple(map(int, line.split())) for line in marks.read_text().splitlines()]


def start_busy(server: RunningServer, marks: Path) -> dict[str, Any]:
    """Two running jobs (one with retries left, one without) and three queued behind them."""
    jobs = {
        "once": server.submit(jobfuncs.mark_then_sleep, str(marks), 3600, name="once"),
        "retried": server.submit(
            jobfuncs.mark_then_sleep, str(marks), 2, name="retried", retries=1, retry_delay=0
        ),
    }
    server.wait_status(jobs["once"]["id"], "running")
    server.wait_status(jobs["retried"]["id"], "running")
    poll(lambda: len(runs(marks)) == 2, 60, "both jobs started")
    jobs["queued"] = [server.submit(jobfuncs.mark, str(marks), name="q") for _ in range(3)]
    for job in jobs["queued"]:
        assert server.job(job["id"])["status"] == "queued"
    return jobs


def stored(home: JupyterHome) -> dict[int, Any]:
    """Every job as the database holds it (read directly, with no server running)."""
    store = Store(home.db_path)
    try:
        return {job.id: job for job in store.query(limit=500).jobs}
    finally:
        store.close()


def check_restart(server: RunningServer, jobs: dict[str, Any], marks: Path) -> None:
    """After a restart: queued jobs ran once, the retried job ran again, the other failed."""
    for job in jobs["queued"]:
        assert server.result(job["id"]) == job["id"]
    assert server.result(jobs["retried"]["id"]) == jobs["retried"]["id"]
    retried = server.job(jobs["retried"]["id"])
    assert retried["attempt"] == 2
    once = server.wait_status(jobs["once"]["id"], "failed")
    assert once["reason"] in ("interrupted", "worker_lost")
    assert once["attempt"] == 1
    counts = server.api("GET", "jobs/api/stats").json()["counts"]
    assert counts["running"] == 0
    assert counts["queued"] == 0
    runs = [tuple(map(int, line.split())) for line in marks.read_text().splitlines()]
    queued_ids = [job["id"] for job in jobs["queued"]]
    assert sorted(r for r in runs if r[0] in queued_ids) == [(i, 1) for i in queued_ids]
    assert sorted(r for r in runs if r[0] == retried["id"]) == [
        (retried["id"], 1),
        (retried["id"], 2),
    ]


def test_kill_9_with_jobs_queued_and_running(
    jupyter_server_factory: ServerFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    first = jupyter_server_factory(config=CONFIG)
    jobs = start_busy(first, marks)
    first.kill()
    # The database still says running: nobody was there to record anything else.
    before = stored(first.home)
    assert before[jobs["once"]["id"]].status.value == "running"
    assert before[jobs["queued"][0]["id"]].status.value == "queued"
    second = jupyter_server_factory(first.home, config=CONFIG)
    check_restart(second, jobs, marks)


def test_clean_stop_records_interrupted_and_keeps_queued(
    jupyter_server_factory: ServerFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    first = jupyter_server_factory(config=CONFIG)
    jobs = start_busy(first, marks)
    assert first.stop(signal.SIGTERM) == 0
    log = first.log_text()
    assert "Traceback" not in log, log
    # The stop itself recorded the outcome: no recovery needed.
    after = stored(first.home)
    assert after[jobs["once"]["id"]].status.value == "failed"
    assert after[jobs["once"]["id"]].reason.value == "interrupted"
    assert after[jobs["retried"]["id"]].status.value == "queued"
    assert all(after[j["id"]].status.value == "queued" for j in jobs["queued"])
    assert not [j for j in after.values() if j.status.value == "running"]
    second = jupyter_server_factory(first.home, config=CONFIG)
    check_restart(second, jobs, marks)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_other_stop_signals_leave_nothing_running_after_restart(
    jupyter_server_factory: ServerFactory, tmp_path: Path, sig: int
) -> None:
    marks = tmp_path / "marks"
    first = jupyter_server_factory(config=CONFIG)
    jobs = start_busy(first, marks)
    first.stop(sig)
    second = jupyter_server_factory(first.home, config=CONFIG)
    check_restart(second, jobs, marks)
