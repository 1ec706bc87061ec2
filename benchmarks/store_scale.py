"""Store scale benchmark: list, counts, stats, search and gc at 1k, 100k and 1M jobs (issue 16).

Run on demand (not a test): `python benchmarks/store_scale.py [--sizes 1000,100000,1000000]
[--main /work/main]`. Each store is built by SQL in one transaction (a `generate_series`-like
recursive CTE inserting jobs and their payload rows: the store's own triggers keep its counts,
totals and search index, as they would for submits), after the store created its schema. Reads
are timed as the median of repeated calls on a warm connection. gc deletes the 100k oldest
finished jobs of the largest store while a thread submits one job every 5 ms; the submit
latencies during the gc are reported (max, p99). With `--main`, the same run is repeated in a
child process importing jupyter_jobs from that checkout, and both are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import checkouts

#: Notebooks the jobs belong to.
OWNERS = 10
#: Jobs deleted by the gc measurement (the oldest; all finished).
GC_JOBS = 100_000
REPEATS = 15


def build(path: Path, n: int, finished_before: int) -> None:
    """A store of `n` jobs in `OWNERS` notebooks: mostly succeeded, some failed or cancelled, 2%
    queued (none among the first `finished_before`, which all finished long ago: what gc
    deletes), each with a 200-byte payload."""
    from jupyter_jobs.store import Store

    Store(path).close()  # this version's schema (and triggers)
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO jobs (id, name, kind, owner, status, created_at, queued_at, finished_at,
                          payload_size, log_size)
        SELECT i, printf('fit %07d model %d', i, i % 1000), 'cell',
               printf('notebooks/analysis_%02d.ipynb', i % ?),
               CASE WHEN i > ? AND i % 50 = 0 THEN 'queued'
                    WHEN i % 50 < 3 THEN 'failed'
                    WHEN i % 50 < 5 THEN 'cancelled' ELSE 'succeeded' END,
               ?, ?, CASE WHEN i > ? AND i % 50 = 0 THEN NULL
                          WHEN i <= ? THEN 1000.0 + i ELSE ? END,
               200, i % 7 * 100
        FROM n""",
        (n, OWNERS, finished_before, now, now, finished_before, finished_before, now),
    )
    conn.execute(
        "INSERT INTO blobs (job_id, kind, attempt, size, data) "
        "SELECT id, 'payload', 0, 200, zeroblob(200) FROM jobs"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def timed(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median milliseconds of `call` (after one warm-up call)."""
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def reads(store) -> dict[str, float]:
    owner = "notebooks/analysis_07.ipynb"
    return {
        "list, first page": timed(lambda: store.query(limit=50)),
        "list, status=queued": timed(lambda: store.query(status=["queued"], limit=50)),
        "list, failed+cancelled": timed(
            lambda: store.query(status=["failed", "cancelled"], limit=50)
        ),
        "list, owner": timed(lambda: store.query(owner=owner, limit=50)),
        "list, owner+status=queued": timed(
            lambda: store.query(owner=owner, status=["queued"], limit=50)
        ),
        "counts": timed(lambda: store.counts()),
        "counts, owner": timed(lambda: store.counts(owner)),
        "stats": timed(lambda: store.stats()),
        "sidebar (list + stats)": timed(lambda: (store.query(limit=50), store.stats())),
        "search, 1 match": timed(lambda: store.query(q="0000777", limit=50)),
        "search, 1 per 1000": timed(lambda: store.query(q="model 777", limit=50)),
        "search, a notebook": timed(lambda: store.query(q="analysis_07", limit=50)),
        "search, 2 chars (scan)": timed(lambda: store.query(q="7x", limit=50)),
    }


def gc_with_submits(store, path: Path) -> dict[str, float]:
    """gc of the `GC_JOBS` oldest jobs while a thread submits one job every 5 ms."""
    from jupyter_jobs.models import JobSpec

    latencies: list[float] = []
    stop = threading.Event()

    def submit() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            store.enqueue(JobSpec(name="during gc"), b"")
            latencies.append((time.perf_counter() - began) * 1000)
            stop.wait(0.005)

    def size() -> int:
        return sum(
            os.stat(f"{path}{suffix}").st_size
            for suffix in ("", "-wal")
            if os.path.exists(f"{path}{suffix}")
        )

    before = size()
    thread = threading.Thread(target=submit)
    thread.start()
    began = time.perf_counter()
    deleted = store.gc(older_than=time.time() - (1000.0 + GC_JOBS + 0.5))
    took = time.perf_counter() - began
    stop.set()
    thread.join()
    latencies.sort()
    return {
        "gc deleted": len(deleted),
        "gc seconds": took,
        "submit max ms during gc": latencies[-1] if latencies else float("nan"),
        "submit p99 ms during gc": latencies[int(len(latencies) * 0.99)] if latencies else 0,
        "submits during gc": len(latencies),
        "file MB before gc": before / 2**20,
        "file MB after gc": size() / 2**20,
    }


def run(sizes: list[int], folder: Path) -> dict[str, dict]:
    from jupyter_jobs.store import Store

    results: dict[str, dict] = {}
    for n in sizes:
        path = folder / f"jobs_{n}.db"
        began = time.perf_counter()
        gc_here = n == max(sizes) and n >= GC_JOBS
        build(path, n, GC_JOBS if gc_here else 0)
        built = time.perf_counter() - began
        with Store(path) as store:
            results[str(n)] = {"build seconds": built, **reads(store)}
            if gc_here:
                results["gc"] = gc_with_submits(store, path)
        print(f"  {n:>9,} jobs: built in {built:.1f} s", file=sys.stderr)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return results


def table(runs: dict[str, dict[str, dict]], sizes: list[int]) -> str:
    small, large = str(min(sizes)), str(max(sizes))
    names = [k for k in next(iter(runs.values()))[small] if k != "build seconds"]
    head = f"{'ms (median)':<28}"
    for label in runs:
        head += "".join(f"{label + ' ' + f'{n:,}':>16}" for n in sizes) + f"{label + ' ratio':>14}"
    lines = [head]
    for name in names:
        line = f"{name:<28}"
        for result in runs.values():
            line += "".join(f"{result[str(n)][name]:>16.2f}" for n in sizes)
            line += f"{result[large][name] / result[small][name]:>13.1f}x"
        lines.append(line)
    for label, result in runs.items():
        if "gc" in result:
            lines.append(f"\n{label}: gc of {GC_JOBS:,} jobs in a {int(large):,}-job store")
            lines += [f"  {k:<26}{v:>12.2f}" for k, v in result["gc"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--main", help="a checkout to compare with (its jupyter_jobs)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        print("this checkout:", file=sys.stderr)
        runs["this"] = run(sizes, Path(folder))
    if args.json:
        print(json.dumps(runs["this"]))
        return
    if args.main:
        print(f"{args.main}:", file=sys.stderr)
        runs["main"] = checkouts.results_in(args.main, __file__, "--sizes", args.sizes)
    print(table(runs, sizes))


if __name__ == "__main__":
    main()
