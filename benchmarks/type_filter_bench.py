"""What the job list by type costs the store: submits and claims of typed and untyped jobs (the
`type_counts` triggers and the two partial indexes), beside the same run of another checkout;
and the list and counts of one type, through the type's indexes and kept counts, beside the
scan and count a store without them has to do; and what the sidebar reads for a type's counts
after events: `GET /stats?type=` (`Store.overview(type=...)`) where the checkout has it, else
the one-job page of that type whose counts it used.

Run on demand (not a test): `python benchmarks/type_filter_bench.py [--jobs 20000] [--main
/work/main]`. Each workload runs on a fresh store file with a consumer's verbs
(`Store.enqueue_many`, then `record_and_claim` finishing what it claimed and claiming the next
batch, as the consumer's flush does), in one thread: submits and claims in CPU microseconds per
job (this process's CPU time, which a busy shared machine disturbs less than the wall clock),
reads in wall milliseconds (median). Typed jobs are of TYPES types, by USERS users. With
`--main`, the run is repeated in a child process importing jupyter_jobs from that checkout, and
both are printed side by side (its reads are the scans).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import checkouts

TYPES = ("train", "explain", "predict")
USERS = 5
SUBMIT_BATCH = 500
CLAIM_BATCH = 8
REPEATS = 15
TYPED_PAYLOAD = b'{"type": "train", "parameters": {}, "entry_point": "m:f"}\n'


def _batches(n: int, typed: bool):
    """`n` jobs in submit batches, each of one user: typed ones round-robin over TYPES."""
    from jupyter_jobs.models import JobSpec, JobUser, Kind

    batches = []
    per_user = n // USERS
    for u in range(USERS):
        user = JobUser(f"user{u}", f"user{u}")
        if typed:
            specs = [
                (
                    JobSpec(kind=Kind.TYPED, name=t, owner="app", type=t, parameters={}),
                    TYPED_PAYLOAD,
                )
                for t in (TYPES[i % len(TYPES)] for i in range(per_user))
            ]
        else:
            specs = [
                (JobSpec(name=f"job {i}", owner="nb.ipynb"), b"x" * 64) for i in range(per_user)
            ]
        for start in range(0, len(specs), SUBMIT_BATCH):
            batches.append((specs[start : start + SUBMIT_BATCH], user))
    return batches


def submits_and_claims(folder: Path, n: int, typed: bool) -> dict[str, float]:
    from jupyter_jobs.models import Outcome, Status
    from jupyter_jobs.store import Store

    store = Store(folder / f"claims_{typed}.db")
    batches = _batches(n, typed)
    began = time.process_time()
    for items, user in batches:
        store.enqueue_many(items, user)
    submitted = time.process_time() - began
    done = Outcome(Status.SUCCEEDED, result=b"")
    outcomes: list = []
    total = 0
    began = time.process_time()
    while True:
        _, claimed = store.record_and_claim(outcomes=outcomes, claim=("bench", CLAIM_BATCH, 60))
        if not claimed:
            break
        total += len(claimed)
        outcomes = [(c.job.id, c.job.attempt, done) for c in claimed]
    drained = time.process_time() - began
    store.close()
    assert total == n - n % USERS, total
    kind = "typed" if typed else "untyped"
    return {
        f"{kind}: submit, CPU us/job": submitted / total * 1e6,
        f"{kind}: claim+finish, CPU us/job": drained / total * 1e6,
    }


def timed(call) -> float:
    call()
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def reads(folder: Path, n: int) -> dict[str, float]:
    """One page and the counts of one type among `n` jobs: half of them typed (a third of
    those "predict"), all older than the untyped half, so a page newest first reaches them
    last. Through `Store.query(type=...)` where this checkout has it; else the read a store
    without the type's indexes and kept counts does for the same answer (the same records)."""
    import inspect

    from jupyter_jobs.store import Store, schema

    store = Store(folder / "reads.db")
    for typed in (True, False):
        for items, user in _batches(n // 2, typed):
            store.enqueue_many(items, user)
    if "type" in inspect.signature(store.overview).parameters:

        def sidebar_counts():  # GET /stats?type=
            return store.overview(type="predict")["counts"]
    else:

        def sidebar_counts():  # GET /jobs?type=&limit=1, for its counts
            return store.query(type="predict", limit=1).counts

    if "type" in inspect.signature(store.query).parameters:

        def page(where: str = "", **filters: str):
            return store.query(type="predict", limit=50, **filters)

        def counts():
            return store.counts(type="predict")
    else:
        conn = store._db.conn()
        sql = f"{schema.SELECT_JOBS} WHERE type = 'predict' {{}} ORDER BY id DESC LIMIT 50"

        def counts():
            return conn.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE type = 'predict' GROUP BY status"
            ).fetchall()

        def page(where: str = "", **filters: str):
            rows = conn.execute(sql.format(where)).fetchall()
            return [schema.job_from_row(r) for r in rows], counts()

    result = {
        "list of a type ms": timed(page),
        "list of a type, queued ms": timed(
            lambda: page("AND status = 'queued'", status=["queued"])
        ),
        "list of a type and user ms": timed(lambda: page("AND user = 'user3'", user="user3")),
        "counts of a type ms": timed(counts),
        "sidebar's counts of a type ms": timed(sidebar_counts),
    }
    store.close()
    return result


def run(n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for typed in (False, True):
            results.update(submits_and_claims(Path(folder), n, typed))
        results.update(reads(Path(folder), n))
    return results


def main() -> None:
    args = checkouts.jobs_arguments(__doc__.splitlines()[0])
    runs = checkouts.runs_by_jobs(__file__, run, args)
    if runs is None:
        return
    print(f"{args.jobs:,} jobs per workload; {USERS} users; types {', '.join(TYPES)}")
    checkouts.print_columns(runs, digits=3)


if __name__ == "__main__":
    main()
