"""Engine benchmark: jupyter_jobs beside ProcessPoolExecutor, Huey (SQLite) and Dask.

Run on demand (not a test): `python benchmarks/engine_bench.py [--jobs 2000] [--only NAME,...]`.
Workloads (issue 3): W1 N no-op jobs submitted one by one, then every result (jobs/s); W1b the
same through `map` (jobs/s); W2 200 sequential submit->result round trips (p50/p99 ms); W3 50 jobs
each returning 1 MB (MB/s). Every system gets 2 worker processes. jupyter_jobs and Huey store
every job durably in SQLite; ProcessPoolExecutor and Dask keep them in memory.

`--main CHECKOUT [--rounds 3]` measures only jupyter_jobs (its consumer in another process),
this checkout's and CHECKOUT's side by side: each round runs one, then the other, each in a
process of its own importing its own jupyter_jobs, and prints the load average before each;
then the median and range of every column per checkout. Interleaved rounds let a machine's
load change touch both alike.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # the suite's consumer-process helpers
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))

import consumers  # noqa: E402

import peers  # noqa: E402

WORKERS = 2


@dataclass
class System:
    """One system under test: how to submit one, submit many, and get a result."""

    name: str
    submit: Callable[[Callable], object]
    map: Callable[[Callable, list], list]
    result: Callable[[object], object]


@dataclass
class Row:
    name: str
    w1: float
    w1b: float
    w2_p50: float
    w2_p99: float
    w3: float


def measure(system: System, n: int) -> Row:
    for _ in range(20):  # warm up: workers started, imports done
        system.result(system.submit(peers.noop))

    start = time.perf_counter()
    handles = [system.submit(peers.noop) for _ in range(n)]
    for h in handles:
        system.result(h)
    w1 = n / (time.perf_counter() - start)

    start = time.perf_counter()
    for h in system.map(peers.noop_item, list(range(n))):
        system.result(h)
    w1b = n / (time.perf_counter() - start)

    latencies = []
    for _ in range(200):
        t0 = time.perf_counter()
        system.result(system.submit(peers.noop))
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]

    start = time.perf_counter()
    blobs = [system.submit(peers.blob) for _ in range(50)]
    total = sum(len(system.result(h)) for h in blobs)
    w3 = total / peers.MB / (time.perf_counter() - start)
    return Row(system.name, w1, w1b, p50, p99, w3)


@contextlib.contextmanager
def jupyter_jobs_system(tmp: Path) -> Iterator[System]:
    from jupyter_jobs import JobQueue

    with JobQueue(tmp / "jj" / "jobs.db") as q:
        q.start_consumer(max_workers=WORKERS)
        yield System(
            "jupyter_jobs (in-process consumer)",
            submit=lambda fn: q.submit(fn),
            map=lambda fn, items: q.map(fn, items),
            result=lambda job: job.result(timeout=600),
        )


@contextlib.contextmanager
def jupyter_jobs_consumer_process(tmp: Path) -> Iterator[System]:
    """The Jupyter shape: the consumer in another process (the server, here the CLI's)."""
    from jupyter_jobs import JobQueue

    db = tmp / "jjp" / "jobs.db"
    with JobQueue(db) as q:
        proc = consumers.start_consumer(db, WORKERS)
        try:
            yield System(
                "jupyter_jobs (consumer process)",
                submit=lambda fn: q.submit(fn),
                map=lambda fn, items: q.map(fn, items),
                result=lambda job: job.result(timeout=600),
            )
        finally:
            consumers.stop(proc)


@contextlib.contextmanager
def process_pool_system(tmp: Path) -> Iterator[System]:
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as pool:
        yield System(
            "ProcessPoolExecutor",
            submit=lambda fn: pool.submit(fn),
            map=lambda fn, items: [pool.submit(fn, i) for i in items],
            result=lambda f: f.result(600),
        )


@contextlib.contextmanager
def huey_system(tmp: Path, tuned: bool = True) -> Iterator[System]:
    """Huey on SQLite; `tuned` polls the queue every 1 ms and results every 5 ms at most.

    Untuned is the issue's configuration, `-k process -w 2` with Huey's default polling (the
    consumer sleeps 0.1 s and more when the queue is empty, and `get` backs off to 1 s).
    """
    os.environ["BENCH_HUEY_DB"] = str(tmp / ("huey.db" if tuned else "huey-defaults.db"))
    import importlib

    importlib.reload(peers)
    consumer_bin = shutil.which("huey_consumer") or shutil.which("huey_consumer.py")
    cmd = [consumer_bin] if consumer_bin else [sys.executable, "-m", "huey.bin.huey_consumer"]
    proc = subprocess.Popen(
        [
            *cmd,
            "peers.huey",
            "-k",
            "process",
            "-w",
            str(WORKERS),
            "-q",
            *(["-d", "0.001", "-m", "0.05"] if tuned else []),
        ],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield System(
            "Huey (-k process -w 2, tuned polling)" if tuned else "Huey (-k process -w 2)",
            submit=lambda fn: {peers.noop: peers.huey_noop, peers.blob: peers.huey_blob}[fn](),
            map=lambda fn, items: [peers.huey_noop_item(i) for i in items],
            result=lambda r: r.get(
                blocking=True, timeout=600, **({"max_delay": 0.005} if tuned else {})
            ),
        )
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def dask_system(tmp: Path) -> Iterator[System]:
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=str(tmp / "dask"),
        ) as cluster,
        Client(cluster) as client,
    ):
        yield System(
            "Dask LocalCluster",
            submit=lambda fn: client.submit(fn, pure=False),
            map=lambda fn, items: client.map(fn, items, pure=False),
            result=lambda f: f.result(600),
        )


SYSTEMS = {
    "jupyter_jobs": jupyter_jobs_consumer_process,
    "jupyter_jobs_inprocess": jupyter_jobs_system,
    "process_pool": process_pool_system,
    "huey": huey_system,
    "huey_defaults": functools.partial(huey_system, tuned=False),
    "dask": dask_system,
}


def run_in(checkout: str, jobs: int) -> Row:
    """One jupyter_jobs row, measured in a process that imports `checkout`'s jupyter_jobs."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--jobs", str(jobs)],
        env={**os.environ, "PYTHONPATH": checkout},
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    ).stdout
    return Row(**json.loads(out.splitlines()[-1]))


def compare(main_checkout: str, jobs: int, rounds: int) -> None:
    """This checkout's jupyter_jobs row beside `main_checkout`'s, in interleaved rounds."""
    checkouts = {"this checkout": str(HERE.parent), main_checkout: main_checkout}
    runs: dict[str, list[Row]] = {name: [] for name in checkouts}
    print(f"{'round':<6} {'checkout':<22} {'load':>5} {'W1':>7} {'W1b':>7} {'W2 p50':>7}")
    for n in range(rounds):
        for name, path in checkouts.items():
            load = os.getloadavg()[0]
            row = run_in(path, jobs)
            runs[name].append(row)
            line = f"{n + 1:<6} {name:<22} {load:>5.2f} {row.w1:>7.0f} {row.w1b:>7.0f}"
            print(f"{line} {row.w2_p50:>7.2f}", flush=True)
    print(f"\n{os.cpu_count()} cores, {WORKERS} workers, N={jobs}, {rounds} rounds interleaved:")
    print("median (min-max)\n")
    columns = [("W1 jobs/s", "w1", 0), ("W1b jobs/s", "w1b", 0), ("W2 p50 ms", "w2_p50", 2)]
    columns += [("W2 p99 ms", "w2_p99", 2), ("W3 MB/s", "w3", 0)]
    header = f"{'checkout':<22}" + "".join(f" {title:>20}" for title, _, _ in columns)
    print(header)
    print("-" * len(header))
    for name, rows in runs.items():
        cells = [summary([getattr(r, field) for r in rows], digits) for _, field, digits in columns]
        print(f"{name:<22}" + "".join(f" {cell:>20}" for cell in cells))


def summary(values: list[float], digits: int) -> str:
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in W1 and W1b")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--main", help="a checkout to measure jupyter_jobs beside (see above)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, with --main")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with (
            tempfile.TemporaryDirectory() as tmp,
            jupyter_jobs_consumer_process(Path(tmp)) as system,
        ):
            print(json.dumps(dataclasses.asdict(measure(system, args.jobs))))
        return
    if args.main:
        compare(args.main, args.jobs, args.rounds)
        return
    names = args.only.split(",") if args.only else list(SYSTEMS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                with SYSTEMS[name](Path(tmp)) as system:
                    rows.append(measure(system, args.jobs))
            except ImportError as exc:
                print(f"skipping {name}: {exc}", file=sys.stderr)
    print(f"\n{os.cpu_count()} cores, {WORKERS} workers each, N={args.jobs}\n")
    header = f"{'system':<40} {'W1 jobs/s':>10} {'W1b jobs/s':>11} {'W2 p50 ms':>10} "
    header += f"{'W2 p99 ms':>10} {'W3 MB/s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:<40} {r.w1:>10.0f} {r.w1b:>11.0f} {r.w2_p50:>10.2f} "
            f"{r.w2_p99:>10.2f} {r.w3:>9.0f}"
        )


if __name__ == "__main__":
    main()
