"""Real `jupyter jobs consumer` processes for tests and benchmarks: start, stop, kill in a loop."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from jupyter_jobs import JobQueue
from jupyter_jobs.models import Job, Status

import jobfuncs
from waiting import wait_until

FINAL = ("succeeded", "failed", "cancelled")


def start_consumer(db: Path, workers: int = 2, lease: float | None = None) -> subprocess.Popen:
    """A `jupyter jobs consumer` process; its stderr goes to a file beside the database. With
    `lease`, it runs in a folder whose `jupyter_jobs_config.json` sets `c.JobsApp.lease`."""
    log = db.with_name(f"consumer-{os.urandom(4).hex()}.log")
    cwd = None
    if lease is not None:
        cwd = db.with_name(f"lease-{lease:g}")
        cwd.mkdir(exist_ok=True)
        (cwd / "jupyter_jobs_config.json").write_text(json.dumps({"JobsApp": {"lease": lease}}))
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_jobs.cli",
                "consumer",
                "--db",
                str(db),
                "--max-workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            cwd=cwd,
        )
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    """Stop the consumer; returns what it wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise
    return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def assert_no_errors(stderr: str) -> None:
    """A consumer that logged a traceback failed a tick, even if it recovered afterwards."""
    assert "Traceback" not in stderr, stderr[-3000:]


@dataclass
class KillReport:
    """What a kill loop did and what it left: the facts a test asserts and a benchmark prints."""

    kills: Counter = field(default_factory=Counter)
    #: Seconds from starting a consumer (or a restarted server answering) after a kill until
    #: the dead one's jobs were labelled.
    label_seconds: list[float] = field(default_factory=list)
    not_succeeded: list[Job] = field(default_factory=list)
    attempts_completed_twice: list[str] = field(default_factory=list)
    succeeded_without_their_run: list[int] = field(default_factory=list)
    last_log: str = ""
    last_server_log: str = ""
    seconds: float = 0.0


def start_server(db: Path, folder: Path, replacing: Any = None) -> Any:
    """A real `jupyter server` (tests/integration/servers.py) serving `db`, ready; `replacing`
    a killed one restarts it on its home, address and token."""
    integration = str(Path(__file__).parent / "integration")
    if integration not in sys.path:
        sys.path.insert(0, integration)
    from servers import JupyterHome, RunningServer

    if replacing is not None:
        return RunningServer(replacing.home, replacing=replacing).wait_ready()
    home = dataclasses.replace(JupyterHome.create(folder / "server"), db_path=db)
    return RunningServer(home).wait_ready()


def kill_loop(
    db: Path, folder: Path, jobs: int, kills: int, seed: int, server_kills: int = 0
) -> KillReport:
    """Run `jobs` short jobs (retries=10) while killing (-9) a random worker, or now and then
    the consumer itself (then starting another), `kills` times; wait until every job ended.

    With `server_kills`, that many times a consumer's kill is followed by a real Jupyter server
    on the database, killed with -9 once it ran jobs and restarted (then stopped, and a consumer
    takes over again): a server's kill loses nothing either."""
    rng = random.Random(seed)
    report = KillReport()
    began = time.monotonic()
    with JobQueue(db) as q:
        ids = [
            q.submit(jobfuncs.mark_run, str(folder), rng.uniform(0, 0.04), retries=10).id
            for _ in range(jobs)
        ]

        def final() -> int:
            counts = q.store.counts()
            return sum(counts[s] for s in FINAL)

        def held_by_others(pid: int) -> set[int]:
            running = q.store.query(status=["running"], limit=jobs).jobs
            return {r.id for r in running if r.consumer and r.consumer.split(":")[1] != str(pid)}

        consumer = start_consumer(db)
        step = max(1, jobs // (kills + 5))

        def advance() -> None:
            """Until `step` more jobs ended."""
            done = final()
            wait_until(lambda: final() >= min(jobs, done + step), timeout=60, interval=0.02)

        while report.kills.total() < kills and final() < jobs:
            done = final()
            wait_until(lambda d=done: final() >= min(jobs, d + step), timeout=60, interval=0.02)
            workers = [
                p for p in psutil.Process(consumer.pid).children()
                if "jupyter_jobs.runner" in " ".join(p.cmdline())
            ]  # fmt: skip
            if workers and rng.random() < 0.75:
                rng.choice(workers).kill()
                report.kills["worker"] += 1
                continue
            os.kill(consumer.pid, signal.SIGKILL)
            stop(consumer)
            report.kills["consumer"] += 1
            if report.kills["server"] < server_kills and final() < jobs - 2 * step:
                server = start_server(db, folder)
                advance()
                server.kill()
                report.kills["server"] += 1
                server = start_server(db, folder, replacing=server)
                restarted = time.monotonic()  # from its answering: a server starts in seconds
                pid = server.process.pid
                wait_until(lambda pid=pid: not held_by_others(pid), timeout=30, interval=0.02)
                report.label_seconds.append(time.monotonic() - restarted)
                advance()
                server.stop()
                report.last_server_log = server.log_text()
            restarted = time.monotonic()
            consumer = start_consumer(db)
            wait_until(lambda pid=consumer.pid: not held_by_others(pid), timeout=30, interval=0.02)
            report.label_seconds.append(time.monotonic() - restarted)
        try:
            wait_until(lambda: final() == jobs, timeout=600, interval=0.1)
        finally:
            report.last_log = stop(consumer)
        records = q.store.get_many(ids)
    report.seconds = time.monotonic() - began
    report.not_succeeded = [r for r in records if r.status is not Status.SUCCEEDED]
    ends_file = folder / "ends"
    ends = ends_file.read_text().splitlines() if ends_file.exists() else []
    report.attempts_completed_twice = [line for line, n in Counter(ends).items() if n > 1]
    report.succeeded_without_their_run = [
        r.id for r in records if r.status is Status.SUCCEEDED and f"{r.id} {r.attempt}" not in ends
    ]
    return report
