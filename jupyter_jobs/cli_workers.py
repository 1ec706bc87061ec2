"""`jupyter jobs workers [drain ID]`: the worker processes that run the database's jobs.

Like the rest of the CLI it opens the store file, and needs no server: every consumer (the
Jupyter server's, a `jupyter jobs consumer`, a script's `JobQueue.start_consumer()`) writes its
workers into the store when they change, and at least every few seconds
(`store/workers.py`), so this lists the workers of all of them, each as its consumer last
described it (`reported`). A drain asked here is carried out by the worker's consumer on its
next round, within a second or so: the worker then finishes its current job and exits.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from . import wording
from .consumer import consumer_is_alive
from .store import Store
from .worker_info import WorkerInfo, WorkerStatus


def _ago(at: float | None, now: float) -> str:
    return "-" if at is None else f"{wording.duration(max(0.0, now - at))} ago"


def cmd_list(store: Store, args: argparse.Namespace) -> int:
    from .cli import _table, _when  # the CLI's own table and times (cli.py imports this module)

    workers = store.workers(consumer_is_alive)
    if args.json:
        print(json.dumps({"workers": [w.to_json() for w in workers]}, indent=2, sort_keys=True))
        return 0
    now = time.time()
    rows = [
        [
            w.id,
            str(w.pid) if w.pid is not None else "-",
            w.state.value + (" (one-time)" if w.one_time else ""),
            f"{w.job} {w.job_name or ''}"[:40] if w.job is not None else "-",
            str(w.jobs_done),
            _when(w.started_at),
            _ago(w.heartbeat_at, now),
            _ago(w.reported_at, now),
        ]
        for w in workers
    ]
    headers = ["ID", "PID", "STATE", "JOB", "DONE", "STARTED", "HEARTBEAT", "REPORTED"]
    print(_table(rows, headers))
    busy = sum(1 for w in workers if w.state in (WorkerStatus.BUSY, WorkerStatus.DRAINING))
    consumers = len({w.consumer for w in workers})
    print(
        f"\n{len(workers)} worker(s), {busy} busy, of {consumers} consumer(s)"
        if workers
        else "\nno workers: no consumer serves this database"
    )
    return 0


def cmd_drain(store: Store, args: argparse.Namespace) -> int:
    worker = store.request_drain(args.id, consumer_is_alive)
    if args.json:
        print(json.dumps(worker.to_json(), indent=2, sort_keys=True))
    else:
        print(_drain_text(worker))
    return 0


def _drain_text(worker: WorkerInfo) -> str:
    job = f" after job {worker.job}" if worker.job is not None else ""
    return f"worker {worker.id} (pid {worker.pid}): asked to drain; it stops{job}"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The `workers` command (lists) and its `drain` subcommand, on the CLI's subparsers."""
    parser = sub.add_parser(
        "workers", parents=[common], help="list the worker processes, or drain one"
    )
    parser.set_defaults(func=cmd_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser(
        "drain", parents=[common], help="let a worker finish its current job, then stop it"
    )
    p.add_argument("id", help="the worker's id (the ID column of `jupyter jobs workers`)")
    p.set_defaults(func=cmd_drain)
