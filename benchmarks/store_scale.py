"""Store scale benchmark: list, counts, stats and search at 1k, 100k and 1M jobs (issue 16).

Run on demand (not a test): `python benchmarks/store_scale.py [--sizes 1000,100000,1000000]
[--main /work/main]`. Each store is built by SQL in one transaction (a `generate_series`-like
recursive CTE inserting jobs and their payload rows: the store's own triggers keep its counts,
totals and search index, as they would for submits), after the store created its schema. Reads
are timed as the median of repeated calls on a warm connection. With `--main`, the same run is
repeated in a child process importing jupyter_jobs from that checkout, and both are printed
side by side. (gc at that scale, with submits meanwhile: `gc_bench.py`.)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import checkouts

#: Notebooks the jobs belong to.
OWNERS = 10
REPEATS = 15


def build(path: Path, n: int, old: int = 0, queued: bool = True) -> None:
    """A store of `n` jobs in `OWNERS` notebooks, each with a 200-byte payload: mostly
    succeeded, some failed or cancelled, and (with `queued`) 2% queued; the `old` first ones
    finished in 1970 (what gc deletes), the others now. Built by SQL: the store's own
    triggers keep its counts, search index and finished log."""
    from jupyter_jobs.store import Store

    Store(path).close()  # this version's schema (and triggers)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n)
        INSERT INTO jobs (id, name, kind, owner, status, created_at, queued_at, started_at,
                          finished_at, payload_size, log_size)
        SELECT i, printf('fit %07d model %d', i, i % 1000), 'cell',
               printf('notebooks/analysis_%02d.ipynb', i % :owners),
               CASE WHEN :queued AND i % 50 = 0 THEN 'queued'
                    WHEN i % 50 < 3 THEN 'failed'
                    WHEN i % 50 < 5 THEN 'cancelled' ELSE 'succeeded' END,
               t, t, CASE WHEN :queued AND i % 50 = 0 THEN NULL ELSE t END,
               CASE WHEN :queued AND i % 50 = 0 THEN NULL ELSE t END, 200, i % 7 * 100
        FROM (SELECT i, CASE WHEN i <= :old THEN 1000.0 + i ELSE :now END AS t FROM n)""",
        {"n": n, "owners": OWNERS, "queued": queued, "old": old, "now": time.time()},
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


def run(sizes: list[int], folder: Path) -> dict[str, dict]:
    from jupyter_jobs.store import Store

    results: dict[str, dict] = {}
    for n in sizes:
        path = folder / f"jobs_{n}.db"
        began = time.perf_counter()
        build(path, n)
        built = time.perf_counter() - began
        with Store(path) as store:
            results[str(n)] = {"build seconds": built, **reads(store)}
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
