"""gc while the queue is in use: how long a submit waits while 100k finished jobs are deleted.

Run on demand (not a test): `python benchmarks/gc_bench.py [--jobs 1000000] [--old 100000]
[--rounds 1] [--main /work/main]`. With `--main`, each round measures that checkout too, in
turn with this one (its code imported by the measuring processes and by the server), and the
table puts the two side by side: the code before this change is the `--main` column.

The store: `--jobs` finished jobs in 10 notebooks, each with a 200-byte payload, the `--old`
oldest finished long ago (what gc deletes), the others just now; built by SQL once (the
store's own triggers keep its counts, search index and finished log), then copied, and synced
to disk, for each measurement. Three places a submit can come from while gc runs:

- store, thread: `Store.gc` in one thread of a process, `Store.enqueue` every 5 ms in another
  thread on the same `Store` (a `JobQueue` whose consumer runs in the submitting process);
- store, process: the same gc, and `Store.enqueue` every 5 ms from another process on the same
  file (a `jupyter jobs consumer`'s gc and a client's submits); each submitter starts `QUIET`
  seconds before the gc ("no gc": what a submit costs there without it);
- server: a real `jupyter server` (2 workers, `retention_days` set) whose consumer collects at
  its start, with an events websocket open (a JupyterLab tab), and `POST /jobs/api/jobs` (a
  no-op function job) every 5 ms from the first moment it answers until `QUIET` seconds after
  the collection ("after gc"); its RSS is sampled every 50 ms, and each job's wait in the queue
  (started - created) is read from the store at the end (the first jobs' include the start of
  the workers, some 0.3-0.9 s).

"During gc": the submits that began between the gc's start (for the server: its first submit)
and its end, when the old jobs are gone and no free page is left (the file shrunk). Reported:
submit milliseconds p50 / p95 / max and how many, the gc's seconds, the file (database + WAL)
before and after, and for the server its RSS. With several rounds, each cell lists every
round's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[0:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

import checkouts  # noqa: E402
import store_scale  # noqa: E402

#: Seconds between two submits of one submitter.
PACE = 0.005
#: Seconds of submits measured without gc, beside those during gc.
QUIET = 3.0


def build(path: Path, jobs: int, old: int) -> None:
    """A store of `jobs` finished jobs, the `old` oldest finished in 1970 (gc deletes them),
    on disk."""
    store_scale.build(path, jobs, old, queued=False)
    os.sync()


def copy_synced(source: Path, target: Path) -> None:
    """A copy of the store on disk (else the first checkpoint would pay for writing it)."""
    shutil.copy(source, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    return sum(
        os.stat(f"{path}{suffix}").st_size
        for suffix in ("", "-wal")
        if os.path.exists(f"{path}{suffix}")
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    return {"p50": at(0.5), "p95": at(0.95), "max": ordered[-1], "n": len(values)}


class GcWatch:
    """What the server's gc did: how many old jobs are left (read from the file by another
    connection), and whether its consumer logged the end of the collection."""

    #: What the consumer logs at INFO when a gc deleted jobs (`consumer.py`).
    ENDED = "jupyter_jobs: garbage-collected"

    def __init__(self, path: Path, log: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self.log = log
        self._read = 0

    def old_left(self) -> int:
        return self.conn.execute("SELECT count(*) FROM jobs WHERE finished_at < 1e9").fetchone()[0]

    def over(self) -> bool:
        start = max(0, self._read - len(self.ENDED))  # (a line being written may end later)
        with open(self.log, "rb") as f:
            f.seek(start)
            text = f.read()
        self._read = start + len(text)
        return self.ENDED.encode() in text

    def close(self) -> None:
        self.conn.close()


# -- store: gc in one thread, submits from another thread and from another process ----------


def submit_loop(store: Any, stop: Callable[[], bool]) -> list[tuple[float, float]]:
    """(when, ms) of each `enqueue`, one every `PACE` seconds until `stop()`."""
    from jupyter_jobs.models import JobSpec

    times: list[tuple[float, float]] = []
    while not stop():
        began = time.perf_counter()
        store.enqueue(JobSpec(name="during gc"), b"")
        times.append((time.time(), (time.perf_counter() - began) * 1000))
        time.sleep(PACE)
    return times


def measure_store(path: Path, old: int, submitter: str) -> dict[str, Any]:
    """gc of the `old` jobs of the store at `path` while `submitter` ("thread" or "process")
    submits, from `QUIET` seconds before it."""
    from jupyter_jobs.store import Store

    stop_file = path.with_name("stop")
    done = threading.Event()
    times: list[tuple[float, float]] = []
    before = file_size(path)
    with Store(path) as store:
        if submitter == "thread":
            thread = threading.Thread(target=lambda: times.extend(submit_loop(store, done.is_set)))
            thread.start()
        else:
            command = [sys.executable, __file__, "--submitter", str(path)]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        quiet = time.time()
        time.sleep(QUIET)
        began = time.time()
        deleted = store.gc(older_than=time.time() - 1e9)
        ended = time.time()
        if submitter == "thread":
            done.set()
            thread.join()
        else:
            stop_file.touch()
            out, _ = process.communicate(timeout=60)
            times = [(at, ms) for at, ms in json.loads(out)]
            stop_file.unlink()
    if len(deleted) != old:
        raise RuntimeError(f"gc deleted {len(deleted)} jobs, not {old}")
    return {
        "gc s": ended - began,
        "during gc": percentiles(started_within(times, began, ended)),
        "no gc": percentiles(started_within(times, quiet + 0.5, began)),
        "file MB before": before / 2**20,
        "file MB after": file_size(path) / 2**20,
    }


def started_within(times: list[tuple[float, float]], begin: float, end: float) -> list[float]:
    """The milliseconds of the submits (when they ended, ms) that began within [begin, end]."""
    return [ms for at, ms in times if begin <= at - ms / 1000 <= end]


# -- server: its consumer's gc, submits over HTTP, a listening tab -------------------------


def measure_server(path: Path, root: Path, tmp: Path) -> dict[str, Any]:
    import psutil
    import websocket

    import jobfuncs
    from servers import JupyterHome, RunningServer, submit_body

    home = JupyterHome.create(tmp / "server")
    home.db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, home.db_path)
    before = file_size(home.db_path)
    server = RunningServer(
        home,
        config={
            "JobsApp": {"max_workers": 2, "retention_days": 1.0},
            # the consumer's INFO lines too (the end of its gc)
            "ServerApp": {
                "logging_config": {
                    "loggers": {"jupyter_jobs": {"level": "INFO", "handlers": ["console"]}}
                }
            },
        },
        env={"PYTHONPATH": f"{root}{os.pathsep}{root / 'tests'}"},
    )
    watch = GcWatch(home.db_path, server.log_path)
    stop = threading.Event()
    rss: list[tuple[float, int]] = []
    entries = [0]
    try:
        server.wait_ready()
        process = psutil.Process(server.process.pid)
        ws = websocket.create_connection(
            server.url.replace("http", "ws", 1) + "api/events/subscribe",
            header=[f"Authorization: token {server.token}"],
            timeout=60,
        )

        def listen() -> None:
            while not stop.is_set():
                try:
                    entries[0] += len(json.loads(ws.recv()).get("jobs", []))
                except (websocket.WebSocketException, OSError, ValueError):
                    return

        def sample() -> None:
            while not stop.is_set():
                rss.append((time.time(), process.memory_info().rss))
                time.sleep(0.05)

        for target in (listen, sample):
            threading.Thread(target=target, daemon=True).start()
        left_at_start = watch.old_left()
        body = submit_body(jobfuncs.noop, name="during gc")
        times: list[tuple[float, float]] = []
        ids: list[int] = []
        began = time.time()
        ended = None
        while ended is None or time.time() < ended + QUIET:
            if time.time() > began + 600:
                raise RuntimeError("gc did not end within 600 s")
            t0 = time.perf_counter()
            response = server.api("POST", "jobs/api/jobs", json=body)
            if response.status_code != 201:
                raise RuntimeError(response.text)
            times.append((time.time(), (time.perf_counter() - t0) * 1000))
            ids.append(response.json()["id"])
            if ended is None and watch.over():
                ended = time.time()
            time.sleep(PACE)
        stop.set()
        ws.close()
        waits = queue_waits(home.db_path, ids)
    finally:
        stop.set()
        watch.close()
        server.close()
    during = started_within(times, began, ended)
    return {
        "gc s (from the first submit)": ended - began,
        "old jobs left at the first submit": left_at_start,
        "submit, during gc": percentiles(during),
        "submit, after gc": percentiles(started_within(times, ended, ended + QUIET)),
        "queue wait, during gc": percentiles(waits[: len(during)]),
        "RSS MB at the first submit": rss[0][1] / 2**20,
        "RSS MB peak during gc": max(r for at, r in rss if at <= ended) / 2**20,
        "RSS MB after gc": rss[-1][1] / 2**20,
        "event entries": entries[0],
        "file MB before": before / 2**20,
        "file MB after": file_size(home.db_path) / 2**20,
    }


def queue_waits(path: Path, ids: list[int]) -> list[float]:
    """Milliseconds each job spent between its submit and its start, in the order of `ids`
    (once all started)."""
    from waiting import wait_until

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        query = (
            "SELECT id, created_at, started_at FROM jobs "
            "WHERE id IN (SELECT value FROM json_each(?))"
        )

        def all_started() -> dict[int, float] | None:
            rows = conn.execute(query, (json.dumps(ids),)).fetchall()
            if any(started is None for _, _, started in rows):
                return None
            return {job: (started - created) * 1000 for job, created, started in rows}

        waits = wait_until(all_started, 300, 0.5, what="the jobs submitted during gc started")
    finally:
        conn.close()
    return [waits[job] for job in ids]


# -- driver --------------------------------------------------------------------------------


def measure(base: Path, old: int, folder: Path) -> dict[str, Any]:
    """Both measurements on copies of `base`, with the jupyter_jobs this process imports."""
    import jupyter_jobs

    root = Path(jupyter_jobs.__file__).resolve().parents[1]
    results: dict[str, Any] = {}
    for name in ("store, thread", "store, process", "server"):
        path = folder / name.replace(", ", "-") / "jobs.db"
        path.parent.mkdir()
        copy_synced(base, path)
        if name == "server":
            results[name] = measure_server(path, root, path.parent)
        else:
            results[name] = measure_store(path, old, name.split(", ")[1])
        shutil.rmtree(path.parent)
    return results


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """One row per measure, one column per checkout, with each round's figure in turn."""
    labels = list(runs)

    def rows(result: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
        out = []
        for key, value in result.items():
            if isinstance(value, dict):
                out += rows(value, f"{prefix}{key} ")
            else:
                out.append((f"{prefix}{key}", value))
        return out

    width = 10 * len(next(iter(runs.values())))
    names = [name for name, _ in rows(runs[labels[0]][0])]
    lines = [f"{'':<46}" + "".join(f"{label:>{width}}" for label in labels)]
    for name in names:
        cells = [
            ", ".join(f"{dict(rows(result))[name]:.1f}" for result in runs[label])
            for label in labels
        ]
        lines.append(f"{name:<46}" + "".join(f"{cell:>{width}}" for cell in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="finished jobs in the store")
    parser.add_argument("--old", type=int, default=100_000, help="of which gc deletes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--main", type=Path, help="another checkout to measure beside this one")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # a child run's store
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a child run
    parser.add_argument("--submitter", type=Path, help=argparse.SUPPRESS)  # a child submitter
    args = parser.parse_args()
    if args.submitter:
        from jupyter_jobs.store import Store

        stop_file = args.submitter.with_name("stop")
        with Store(args.submitter) as store:
            print(json.dumps(submit_loop(store, stop_file.exists)))
        return
    if args.json:  # `checkouts.results_in`: measure with this jupyter_jobs, print JSON
        with tempfile.TemporaryDirectory(prefix="gc-bench-", dir=args.measure.parent) as folder:
            print(json.dumps(measure(args.measure, args.old, Path(folder))))
        return
    codes = {"this": REPO}
    if args.main:
        codes["main"] = args.main.resolve()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in codes}
    with tempfile.TemporaryDirectory(prefix="gc-bench-") as folder:
        base = Path(folder) / "base.db"
        began = time.perf_counter()
        build(base, args.jobs, args.old)
        print(f"built {args.jobs:,} jobs in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        for round_ in range(args.rounds):
            for label, root in codes.items():
                measured = checkouts.results_in(
                    str(root), __file__, "--measure", str(base), "--old", str(args.old)
                )
                runs[label].append(measured)
                print(f"round {round_ + 1}: {label} measured", file=sys.stderr)
    print(
        f"gc of {args.old:,} finished jobs in a store of {args.jobs:,}; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(table(runs))


if __name__ == "__main__":
    main()
