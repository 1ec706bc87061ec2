"""`jupyter jobs workers [drain ID]` against a real headless `jupyter jobs consumer` process:
its workers are listed from the store by another process, drained from it, and forgotten
when the consumer stops (or is killed)."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import psutil
import pytest
from consumers import assert_no_errors, start_consumer, stop

from jupyter_jobs import JobQueue, cli
from jupyter_jobs.store import Store

import jobfuncs
from waiting import wait_until


def run(capsysbinary: pytest.CaptureFixture[bytes], db: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--db", str(db)])
    out, err = capsysbinary.readouterr()
    return code, out.decode(), err.decode()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_headless_consumers_workers_are_listed_and_drained_from_the_cli(
    db_path: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    def listing() -> list[dict[str, Any]]:
        code, out, err = run(capsysbinary, db_path, "workers", "--json")
        assert code == 0, err
        return json.loads(out)["workers"]

    Store(db_path).close()
    proc = start_consumer(db_path, workers=1)
    try:
        first = wait_until(lambda: [w for w in listing() if w["state"] == "idle"], 60)[0]
        assert psutil.Process(first["pid"]).ppid() == proc.pid  # a worker of that consumer
        assert first["consumer"].split(":")[1] == str(proc.pid)
        code, out, _ = run(capsysbinary, db_path, "workers")
        assert code == 0 and "HEARTBEAT" in out and first["id"] in out and "idle" in out
        with JobQueue(db_path) as q:
            gate = tmp_path / "gate"
            job = q.submit(jobfuncs.wait_for_file, str(gate))
            busy = wait_until(lambda: [w for w in listing() if w["job"] == job.id], 60)[0]
            assert busy["state"] == "busy" and busy["job_name"] == "wait_for_file"
            code, out, _ = run(capsysbinary, db_path, "workers", "drain", busy["id"])
            assert code == 0 and "asked to drain" in out and f"after job {job.id}" in out

            # Its consumer takes the request (the flag is handed over), drains it, and says so.
            def draining() -> bool:
                shown = [w for w in listing() if w["id"] == busy["id"]]
                return not _asked(db_path) and shown[0]["state"] == "draining"

            wait_until(draining, 30, what="the consumer drains the worker")
            assert not gone(busy["pid"])  # its job still runs
            gate.touch()
            assert job.result(timeout=60) is None
            wait_until(lambda: gone(busy["pid"]), 30, what="the drained worker exits")
            # Another worker takes its place; the drained one is no longer listed.
            wait_until(
                lambda: (
                    busy["id"] not in {w["id"] for w in listing()}
                    and any(w["state"] == "idle" for w in listing())
                ),
                30,
            )
    finally:
        stderr = stop(proc)
    assert_no_errors(stderr)
    assert listing() == []  # a consumer that stops takes its workers from the store


def _asked(db_path: Path) -> bool:
    """Whether a drain was asked and not handed to its consumer yet."""
    with sqlite3.connect(db_path) as conn:
        return bool(conn.execute("SELECT 1 FROM workers WHERE drain_requested = 1").fetchone())


def test_a_killed_consumers_workers_are_not_listed(
    db_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    Store(db_path).close()
    proc = start_consumer(db_path, workers=1)
    try:

        def listed() -> list[dict[str, Any]]:
            code, out, _ = run(capsysbinary, db_path, "workers", "--json")
            return json.loads(out)["workers"] if code == 0 else []

        wait_until(listed, 60, what="the consumer's workers are listed")
    finally:
        stop(proc, signal.SIGKILL)
    assert listed() == []  # its rows are still there, but its process is gone
    code, _, err = run(capsysbinary, db_path, "workers", "drain", "nohost:1")
    assert code == 2 and "no worker with id 'nohost:1'" in err
