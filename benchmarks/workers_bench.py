"""Workers benchmark (issue 15): what a one-time worker costs, what publishing the workers
costs the queue, and what `peek` costs beside the claim it mirrors.

Run on demand (not a test): `python benchmarks/workers_bench.py [--jobs 2000] [--rounds 30]`.
- Round trip: `rounds` sequential submit -> result of a no-op, p50 and p99 ms, in a warm worker
  and with `fresh_worker=True` (a process started for the job, gone after), beside Python's
  `ProcessPoolExecutor` warm and with `max_tasks_per_child=1` (its one-time worker).
- Throughput: `jobs` no-op jobs through `JobQueue` (2 workers), jobs/s, with the consumer
  writing its workers into the store (`WORKERS_INTERVAL`, the default) and without it.
- Peek: `Store.peek` beside the claim transaction it mirrors (median ms), on a store with 10k
  and 100k queued jobs of 20 notebooks at 3 priorities.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))

from jupyter_jobs import JobQueue, consumer  # noqa: E402
from jupyter_jobs.models import JobSpec  # noqa: E402
from jupyter_jobs.store import Store  # noqa: E402

import peers  # noqa: E402

WORKERS = 2


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def round_trips(call: Callable[[], object], rounds: int) -> tuple[float, float]:
    call()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return percentiles(times)


def latency_rows(folder: Path, rounds: int) -> list[tuple[str, float, float]]:
    rows = []
    with JobQueue(folder / "latency.db") as q:
        q.start_consumer(max_workers=WORKERS)
        rows.append(("jupyter_jobs, warm worker", *round_trips(
            lambda: q.submit(peers.noop).result(60), rounds)))  # fmt: skip
        rows.append(("jupyter_jobs, fresh_worker=True", *round_trips(
            lambda: q.submit(peers.noop, fresh_worker=True).result(60), rounds)))  # fmt: skip
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as pool:
        rows.append(("ProcessPoolExecutor, warm", *round_trips(
            lambda: pool.submit(peers.noop).result(60), rounds)))  # fmt: skip
    with concurrent.futures.ProcessPoolExecutor(WORKERS, max_tasks_per_child=1) as pool:
        rows.append(("ProcessPoolExecutor, max_tasks_per_child=1", *round_trips(
            lambda: pool.submit(peers.noop).result(60), rounds)))  # fmt: skip
    return rows


def throughput(folder: Path, jobs: int, publish: bool) -> float:
    interval = consumer.WORKERS_INTERVAL
    consumer.WORKERS_INTERVAL = interval if publish else 1e9
    try:
        with JobQueue(folder / f"throughput-{publish}.db") as q:
            q.start_consumer(max_workers=WORKERS)
            for handle in q.map(peers.noop_item, range(50)):
                handle.result(60)
            start = time.perf_counter()
            handles = [q.submit(peers.noop) for _ in range(jobs)]
            for handle in handles:
                handle.result(120)
            return jobs / (time.perf_counter() - start)
    finally:
        consumer.WORKERS_INTERVAL = interval


def peek_rows(folder: Path) -> list[tuple[int, float, float]]:
    rows = []
    for size in (10_000, 100_000):
        with Store(folder / f"peek-{size}.db") as store:
            specs = [
                (JobSpec(name=f"j{i}", owner=f"nb{i % 20}.ipynb", priority=i % 3), b"")
                for i in range(size)
            ]
            for start in range(0, size, 5000):
                store.enqueue_many(specs[start : start + 5000])
            peek, claim = [], []
            for _ in range(30):
                t0 = time.perf_counter()
                store.peek()
                peek.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                store.record_and_claim(claim=("bench", 1, 60))
                claim.append((time.perf_counter() - t0) * 1000)
            rows.append((size, statistics.median(peek), statistics.median(claim)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"Round trip of a no-op job ({args.rounds} sequential, {WORKERS} workers)")
        print(f"{'system':<46}{'p50 ms':>10}{'p99 ms':>10}")
        for name, p50, p99 in latency_rows(folder, args.rounds):
            print(f"{name:<46}{p50:>10.1f}{p99:>10.1f}")
        print(f"\nThroughput, {args.jobs} no-op jobs through JobQueue ({WORKERS} workers)")
        print(f"{'consumer':<46}{'jobs/s':>10}")
        for publish in (True, False, True, False):
            label = "writes its workers (default)" if publish else "does not write its workers"
            print(f"{label:<46}{throughput(folder, args.jobs, publish):>10.0f}")
        print("\nStore.peek beside the claim it mirrors (median of 30)")
        print(f"{'queued jobs':<46}{'peek ms':>10}{'claim ms':>10}")
        for size, peek, claim in peek_rows(folder):
            print(f"{size:<46}{peek:>10.3f}{claim:>10.3f}")


if __name__ == "__main__":
    main()
