"""What recording users costs the store: submits, claims (fair share per user, then per
notebook) and "my jobs" reads, beside the same run of another checkout.

Run on demand (not a test): `python benchmarks/users_bench.py [--jobs 20000] [--main /work/main]`.
Each workload runs on a fresh store file with a consumer's verbs (`Store.enqueue_many`, then
`record_and_claim` finishing what it claimed and claiming the next batch, as the consumer's flush
does), in one thread: submits and claims are timed in CPU microseconds per job (this process's
CPU time, which a busy shared machine disturbs less than the wall clock), the reads in wall
milliseconds (median). Jobs are spread over USERS users with NOTEBOOKS notebooks each; a checkout
without users gets the same notebooks (owner `user/notebook`), so its fair share is per notebook.
With `--main`, the run is repeated in a child process importing jupyter_jobs from that checkout,
and both are printed side by side.
"""

from __future__ import annotations

import inspect
import statistics
import tempfile
import time
from pathlib import Path

import checkouts

USERS = 20
NOTEBOOKS = 5
#: Jobs per submit transaction, and per claim (a consumer with 8 free slots).
SUBMIT_BATCH = 500
CLAIM_BATCH = 8
REPEATS = 15


def _store_and_user(path: Path):
    """A store, and `user(name)` giving what `enqueue_many` takes for a user in this checkout
    (None where it has no users)."""
    from jupyter_jobs.store import Store

    store = Store(path)
    if "user" not in inspect.signature(store.enqueue_many).parameters:
        return store, lambda name: None
    from jupyter_jobs.models import JobUser

    return store, lambda name: JobUser(name, name)


def _items(n: int, users: int, user_of):
    """Per user: `n / users` specs spread over its notebooks, each with a tiny payload."""
    from jupyter_jobs.models import JobSpec

    per_user = n // users
    batches = []
    for u in range(users):
        name = f"user{u:02d}"
        specs = [
            (JobSpec(name=f"job {i}", owner=f"{name}/nb{i % NOTEBOOKS}.ipynb"), b"x" * 64)
            for i in range(per_user)
        ]
        for start in range(0, len(specs), SUBMIT_BATCH):
            batches.append((specs[start : start + SUBMIT_BATCH], user_of(name)))
    return batches


def _enqueue(store, items, user) -> None:
    if user is None:
        store.enqueue_many(items)
    else:
        store.enqueue_many(items, user)


def submits_and_claims(folder: Path, n: int, users: int) -> dict[str, float]:
    """Submit `n` jobs of `users` users, then claim and finish them all, batch by batch."""
    from jupyter_jobs.models import Outcome, Status

    store, user_of = _store_and_user(folder / f"claims_{users}.db")
    batches = _items(n, users, user_of)
    began = time.process_time()
    for items, user in batches:
        _enqueue(store, items, user)
    submitted = time.process_time() - began
    done = Outcome(Status.SUCCEEDED, result=b"")
    outcomes: list = []
    claims: list[float] = []
    claimed_total = 0
    began = time.process_time()
    while True:
        started = time.process_time()
        _, claimed = store.record_and_claim(outcomes=outcomes, claim=("bench", CLAIM_BATCH, 60))
        claims.append((time.process_time() - started) * 1e6)
        if not claimed:
            break
        claimed_total += len(claimed)
        outcomes = [(c.job.id, c.job.attempt, done) for c in claimed]
    drained = time.process_time() - began
    store.close()
    assert claimed_total == n - n % users, claimed_total
    return {
        "submit, CPU us/job": submitted / claimed_total * 1e6,
        "claim+finish, CPU us/job": drained / claimed_total * 1e6,
        "claim batch of 8, CPU us p50": statistics.median(claims),
    }


def timed(call) -> float:
    call()
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def my_jobs(folder: Path, n: int) -> dict[str, float]:
    """Reads of one user's jobs among `n` (this checkout's verbs; nothing where there are no
    users)."""
    store, user_of = _store_and_user(folder / "reads.db")
    if user_of("x") is None:
        store.close()
        return {}
    for items, user in _items(n, USERS, user_of):
        _enqueue(store, items, user)
    me = "user07"
    result = {
        "list, first page ms": timed(lambda: store.query(limit=50)),
        "list, mine ms": timed(lambda: store.query(user=me, limit=50)),
        "list, mine+notebook ms": timed(
            lambda: store.query(user=me, owner=f"{me}/nb3.ipynb", limit=50)
        ),
        "counts, mine ms": timed(lambda: store.counts(user=me)),
        "search, mine ms": timed(lambda: store.query(user=me, q="job 1", limit=50)),
    }
    store.close()
    return result


def run(n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for users in (1, USERS):
            for name, value in submits_and_claims(Path(folder), n, users).items():
                results[f"{users} user(s): {name}"] = value
        results.update(my_jobs(Path(folder), n))
    return results


def main() -> None:
    args = checkouts.jobs_arguments(__doc__.splitlines()[0])
    runs = checkouts.runs_by_jobs(__file__, run, args)
    if runs is None:
        return
    print(f"{args.jobs:,} jobs; {USERS} users x {NOTEBOOKS} notebooks (or 1 user x {NOTEBOOKS})")
    checkouts.print_columns(runs, digits=2)


if __name__ == "__main__":
    main()
