"""Stored once: `map` of a function closing over ~1 MB of data, before and after its function
was stored once (issue 15).

Run on demand (not a test): `python benchmarks/stored_once.py [--items 10000] [--mb 1]
[--before /work/main] [--runs engine-after,kernel-after,...]`. Each run is a child process
whose PYTHONPATH starts with the tree it measures: this one ("after") or the `--before`
checkout (the code before the change), so both run side by side, on the same machine, in one
invocation. Per run:

- engine: `JobQueue.map` on a store file, the consumer in its own process (`jupyter jobs
  consumer`, 2 workers: the Jupyter shape);
- kernel: `jupyter_jobs.map` in this process against a real `jupyter server` (2 workers)
  running the same tree.

Measured: submit (seconds until `map` returns: every job stored), drain (jobs/s from then until
every result is in), and the database's size on disk (the SQLite file, its WAL and the job
files folder) once every job has run; and what unpickling the function costs a worker, which
each job paid before and each worker pays once now. The function returns `len(data) + x`: what
is measured is what the data costs, not the work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKERS = 2
PATHS = ("engine", "kernel")


def make_work(data: bytes) -> Callable[[int], int]:
    """A function closing over `data`: dill sends it by value, data included."""

    def work(x: int) -> int:
        return len(data) + x

    return work


def disk_bytes(db: Path) -> int:
    """The database file, its WAL and its job files folder."""
    total = 0
    for path in (db, db.with_name(db.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    files = db.with_name(db.name + ".files")
    if files.is_dir():
        total += sum(p.stat().st_size for p in files.rglob("*") if p.is_file())
    return total


def timed_map(map_fn: Callable[..., list[Any]], items: int, mb: float) -> dict[str, float]:
    fn = make_work(os.urandom(int(mb * 2**20)))
    start = time.perf_counter()
    jobs = map_fn(fn, range(items))
    stored = time.perf_counter()
    total = sum(job.result(timeout=3600) for job in jobs)
    done = time.perf_counter()
    expected = items * int(mb * 2**20) + items * (items - 1) // 2
    if total != expected:
        raise AssertionError(f"wrong results: {total} != {expected}")
    return {"submit": stored - start, "drain": items / (done - stored)}


@contextlib.contextmanager
def engine(tmp: Path) -> Iterator[tuple[Callable[..., list[Any]], Path]]:
    import consumers

    from jupyter_jobs import JobQueue

    db = tmp / "jobs.db"
    with JobQueue(db) as q:
        proc = consumers.start_consumer(db, WORKERS)
        try:
            for _ in range(10):  # workers started, imports done
                q.submit(pow, 2, 2).result(timeout=120)
            yield q.map, db
        finally:
            consumers.stop(proc)


@contextlib.contextmanager
def kernel(tmp: Path) -> Iterator[tuple[Callable[..., list[Any]], Path]]:
    from servers import JupyterHome, RunningServer

    home = JupyterHome.create(tmp / "server")
    pythonpath = os.environ["PYTHONPATH"]  # the tree measured first, for the server as well
    server = RunningServer(
        home, config={"JobsApp": {"max_workers": WORKERS}}, env={"PYTHONPATH": pythonpath}
    )
    try:
        server.wait_ready()
        os.environ.update(JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
        from jupyter_jobs.kernel import api

        for _ in range(10):
            api.submit(pow, 2, 2).result(timeout=120)
        yield api.map, home.db_path
    finally:
        server.close()


def child(path: str, items: int, mb: float) -> None:
    """One run, in this process; prints its numbers as JSON."""
    import jupyter_jobs

    system = {"engine": engine, "kernel": kernel}[path]
    with tempfile.TemporaryDirectory(prefix="stored-once-") as tmp, system(Path(tmp)) as (fn, db):
        row = timed_map(fn, items, mb)
        row["disk"] = disk_bytes(db)
    row["tree"] = str(Path(jupyter_jobs.__file__).parents[1])
    print(json.dumps(row))


def run(tree: Path, path: str, items: int, mb: float) -> dict[str, Any]:
    """One run in a child process whose PYTHONPATH starts with `tree`."""
    helpers = [str(REPO / "tests" / "integration"), str(REPO / "tests"), str(HERE)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *helpers])}
    command = [sys.executable, __file__, "--child", path, "--items", str(items), "--mb", str(mb)]
    with tempfile.TemporaryDirectory(prefix="stored-once-cwd-") as cwd:  # not a checkout's
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=7200
        )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:80]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(row["tree"]).resolve() != tree.resolve():
        raise AssertionError(f"the run imported {row['tree']}, not {tree}")
    return row


def unpickle_ms(mb: float) -> float:
    """What loading the function costs a worker, once (now) or per job (before)."""
    import dill

    data = dill.dumps(make_work(os.urandom(int(mb * 2**20))), recurse=True)
    start = time.perf_counter()
    for _ in range(100):
        dill.loads(data)
    return (time.perf_counter() - start) * 10


def table(rows: list[tuple[str, str, int, dict[str, Any]]], mb: float) -> str:
    lines = [
        f"map of a function closing over {mb:g} MB, {WORKERS} workers",
        "",
        "| path | code | items | submit s | drain jobs/s | database MB |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for path, code, items, row in rows:
        if "error" in row:
            lines.append(f"| {path} | {code} | {items} | failed: {row['error']} | | |")
            continue
        lines.append(
            f"| {path} | {code} | {items} | {row['submit']:.2f} | {row['drain']:.0f} | "
            f"{row['disk'] / 2**20:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--before", type=Path, default=Path("/work/main"))
    parser.add_argument(
        "--runs",
        default="engine-before,engine-after,kernel-before,kernel-after",
        help="comma-separated PATH-CODE pairs (PATH: engine, kernel; CODE: before, after)",
    )
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.items, args.mb)
        return
    trees = {"before": args.before, "after": REPO}
    rows = []
    for name in args.runs.split(","):
        path, code = name.split("-")
        rows.append((path, code, args.items, run(trees[code], path, args.items, args.mb)))
        print(f"{name}: {rows[-1][3]}", file=sys.stderr, flush=True)
    print(table(rows, args.mb))
    load = unpickle_ms(args.mb)
    print(
        f"\nunpickling the function in a worker: {load:.2f} ms; before, each job paid it "
        f"({args.items * load / 1000:.1f} s of worker time for {args.items} jobs), now each "
        "worker pays it once"
    )


if __name__ == "__main__":
    main()
