"""Result channels and labelled log streams: what they cost, beside the ways they replace.

Run on demand (not a test): `python benchmarks/channels_bench.py [--jobs 2000]`.

Fan-in: N no-op jobs run by a consumer in its own process (the Jupyter shape, 2 workers); the
submitting process then takes every result. Rows: the handles with `as_completed` (what a
script did before channels), `results(channel)` (each job acknowledged one by one, durably),
and ProcessPoolExecutor's `as_completed` (in memory) for scale. "run" is submit until every
job finished (the channel's trigger is in it), "take" the collecting alone.

Logs: one running job's output recorded through `Store.record` (the consumer's verb) in 100-byte
chunks: all to the main stream (as before streams existed), to one labelled stream, and two
labelled streams taking turns (a new run each chunk, the worst case); then reading one stream
back in 64 KiB requests.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # the suite's consumer-process helpers
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))

import consumers  # noqa: E402

import peers  # noqa: E402
from store_driver import claim, started  # noqa: E402

WORKERS = 2


def fan_in(n: int, tmp: Path, channel: bool) -> tuple[float, float]:
    """(run s, take s) of n no-op jobs, collected by handles or through a channel."""
    from jupyter_jobs import JobQueue

    db = tmp / ("channel" if channel else "handles") / "jobs.db"
    with JobQueue(db) as q:
        proc = consumers.start_consumer(db, WORKERS)
        try:
            for job in [q.submit(peers.noop) for _ in range(20)]:  # warm up
                job.result(timeout=600)
            options = {"channel": "bench"} if channel else {}
            start = time.perf_counter()
            handles = [q.submit(peers.noop, **options) for _ in range(n)]
            concurrent.futures.wait(handles, timeout=600)
            ran = time.perf_counter() - start
            start = time.perf_counter()
            if channel:
                taken = sum(1 for job in q.results("bench", timeout=0) if job.result() is None)
            else:
                done = concurrent.futures.as_completed(handles, timeout=600)
                taken = sum(1 for job in done if job.result() is None)
            took = time.perf_counter() - start
            assert taken == n, (taken, n)
        finally:
            consumers.stop(proc)
    return ran, took


def process_pool(n: int) -> tuple[float, float]:
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(peers.noop) for _ in range(20)]:
            future.result()
        start = time.perf_counter()
        futures = [pool.submit(peers.noop) for _ in range(n)]
        concurrent.futures.wait(futures)
        ran = time.perf_counter() - start
        start = time.perf_counter()
        assert sum(1 for f in concurrent.futures.as_completed(futures) if f.result() is None) == n
        return ran, time.perf_counter() - start


def log_writes(tmp: Path, name: str, streams: list[str], chunks: int) -> tuple[float, float]:
    """(µs per chunk recorded, ms to read the first labelled stream back, or the log)."""
    from jupyter_jobs.models import JobSpec
    from jupyter_jobs.store import Store

    with Store(tmp / name / "jobs.db", log_limit=2**30) as store:
        job = store.enqueue(JobSpec(name="x"), b"p")
        (held,) = claim(store, "bench", 1, lease=3600)
        assert started(store, job.id, held.job.attempt)
        line = b"x" * 99 + b"\n"
        batch = 50  # chunks per flush, as a consumer tick gathers them
        start = time.perf_counter()
        for first in range(0, chunks, batch):
            items = []
            for k in range(first, first + batch):
                stream = streams[k % len(streams)]
                items.append(
                    (job.id, held.job.attempt, line, stream)
                    if stream
                    else (job.id, held.job.attempt, line)
                )
            store.record(logs=items)
        per_chunk = (time.perf_counter() - start) / chunks * 1e6
        wanted = next((s for s in streams if s), None)
        start = time.perf_counter()
        offset, total = 0, 0
        while True:
            found = store.read_log_streams(job.id, offset, 2**16, wanted)[1]
            if not found.data:
                break
            offset, total = found.next_offset, total + len(found.data)
        read_ms = (time.perf_counter() - start) * 1000
        return per_chunk, read_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=20_000)
    args = parser.parse_args()
    n = args.jobs
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("jupyter_jobs, handles + as_completed", *fan_in(n, Path(tmp), channel=False)),
            ("jupyter_jobs, results(channel)", *fan_in(n, Path(tmp), channel=True)),
            ("ProcessPoolExecutor + as_completed (in memory)", *process_pool(n)),
        ]
        logs = [
            ("main stream only", *log_writes(Path(tmp), "main", [""], args.chunks)),
            ("one labelled stream", *log_writes(Path(tmp), "one", ["thread a"], args.chunks)),
            (
                "two labelled streams taking turns",
                *log_writes(Path(tmp), "two", ["thread a", "pid 7"], args.chunks),
            ),
        ]
    print(f"\n{os.cpu_count()} cores, {WORKERS} workers, N={n}\n")
    header = f"{'fan-in':<48} {'run jobs/s':>11} {'take jobs/s':>12} {'take µs/job':>12}"
    print(header)
    print("-" * len(header))
    for name, ran, took in rows:
        print(f"{name:<48} {n / ran:>11.0f} {n / took:>12.0f} {took / n * 1e6:>12.1f}")
    print(f"\n{args.chunks} log chunks of 100 bytes, 50 per flush\n")
    header = f"{'log':<48} {'µs/chunk':>11} {'read ms':>12}"
    print(header)
    print("-" * len(header))
    for name, per_chunk, read_ms in logs:
        print(f"{name:<48} {per_chunk:>11.1f} {read_ms:>12.1f}")


if __name__ == "__main__":
    main()
