"""Where a sequential submit -> result round trip (engine_bench's W2) spends its time, hop by hop.

Run on demand (not a test): `python benchmarks/roundtrip_probe.py [--trips 200] [--inprocess]`.
By default the consumer runs in its own process (the Jupyter shape, `jupyter jobs consumer`);
`--inprocess` runs it in a thread of the submitting process (`JobQueue.start_consumer`).

The package carries no instrumentation: this script wraps some of its functions, in each process
of the round trip (this one, the consumer process, started through this script, and the worker
processes, started through a tiny interpreter stand-in that installs the probes and then runs the
real runner), to write a wall-clock timestamp at each hop to a file per process. The trips run one
at a time, so each trip's hops are the first events of each kind inside its window, in order.
The first table gives each hop's median time since the previous one, over the trips; the second
what the slowest tenth of the trips spent on each hop beyond its median (where the tail comes
from); then the CPU each process used per trip. The processes share one clock (wall-clock
nanoseconds). POSIX only: the stand-in is a script with a `#!` line.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: The hops of one trip, in order: (process, event, what it is).
HOPS = [
    ("client", "submit", "submit() called"),
    ("client", "submitter", "the store takes the job (a waiting thread)"),
    ("client", "commit", "submit committed"),
    ("client", "rung", "doorbell rung"),
    ("consumer", "woken", "consumer woken (bell or subscription)"),
    ("consumer", "tick", "consumer tick begins"),
    ("consumer", "claimed", "claim committed"),
    ("consumer", "dispatch", "claim back on the loop"),
    ("consumer", "sent", "job frame written to the worker"),
    ("worker", "read", "worker read the frame"),
    ("worker", "run", "runner starts the job"),
    ("worker", "ran", "runner ends the job"),
    ("worker", "done", "done frame written"),
    ("consumer", "outcome", "consumer read the done frame"),
    ("consumer", "recording", "the outcome's write begins"),
    ("consumer", "recorded", "outcome committed"),
    ("consumer", "rung", "doorbell rung"),
    ("client", "woken", "waiter woken"),
    ("client", "resolved", "future resolved"),
    ("client", "result", "result() returned"),
]


class Recorder:
    """Appends `time_ns<TAB>process<TAB>event` lines to one file per process."""

    def __init__(self, folder: Path, role: str) -> None:
        self.role = role
        path = folder / f"{role}-{os.getpid()}.tsv"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def mark(self, event: str, role: str | None = None) -> None:
        os.write(self._fd, f"{time.time_ns()}\t{role or self.role}\t{event}\n".encode())


def wrap(
    owner: Any,
    attr: str,
    *,
    before: Callable[..., None] | None = None,
    after: Callable[..., None] | None = None,
) -> None:
    """Call `before(*args)` and `after(result, *args)` around `owner.attr` (skipped if absent)."""
    original = getattr(owner, attr, None)
    if original is None:
        print(f"probe: {owner.__name__}.{attr} not found, hop skipped", file=sys.stderr)
        return

    @functools.wraps(original)
    def probed(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(*args)
        result = original(*args, **kwargs)
        if after is not None:
            after(result, *args)
        return result

    setattr(owner, attr, probed)


def probe_client(rec: Recorder) -> None:
    from jupyter_jobs import queue
    from jupyter_jobs.doorbell import Listener
    from jupyter_jobs.job import Job

    wrap(queue.StoreBackend, "store_jobs", before=lambda *a: rec.mark("submitter"))
    wrap(Listener, "wait", after=lambda woke, *a: woke and rec.mark("woken"))
    wrap(Job, "_settle", before=lambda *a: rec.mark("resolved"))


def probe_store(rec: Recorder) -> None:
    """Commits and rings, in whichever process (the role says which)."""
    from jupyter_jobs.doorbell import Doorbell
    from jupyter_jobs.store import facade

    def published(tx: Any) -> None:
        jobs = [(what, tx.snapshots.get(job_id)) for what, job_id, _ in tx.events]
        if any(what == "created" for what, _ in jobs):
            rec.mark("commit", "client")
        if any(what == "transition" and job is not None and job.finished for what, job in jobs):
            rec.mark("recorded", "consumer")

    wrap(facade.Store, "_publish", before=lambda store, tx: published(tx))
    wrap(Doorbell, "ring", after=lambda rung, *a: rung and rec.mark("rung"))


def probe_consumer(rec: Recorder, folder: Path) -> None:
    from jupyter_jobs import consumer
    from jupyter_jobs.executors import local
    from jupyter_jobs.store import facade

    wrap(consumer.Consumer, "_on_bell", before=lambda *a: rec.mark("woken"))
    wrap(consumer.Consumer, "_apply_changes", before=lambda *a: rec.mark("woken"))
    wrap(consumer.Consumer, "_tick", before=lambda *a: rec.mark("tick"))
    wrap(consumer.Consumer, "_dispatch", before=lambda *a: rec.mark("dispatch"))
    wrap(consumer.Consumer, "on_done", before=lambda *a: rec.mark("outcome"))
    wrap(
        facade.Store,
        "record_and_claim",
        before=lambda store, logs, progress, outcomes, *a: outcomes and rec.mark("recording"),
        after=lambda result, *a: result[1] and rec.mark("claimed"),
    )
    wrap(local.LocalExecutor, "_send_job", after=lambda *a: rec.mark("sent"))
    stand_in = worker_stand_in(folder)
    real_spawn = local.spawn_runner

    def spawn(interpreter: str, **kwargs: Any) -> Any:
        return real_spawn(stand_in if interpreter == sys.executable else interpreter, **kwargs)

    local.spawn_runner = spawn


def worker_stand_in(folder: Path) -> str:
    """An executable that runs the runner with probes: `<it> -m jupyter_jobs.runner ...`."""
    path = folder / "python-probed"
    path.write_text(
        f"#!{sys.executable}\n"
        f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
        f"import roundtrip_probe; roundtrip_probe.worker_main({str(folder)!r}, sys.argv[3:])\n"
    )
    path.chmod(0o700)
    return str(path)


def worker_main(folder: str, argv: list[str]) -> None:
    """The runner's own `__main__`, with the worker's probes installed first."""
    from jupyter_jobs import protocol, runner

    rec = Recorder(Path(folder), "worker")
    wrap(
        protocol.Channel,
        "recv",
        after=lambda frame, *a: frame and frame[0]["t"] == "job" and rec.mark("read"),
    )
    wrap(runner.Worker, "run", before=lambda *a: rec.mark("run"), after=lambda *a: rec.mark("ran"))
    wrap(runner.Worker, "_send_done", after=lambda *a: rec.mark("done"))
    status = 3
    try:
        status = runner.main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)


def consumer_main(folder: str, argv: list[str]) -> None:
    """`jupyter jobs consumer` with the consumer's and the store's probes installed."""
    from jupyter_jobs import cli

    rec = Recorder(Path(folder), "consumer")
    probe_consumer(rec, Path(folder))
    probe_store(rec)
    sys.exit(cli.main(argv))


# --- the run and its table --------------------------------------------------------------------


def run_trips(tmp: Path, trips: int, inprocess: bool) -> dict[str, float]:
    """Run the trips; returns the CPU microseconds each kind of process used per trip."""
    sys.path.insert(0, str(HERE))
    from jupyter_jobs import JobQueue

    import peers

    rec = Recorder(tmp, "client")
    probe_client(rec)
    probe_store(rec)
    db = tmp / "jobs.db"
    proc = None
    with JobQueue(db) as q:
        if inprocess:
            probe_consumer(Recorder(tmp, "consumer"), tmp)
            q.start_consumer(max_workers=2)
        else:
            consumer = ["consumer", "--db", str(db), "--max-workers", "2"]
            proc = subprocess.Popen(  # its stderr is ours: a failure shows
                [sys.executable, __file__, "--consumer", str(tmp), *consumer],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            for _ in range(20):  # warm up: workers started, imports done
                q.submit(peers.noop).result(timeout=600)
            with cpu_per_trip(proc.pid if proc else None, trips) as cpu:
                rec.mark("warm")
                for _ in range(trips):
                    rec.mark("submit")
                    q.submit(peers.noop).result(timeout=600)
                    rec.mark("result")
            return cpu
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)


@contextlib.contextmanager
def cpu_per_trip(consumer: int | None, trips: int) -> Iterator[dict[str, float]]:
    """CPU microseconds (user + system) per trip of this process, of the consumer process (with
    `--inprocess` it is this one) and of its workers, over the `with` block."""
    import psutil

    me = psutil.Process()
    roles = {"client": [me]}
    if consumer is not None:
        roles["consumer"] = [psutil.Process(consumer)]
    roles["workers"] = (roles.get("consumer") or [me])[0].children(recursive=True)

    def used() -> dict[str, float]:
        return {role: sum(sum(p.cpu_times()[:2]) for p in ps) for role, ps in roles.items()}

    found: dict[str, float] = {}
    before = used()
    yield found
    after = used()
    found.update({role: (after[role] - before[role]) / trips * 1e6 for role in roles})


def load(tmp: Path) -> list[tuple[int, str, str]]:
    events = []
    for path in tmp.glob("*.tsv"):
        for line in path.read_text().splitlines():
            ns, role, event = line.split("\t")
            events.append((int(ns), role, event))
    events.sort()
    return events


Trip = dict[tuple[str, str], float]


def breakdown(events: list[tuple[int, str, str]]) -> list[Trip]:
    """Per trip, the microseconds from the hop before to each hop found in it; under
    ("trip", "total"), the trip's own length."""
    warm = next(i for i, e in enumerate(events) if e[2] == "warm")
    events = events[warm + 1 :]
    trips: list[Trip] = []
    trip: list[tuple[int, str, str]] = []
    for event in events:
        trip.append(event)
        if event[1:] == ("client", "result"):
            gaps = _one_trip(trip)
            gaps[("trip", "total")] = (event[0] - trip[0][0]) / 1000
            trips.append(gaps)
            trip = []
    return trips


def _one_trip(trip: list[tuple[int, str, str]]) -> Trip:
    gaps: Trip = {}
    at = 0
    previous = trip[0][0]
    for role, event, _ in HOPS:
        for i in range(at, len(trip)):
            if trip[i][1:] == (role, event):
                gaps[(role, event)] = (trip[i][0] - previous) / 1000
                previous, at = trip[i][0], i + 1
                break
    return gaps


def print_table(trips: list[Trip], cpu: dict[str, float], title: str) -> None:
    print(f"\n{title}\n")
    header = f"{'process':<9} {'hop (time since the hop before)':<42} {'p50 us':>8} {'mean us':>8}"
    print(header)
    print("-" * len(header))
    total = 0.0
    for role, event, what in HOPS:
        values = [t[(role, event)] for t in trips if (role, event) in t]
        if not values:
            print(f"{role:<9} {what:<42} {'-':>8} {'-':>8}")
            continue
        p50 = statistics.median(values)
        total += statistics.fmean(values)
        print(f"{role:<9} {what:<42} {p50:>8.0f} {statistics.fmean(values):>8.0f}")
    print("-" * len(header))
    print(f"{'':<9} {'sum of the means':<42} {'':>8} {total:>8.0f}")
    lengths = [t[("trip", "total")] for t in trips]
    p50, mean = statistics.median(lengths), statistics.fmean(lengths)
    print(f"{'':<9} {'whole trip':<42} {p50:>8.0f} {mean:>8.0f}")
    print_tail(trips)
    print(
        "\nCPU per trip (user + system): " + ", ".join(f"{r} {us:.0f} us" for r, us in cpu.items())
    )


def print_tail(trips: list[Trip]) -> None:
    """Where the slowest tenth of the trips lost their time: per hop, its mean in those trips
    minus its median over all trips."""
    cut = sorted(t[("trip", "total")] for t in trips)[int(len(trips) * 0.9)]
    slow = [t for t in trips if t[("trip", "total")] >= cut]
    print(f"\nthe slowest tenth (trips of {cut:.0f} us or more): time beyond each hop's median\n")
    for role, event, what in HOPS:
        values = [t[(role, event)] for t in trips if (role, event) in t]
        in_slow = [t[(role, event)] for t in slow if (role, event) in t]
        if values and in_slow:
            extra = statistics.fmean(in_slow) - statistics.median(values)
            print(f"{role:<9} {what:<42} {extra:>8.0f}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--consumer":
        consumer_main(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--inprocess", action="store_true", help="consumer in this process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cpu = run_trips(Path(tmp), args.trips, args.inprocess)
        trips = breakdown(load(Path(tmp)))
    shape = "in-process consumer" if args.inprocess else "consumer process"
    print_table(trips, cpu, f"W2 round trip, {args.trips} trips, {shape}, 2 workers")


if __name__ == "__main__":
    main()
