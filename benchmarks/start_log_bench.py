"""What writing each start down costs (`start_log.py`): W1 beside a checkout without it.

Run on demand: `python benchmarks/start_log_bench.py --main /work/main [--jobs 2000]
[--rounds 3]`. Each round runs this checkout, then `--main`, each in a process of its own
importing its own jupyter_jobs: a `jupyter jobs consumer` process with 2 workers (the Jupyter
shape) runs W1, N no-op jobs submitted one by one, then every result. Printed per checkout: W1
jobs/s and the CPU time per job (user + system, psutil) of the workers and of the consumer
process, median and range over the rounds. The start log adds one `write` per job in a worker:
CPU time shows it better than throughput on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"  # the suite's consumer-process helpers and job functions
WORKERS = 2


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(jobs: int) -> dict[str, float]:
    """W1 on a fresh database, with the CPU the consumer and its workers spent on it."""
    sys.path[:0] = [str(HERE), str(TESTS)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(TESTS), os.environ["PYTHONPATH"]])
    import consumers

    from jupyter_jobs import JobQueue

    import peers

    with tempfile.TemporaryDirectory() as tmp, JobQueue(Path(tmp) / "jobs.db") as q:
        proc = consumers.start_consumer(Path(tmp) / "jobs.db", WORKERS)
        try:
            for job in [q.submit(peers.noop) for _ in range(50)]:
                job.result(timeout=600)  # warm: workers started, prefetching on
            consumer = psutil.Process(proc.pid)
            workers = [
                p for p in consumer.children() if "jupyter_jobs.runner" in " ".join(p.cmdline())
            ]
            before = cpu_seconds(workers), cpu_seconds([consumer])
            start = time.perf_counter()
            for job in [q.submit(peers.noop) for _ in range(jobs)]:
                job.result(timeout=600)
            seconds = time.perf_counter() - start
            after = cpu_seconds(workers), cpu_seconds([consumer])
        finally:
            consumers.stop(proc)
    return {
        "w1": jobs / seconds,
        "worker_us": (after[0] - before[0]) / jobs * 1e6,
        "consumer_us": (after[1] - before[1]) / jobs * 1e6,
    }


def run_in(checkout: str, jobs: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": checkout}
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--jobs", str(jobs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    return json.loads(out.splitlines()[-1])


def summary(values: list[float], digits: int) -> str:
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main", help="a checkout to compare with (required)")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.jobs)))
        return
    if not args.main:
        parser.error("--main is required: the checkout to compare with")
    checkouts = {"this checkout": str(HERE.parent), args.main: args.main}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    for _ in range(args.rounds):
        for name, path in checkouts.items():
            runs[name].append(run_in(path, args.jobs))
    print(f"\nW1, N={args.jobs}, {WORKERS} workers, {args.rounds} rounds interleaved")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end\n")
    header = f"{'checkout':<22} {'W1 jobs/s':>20} {'worker µs/job':>20} {'consumer µs/job':>20}"
    print(header)
    print("-" * len(header))
    for name, rows in runs.items():
        print(
            f"{name:<22} {summary([r['w1'] for r in rows], 0):>20} "
            f"{summary([r['worker_us'] for r in rows], 1):>20} "
            f"{summary([r['consumer_us'] for r in rows], 1):>20}"
        )


if __name__ == "__main__":
    main()
